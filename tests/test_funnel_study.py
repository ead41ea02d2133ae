"""studies/funnel.toml made tiny, end to end: the entire-space metrics stored by final runs and shown in their own
leaderboard section."""

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from bench.cli import main
from bench.results import store

SPEC = Path(__file__).resolve().parents[1] / "studies" / "funnel.toml"


def tiny_spec(tmp_path: Path) -> Path:
    """The shipped spec with fewer rows, trials, epochs, seeds, one replicate and only its first two datasets (at a
    click rate tiny data can validate on); nothing else changed."""
    text = SPEC.read_text()
    third = text.index("[[datasets]]", text.index('label = "rho0.8-ctr0.05"'))
    text = text[:third] + text[text.index("[search.all]"):]
    for old, new in (('name = "funnel"', 'name = "tiny-funnel"'), ("seeds = 3", "seeds = 2"), ("replicates = 3", ""),
                     ("trials = 10", "trials = 2"), ("max_epochs = 15", "max_epochs = 2"),
                     ("n_samples = 20000", "n_samples = 1500"), ("click_rate = 0.05", "click_rate = 0.4")):
        assert old in text
        text = text.replace(old, new)
    spec = tmp_path / "tiny-funnel.toml"
    spec.write_text(text)
    return spec


def test_tiny_funnel_study_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tiny_spec(tmp_path)
    assert main(["run", "--study", str(spec), "--accelerator", "cpu", "--wandb", "disabled"]) == 0
    rows = store.read(tmp_path / "runs" / "tiny-funnel").filter((pl.col("stage") == "final") & pl.col("draw").is_null())
    entire = rows.filter(pl.col("metric").is_in(["auc_entire", "calib_entire"]))
    # every unit predicting the CVR has its entire-space scores, per seed, over the 300 test impressions
    cvr = entire.filter(pl.col("task") == "cvr")
    assert set(cvr["architecture"].unique()) == {"esmm", "aitm", "mmoe", "ple", "shared_bottom", "single_task"}
    assert cvr.height == 2 * 6 * 2 * 2  # datasets x units x seeds x metrics
    assert set(cvr["observed"].unique()) == {300} and cvr["value"].is_finite().all()
    clicked = rows.filter((pl.col("task") == "cvr") & (pl.col("metric") == "auc") & (pl.col("split") == "test"))
    assert (clicked["observed"] < 300).all()  # the usual CVR: the clicked test rows only
    markdown = (tmp_path / "results" / "tiny-funnel.md").read_text()
    assert markdown.count("Entire impression space, task cvr") == 2
    assert "| architecture   | AUC, observed rows" in markdown and "nan" not in markdown
    # the section's cells are the runs' own scores (2 seeds), not the test-set resamples stored beside them
    table = markdown.split("Entire impression space, task cvr")[1].split("AUC, observed rows: the")[0]
    assert "| 2   |" in table
    # each run's entire-space AUC on 200 resamples of every test impression, the same resamples for every unit
    # (seeded from the outcomes): each model decided against single-task, with the test-set error in it
    resampled = store.read(tmp_path / "runs" / "tiny-funnel").filter(
        (pl.col("stage") == "final") & pl.col("draw").is_not_null() & (pl.col("metric") == "auc_entire"))
    per_run = resampled.group_by("dataset", "architecture", "target", "task", "seed").len()
    assert set(per_run["len"]) == {200} and per_run.height == 2 * (5 * 2 + 2) * 2  # ctr and cvr of each unit
    assert resampled["value"].is_finite().all() and set(resampled["observed"]) == {300}
    assert "0 (baseline)" in table and "gain vs single-task, every impression" in table
    decided = [line for line in table.splitlines() if line.startswith("| esmm")][0]
    assert re.search(r"[+-]\d\.\d{4} \[[+-]\d\.\d{4}, [+-]\d\.\d{4}\] (better|worse|equivalent|inconclusive)", decided)
    assert "none stored for these runs" not in markdown


TABLE_SPEC = """
name = "shop-funnel"
architectures = ["esmm", "aitm", "stem"]
seeds = 2
[budget]
trials = 1
max_epochs = 3
patience = 3
[[datasets]]
name = "table"
label = "shop"
[datasets.options]
path = "{path}"
labels = {{ click = "binary", conversion = "binary" }}
split_column = "split"
observed_if = {{ conversion = "click" }}
encoding = "embedding"
min_count = 1
[search.all]
batch_size = [64]
expert_units = [8]
tower_units = [8]
"""


def shop(path: Path, n: int = 900) -> pl.DataFrame:
    """Impressions of a user's table: a click, and a conversion the file holds only after a click."""
    rng = np.random.default_rng(0)
    city, score = rng.choice(["paris", "rome", "oslo", "lima"], n), rng.normal(0, 1, n)
    click = (rng.random(n) < 1 / (1 + np.exp(-(score + 1.5 * (city == "rome") - 0.5)))).astype(int)
    conversion = np.where(click == 1, (rng.random(n) < 1 / (1 + np.exp(-(score - 0.5)))).astype(float), np.nan)
    split = np.where(np.arange(n) % 5 == 3, "val", np.where(np.arange(n) % 5 == 4, "test", "train"))
    frame = pl.DataFrame({"city": city, "score": score, "click": click, "conversion": conversion, "split": split})
    frame.with_columns(pl.col("conversion").fill_nan(None)).write_csv(path)
    return frame


def test_funnel_architectures_on_a_table_with_observed_if_predict_what_they_stored(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frame = shop(tmp_path / "shop.csv")
    (tmp_path / "shop-funnel.toml").write_text(TABLE_SPEC.format(path=tmp_path / "shop.csv"))
    assert main(["run", "--study", "shop-funnel.toml", "--accelerator", "cpu", "--wandb", "disabled", "--no-plots",
                 "--quiet"]) == 0
    test = frame.filter(pl.col("split") == "test")
    test.write_parquet(tmp_path / "test.parquet")
    rows = store.read(tmp_path / "runs" / "shop-funnel").filter((pl.col("stage") == "final")
                                                               & (pl.col("split") == "test"))
    clicked = torch.tensor(test["click"].to_numpy() == 1)
    y = torch.tensor(test["conversion"].fill_nan(0).to_numpy(), dtype=torch.float64)[clicked]
    for arch in ("esmm", "aitm", "stem"):
        out = tmp_path / f"{arch}.csv"
        assert main(["predict", "--study", "shop-funnel", "--dataset", "shop", "--arch", arch, "--seed", "1",
                     "--input", str(tmp_path / "test.parquet"), "--output", str(out)]) == 0
        # pCVR in float64: AITM's, a ratio of its joint probabilities, can lie a hair below 1 (funnel.ratio_logit)
        p = torch.tensor(pl.read_csv(out)["conversion"].to_numpy(), dtype=torch.float64)[clicked]
        stored = rows.filter((pl.col("architecture") == arch) & (pl.col("seed") == 1) & (pl.col("task") == "conversion")
                             & (pl.col("metric") == "logloss"))["value"].item()
        assert torch.nn.functional.binary_cross_entropy(p, y).item() == pytest.approx(stored, rel=1e-4), arch


def entire_rows(arch: str, target: str, values: list[float], task: str = "cvr", clicked: int = 100) -> list[dict]:
    """Hand-made final test rows of one unit on ``task``: per seed its usual AUC (on ``clicked`` of 1,000 test
    impressions), its auc_entire and 50 resampled ones (the same resample offsets for every unit, as the common
    random numbers give)."""
    offsets = np.random.default_rng(0).normal(0, 0.003, 50)
    out = []
    for seed, v in enumerate(values, 1):
        base = {"dataset": "f", "architecture": arch, "target": target, "stage": "final", "split": "test",
                "task": task, "kind": "binary", "metric": "auc_entire", "seed": seed, "replicate": 1,
                "observed": 1000}
        out.append({**base, "metric": "auc", "value": v, "draw": None, "observed": clicked})
        out.append({**base, "value": v, "draw": None})
        out += [{**base, "value": v + o, "draw": b} for b, o in enumerate(offsets, 1)]
    return out


def test_entire_space_decisions_of_a_hand_made_frame():
    """A model 0.03 above single-task on every seed is decided better, one within 0.0002 equivalent (δ 0.001 auc),
    one whose seeds straddle the baseline inconclusive; a task the log records on every impression is not decided
    again."""
    from bench.results.funnel import entire_decisions
    from bench.spec.decision import DecisionSpec

    rows = (entire_rows("single_task", "cvr", [0.7000, 0.7002, 0.6998, 0.7000])
            + entire_rows("esmm", "mean", [0.730, 0.731, 0.729, 0.730])
            + entire_rows("mmoe", "mean", [0.7001, 0.7003, 0.6999, 0.7001])
            + entire_rows("aitm", "mean", [0.65, 0.75, 0.68, 0.72])
            + entire_rows("single_task", "ctr", [0.70] * 4, "ctr", 1000)
            + entire_rows("esmm", "mean", [0.80] * 4, "ctr", 1000))
    frame = pl.DataFrame(rows, schema={k: store.SCHEMA[k] for k in rows[0]})
    decided = entire_decisions(frame, "f", DecisionSpec())
    # ctr, observed on every impression: its entire-space AUC is the usual one, decided in the dataset's table
    assert ("esmm", "ctr") not in decided
    assert decided[("esmm", "cvr")].startswith("+0.0300 [") and decided[("esmm", "cvr")].endswith(" better")
    assert decided[("mmoe", "cvr")].endswith(" equivalent")
    assert decided[("aitm", "cvr")].endswith(" inconclusive")
    assert ("single_task", "cvr") not in decided
