"""The label-scarcity experiment: one task keeps a fraction of its training labels (the rest missing), the
single-task baseline trains on the same labels, and the leaderboard shows that task's MTL gain per fraction."""

from __future__ import annotations

import math
import tomllib

import polars as pl
import pytest
import torch
from polars.testing import assert_frame_equal

from bench import datasets
from bench.cli import main
from bench.errors import UserError
from bench.results import store
from bench.results.tables import scarcity_summary
from bench.spec.study import parse_study


def test_label_fraction_masks_training_labels_only_and_is_seeded():
    data = datasets.load("synthetic", n_samples=1000, d=6)
    scarce = data.with_label_fraction("y1", 0.05)
    y1 = scarce.train.y[:, 0]
    assert int((~torch.isnan(y1)).sum()) == round(0.05 * len(data.train))
    kept = ~torch.isnan(y1)
    assert torch.equal(y1[kept], data.train.y[kept, 0])  # kept labels unchanged
    assert torch.equal(scarce.train.y[:, 1], data.train.y[:, 1])  # the other task untouched
    assert torch.equal(scarce.val.y, data.val.y) and torch.equal(scarce.test.y, data.test.y)
    assert torch.equal(torch.isnan(data.with_label_fraction("y1", 0.05).train.y), torch.isnan(scarce.train.y))
    assert scarce.info["label_fraction"] == {"y1": {"fraction": 0.05, "kept": 40, "of": 800}}
    assert torch.equal(data.with_label_fraction("y1", 1.0).train.y, data.train.y)
    with pytest.raises(UserError, match=r"must be in \(0, 1\]"):
        data.with_label_fraction("y1", 0.0)


BASE = """
name = "s"
architectures = ["single_task", "mmoe"]
seeds = 2
[budget]
trials = 1
max_epochs = 3
patience = 3
[[datasets]]
name = "synthetic"
label = "f0.1"
options = { n_samples = 400, d = 6, p = 0.9 }
label_fraction = { y1 = 0.1 }
[[datasets]]
name = "synthetic"
label = "f1"
options = { n_samples = 400, d = 6, p = 0.9 }
label_fraction = { y1 = 1.0 }
[search.all]
batch_size = [64]
expert_units = [8]
tower_units = [8]
n_experts = 2
gate_top_k = 0
"""


@pytest.mark.parametrize("entry, message", [
    ("label_fraction = { y1 = 0.0 }", r"label_fraction.y1 must be in \(0, 1\], got 0.0"),
    ("label_fraction = { y1 = 1.5 }", r"must be in \(0, 1\], got 1.5"),
    ("label_fraction = 0.5", "label_fraction must be a table of task = fraction"),
    ("label_fraction = { y1 = 'x' }", "expected float"),
])
def test_bad_label_fraction_is_one_line(entry, message):
    with pytest.raises(UserError, match=message):
        parse_study(tomllib.loads(BASE.replace("label_fraction = { y1 = 0.1 }", entry)))


def test_a_scarce_single_task_unit_trains_as_many_steps_an_epoch_as_the_others():
    """At 5% of y1's labels the single-task unit of y1 trains on its observed rows, tiled to the dataset's training
    size: an epoch is as many batches as a multi-task unit's, every row of it labelled, each observed row drawn
    equally often; the multi-task unit and the unthinned task's baseline are unchanged."""
    from bench.study.units import Unit, unit_data

    full = datasets.load("synthetic", n_samples=2000)
    data = full.with_label_fraction("y1", 0.05, seed=3)
    scarce = unit_data(Unit("d", "single_task", "y1"), data)
    n, kept = len(data.train), data.info["label_fraction"]["y1"]["kept"]
    assert len(scarce.train) == n and not torch.isnan(scarce.train.y).any()
    observed = data.train.y[~torch.isnan(data.train.y[:, 0]), 0]
    assert kept == observed.numel() and set(scarce.train.y[:, 0].tolist()) == set(observed.tolist())
    counts = torch.unique(scarce.train.y[:, 0], return_counts=True)[1]
    assert int(counts.max()) - int(counts.min()) <= 1  # each observed row n // kept or n // kept + 1 times
    assert unit_data(Unit("d", "mmoe", "mean"), data) is data
    assert len(unit_data(Unit("d", "single_task", "y2"), data).train) == n
    # full labels: nothing to tile
    assert len(unit_data(Unit("d", "single_task", "y1"), full).train) == n


def test_a_funnel_cvr_baseline_trains_as_many_steps_an_epoch_as_the_others():
    """CVR is observed on clicked rows only: its single-task unit trains on them, tiled to the training size (at a
    5% click rate an epoch would otherwise be 1/20 of the others' steps); CTR, observed everywhere, is unchanged."""
    from bench.study.units import Unit, unit_data

    data = datasets.load("synthetic-funnel", n_samples=4000, click_rate=0.05, seed=2)
    n = len(data.train)
    clicked = data.train.y[~torch.isnan(data.train.y[:, 1]), 1]
    assert 0 < clicked.numel() < n / 10
    cvr = unit_data(Unit("d", "single_task", "cvr"), data)
    assert len(cvr.train) == n and not torch.isnan(cvr.train.y).any()
    assert sorted(cvr.train.y[: clicked.numel(), 0].tolist()) == sorted(clicked.tolist())  # one pass over the clicks
    assert len(unit_data(Unit("d", "single_task", "ctr"), data).train) == n
    assert len(cvr.val) < len(data.val)  # validated and tested on the clicked rows, as before


def test_scarcity_summary_of_a_hand_made_frame():
    cells = pl.DataFrame({
        "dataset": ["a", "a", "a", "b", "b", "b"], "architecture": ["mmoe", "mmoe", "single_task"] * 2,
        "task": ["y1", "y2", "y1"] * 2, "metric": ["mse"] * 6, "n": [3] * 6,
        "gain": [0.5, 0.1, None, 0.2, 0.0, None], "gain_lo": [0.1, -0.1, None, -0.1, -0.2, None],
        "gain_hi": [0.9, 0.3, None, 0.5, 0.2, None],
        "decision": ["better", "inconclusive", None, "inconclusive", "equivalent", None],
    })
    meta = {"datasets": {"a": {"name": "synthetic", "options": {"p": 0.9}, "label_fraction": {"y1": 0.01}},
                         "b": {"name": "synthetic", "options": {"p": 0.9}, "label_fraction": {"y1": 1.0}},
                         "c": {"name": "synthetic", "options": {"p": 0.5}}}}
    expected = pl.DataFrame({
        "group": ["synthetic, p=0.9"] * 2, "task": ["y1", "y1"], "fraction": [0.01, 1.0], "dataset": ["a", "b"],
        "architecture": ["mmoe", "mmoe"], "metric": ["mse", "mse"], "n": [3, 3], "gain": [0.5, 0.2],
        "gain_lo": [0.1, -0.1], "gain_hi": [0.9, 0.5], "decision": ["better", "inconclusive"],
    })
    assert_frame_equal(scarcity_summary(cells, meta), expected)


def test_a_scarcity_study_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text(BASE)
    assert main(["run", "--study", "s.toml", "--accelerator", "cpu", "--wandb", "disabled", "--quiet"]) == 0
    page = (tmp_path / "results" / "s.md").read_text()
    assert "y1: 32 of 320 training labels kept (10%), the rest masked" in page
    assert "## Label scarcity: MTL gain of the scarce task against its fraction of training labels" in page
    assert "### synthetic, d=6, n_samples=400, p=0.9: y1 (mse gain)" in page
    assert "| architecture   | 10%" in page and "![MTL gain of the scarce task" in page
    assert (tmp_path / "results" / "s" / "scarcity.png").is_file()
    rows = store.read(tmp_path / "runs" / "s")
    # the baseline of y1 trained on the scarce labels: its final scores differ between the two entries
    base = rows.filter((pl.col("stage") == "final") & (pl.col("architecture") == "single_task")
                       & (pl.col("task") == "y1") & (pl.col("split") == "test") & (pl.col("metric") == "mse")
                       & pl.col("draw").is_null())
    a, b = (base.filter(pl.col("dataset") == d)["value"].mean() for d in ("f0.1", "f1"))
    assert math.isfinite(a) and math.isfinite(b) and a != b
