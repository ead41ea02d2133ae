"""The leaderboard pipeline on a hand-made results frame: metric maths against hand-computed values, expected
frames, and a golden markdown file (regenerate with UPDATE_GOLDEN=1 after an intended change)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from bench.results import leaderboard as lb
from bench.results import plots, store, tables

GOLDEN = Path(__file__).parent / "golden" / "leaderboard.md"

# (dataset, architecture, target, task, kind, metric, {seed: value}) of final test rows
FINAL = [
    ("d1", "single_task", "click", "click", "binary", "auc", {1: 0.70, 2: 0.72}),
    ("d1", "single_task", "price", "price", "regression", "mse", {1: 2.0, 2: 2.2}),
    ("d1", "mmoe", "mean", "click", "binary", "auc", {1: 0.74, 2: 0.76}),
    ("d1", "mmoe", "mean", "price", "regression", "mse", {1: 1.8, 2: 2.0}),
    ("d1", "ple", "mean", "click", "binary", "auc", {1: 0.78, 2: 0.80}),
    ("d1", "ple", "mean", "price", "regression", "mse", {1: 2.4, 2: 2.6}),
    ("d2", "single_task", "y", "y", "regression", "mse", {1: 1.0, 2: 1.0}),
    ("d2", "mmoe", "mean", "y", "regression", "mse", {1: 1.1, 2: 1.1}),
    ("d2", "ple", "mean", "y", "regression", "mse", {1: 0.9, 2: 0.9}),
]
PARAMS = {("d1", "single_task", "click"): 100, ("d1", "single_task", "price"): 120, ("d1", "mmoe", "mean"): 500,
          ("d1", "ple", "mean"): 800, ("d2", "single_task", "y"): 50, ("d2", "mmoe", "mean"): 300,
          ("d2", "ple", "mean"): 400}
# (dataset, architecture, target, [(status, seconds), ...]) of search trials
SEARCH = [
    ("d1", "single_task", "click", [("complete", 1.0), ("complete", 3.0)]),
    ("d1", "single_task", "price", [("complete", 2.0), ("pruned", 1.0)]),
    ("d1", "mmoe", "mean", [("complete", 2.0), ("pruned", 1.0), ("failed", 0.5)]),
    ("d1", "ple", "mean", [("complete", 4.0), ("complete", 2.0)]),
    ("d2", "single_task", "y", [("complete", 1.0)]),
    ("d2", "mmoe", "mean", [("complete", 1.0)]),
    ("d2", "ple", "mean", [("complete", 1.0)]),
]
PROV = {"study": "toy", "git_commit": "abc123", "versions": "{}", "hardware": "CPU test, 2 cores"}


def hand_made_rows() -> pl.DataFrame:
    rows = []
    for ds, arch, target, task, kind, metric, values in FINAL:
        other = "logloss" if kind == "binary" else "mae"
        for seed, v in values.items():
            base = {**PROV, "dataset": ds, "architecture": arch, "target": target, "stage": "final", "trial": 0,
                    "seed": seed, "status": "complete", "task": task, "kind": kind,
                    "n_params": PARAMS[(ds, arch, target)], "seconds": 1.0, "epochs": 3,
                    "finished_at": f"2026-01-0{seed}T10:00:00+00:00"}
            rows += [
                {**base, "split": "test", "metric": metric, "value": v},
                {**base, "split": "test", "metric": other, "value": 99.0},  # not the primary metric: ignored
                {**base, "split": "val", "metric": metric, "value": -5.0},  # validation: ignored
            ]
    for ds, arch, target, trials in SEARCH:
        for number, (status, seconds) in enumerate(trials):
            rows.append({**PROV, "dataset": ds, "architecture": arch, "target": target, "stage": "search",
                         "trial": number, "seed": 0, "status": status, "split": "val", "task": "*", "kind": "",
                         "metric": "objective", "value": None if status == "failed" else -1.0,
                         "seconds": seconds, "finished_at": "2026-01-01T09:00:00+00:00"})
    return store.frame(rows)


META = {
    "study": "toy", "description": "A hand-made study.", "objective": "mean", "seeds": [1, 2],
    "budget": {"trials": 3, "max_epochs": 5, "patience": 2, "timeout": None},
    "sampler": {"kind": "tpe", "seed": 0}, "pruner": {"kind": "median"},
    "datasets": {"d1": {"name": "toyset", "options": {"p": 0.5}, "tasks": []},
                 "d2": {"name": "toyset", "options": {"p": 0.9}, "tasks": []}},
}


def test_task_summary_expected_frame():
    got = tables.task_summary(hand_made_rows()).filter(pl.col("dataset") == "d1")
    s = math.sqrt(0.0002)  # sample std of two values 0.02 apart
    expected = pl.DataFrame({
        "dataset": ["d1"] * 6,
        "architecture": ["mmoe", "mmoe", "ple", "ple", "single_task", "single_task"],
        "task": ["click", "price"] * 3,
        "kind": ["binary", "regression"] * 3,
        "metric": ["auc", "mse"] * 3,
        "mean": [0.75, 1.9, 0.79, 2.5, 0.71, 2.1],
        "std": [s, 10 * s, s, 10 * s, s, 10 * s],
        "n": [2] * 6,
    })
    assert_frame_equal(got, expected, abs_tol=1e-12)


def test_mtl_gain_sign_auc_and_mse():
    g = tables.with_gains(tables.task_summary(hand_made_rows())).filter(pl.col("dataset") == "d1")
    gain = {(r["architecture"], r["task"]): r["gain"] for r in g.iter_rows(named=True)}
    # AUC, higher is better: gain = M - M_single
    assert gain[("mmoe", "click")] == pytest.approx(0.75 - 0.71)
    assert gain[("ple", "click")] == pytest.approx(0.79 - 0.71)
    # MSE, lower is better: gain = -(M - M_single); a lower MSE is a positive gain
    assert gain[("mmoe", "price")] == pytest.approx(2.1 - 1.9)
    assert gain[("ple", "price")] == pytest.approx(-(2.5 - 2.1))
    assert gain[("single_task", "click")] is None
    se = {(r["architecture"], r["task"]): r["gain_se"] for r in g.iter_rows(named=True)}
    assert se[("mmoe", "click")] == pytest.approx(math.sqrt(0.0002 / 2 + 0.0002 / 2))
    assert se[("mmoe", "price")] == pytest.approx(math.sqrt(0.02 / 2 + 0.02 / 2))


def test_delta_m_seesaw_rank_and_counts():
    a = tables.arch_summary(hand_made_rows())
    expected = pl.DataFrame({
        "dataset": ["d1", "d1", "d1", "d2", "d2", "d2"],
        "architecture": ["mmoe", "single_task", "ple", "ple", "single_task", "mmoe"],
        # Delta_m = 100/T sum_k s_k (M_k - M_single,k) / M_single,k
        "delta_m": [100 * (0.04 / 0.71 + 0.2 / 2.1) / 2, 0.0, 100 * (0.08 / 0.71 - 0.4 / 2.1) / 2, 10.0, 0.0, -10.0],
        "seesaw": [False, False, True, False, False, False],
        "n_tasks": [2, 2, 2, 1, 1, 1],
        "n_params": [500, 220, 800, 400, 50, 300],
        "complete": [1, 3, 2, 1, 1, 1],
        "pruned": [1, 1, 0, 0, 0, 0],
        "failed": [1, 0, 0, 0, 0, 0],
        "seconds_per_trial": [3.5 / 3, 7.0 / 4, 3.0, 1.0, 1.0, 1.0],
        "rank": [1, 2, 3, 1, 2, 3],
    })
    assert_frame_equal(a, expected, abs_tol=1e-9)


def test_overall_ranking_mean_rank_ties_by_delta_m():
    o = tables.overall_ranking(tables.arch_summary(hand_made_rows()))
    assert o["architecture"].to_list() == ["ple", "single_task", "mmoe"]  # all mean rank 2: ties by mean Delta_m
    assert o["mean_rank"].to_list() == [2.0, 2.0, 2.0]
    assert o["mean_delta_m"][0] == pytest.approx((100 * (0.08 / 0.71 - 0.4 / 2.1) / 2 + 10.0) / 2)


def test_correlation_summary():
    c = tables.correlation_summary(hand_made_rows(), META)
    ple = c.filter((pl.col("architecture") == "ple") & (pl.col("p") == 0.5))
    # per seed, mean over the tasks sharing a primary metric, then mean and std over seeds
    assert ple.sort("metric")["metric"].to_list() == ["auc", "mse"]
    assert ple.filter(pl.col("metric") == "auc")["mean"][0] == pytest.approx(0.79)
    assert ple.filter(pl.col("metric") == "mse")["std"][0] == pytest.approx(math.sqrt(0.02))
    assert sorted(c["p"].unique().to_list()) == [0.5, 0.9]


def test_golden_markdown():
    text = lb.render(hand_made_rows(), META, {"d1": [("metric", "toy/d1-metrics.png")]})
    assert text == lb.render(hand_made_rows().sample(fraction=1.0, shuffle=True, seed=3), META,
                             {"d1": [("metric", "toy/d1-metrics.png")]})  # row order does not matter
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_plots_written(tmp_path):
    links = plots.leaderboard_plots(hand_made_rows(), META, tmp_path, "toy")
    files = sorted(p.name for p in (tmp_path / "toy").iterdir())
    assert files == ["correlation.png", "d1-gain.png", "d1-metrics.png", "d2-gain.png", "d2-metrics.png"]
    assert links[""] == [("performance against task correlation", "toy/correlation.png")]
