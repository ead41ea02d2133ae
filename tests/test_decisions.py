"""Issue 25's statistics against hand-made frames: replicate aggregation, the paired comparisons over test-set
resamples and over paired replicates, TOST, the decision labels, the Friedman gate, the baseline's Δm and
range-respecting intervals."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch
from scipy import stats

from bench.errors import UserError
from bench.results import bootstrap as bs
from bench.results import decisions as dc
from bench.results import leaderboard as lb
from bench.results import store, tables
from bench.spec.decision import DecisionSpec, Margin, parse_decision
from bench.training import bootstrap as tb
from bench.training.metrics import auc

PROV = {"study": "t", "git_commit": "abc", "versions": "{}", "hardware": "cpu", "status": "complete",
        "finished_at": "2026-01-01T10:00:00+00:00", "n_params": 1, "trial": 0}
MSE = {"kind": "regression", "metric": "mse"}


def rows_of(spec: dict[tuple[str, str], list[float]], kind=MSE, dataset="d", replicates=None, draws=None):
    """Final test rows from {(architecture, task): per-run values}; ``replicates``: per-run replicate ids;
    ``draws``: {(architecture, task): (n_runs, B) array} stored as draw rows."""
    rows = []
    for (arch, task), values in spec.items():
        for j, v in enumerate(values):
            run = {**PROV, **kind, "dataset": dataset, "architecture": arch, "stage": "final", "split": "test",
                   "target": task if arch == "single_task" else "mean", "task": task, "seed": j + 1,
                   "replicate": None if replicates is None else replicates[j]}
            rows.append({**run, "value": v})
            if draws is not None:
                rows += [{**run, "value": float(x), "draw": b + 1} for b, x in enumerate(draws[(arch, task)][j])]
    return store.frame(rows)


# --- replicate aggregation --------------------------------------------------------------------------------------
def test_replicate_level_mean_and_null_replicate_is_one():
    # replicate 1 has three seeds, replicate 2 one: the replicate-level mean weighs replicates equally
    spec = {("single_task", "y"): [1.0, 1.0, 1.0, 2.0], ("mmoe", "y"): [1.0, 1.0, 1.0, 1.0]}
    cells = tables.task_summary(rows_of(spec, replicates=[1, 1, 1, 2]))
    st = cells.filter(pl.col("architecture") == "single_task").row(0, named=True)
    assert st["mean"] == pytest.approx((1.0 + 2.0) / 2) and st["n_replicates"] == 2 and st["n"] == 4
    # null replicate (stores from before replicates) reads as replicate 1: the plain mean over seeds
    old = tables.task_summary(rows_of(spec)).filter(pl.col("architecture") == "single_task").row(0, named=True)
    assert old["mean"] == pytest.approx(1.25) and old["n_replicates"] == 1
    explicit = tables.task_summary(rows_of(spec, replicates=[1, 1, 1, 1]))
    assert explicit.drop("replicates").equals(tables.task_summary(rows_of(spec)).drop("replicates"))
    # Δm over replicate-level means: MSE 1.0 against the baseline's (1 + 2) / 2 = 1.5, lower is better
    dm = tables.arch_summary(rows_of(spec, replicates=[1, 1, 1, 2])).filter(pl.col("architecture") == "mmoe")
    assert dm["delta_m"][0] == pytest.approx(100 * 0.5 / 1.5) and dm["replicates"][0] == 2
    # the page says which: R = 1 leaves the search's selection variance out, R > 1 has it inside
    meta = {"study": "t", "budget": {"trials": 1, "max_epochs": 1, "patience": 0},
            "datasets": {"d": {"name": "x", "options": {}}}}
    assert "one search per unit (R = 1): which configuration the search found is not inside them" in lb.render(
        rows_of(spec), meta)
    assert "over the seeds and 2 replicates of the whole pipeline, so which configuration each search found is " \
           "inside them" in lb.render(rows_of(spec, replicates=[1, 1, 1, 2]), meta)


def test_two_level_weights_resample_replicates_then_seeds():
    rep = np.array([1, 1, 1, 2])
    w = bs.weights(rep, np.random.default_rng(0), 4000)
    assert np.allclose(w.sum(1), 1.0)
    # each replicate carries 1/2 per draw on average (R = 2), split evenly among its seeds
    assert w.mean(0) == pytest.approx([1 / 6, 1 / 6, 1 / 6, 1 / 2], abs=0.02)
    # with replicates the spread of a mean reflects the replicate means, not the seed count:
    # values constant within replicates 1 and 2 but different between them give a wide interval
    runs = bs.Runs(rep, np.array([0.0, 0.0, 0.0, 1.0]))
    lo, hi = bs.percentile(bs.mean_boot(runs, ("x",)))
    assert (lo, hi) == (pytest.approx(0.0), pytest.approx(1.0))


# --- the paired comparison and its interval --------------------------------------------------------------------
def test_a_shift_common_to_both_models_changes_nothing():
    rng = np.random.default_rng(1)
    a = bs.Runs(np.ones(3, int), np.array([0.80, 0.81, 0.79]), 0.80 + 0.01 * rng.standard_normal((3, 50)))
    b = bs.Runs(np.ones(4, int), np.array([0.78, 0.77, 0.79, 0.78]), 0.78 + 0.01 * rng.standard_normal((4, 50)))
    shift = 0.05 * rng.standard_normal(50)  # resample b is harder or easier for every model alike
    a2 = bs.Runs(a.replicate, a.value, a.draws + shift)
    b2 = bs.Runs(b.replicate, b.value, b.draws + shift)
    c, c2 = dc.compare(a, b, 1.0, 0.001), dc.compare(a2, b2, 1.0, 0.001)
    assert (c.diff, c.se, c.df) == pytest.approx((c2.diff, c2.se, c2.df))
    assert dc.interval(c) == pytest.approx(dc.interval(c2))
    # unpaired (the shift on one side only) the interval widens
    b3 = bs.Runs(b.replicate, b.value, b.draws + rng.permutation(shift))
    width = lambda c: np.subtract(*dc.interval(c)[::-1])  # noqa: E731
    assert width(dc.compare(a2, b3, 1.0, 0.001)) > 2 * width(c)


def test_interval_is_the_decisions_own_t_interval():
    """The interval beside a gain is d ± t_df,0.975 se of the test that decides it: an interval entirely beyond -δ
    has an unadjusted p_worse < 0.025, so alone in its family it is decided worse."""
    a = bs.Runs(np.ones(3, int), np.array([0.70, 0.71, 0.69]))
    b = bs.Runs(np.ones(3, int), np.array([0.75, 0.76, 0.74]))
    c = dc.compare(a, b, 1.0, 0.001)
    se = math.sqrt(np.var([0.70, 0.71, 0.69], ddof=1) / 3 * 2)
    assert c.se == pytest.approx(se) and c.df == pytest.approx(4)
    lo, hi = dc.interval(c)
    assert (lo, hi) == pytest.approx((-0.05 - stats.t.ppf(0.975, 4) * se, -0.05 + stats.t.ppf(0.975, 4) * se))
    assert hi < -0.001 and dc.tests(c).p_worse < 0.025 and dc.decide([dc.tests(c)]) == ["worse"]
    # no spread on a side (one seed, one replicate): no interval, never a number made up
    one = bs.Runs(np.ones(1, int), np.array([0.7]))
    assert all(math.isnan(x) for x in dc.interval(dc.compare(one, b, 1.0, 0.001)))


def test_paired_replicates_cancel_the_draws_difficulty():
    """Replicates that are data draws shared by both sides: a draw that is hard for every model (replicate means
    0.1, 1.0, 10.0, ...) swamps the unpaired test; differenced replicate by replicate, an error lower by about 0.1
    on every draw (3% of the mean) is decided better."""
    level = np.array([0.1, 1.0, 10.0, 0.5, 3.0])
    rep = np.repeat(np.arange(1, 6), 2)
    jitter = 1 + 0.001 * np.tile([-1.0, 1.0], 5)
    base = bs.Runs(rep, np.repeat(level, 2) * jitter)
    arch = bs.Runs(rep, base.value - 0.1 + np.repeat([0.01, -0.01, 0.0, 0.005, -0.005], 2))
    delta = 0.01 * bs.estimate(base)
    unpaired, paired = dc.compare(arch, base, -1.0, delta), dc.compare(arch, base, -1.0, delta, paired=True)
    assert unpaired.diff == paired.diff and paired.df == 4
    assert paired.se < unpaired.se / 10
    assert dc.decide([dc.tests(unpaired)]) == ["inconclusive"] and dc.decide([dc.tests(paired)]) == ["better"]
    # different replicate sets cannot be paired: the unpaired test
    other = bs.Runs(rep + 1, arch.value)
    assert dc.compare(other, base, -1.0, delta, paired=True).se == pytest.approx(
        dc.compare(other, base, -1.0, delta).se)


def test_paired_delta_m_matches_per_replicate_delta_m_when_the_baseline_is_constant():
    """With a baseline equal on every replicate the delta method's ℓ_r is Δm_r − Δm: the paired se is the standard
    error of the per-replicate Δm."""
    arch = [np.array([0.8, 0.9, 0.85]), np.array([0.5, 0.7, 0.6])]
    base = [np.full(3, 0.8), np.full(3, 0.6)]
    sign = np.array([1.0, -1.0])
    se, df = dc.paired_delta_m(arch, base, sign)
    per_rep = 50.0 * (sign[0] * (arch[0] - 0.8) / 0.8 + sign[1] * (arch[1] - 0.6) / 0.6)
    assert df == 2 and se == pytest.approx(np.std(per_rep, ddof=1) / math.sqrt(3))


def test_leaderboard_pairs_replicates_where_the_data_draw_varies():
    """A synthetic dataset (its draw varies per replicate) is paired; an official split (fixed draw) is not: the
    same rows give a 'better' gain with pairing and an inconclusive one without."""
    level = [0.1, 1.0, 10.0, 0.5, 3.0]
    reps = [r for r in range(1, 6) for _ in range(2)]
    base = [lv * (1 + 0.001 * j) for lv in level for j in (-1, 1)]
    shift = [0.01, -0.01, 0.0, 0.005, -0.005]
    spec = {("single_task", "y"): base, ("mmoe", "y"): [v - 0.1 + shift[i // 2] for i, v in enumerate(base)]}
    rows = rows_of(spec, replicates=reps)
    from bench.spec.decision import decision_from_meta
    synthetic = {"datasets": {"d": {"name": "synthetic", "options": {"p": 0.5}}}}
    census = {"datasets": {"d": {"name": "census-income", "options": {"split": "paper"}}}}
    assert decision_from_meta(synthetic).paired == {"d"} and decision_from_meta(census).paired == frozenset()
    gain = lambda meta: tables.with_gains(tables.task_summary(rows), decision_from_meta(meta)).filter(  # noqa: E731
        pl.col("architecture") == "mmoe").row(0, named=True)
    assert gain(synthetic)["decision"] == "better" and gain(census)["decision"] == "inconclusive"
    assert gain(synthetic)["gain_hi"] - gain(synthetic)["gain_lo"] < gain(census)["gain_hi"] - gain(census)["gain_lo"]


def test_paired_interval_covers_a_known_difference_at_about_the_nominal_rate():
    """Two models of known population AUC, three seeds each, on a fresh test set of 1,000 rows per simulation.
    Score = signal * y + d_i + 0.2 e_i: d_i the row's difficulty, the same for every model (what pairing is for),
    e_i a model's own noise; the signal varies by seed (sd 0.02). Binormal: AUC = Phi(signal / sqrt(2 (1 + 0.04))).
    The gain interval (the decision's t interval: seeds and the stored test resamples, paired) covers the true
    difference in about 95% of the simulations, and is narrower than with unpaired resamples."""
    true = stats.norm.cdf(1.2 / math.sqrt(2 * 1.04)) - stats.norm.cdf(1.0 / math.sqrt(2 * 1.04))
    rng = np.random.default_rng(7)
    covered, sims, narrower = 0, 100, 0
    for _ in range(sims):
        y = (rng.random(1000) < 0.3).astype(np.float32)
        d = rng.standard_normal(y.size)
        sides = []
        for signal in (1.2, 1.0):
            values, draws = [], []
            for _ in range(3):
                z = torch.tensor((signal + 0.02 * rng.standard_normal()) * y + d + 0.2 * rng.standard_normal(y.size))
                values.append(auc(z, torch.tensor(y)))
                draws.append(tb.metric_draws("binary", z, torch.tensor(y), draws=100))
            sides.append(bs.Runs(np.ones(3, int), np.array(values), np.array(draws)))
        lo, hi = dc.interval(dc.compare(sides[0], sides[1], 1.0, 0.001))
        covered += lo <= true <= hi
        unpaired = bs.Runs(sides[1].replicate, sides[1].value, sides[1].draws[:, ::-1])  # draw b against 101 - b
        u_lo, u_hi = dc.interval(dc.compare(sides[0], unpaired, 1.0, 0.001))
        narrower += (hi - lo) < (u_hi - u_lo)
    assert 0.90 <= covered / sims <= 1.0, covered / sims
    assert narrower == sims


def test_auc_of_a_resample_is_the_auc_of_the_drawn_rows():
    rng = np.random.default_rng(3)
    y = (rng.random(300) < 0.4).astype(np.float64)
    s = np.round(rng.standard_normal(300), 1)  # ties, within and across the classes
    pos, neg = np.flatnonzero(y > 0.5), np.flatnonzero(y <= 0.5)  # picks index these rows
    pos_picks, neg_picks = rng.integers(0, pos.size, (3, pos.size)), rng.integers(0, neg.size, (3, neg.size))
    got = tb.auc_draws(s, y, pos_picks, neg_picks)
    for b in range(3):
        idx = np.concatenate([pos[pos_picks[b]], neg[neg_picks[b]]])
        assert got[b] == pytest.approx(auc(torch.tensor(s[idx]), torch.tensor(y[idx])))


def test_test_resamples_are_common_stratified_and_finite():
    y = torch.tensor([1.0, 0.0, 0.0, 1.0, float("nan"), 0.0] * 50)
    z1, z2 = torch.randn(300, 1), torch.randn(300, 1)
    d1 = tb.metric_draws("binary", z1, y, draws=30)
    assert len(d1) == 30 and all(0 <= v <= 1 for v in d1)
    # the same labels give the same resamples: a model scored twice gets the same draws, another model others
    assert tb.metric_draws("binary", z1, y, draws=30) == d1 != tb.metric_draws("binary", z2, y, draws=30)
    assert tb.metric_draws("binary", torch.full((300, 1), float("nan")), y) == []  # never a NaN stored
    # the single-task baseline's test split keeps only its task's observed rows: it draws the same rows
    obs = ~torch.isnan(y)
    assert tb.metric_draws("binary", z1[obs], y[obs], draws=30) == d1
    mse = tb.metric_draws("regression", z1, y, draws=10)
    assert len(mse) == 10 and min(mse) >= 0


# --- TOST and the decisions -------------------------------------------------------------------------------------
def test_tost_against_a_hand_computation():
    d, se, df, delta = 0.0004, 0.0002, 8.0, 0.001
    t = dc.tests(dc.Comparison(d, se, df, delta))
    # H0 d <= -δ: t1 = (d + δ)/se = 7 ; H0 d >= δ: t2 = (d − δ)/se = −3 ; TOST p = max of the one-sided p's
    p1, p2 = stats.t.sf(7.0, 8), stats.t.cdf(-3.0, 8)
    assert t.p_equivalent == pytest.approx(max(p1, p2)) and t.p_equivalent == pytest.approx(0.0085, abs=2e-4)
    assert t.p_better == pytest.approx(stats.t.sf(-3.0, 8)) and t.p_worse == pytest.approx(stats.t.cdf(7.0, 8))
    assert dc.decide([t]) == ["equivalent"]
    assert dc.decide([dc.tests(dc.Comparison(0.004, 0.0005, 8.0, delta))]) == ["better"]
    assert dc.decide([dc.tests(dc.Comparison(-0.004, 0.0005, 8.0, delta))]) == ["worse"]
    # significantly above 0 but not above δ, and not within ±δ: inconclusive (the PLE +0.0008)
    assert dc.decide([dc.tests(dc.Comparison(0.0008, 0.00025, 50.0, delta))]) == ["inconclusive"]
    assert dc.decide([dc.tests(dc.Comparison(0.1, math.nan, 3.0, delta))]) == ["inconclusive"]


def test_holm_over_the_family_can_turn_a_decision_inconclusive():
    alone = dc.tests(dc.Comparison(0.004, 0.0012, 10.0, 0.001))  # p_better ≈ 0.018
    assert 0.01 < alone.p_better < 0.025 and dc.decide([alone]) == ["better"]
    others = [dc.tests(dc.Comparison(0.0, 0.01, 10.0, 0.001))] * 3
    assert dc.decide([alone, *others])[0] == "inconclusive"  # 4 x 0.018 > 0.05


# the quickstart study of the issue (`bench run --study quickstart`: synthetic data, MSE on y1 and y2, three final
# seeds), per-seed test MSEs as its store holds them (the run reproduces them exactly: 6 decimals here)
QUICKSTART = {
    "cgc": ([0.069781, 0.076022, 0.080367], [0.124934, 0.13125, 0.095637]),
    "cross_stitch": ([0.078433, 0.078789, 0.097844], [0.12954, 0.12005, 0.13673]),
    "mmoe": ([0.111482, 0.111318, 0.128231], [0.215698, 0.147793, 0.150317]),
    "omoe": ([0.138322, 0.116304, 0.133608], [0.173618, 0.145561, 0.141929]),
    "ple": ([0.117628, 0.144488, 0.099319], [0.135654, 0.170173, 0.167086]),
    "shared_bottom": ([0.094705, 0.100971, 0.10705], [0.122103, 0.130688, 0.135741]),
    "single_task": ([0.149588, 0.089626, 0.138605], [0.187211, 0.125871, 0.150865]),
}


def quickstart_rows() -> pl.DataFrame:
    return rows_of({(a, task): v for a, both in QUICKSTART.items() for task, v in zip(("y1", "y2"), both)},
                   dataset="synthetic")


def test_the_quickstart_cases_are_inconclusive_not_top_and_six():
    a = tables.arch_summary(quickstart_rows())
    by = {r["architecture"]: r for r in a.iter_rows(named=True)}
    assert by["mmoe"]["delta_m"] == pytest.approx(-1.829, abs=1e-3)
    assert by["omoe"]["delta_m"] == pytest.approx(-1.072, abs=1e-3)
    # was "1 (top)" and "6": against single-task neither is better, worse or equivalent by δ = 1%
    assert by["mmoe"]["dm_decision"] == by["omoe"]["dm_decision"] == "inconclusive"
    # and against the best (cgc, +32%) both get the same label: the noisy one is not favoured any more
    assert by["cgc"]["dm_decision_best"] == "best"
    assert by["mmoe"]["dm_decision_best"] == by["omoe"]["dm_decision_best"]
    # one notion of rank: by Δm, omoe (-1.07%) above mmoe (-1.83%)
    assert by["omoe"]["rank"] == 6 and by["mmoe"]["rank"] == 7
    assert "top" not in a.columns


def test_the_baseline_has_delta_m_zero_without_interval_and_mse_intervals_stay_positive():
    spec = {("single_task", "y"): [0.02, 0.5, 0.03], ("mmoe", "y"): [0.01, 0.9, 0.02]}
    cells = tables.task_summary(rows_of(spec))
    t_lo = [tables.statistics.mean_ci(v).lo for v in cells["values"].to_list()]
    assert min(t_lo) < 0  # the t interval would leave the metric's range
    assert (cells["lo"] >= 0).all() and (cells["lo"] <= cells["mean"]).all()
    a = tables.arch_summary(rows_of(spec))
    base = a.filter(pl.col("architecture") == "single_task").row(0, named=True)
    assert base["delta_m"] == 0.0 and base["dm_lo"] is None and base["dm_hi"] is None
    assert base["dm_decision"] is None
    text = lb.render(rows_of(spec), {"study": "t", "budget": {"trials": 1, "max_epochs": 1, "patience": 0},
                                     "datasets": {"d": {"name": "x", "options": {}}}})
    assert "| 0 (baseline) " in text and "+0.000% [" not in text


def test_stored_resamples_widen_the_interval_and_the_page_says_which():
    rng = np.random.default_rng(0)
    spec = {("single_task", "y"): [1.0, 1.01, 0.99], ("mmoe", "y"): [0.9, 0.91, 0.89]}
    draws = {k: np.array(v)[:, None] + 0.05 * rng.standard_normal((3, 40)) for k, v in spec.items()}
    meta = {"study": "t", "budget": {"trials": 1, "max_epochs": 1, "patience": 0},
            "datasets": {"d": {"name": "x", "options": {}}}}
    without = tables.with_gains(tables.task_summary(rows_of(spec))).filter(pl.col("architecture") == "mmoe")
    with_draws = tables.with_gains(tables.task_summary(rows_of(spec, draws=draws))).filter(
        pl.col("architecture") == "mmoe")
    width = lambda f: f["gain_hi"][0] - f["gain_lo"][0]  # noqa: E731
    assert width(with_draws) > width(without)
    assert with_draws["mean"][0] == pytest.approx(0.9)  # the draw rows are not runs
    assert "test-set error is not included" in lb.render(rows_of(spec), meta)
    assert "the same test-set resamples for every unit (paired)" in lb.render(rows_of(spec, draws=draws), meta)


def test_a_published_number_is_shown_beside_ours_with_the_pages_interval():
    spec = {("single_task", "y"): [1.0, 1.01, 0.99], ("mmoe", "y"): [0.9, 0.91, 0.89]}
    meta = {"study": "t", "budget": {"trials": 1, "max_epochs": 1, "patience": 0},
            "datasets": {"d": {"name": "x", "options": {}}},
            "published": [{"source": "A paper", "dataset": "d", "metric": "test MSE", "values": {"mmoe": {"y": 0.95}}}]}
    cell = tables.task_summary(rows_of(spec)).filter(pl.col("architecture") == "mmoe").row(0, named=True)
    text = lb.render(rows_of(spec), meta)
    assert f"| mmoe           | 0.9500 (ours {cell['mean']:.4f} [{cell['lo']:.4f}, {cell['hi']:.4f}]) |" in text


# --- across datasets --------------------------------------------------------------------------------------------
def _many(labels: list[str]) -> pl.DataFrame:
    rng = np.random.default_rng(2)
    frames = []
    for i, label in enumerate(labels):
        spec = {(a, "y"): list(m + 0.01 * rng.standard_normal(3)) for a, m in
                (("single_task", 1.0), ("mmoe", 0.9 + 0.01 * i), ("ple", 0.95), ("cgc", 1.05))}
        frames.append(rows_of(spec, dataset=label))
    return tables.arch_summary(pl.concat(frames))


def test_friedman_only_with_five_independent_datasets():
    labels = [f"d{i}" for i in range(6)]
    archs = _many(labels)
    independent = {"datasets": {d: {"name": d, "options": {}} for d in labels}}
    _, tests = tables.overall_ranking(archs, meta=independent)
    assert tests["independent"] == 6 and tests["friedman"] is not None and tests["cd"] is not None
    # the same six entries as label fractions / correlations of two sources: 2 blocks, no test
    shared = {"datasets": {d: {"name": "census" if i < 3 else "synthetic", "options": {"p": i / 10}}
                           for i, d in enumerate(labels)}}
    _, gated = tables.overall_ranking(archs, meta=shared)
    assert gated["independent"] == 2 and gated["friedman"] is None and gated["cd"] is None
    # task groups of one table share its rows too; a synthetic draw with its own generator seed does not
    groups = {"datasets": {d: {"name": "census-income", "options": {"group": i}} for i, d in enumerate(labels)}}
    assert tables.overall_ranking(archs, meta=groups)[1]["independent"] == 1
    draws = {"datasets": {d: {"name": "synthetic", "options": {"seed": i, "p": 0.5}} for i, d in enumerate(labels)}}
    assert tables.overall_ranking(archs, meta=draws)[1]["independent"] == 6
    four = _many(labels[:4])
    _, few = tables.overall_ranking(four, meta={"datasets": {d: {"name": d} for d in labels[:4]}})
    assert few["friedman"] is None
    meta = {"study": "t", "budget": {"trials": 1, "max_epochs": 1, "patience": 0}, **shared}
    rows = pl.concat([rows_of({("single_task", "y"): [1.0, 1.1], ("mmoe", "y"): [0.9, 1.0], ("ple", "y"): [1.0, 1.2]},
                              dataset=d) for d in labels])
    text = lb.render(rows, meta)
    assert "No Friedman test or critical difference: they need at least 5 independent datasets" in text
    assert "this page has 2 independent datasets" in text


def test_overall_mean_rank_is_the_mean_of_the_ranks_shown():
    archs = _many(["d0", "d1", "d2"])
    overall, _ = tables.overall_ranking(archs)
    for r in overall.iter_rows(named=True):
        shown = archs.filter(pl.col("architecture") == r["architecture"])["rank"].to_list()
        assert r["mean_rank"] == pytest.approx(sum(shown) / len(shown))


# --- the spec's [decision] ----------------------------------------------------------------------------------------
def test_decision_spec_defaults_and_bad_input():
    d = parse_decision({})
    assert d.delta["auc"] == Margin(0.001) and d.delta["mse"] == Margin(0.01, True) and d.alpha == 0.05
    assert parse_decision({"delta": {"mse": "2%", "auc": 0.002}}).delta == {**d.delta, "mse": Margin(0.02, True),
                                                                            "auc": Margin(0.002)}
    assert DecisionSpec().meta() == {"alpha": 0.05, "delta": {"accuracy": 0.001, "auc": 0.001, "mse": "1%"}}
    for bad, says in (({"delta": {"logloss": 0.1}}, "unknown metric 'logloss'; valid choices: accuracy, auc, mse"),
                      ({"delta": {"auc": -1}}, "must be > 0"), ({"delta": {"mse": "1"}}, "percentage"),
                      ({"alpha": 0.7}, "alpha"), ({"beta": 1}, "unknown key 'beta'")):
        with pytest.raises(UserError, match=says):
            parse_decision(bad)
