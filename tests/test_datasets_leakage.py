"""The generic leakage check: it catches planted leaks, and every registered data set passes it."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
import torch
from realdata import real_data_dir

from bench import datasets
from bench.datasets import Split, census, sources
from bench.datasets.leakage import check_leakage
from bench.errors import UserError


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(sources.BASE_URL_ENV, (tmp_path / "no-server").as_uri())


def table_fixture(tmp_path: Path, leak: bool = False) -> Path:
    rng = random.Random(0)
    n = 600
    x = [rng.gauss(0, 1) for _ in range(n)]
    click = [int(v + rng.gauss(0, 1) > 0) for v in x]
    df = pl.DataFrame({
        "x": x,
        "noise": [rng.gauss(0, 1) for _ in range(n)],
        "city": [rng.choice(["a", "b", "c", "d"]) for _ in range(n)],
        "click": click,
        "spend": [2 * v + rng.gauss(0, 1) for v in x],
        "tier": [rng.choice(["gold", "silver", "bronze"]) for _ in range(n)],
    })
    if leak:  # a categorical column that spells out the label, and a copy of the regression label
        df = df.with_columns(
            pl.when(pl.col("click") == 1).then(pl.lit("clicked")).otherwise(pl.lit("ignored")).alias("status"),
            (pl.col("spend") * 3 + 1).alias("spend_usd"),
        )
    path = tmp_path / ("leaky.csv" if leak else "clean.csv")
    df.write_csv(path)
    return path


LABELS = {"click": "binary", "spend": "regression", "tier": "multiclass"}


def test_planted_leaks_are_found(tmp_path):
    data = datasets.load("table", path=str(table_fixture(tmp_path, leak=True)), labels=LABELS)
    found = {(f.task, f.feature) for f in check_leakage(data)}
    assert found == {("click", "status"), ("spend", "spend_usd")}


def test_non_monotone_and_multiclass_leaks_are_found():
    data = datasets.load("synthetic", n_samples=4000, d=8, n_tasks=2)
    g = torch.Generator().manual_seed(0)
    n = len(data.train)
    z = torch.randn(n, generator=g)
    label_bin = (z.abs() > 1).float()  # depends on |z|: raw AUC of z is ~0.5, its binned group is not
    label_cls = torch.bucketize(z, torch.tensor([-0.5, 0.5])).float()  # 3 classes from z
    x = torch.cat([data.train.x, z[:, None]], 1)
    y = torch.stack([label_bin, label_cls], 1)
    tasks = [datasets.Task("far", "binary"), datasets.Task("band", "multiclass", 3)]
    leaky = replace(
        data, tasks=tasks, train=Split(x, y), val=Split(x[:10], y[:10]), test=Split(x[:10], y[:10]),
        feature_names=[*data.feature_names, "z"], info={},
    )
    found = {(f.task, f.feature) for f in check_leakage(leaky)}
    assert found == {("far", "z"), ("band", "z")}


def load_for_check(name: str, tmp_path: Path):
    """The data set to check: small synthetic data, a table fixture, the real UCI files where present."""
    if name == "synthetic":
        return datasets.load("synthetic", n_samples=3000, d=20)
    if name == "table":
        return datasets.load("table", path=str(table_fixture(tmp_path)), labels=LABELS)
    if name == "adult":
        root = real_data_dir("adult")
        if not (root / "adult" / "adult.data").is_file():
            pytest.skip(f"real adult files absent: {root / 'adult'}")
        return datasets.load("adult", data_dir=str(root))
    if name == "census-income":
        root = real_data_dir("census-income-kdd")
        if not (root / "census-income-kdd" / "census-income.test.gz").is_file():
            pytest.skip(f"real census file absent: {root / 'census-income-kdd'}")
        return datasets.load("census-income", data_dir=str(root), split="random", tasks=list(census.TASKS))
    try:
        return datasets.load(name)
    except UserError as err:
        pytest.skip(f"{name} does not load with its defaults here: {err}")


@pytest.mark.parametrize("name", datasets.available())
def test_every_registered_dataset_passes(name, tmp_path):
    findings = check_leakage(load_for_check(name, tmp_path))
    assert findings == [], "; ".join(map(str, findings))
