"""The ``table`` loader on small CSV / Parquet files written in each test."""

from __future__ import annotations

import random
import tomllib
from pathlib import Path

import polars as pl
import pytest
import torch

from bench import datasets
from bench.datasets import sources
from bench.errors import UnknownChoice, UserError


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)


def frame(n: int = 200, seed: int = 0) -> pl.DataFrame:
    rng = random.Random(seed)
    age = [rng.randint(18, 80) if rng.random() > 0.1 else None for _ in range(n)]
    city = [rng.choice(["paris", "lyon", "nice"]) for _ in range(n)]
    return pl.DataFrame({
        "age": age,
        "city": city,
        "zip": [rng.choice([75001, 69001, 6000]) for _ in range(n)],
        "click": [rng.choice(["yes", "no"]) for _ in range(n)],
        "price": [rng.uniform(0, 100) for _ in range(n)],
        "segment": [rng.choice(["a", "b", "c"]) for _ in range(n)],
        "fold": [rng.choice(["train"] * 6 + ["valid", "test"]) for _ in range(n)],
    })


LABELS = {"click": "binary", "price": "regression", "segment": "multiclass"}


def cache_files(tmp_path: Path) -> list[Path]:
    root = tmp_path / "cache"
    return sorted(root.iterdir()) if root.exists() else []


def test_csv_with_random_split(tmp_path):
    df = frame()
    df.write_csv(tmp_path / "t.csv")
    data = datasets.load("table", path=str(tmp_path / "t.csv"), labels=LABELS, val_fraction=0.2, test_fraction=0.1)
    assert [(t.name, t.kind, t.n_classes) for t in data.tasks] == [
        ("click", "binary", None), ("price", "regression", None), ("segment", "multiclass", 3)
    ]
    assert (len(data.train), len(data.val), len(data.test)) == (140, 40, 20)
    # features: all non-label columns, types inferred; the fold column is a string, so categorical
    assert "age" in data.feature_names and "city=paris" in data.feature_names and "zip" in data.feature_names
    assert "fold=train" in data.feature_names
    assert not any(n.split("=")[0] in LABELS for n in data.feature_names)
    # labels map as documented
    y = torch.cat([data.train.y, data.val.y, data.test.y])
    assert set(y[:, 0].tolist()) == {0.0, 1.0} and set(y[:, 2].tolist()) == {0.0, 1.0, 2.0}
    assert data.info["labels"]["click"]["positive"] == "yes"
    assert data.info["labels"]["segment"]["classes"] == ["a", "b", "c"]
    # missing numeric: imputed with the training mean (0 once standardised) plus an indicator column
    age, miss = data.feature_names.index("age"), data.feature_names.index("age:missing")
    rows = data.train.x[:, miss] == 1
    assert rows.any() and torch.all(data.train.x[rows, age] == 0)
    observed = data.train.x[~rows, age]  # mean and std come from the observed training values
    assert abs(observed.mean().item()) < 1e-5 and abs(observed.std(unbiased=False).item() - 1) < 1e-4


def test_parquet_split_column_and_overrides(tmp_path):
    df = frame()
    df.write_parquet(tmp_path / "t.parquet")
    data = datasets.load(
        "table", path="t.parquet", data_dir=str(tmp_path), labels={"click": "binary"}, split_column="fold",
        features=["age", "zip", "city"], categorical=["zip"],
    )
    counts = df["fold"].value_counts()
    n = {r["fold"]: r["count"] for r in counts.iter_rows(named=True)}
    assert (len(data.train), len(data.val), len(data.test)) == (n["train"], n["valid"], n["test"])
    assert "zip=75001" in data.feature_names and "zip" not in data.feature_names
    assert not any(name.startswith("fold") for name in data.feature_names)


def test_unseen_category_maps_to_unknown(tmp_path):
    df = frame().with_columns(
        pl.when(pl.col("fold") == "test").then(pl.lit("marseille")).otherwise(pl.col("city")).alias("city")
    )
    df.write_csv(tmp_path / "t.csv")
    data = datasets.load("table", path=str(tmp_path / "t.csv"), labels={"price": "regression"}, split_column="fold")
    unknown = data.feature_names.index("city=<unknown>")
    assert "city=marseille" not in data.feature_names
    assert data.train.x[:, unknown].sum() == 0 and torch.all(data.test.x[:, unknown] == 1)


def test_toml_spec_and_cli_strings(tmp_path):
    frame().write_csv(tmp_path / "a.csv")
    frame(seed=1).write_csv(tmp_path / "b.csv")
    spec = tomllib.loads(
        f"""
        path = "{tmp_path.as_posix()}/*.csv"
        labels = {{ click = "binary", price = "regression" }}
        features = ["age", "city"]
        categorical = []
        tasks = ["price"]
        val_fraction = 0.25
        test_fraction = 0.25
        seed = 3
        """
    )
    data = datasets.load("table", **spec)
    assert data.task_names == ["price"] and len(data.train) == 200 and data.info["rows"]["val"] == 100
    again = datasets.load("table", path=[str(tmp_path / "a.csv"), str(tmp_path / "b.csv")],
                          labels="click:binary,price:regression", features="age,city", tasks="price",
                          val_fraction=0.25, test_fraction=0.25, seed=3)
    assert again.info["cache"] == "hit" and torch.equal(again.train.x, data.train.x)


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"labels": {"clicks": "binary"}}, UnknownChoice, "unknown label column of .*'clicks'; valid choices: age,"),
        ({"labels": {"click": "ordinal"}}, UnknownChoice, "kind of label click 'ordinal'; valid choices: binary"),
        ({"labels": {"segment": "binary"}}, UserError, "label segment is binary but holds 3 distinct values"),
        ({"labels": {"zip": "binary"}}, UserError, "label zip is binary but holds values 6000, 69001, 75001"),
        ({"labels": {"city": "regression"}}, UserError, r"t.csv:2: label city is a regression label but '\w+' is not"),
        ({"labels": {"click": "binary"}, "features": ["age", "click"]}, UserError, "label column click cannot also"),
        ({"labels": {"click": "binary"}, "features": ["agee"]}, UnknownChoice, "unknown feature column"),
        ({"labels": {"click": "binary"}, "split_column": "fold", "categorical": ["price", "fold"]}, UserError,
         "fold is typed as a feature but is not among the features"),
        ({"labels": {"click": "binary"}, "tasks": ["price"]}, UnknownChoice, "task of dataset table"),
        ({"labels": {"click": "binary"}, "split_column": "city"}, UnknownChoice,
         r"value of split column city \(at .*t.csv:2\) '\w+'; valid choices: dev, test"),
        ({"labels": {"click": "binary"}, "test_fraction": 0.0}, UserError, "the test split is empty"),
        ({"labels": None}, UserError, "no labels given"),
        ({"labels": {"click": "binary"}, "numeric": ["city"]}, UserError,
         r"t.csv:2: numeric feature city: '\w+' is not"),
    ],
)
def test_bad_table_inputs(tmp_path, kwargs, error, pattern):
    frame().write_csv(tmp_path / "t.csv")
    with pytest.raises(error, match=pattern) as err:
        datasets.load("table", path=str(tmp_path / "t.csv"), **kwargs)
    assert "\n" not in str(err.value)
    assert cache_files(tmp_path) == []


def test_empty_split_from_split_column(tmp_path):
    frame().with_columns(pl.lit("train").alias("fold")).write_csv(tmp_path / "t.csv")
    with pytest.raises(UserError, match="the val split is empty: no row has fold = val"):
        datasets.load("table", path=str(tmp_path / "t.csv"), labels={"click": "binary"}, split_column="fold")


def test_malformed_csv_rows_and_missing_files(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,y\n1,2,0\n3,4,1\n5,6\n7,8,1\n")
    with pytest.raises(UserError, match=r"t.csv:4: malformed row: 2 fields, the header has 3"):
        datasets.load("table", path=str(tmp_path / "t.csv"), labels={"y": "binary"})
    (tmp_path / "q.csv").write_text('a,b,y\n1,"x,y",0\n3,"z",1\n5,6,1,9\n')
    with pytest.raises(UserError, match=r"q.csv:4: malformed row: 4 fields"):
        datasets.load("table", path=str(tmp_path / "q.csv"), labels={"y": "binary"})
    with pytest.raises(UserError, match="file not found"):
        datasets.load("table", path=str(tmp_path / "nope.csv"), labels={"y": "binary"})
    with pytest.raises(UserError, match="no file matches"):
        datasets.load("table", path=str(tmp_path / "*.parquet"), labels={"y": "binary"})
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(UserError, match="bad.parquet: cannot read"):
        datasets.load("table", path=str(tmp_path / "bad.parquet"), labels={"y": "binary"})
    assert cache_files(tmp_path) == []


def ids_frame(n: int = 400, seed: int = 1) -> pl.DataFrame:
    """A recommender-style table: a 60-level user id, a 3-level device, an integer-coded shop id with nulls,
    click and a conversion observed only where there was a click."""
    rng = random.Random(seed)
    user = [f"u{rng.randrange(60)}" for _ in range(n)]
    click = [rng.randint(0, 1) for _ in range(n)]
    return pl.DataFrame({
        "user": user,
        "device": [rng.choice(["ios", "android", "web"]) for _ in range(n)],
        "shop": [rng.randrange(30) if rng.random() > 0.2 else None for _ in range(n)],
        "price": [rng.uniform(0, 10) for _ in range(n)],
        "click": click,
        "conversion": [rng.randint(0, 1) if c else rng.choice([0, None]) for c in click],
        "fold": [rng.choice(["train"] * 6 + ["val", "test"]) for _ in range(n)],
    })


def test_high_cardinality_columns_are_embedded_by_the_auto_rule(tmp_path):
    ids_frame().write_csv(tmp_path / "t.csv")
    opts = {"path": str(tmp_path / "t.csv"), "labels": {"click": "binary"}, "split_column": "fold"}
    data = datasets.load("table", **opts, categorical=["shop"], min_count=2)
    # user: 60 levels > 16 -> embedded; shop (integer-coded, listed categorical): 31 levels with <missing>;
    # device: 3 levels -> one-hot
    assert [f.name for f in data.fields] == ["user", "shop"] and "device=ios" in data.feature_names
    assert not any(n.startswith(("user", "shop")) for n in data.feature_names)
    assert data.train.cat.shape == (len(data.train), 2) and data.val.cat.dtype == torch.int64
    user = data.fields[0]
    assert user.size == user.levels + 1 and not user.hashed
    # a categorical column with nulls: the nulls are a level of their own, not an error
    train = pl.read_csv(tmp_path / "t.csv").filter(pl.col("fold") == "train")
    levels = sorted({str(v) if v is not None else "<missing>" for v in train["shop"].to_list()})
    counts = train["shop"].cast(pl.String).fill_null("<missing>").value_counts()
    kept = sorted(counts.filter(pl.col("count") >= 2)["shop"].to_list())
    assert "<missing>" in kept and data.fields[1].levels == len(kept) <= len(levels)
    null_rows = train["shop"].is_null().to_numpy()
    assert set(data.train.cat[torch.from_numpy(null_rows), 1].tolist()) == {kept.index("<missing>") + 1}
    again = datasets.load("table", **opts, categorical=["shop"], min_count=2)  # from the cache
    assert again.info["cache"] == "hit" and again.fields == data.fields
    assert torch.equal(again.test.cat, data.test.cat) and torch.equal(again.train.x, data.train.x)
    onehot = datasets.load("table", **opts, encoding="onehot")
    assert not onehot.fields and "user=u1" in onehot.feature_names
    every = datasets.load("table", **opts, categorical=["shop"], encoding="embedding", min_count=1, hash_buckets=8)
    assert [(f.name, f.size, f.hashed) for f in every.fields] == [("user", 8, True), ("device", 4, False),
                                                                 ("shop", 8, True)]


def test_missing_labels_and_a_rule_declared_observation(tmp_path):
    ids_frame().write_csv(tmp_path / "t.csv")
    data = datasets.load("table", path=str(tmp_path / "t.csv"), labels={"click": "binary", "conversion": "binary"},
                         split_column="fold", observed_if={"conversion": "click"})
    assert data.partial == [False, True]
    assert data.funnel_steps == [("click", False), ("conversion", True)]  # the rule declares the funnel
    for s in ("train", "val", "test"):
        y = getattr(data, s).y
        # conversion is observed exactly where click == 1, whatever the file holds elsewhere
        assert torch.equal(~torch.isnan(y[:, 1]), y[:, 0] == 1)
    nulls_only = datasets.load("table", path=str(tmp_path / "t.csv"), labels="click:binary,conversion:binary",
                               split_column="fold")  # nulls in the file: missing, the rule not needed
    y = nulls_only.train.y
    assert nulls_only.funnel is None  # no rule, no declared funnel
    assert torch.isnan(y[:, 1]).any() and not torch.isnan(y[y[:, 0] == 1, 1]).any()
    assert datasets.load("table", path=str(tmp_path / "t.csv"), labels="click:binary,conversion:binary",
                         split_column="fold", observed_if="conversion:click").partial == [False, True]
    with pytest.raises(UserError, match=r"t.csv:\d+: observed_if conversion = device: device must be 0/1"):
        datasets.load("table", path=str(tmp_path / "t.csv"), labels={"conversion": "binary"}, split_column="fold",
                      observed_if={"conversion": "device"})
    with pytest.raises(UnknownChoice, match="unknown label in observed_if 'click'; valid choices: conversion"):
        datasets.load("table", path=str(tmp_path / "t.csv"), labels={"conversion": "binary"},
                      observed_if={"click": "conversion"})


def test_a_label_missing_in_the_whole_validation_split_is_a_one_line_error_and_nothing_is_cached(tmp_path):
    df = ids_frame()
    df = df.with_columns(pl.when(pl.col("fold") == "val").then(None).otherwise(pl.col("click")).alias("click"))
    df.write_csv(tmp_path / "t.csv")
    with pytest.raises(UserError, match=r"^data set 'table': task click has no observed label in the val split$"):
        datasets.load("table", path=str(tmp_path / "t.csv"), labels={"click": "binary"}, split_column="fold")
    assert cache_files(tmp_path) == []


def test_bad_encoding_options_of_a_table(tmp_path):
    ids_frame().write_csv(tmp_path / "t.csv")
    with pytest.raises(UnknownChoice, match="categorical encoding 'dense'; valid choices: auto, embedding, onehot"):
        datasets.load("table", path=str(tmp_path / "t.csv"), labels={"click": "binary"}, encoding="dense")
    with pytest.raises(UserError, match="min_count must be >= 1"):
        datasets.load("table", path=str(tmp_path / "t.csv"), labels={"click": "binary"}, min_count=0)
    assert cache_files(tmp_path) == []


def test_leakage_check_judges_an_embedded_field_as_one_source_column(tmp_path):
    from bench.datasets.leakage import check_leakage

    df = ids_frame(n=1000)
    # an id column that gives the click away, and a conversion missing on most rows
    df = df.with_columns(leaky=pl.format("id{}", pl.col("click") * 100 + pl.int_range(pl.len()) % 40))
    df.write_csv(tmp_path / "t.csv")
    data = datasets.load("table", path=str(tmp_path / "t.csv"), labels={"click": "binary", "conversion": "binary"},
                         split_column="fold", observed_if={"conversion": "click"}, min_count=1)
    assert "leaky" in [f.name for f in data.fields]
    found = {(f.task, f.feature) for f in check_leakage(data)}
    assert ("click", "leaky") in found and not any(feature == "user" for _, feature in found)


def test_a_study_on_a_table_with_embedded_ids_and_missing_labels(tmp_path):
    """Search (embedding_dim in the space), final seeds as a population with lazily updated tables, leaderboard."""
    import json

    from bench.results import store
    from bench.spec.study import parse_study
    from bench.study.run import run_study

    ids_frame(n=300).write_csv(tmp_path / "t.csv")
    spec = {
        "name": "ids", "architectures": ["mmoe", "single_task"], "seeds": 2,
        "budget": {"trials": 2, "max_epochs": 2, "patience": 1}, "pruner": {"kind": "none"},
        "datasets": [{"name": "table", "options": {
            "path": str(tmp_path / "t.csv"), "labels": {"click": "binary", "conversion": "binary"},
            "split_column": "fold", "observed_if": {"conversion": "click"}, "min_count": 1}}],
        "search": {"all": {"batch_size": [64], "expert_units": [8]}},
    }
    root = run_study(parse_study(spec), tmp_path / "runs", accelerator="cpu", out=lambda line: None)
    rows = store.read(root)
    final = rows.filter((pl.col("stage") == "final") & (pl.col("split") == "test") & (pl.col("kind") != "diagnostic"))
    assert set(final["task"].unique()) == {"click", "conversion"} and final["value"].is_finite().all()
    search = rows.filter(pl.col("stage") == "search")
    configs = [json.loads(c) for c in search["config"].drop_nulls().unique().to_list()]
    assert configs and all(c["embedding_dim"] in (4, 8, 16) for c in configs)
