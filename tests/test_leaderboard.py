"""The leaderboard pipeline on a hand-made results frame: metric maths against hand-computed values, expected
frames, and a golden markdown file (regenerate with UPDATE_GOLDEN=1 after an intended change)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from scipy import stats

from bench.results import gates, plots, store, tables
from bench.results import leaderboard as lb

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
# (dataset, architecture, seed, level, task, expert, metric, value) of gate and expert diagnostics (final, test)
DIAGNOSTICS = [
    *[("d1", "mmoe", seed, 0, task, e, "gate_weight", w) for seed, task, ws in
      [(1, "click", (0.8, 0.2)), (2, "click", (0.6, 0.4)), (1, "price", (0.3, 0.7)), (2, "price", (0.5, 0.5))]
      for e, w in enumerate(ws)],
    *[("d1", "mmoe", seed, 0, task, None, metric, v) for metric, task, values in [
        ("gate_entropy_norm", "click", (0.7, 0.9)), ("gate_entropy_norm", "price", (0.8, 0.8)),
        ("gate_unused", "click", (0.0, 0.5)), ("gate_unused", "price", (0.0, 0.0))] for seed, v in zip((1, 2), values)],
    *[("d1", "mmoe", seed, 0, "*", e, "expert_dead_units", v) for e, values in [(0, (0.0, 0.1)), (1, (0.5, 0.3))]
      for seed, v in zip((1, 2), values)],
    ("d1", "mmoe", 1, 0, "click", None, "gate_entropy", 0.5),  # not summarised on the page
    # PLE, one seed, two levels, one expert weighed per task and level
    ("d1", "ple", 1, 0, "click", 0, "gate_weight", 1.0), ("d1", "ple", 1, 1, "click", 1, "gate_weight", 1.0),
    ("d1", "ple", 1, 0, "click", None, "gate_entropy_norm", 0.0),
    ("d1", "ple", 1, 1, "click", None, "gate_entropy_norm", 0.5),
    ("d1", "ple", 1, 0, "*", 0, "expert_dead_units", 1.0), ("d1", "ple", 1, 1, "*", 1, "expert_dead_units", 0.0),
]


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
    for ds, arch, seed, level, task, expert, metric, value in DIAGNOSTICS:
        rows.append({**PROV, "dataset": ds, "architecture": arch, "target": "mean", "stage": "final", "trial": 0,
                     "seed": seed, "status": "complete", "split": "test", "task": task, "kind": "diagnostic",
                     "metric": metric, "value": value, "level": level, "expert": expert,
                     "n_params": PARAMS[(ds, arch, "mean")], "seconds": 1.0, "epochs": 3,
                     "finished_at": f"2026-01-0{seed}T10:00:00+00:00"})
    return store.frame(rows)


META = {
    "study": "toy", "description": "A hand-made study.", "objective": "mean", "seeds": [1, 2],
    "budget": {"trials": 3, "max_epochs": 5, "patience": 2, "timeout": None},
    "sampler": {"kind": "tpe", "seed": 0}, "pruner": {"kind": "median"},
    "datasets": {"d1": {"name": "toyset", "options": {"p": 0.5}, "tasks": []},
                 "d2": {"name": "toyset", "options": {"p": 0.9}, "tasks": []}},
}


T1 = stats.t.ppf(0.975, 1)  # Student t quantile of a 95% interval over two seeds


def test_task_summary_expected_frame():
    got = tables.task_summary(hand_made_rows()).filter(pl.col("dataset") == "d1").drop("values", "seeds",
                                                                                       "replicates", "draws")
    half = [0.01, 0.1]  # two seeds: the bootstrap means are a, (a+b)/2 or b, so the 95% percentile interval is [a, b]
    means = [0.75, 1.9, 0.79, 2.5, 0.71, 2.1]
    expected = pl.DataFrame({
        "dataset": ["d1"] * 6,
        "architecture": ["mmoe", "mmoe", "ple", "ple", "single_task", "single_task"],
        "task": ["click", "price"] * 3,
        "kind": ["binary", "regression"] * 3,
        "metric": ["auc", "mse"] * 3,
        "n_failed": [0] * 6,
        "n": [2] * 6,
        "n_replicates": [1] * 6,
        "mean": means,
        "lo": [m - half[i % 2] for i, m in enumerate(means)],
        "hi": [m + half[i % 2] for i, m in enumerate(means)],
        "test_error": [False] * 6,  # no test-set resamples stored
    })
    assert_frame_equal(got, expected, abs_tol=1e-9)


def test_mtl_gain_sign_welch_interval_and_holm():
    g = tables.with_gains(tables.task_summary(hand_made_rows())).filter(pl.col("dataset") == "d1")
    by = {(r["architecture"], r["task"]): r for r in g.iter_rows(named=True)}
    # AUC, higher is better: gain = M - M_single; MSE, lower is better: a lower MSE is a positive gain
    assert by[("mmoe", "click")]["gain"] == pytest.approx(0.75 - 0.71)
    assert by[("ple", "click")]["gain"] == pytest.approx(0.79 - 0.71)
    assert by[("mmoe", "price")]["gain"] == pytest.approx(2.1 - 1.9)
    assert by[("ple", "price")]["gain"] == pytest.approx(-(2.5 - 2.1))
    assert by[("single_task", "click")]["gain"] is None and by[("single_task", "click")]["decision"] is None
    # the decision's Welch t interval: two seeds a side at mean ± h (h = 0.01 AUC, 0.1 MSE), so each side's
    # variance is 2 h² and se² = 2 h²/2 + 2 h²/2; df 2, half-width t_2 se
    for (_, task), r in by.items():
        if r["gain"] is not None:
            se = math.sqrt(2) * (0.01 if task == "click" else 0.1)
            half = stats.t.ppf(0.975, 2) * se
            assert (r["gain_lo"], r["gain_hi"]) == pytest.approx((r["gain"] - half, r["gain"] + half))
    # two seeds: no gain is decided against the baseline (better/worse by more than δ, or within ±δ)
    assert {r["decision"] for k, r in by.items() if k[0] != "single_task"} == {"inconclusive"}
    # against the best architecture on each task: ple on click (highest AUC), mmoe on price (lowest MSE)
    assert by[("ple", "click")]["decision_best"] == "best" and by[("mmoe", "price")]["decision_best"] == "best"


def test_delta_m_rank_and_counts():
    a = tables.arch_summary(hand_made_rows()).drop("dm_lo", "dm_hi")
    expected = pl.DataFrame({
        "dataset": ["d1", "d1", "d1", "d2", "d2", "d2"],
        "architecture": ["mmoe", "single_task", "ple", "ple", "single_task", "mmoe"],
        "n_tasks": [2, 2, 2, 1, 1, 1],
        "complete": [True] * 6,
        "missing": [""] * 6,
        # Delta_m = 100/T sum_k s_k (M_k - M_single,k) / M_single,k
        "delta_m": [100 * (0.04 / 0.71 + 0.2 / 2.1) / 2, 0.0, 100 * (0.08 / 0.71 - 0.4 / 2.1) / 2, 10.0, 0.0, -10.0],
        "seesaw": [False] * 6,  # ple's mixed signs on d1 are noise at n = 2: no seesaw
        # against single-task: two seeds decide nothing on d1; d2's seeds are constant (no noise: decided)
        "dm_decision": ["inconclusive", None, "inconclusive", "better", None, "worse"],
        # against the best Δm (mmoe on d1, ple on d2): ple's per-seed Δm (-2.21, -5.57) is below mmoe's
        # (9.26, 5.90) by more than δ even with two seeds (t test, Holm over the family of two)
        "dm_decision_best": ["best", "inconclusive", "worse", "best", "worse", "worse"],
        "rank": [1.0, 2.0, 3.0, 1.0, 2.0, 3.0],
        "n_params": [500, 220, 800, 400, 50, 300],
        "trials_complete": [1, 3, 2, 1, 1, 1],
        "trials_pruned": [1, 1, 0, 0, 0, 0],
        "trials_failed": [1, 0, 0, 0, 0, 0],
        "seconds_per_trial": [3.5 / 3, 7.0 / 4, 3.0, 1.0, 1.0, 1.0],
    })
    assert_frame_equal(a.select(expected.columns).sort("dataset", "rank", "architecture"),
                       expected.sort("dataset", "rank", "architecture"), abs_tol=1e-9)


def noisy_rows(spec: dict[tuple[str, str], list[float]], kinds: dict[str, tuple[str, str]]) -> pl.DataFrame:
    """Final test rows of one dataset "d" from {(architecture, task): per-seed values}."""
    rows = []
    for (arch, task), values in spec.items():
        kind, metric = kinds[task]
        for seed, v in enumerate(values, 1):
            rows.append({**PROV, "dataset": "d", "architecture": arch, "stage": "final", "trial": 0, "seed": seed,
                         "target": task if arch == "single_task" else "mean", "status": "complete", "task": task,
                         "kind": kind, "split": "test", "metric": metric, "value": v, "n_params": 1,
                         "finished_at": "2026-01-01T10:00:00+00:00"})
    return store.frame(rows)


KINDS = {"a": ("binary", "auc"), "b": ("binary", "auc")}
NOISE = [0.0, 0.01, -0.01, 0.005, -0.005]


def test_seesaw_only_on_a_significant_conflict():
    base = {("single_task", "a"): [0.80 + e for e in NOISE], ("single_task", "b"): [0.70 + e for e in NOISE]}
    conflict = {("mmoe", "a"): [0.90 + e for e in NOISE], ("mmoe", "b"): [0.60 + e for e in NOISE]}
    noise = {("mmoe", "a"): [0.803 + e for e in NOISE[::-1]], ("mmoe", "b"): [0.697 + e for e in NOISE]}
    seesaw = lambda spec: tables.arch_summary(noisy_rows({**base, **spec}, KINDS)).filter(  # noqa: E731
        pl.col("architecture") == "mmoe")["seesaw"][0]
    assert seesaw(conflict) is True
    assert seesaw(noise) is False  # mixed signs, neither significant


def test_an_incomplete_architecture_gets_no_delta_m_and_no_rank():
    spec = {("single_task", "a"): [0.80 + e for e in NOISE], ("single_task", "b"): [0.70 + e for e in NOISE],
            ("mmoe", "a"): [0.85 + e for e in NOISE], ("mmoe", "b"): [0.75 + e for e in NOISE],
            ("ple", "a"): [0.95 + e for e in NOISE], ("ple", "b"): [math.nan] * 5}  # every seed of b diverged
    a = tables.arch_summary(noisy_rows(spec, KINDS))
    ple = a.filter(pl.col("architecture") == "ple").row(0, named=True)
    assert ple["complete"] is False and ple["missing"] == "b"
    assert ple["delta_m"] is None and ple["rank"] is None  # never a Delta_m over a subset of tasks
    mmoe = a.filter(pl.col("architecture") == "mmoe").row(0, named=True)
    assert mmoe["rank"] == 1 and mmoe["delta_m"] == pytest.approx(100 * (0.05 / 0.80 + 0.05 / 0.70) / 2)
    cells = tables.task_summary(noisy_rows(spec, KINDS))
    b = cells.filter((pl.col("architecture") == "ple") & (pl.col("task") == "b")).row(0, named=True)
    assert (b["n"], b["n_failed"], b["mean"]) == (0, 5, None)  # NaN never becomes a number
    overall, tests = tables.overall_ranking(a, ["single_task", "mmoe", "ple", "cgc"])
    assert overall["architecture"].to_list() == ["mmoe", "single_task"]
    assert tests["excluded"] == {"ple": "no Δm on d", "cgc": "no Δm on d"}
    markdown = lb.render(noisy_rows(spec, KINDS), {**META, "architectures": ["single_task", "mmoe", "ple", "cgc"],
                                                   "datasets": {"d": {"name": "toyset", "options": {}}}})
    assert "n = 0 of 2 (failed)" in markdown
    assert "- incomplete, so no Δm and no rank: ple (no finite test score on b)" in markdown
    assert "- no final results: cgc" in markdown


def test_rank_is_by_delta_m_and_close_ones_are_undecided_against_the_best():
    spec = {("single_task", "a"): [0.80 + e for e in NOISE],
            ("mmoe", "a"): [0.90 + e for e in NOISE], ("ple", "a"): [0.902 + e for e in NOISE[::-1]],
            ("cgc", "a"): [0.85 + e for e in NOISE]}
    a = tables.arch_summary(noisy_rows(spec, {"a": ("binary", "auc")}))
    rank = dict(zip(a["architecture"], a["rank"]))
    assert rank == {"ple": 1, "mmoe": 2, "cgc": 3, "single_task": 4}  # one notion of rank: by Delta_m
    best = dict(zip(a["architecture"], a["dm_decision_best"]))
    assert best["ple"] == "best" and best["mmoe"] == "inconclusive"  # within noise: not decided, not "top"
    assert best["single_task"] == "worse"


def test_overall_friedman_and_critical_difference():
    """Five independent datasets, four architectures: mean ranks, Friedman and the Nemenyi CD against scipy."""
    rows = []
    names = ("d1", "d2", "d3", "d4", "d5")
    for d, values in zip(names, ((0.9, 0.8, 0.7), (0.91, 0.7, 0.8), (0.92, 0.75, 0.72), (0.93, 0.81, 0.6),
                                 (0.88, 0.6, 0.79))):
        spec = {("single_task", "a"): [0.7 + e for e in NOISE], ("mmoe", "a"): [values[0] + e for e in NOISE],
                ("ple", "a"): [values[1] + e for e in NOISE], ("cgc", "a"): [values[2] + e for e in NOISE]}
        rows.append(noisy_rows(spec, {"a": ("binary", "auc")}).with_columns(dataset=pl.lit(d)))
    a = tables.arch_summary(pl.concat(rows))
    meta = {"datasets": {d: {"name": d, "options": {}} for d in names}}  # five sources: independent
    overall, tests = tables.overall_ranking(a, meta=meta)
    by_ds = {ar: [a.filter((pl.col("architecture") == ar) & (pl.col("dataset") == d))["delta_m"][0]
                  for d in names] for ar in ("single_task", "mmoe", "ple", "cgc")}
    ranks = [stats.rankdata([-by_ds[ar][i] for ar in by_ds]) for i in range(5)]  # 1 = best per dataset
    mean_rank = {ar: sum(r[j] for r in ranks) / 5 for j, ar in enumerate(by_ds)}
    assert dict(zip(overall["architecture"], overall["mean_rank"])) == pytest.approx(mean_rank)
    assert overall["architecture"][0] == "mmoe"
    ref = stats.friedmanchisquare(*[[-v for v in by_ds[ar]] for ar in by_ds])
    assert tests["friedman"].statistic == pytest.approx(ref.statistic)
    assert tests["friedman"].p == pytest.approx(ref.pvalue)
    q = stats.studentized_range.ppf(0.95, 4, math.inf) / math.sqrt(2)
    assert tests["cd"] == pytest.approx(q * math.sqrt(4 * 5 / (6 * 5)))
    # the same five entries without their sources (no meta): each counts as independent too
    assert tables.overall_ranking(a)[1]["independent"] == 5


def test_correlation_summary():
    c = tables.correlation_summary(hand_made_rows(), META)
    ple = c.filter((pl.col("architecture") == "ple") & (pl.col("p") == 0.5))
    # per seed, mean over the tasks sharing a primary metric, then mean and percentile bootstrap interval over
    # seeds: with two seeds (0.78, 0.80) the bootstrap means are 0.78, 0.79 or 0.80, the interval [0.78, 0.80]
    assert ple.sort("metric")["metric"].to_list() == ["auc", "mse"]
    auc = ple.filter(pl.col("metric") == "auc").row(0, named=True)
    assert auc["mean"] == pytest.approx(0.79) and auc["n"] == 2
    assert (auc["lo"], auc["hi"]) == pytest.approx((0.78, 0.80))
    assert sorted(c["p"].unique().to_list()) == [0.5, 0.9]


def test_pareto_front_of_a_hand_made_frame():
    # two tasks, AUC higher and MSE lower is better; means per architecture
    means = {"a": (0.80, 2.0), "b": (0.75, 1.5), "c": (0.70, 2.5), "d": (0.80, 2.0), "e": (0.79, 1.5),
             "f": (0.90, None)}
    cells = pl.DataFrame(
        [{"dataset": "x", "architecture": a, "task": t, "kind": k, "metric": m, "mean": v}
         for a, vs in means.items() for (t, k, m), v in zip([("p", "binary", "auc"), ("q", "regression", "mse")], vs)]
        + [{"dataset": "one", "architecture": "a", "task": "p", "kind": "binary", "metric": "auc", "mean": 0.5}],
        schema={"dataset": pl.String, "architecture": pl.String, "task": pl.String, "kind": pl.String,
                "metric": pl.String, "mean": pl.Float64},
    )
    expected = pl.DataFrame({
        "dataset": ["x"] * 5,
        "architecture": ["a", "b", "c", "d", "e"],
        # c is dominated by everyone; b by e (better AUC, same MSE); a and d tie (neither dominates the other),
        # e is better than neither on AUC; f has no MSE (not ranked); dataset "one" has one task
        "on_front": [True, False, False, True, True],
    })
    assert_frame_equal(tables.pareto_front(cells), expected)


def test_gate_utilisation_and_diagnostic_summary_expected_frames():
    util = gates.gate_utilisation(hand_made_rows())
    expected = pl.DataFrame({
        "dataset": ["d1"] * 6,
        "architecture": ["mmoe"] * 4 + ["ple"] * 2,
        "level": [0, 0, 0, 0, 0, 1],
        "task": ["click", "click", "price", "price", "click", "click"],
        "expert": [0, 1, 0, 1, 0, 1],
        "weight": [0.7, 0.3, 0.4, 0.6, 1.0, 1.0],
        "n": [2, 2, 2, 2, 1, 1],
    })
    assert_frame_equal(util, expected, check_exact=False)
    summary = gates.diagnostic_summary(hand_made_rows())
    # per seed, the mean over levels and tasks (experts); then mean and t interval over seeds
    per_seed = {("mmoe", "expert_dead_units"): [0.25, 0.2], ("mmoe", "gate_entropy_norm"): [0.75, 0.85],
                ("mmoe", "gate_unused"): [0.0, 0.25], ("ple", "expert_dead_units"): [0.5],
                ("ple", "gate_entropy_norm"): [0.25]}
    assert summary.select("architecture", "metric").rows() == list(per_seed)
    for r in summary.iter_rows(named=True):
        values = per_seed[(r["architecture"], r["metric"])]
        assert r["n"] == len(values) and r["mean"] == pytest.approx(sum(values) / len(values))
        if len(values) == 2:
            half = T1 * abs(values[0] - values[1]) / math.sqrt(2) / math.sqrt(2)  # t x sd / sqrt(n)
            # clipped to [0, 1]: every measure is a share
            assert (r["lo"], r["hi"]) == pytest.approx((max(0.0, r["mean"] - half), min(1.0, r["mean"] + half)))
        else:
            assert r["lo"] is None and r["hi"] is None  # one seed: no interval, never NaN
    # the diagnostics never enter the metric tables
    assert tables.task_summary(hand_made_rows()).filter(pl.col("kind") == "diagnostic").height == 0


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
    # d1 has two tasks (a Pareto view) and gated architectures with diagnostics (a heatmap); d2 has neither; both
    # have search rows (the best-so-far plot); no critical-difference diagram: two datasets (one source) are too
    # few for a Friedman test
    assert files == ["correlation.png", "d1-gain.png", "d1-gates.png", "d1-metrics.png", "d1-pareto.png",
                     "d1-search.png", "d2-gain.png", "d2-metrics.png", "d2-search.png"]
    assert links["search:d1"] == [("d1: best validation objective so far against search trial, per unit",
                                   "toy/d1-search.png")]
    assert [path for _, path in links["d1"]] == ["toy/d1-metrics.png", "toy/d1-gain.png", "toy/d1-pareto.png",
                                                 "toy/d1-gates.png"]
    assert links[""] == [("performance against task correlation", "toy/correlation.png")]


def test_three_tasks_give_pairwise_pareto_panels(tmp_path):
    # a third task on d1: three pairs, so the Pareto figure has three panels side by side
    extra = hand_made_rows().filter((pl.col("dataset") == "d1") & (pl.col("task") == "price")).with_columns(
        task=pl.lit("size"), value=pl.col("value") * 2)
    links = plots.leaderboard_plots(pl.concat([hand_made_rows(), extra]), META, tmp_path, "toy")
    assert ("d1: per-task Pareto view (means with 95% intervals, seeds faint, the front ringed)",
            "toy/d1-pareto.png") in links["d1"]
    import matplotlib.image

    three = matplotlib.image.imread(tmp_path / "toy" / "d1-pareto.png")
    two = plots.leaderboard_plots(hand_made_rows(), META, tmp_path / "two", "toy")["d1"]
    assert ("toy/d1-pareto.png" in [p for _, p in two])
    one_pair = matplotlib.image.imread(tmp_path / "two" / "toy" / "d1-pareto.png")
    assert three.shape[1] > 2.5 * one_pair.shape[1] * 0.8  # about three times as wide (legend beside the last)


def test_observed_label_counts_are_shown_for_a_dataset_with_missing_labels(tmp_path):
    # d1's click label is missing on part of validation and test; d2 has every label
    counts = {("d1", "val", "click"): 40, ("d1", "test", "click"): 35, ("d1", "val", "price"): 100,
              ("d1", "test", "price"): 100, ("d2", "val", "y"): 50, ("d2", "test", "y"): 50}
    rows = hand_made_rows().with_columns(
        observed=pl.when(pl.col("kind") != "diagnostic").then(
            pl.struct("dataset", "split", "task").map_elements(
                lambda r: counts.get((r["dataset"], r["split"], r["task"])), return_dtype=pl.Int64))
    )
    meta = {**META, "data": {"d1": {"rows": {"train": 800, "val": 100, "test": 100}},
                             "d2": {"rows": {"train": 400, "val": 50, "test": 50}}}}
    text = lb.render(rows, meta)
    line = ("Missing labels: each task's metrics are over the rows where its label is observed: validation click 40, "
            "price 100 of 100; test click 35, price 100 of 100 rows.")
    assert text.count("Missing labels:") == 1 and line in text.split("## d2")[0]
    # without the split sizes (an older study.json): shown where tasks differ
    assert "validation click 40, price 100; test click 35, price 100 rows." in lb.render(rows, META)
    # rows stored before the column existed: read as nulls, nothing shown (the golden page is unchanged)
    old = tmp_path / "results" / "final" / "d1" / "mmoe" / "seed-1.parquet"
    store.write_atomic(hand_made_rows().drop("observed"), old)
    back = store.read(tmp_path)
    assert back["observed"].null_count() == back.height and "Missing labels" not in lb.render(back, meta)
