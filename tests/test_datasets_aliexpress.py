"""The AliExpress loader on small generated files in the processed (MTReclib) format: a header, an id column,
16 integer-coded categorical fields, 63 numeric fields, click and conversion."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import pytest
import torch

from bench import datasets
from bench.datasets import aliexpress, sources
from bench.errors import UnknownChoice, UserError

HEADER = ",".join(
    [
        "search_id",
        *[f"categorical_{i}" for i in range(1, 17)],
        *[f"numerical_{i}" for i in range(1, 64)],
        "click",
        "conversion",
    ]
)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(tmp_path / "data"))


def rows(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        cats = [rng.randrange(3 + 5 * j) for j in range(16)]
        nums = [f"{rng.random():.4f}" for _ in range(63)]
        click = int(rng.random() < 0.4 + 0.1 * (cats[0] % 3))
        conversion = int(click and rng.random() < 0.5)
        out.append(",".join([str(1000 + i), *map(str, cats), *nums, str(click), str(conversion)]))
    return out


def write(folder: Path, n_train: int = 300, n_test: int = 120) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train.csv", n_train, 0), ("test.csv", n_test, 1)):
        (folder / name).write_text("\n".join([HEADER, *rows(n, seed)]) + "\n")
    return folder


def test_loads_generated_files_from_the_data_directory(tmp_path):
    write(tmp_path / "data" / "aliexpress" / "AliExpress_NL")
    data = datasets.load("aliexpress")
    assert data.task_names == ["ctr", "ctcvr"]
    assert data.funnel_steps == [("ctr", False), ("ctcvr", False)]  # ctcvr: over every impression
    assert (len(data.train), len(data.val), len(data.test)) == (270, 30, 120)
    assert data.d_in == 63 and len(data.fields) == 16 and data.train.cat.shape == (270, 16)
    assert data.info["rows"] == {"train.csv": 300, "test.csv": 120}
    # ctcvr = click * conversion; the fields' vocabularies come from the training split (OOV row 0)
    for split in (data.train, data.val, data.test):
        assert bool((split.y[:, 1] <= split.y[:, 0]).all())
    assert all(f.size == f.levels + 1 for f in data.fields)
    assert data.fields[15].levels <= 3 + 5 * 15
    # the validation split is a seeded carve-out of train.csv
    again = datasets.load("aliexpress", cache=False)
    assert torch.equal(again.val.x, data.val.x) and torch.equal(again.val.cat, data.val.cat)
    other = datasets.load("aliexpress", seed=1, cache=False)
    assert not torch.equal(other.val.x, data.val.x)


def test_cvr_is_observed_on_clicked_rows_only(tmp_path):
    folder = write(tmp_path / "elsewhere" / "AliExpress_ES")
    data = datasets.load("aliexpress", country="ES", path=str(folder), tasks="ctr,cvr")
    assert data.task_names == ["ctr", "cvr"] and data.partial == [False, True]
    assert data.funnel_steps == [("ctr", False), ("cvr", True)]  # cvr: given a click
    for split in (data.train, data.val, data.test):
        clicked = split.y[:, 0] == 1
        assert torch.equal(~torch.isnan(split.y[:, 1]), clicked)
    alone = datasets.load("aliexpress", country="ES", path=str(folder), tasks=["cvr"])
    assert not torch.isnan(alone.train.y).any()  # a single task keeps its observed rows only
    assert len(alone.train) == int((data.train.y[:, 0] == 1).sum())


def test_trains_mmoe_end_to_end(tmp_path):
    from bench.training.fit import fit

    write(tmp_path / "data" / "AliExpress_US")
    data = datasets.load("aliexpress", country="US", tasks=["ctr", "ctcvr", "cvr"])
    result = fit(
        "mmoe",
        data,
        {"max_epochs": 2, "expert_units": 8, "n_experts": 2, "embedding_dim": 4},
        evaluate_test=True,
        accelerator="cpu",
    )
    assert all(math.isfinite(v) for ms in result.test_metrics.values() for v in ms.values())
    assert result.observed["test"]["cvr"] == int((data.test.y[:, 0] == 1).sum()) < len(data.test)


def test_absent_files_say_where_to_get_them_and_where_to_put_them(tmp_path):
    with pytest.raises(UserError) as err:
        datasets.load("aliexpress", country="FR")
    text = str(err.value)
    assert (
        "\n" not in text and "tianchi.aliyun.com/dataset/74690" in text and "Multitask-Recommendation-Library" in text
    )
    assert str(tmp_path / "data" / "aliexpress" / "AliExpress_FR") in text
    with pytest.raises(UnknownChoice, match="aliexpress country 'DE'; valid choices: ES, FR, NL, RU, US"):
        datasets.load("aliexpress", country="DE")
    with pytest.raises(UnknownChoice, match="task of dataset aliexpress 'cvr2'; valid choices: ctcvr, ctr, cvr"):
        datasets.load("aliexpress", tasks="ctr,cvr2")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda lines: [lines[0].rsplit(",", 1)[0], *lines[1:]],
            r"train.csv:1: not an AliExpress file: expected a "
            r"header of 82 fields",
        ),
        (lambda lines: [*lines[:5], lines[5].rsplit(",", 3)[0], *lines[6:]], r"train.csv:6: malformed row: 79 fields"),
        (
            lambda lines: [*lines[:3], lines[3].rsplit(",", 1)[0] + ",2", *lines[4:]],
            r"train.csv:4: conversion must "
            r"be 0 or 1, got 2",
        ),
        (
            lambda lines: [*lines[:3], lines[3].replace(",", ",x", 1), *lines[4:]],
            r"train.csv: cannot read; the 16 "
            r"categorical fields must be integer codes",
        ),
        (lambda lines: [lines[0]], r"train.csv: the file has a header but no rows"),
        (
            lambda lines: [*lines[:2], re.sub(r",0\.\d+,", ",,", lines[2], count=1), *lines[3:]],
            r"train.csv:3: a categorical or numeric field is empty",
        ),
    ],
)
def test_malformed_files_are_one_line_errors_and_nothing_is_cached(tmp_path, edit, message):
    folder = write(tmp_path / "data" / "AliExpress_NL", n_train=20)
    lines = (folder / "train.csv").read_text().splitlines()
    (folder / "train.csv").write_text("\n".join(edit(lines)) + "\n")
    with pytest.raises(UserError, match=message) as err:
        datasets.load("aliexpress")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_module_constants_match_the_documented_format_and_the_study_loads():
    from bench.spec.study import load_study

    assert aliexpress.N_FIELDS == 82 and len(HEADER.split(",")) == 82
    study = load_study("aliexpress")
    assert [d.options["country"] for d in study.datasets] == ["NL", "ES", "FR", "US"]
