"""Cells, gains and Δm of one dataset over every source of variance, with their decisions: the arithmetic behind
``bench.results.tables`` (definitions there and in docs/statistics.md).

A cell (dataset, architecture, task) carries its finite runs: ``values``, ``seeds``, ``replicates`` and ``draws``
(each run's metric on the test resamples, [] where none were stored), in (replicate, seed) order.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import rankdata

from bench.spec.decision import DecisionSpec
from bench.spec.metrics import HIGHER_IS_BETTER

from . import bootstrap as bs
from . import decisions as dc
from . import statistics

BASELINE = "single_task"  # the tuned single-task baseline every gain and decision is against
BEST = "best"  # the decision column of the best architecture itself


def _null(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def runs_of(cell: dict[str, Any]) -> bs.Runs:
    """The cell's runs; draws only when every run has them (truncated to the shortest B)."""
    values = np.asarray(cell["values"], dtype=np.float64)
    draws = cell.get("draws") or []
    lengths = [len(d) if d is not None else 0 for d in draws]
    matrix = None
    if values.size and len(draws) == values.size and min(lengths) >= 2:
        b = min(lengths)
        m = np.array([d[:b] for d in draws], dtype=np.float64)
        matrix = m if np.isfinite(m).all() else None
    return bs.Runs(np.asarray(cell["replicates"], dtype=np.int64), values, matrix)


def cell_stats(cells: pl.DataFrame) -> pl.DataFrame:
    """Adds n, replicates, mean (the replicate-level mean) and its percentile bootstrap interval [lo, hi] (null below
    two units: seeds, or replicates), and ``test_error`` (whether the test resamples are in it)."""
    out = []
    for c in cells.iter_rows(named=True):
        runs = runs_of(c)
        row = {"n": runs.n, "n_replicates": int(np.unique(runs.replicate).size), "mean": None, "lo": None,
               "hi": None, "test_error": runs.draws is not None}
        if runs.n:
            row["mean"] = bs.estimate(runs)
            if bs.units(runs).size >= 2:  # one seed: its spread is unknown, so no interval (test error alone)
                row["lo"], row["hi"] = bs.percentile(bs.mean_boot(runs, (c["dataset"], c["architecture"], c["task"])))
        out.append(row)
    schema = {"n": pl.Int64, "n_replicates": pl.Int64, "mean": pl.Float64, "lo": pl.Float64, "hi": pl.Float64,
              "test_error": pl.Boolean}
    return pl.concat([cells, pl.DataFrame(out, schema=schema)], how="horizontal")


def margin(decision: DecisionSpec, metric: str, reference: float | None) -> float:
    """δ of ``metric`` in its own units (a relative margin scales the baseline's mean, ``reference``)."""
    m = decision.delta.get(metric)
    if m is None or reference is None:
        return math.nan
    return m.of(reference)


def task_decisions(d: pl.DataFrame, decision: DecisionSpec) -> list[dict[str, Any]]:
    """One dataset's cells: the gain against the baseline (point, the decision's t interval, decision) and the
    decision against the best architecture on the task, one dict per cell in ``d``'s order. Replicates are
    differenced replicate by replicate where the dataset's are paired data draws (``DecisionSpec.paired``)."""
    cells = list(d.iter_rows(named=True))
    paired = bool(cells) and cells[0]["dataset"] in decision.paired
    runs = [runs_of(c) for c in cells]
    best_of: dict[str, int] = {}
    base_of: dict[str, int] = {}
    for i, c in enumerate(cells):
        if not runs[i].n:
            continue
        s = 1.0 if HIGHER_IS_BETTER[c["metric"]] else -1.0
        if c["architecture"] == BASELINE:
            base_of[c["task"]] = i
        j = best_of.get(c["task"])
        if j is None or s * c["mean"] > s * cells[j]["mean"]:
            best_of[c["task"]] = i
    out: list[dict[str, Any]] = [{"gain": None, "gain_lo": None, "gain_hi": None, "decision": None,
                                  "decision_best": None} for _ in cells]
    vs_base, vs_best = [], []  # (index, Tests)
    for i, c in enumerate(cells):
        if not runs[i].n:
            continue
        s = 1.0 if HIGHER_IS_BETTER[c["metric"]] else -1.0
        b, best = base_of.get(c["task"]), best_of[c["task"]]
        reference = cells[b]["mean"] if b is not None else cells[best]["mean"]
        delta = margin(decision, c["metric"], reference)
        if b is not None and i != b:
            comparison = dc.compare(runs[i], runs[b], s, delta, paired)
            lo, hi = dc.interval(comparison)  # NaN (no interval) when a side's spread is unknown
            out[i].update(gain=s * (c["mean"] - cells[b]["mean"]), gain_lo=_null(lo), gain_hi=_null(hi))
            vs_base.append((i, dc.tests(comparison)))
        if i == best:
            out[i]["decision_best"] = BEST
        else:
            vs_best.append((i, dc.tests(dc.compare(runs[i], runs[best], s, delta, paired))))
    for family, key in ((vs_base, "decision"), (vs_best, "decision_best")):
        for (i, _), label in zip(family, dc.decide([t for _, t in family], decision.alpha)):
            out[i][key] = label
    return out


def seesaw(labels: list[str | None]) -> bool:
    """One task decided better and another worse (against the baseline)."""
    return dc.BETTER in labels and dc.WORSE in labels


# --- Δm ----------------------------------------------------------------------------------------------------
def aligned(cells: list[dict[str, Any]]) -> list[bs.Runs]:
    """An architecture's tasks restricted to the runs (replicate, seed) present in every task, same order."""
    keys = [list(zip(c["replicates"], c["seeds"])) for c in cells]
    common = sorted(set.intersection(*map(set, keys)))
    out = []
    for c, k in zip(cells, keys):
        pos = [k.index(x) for x in common]
        r = runs_of(c)
        out.append(bs.Runs(r.replicate[pos], r.value[pos], None if r.draws is None else r.draws[pos]))
    return out


def delta_m_parts(arch: list[bs.Runs], base: list[bs.Runs], sign: np.ndarray) -> tuple[statistics.DeltaM, np.ndarray]:
    """Δm with its delta-method se over top-level units (``statistics.delta_m``), and Δm on each test resample
    (empty without draws on every side)."""
    dm = statistics.delta_m([bs.units(a) for a in arch], [bs.units(b) for b in base], [s > 0 for s in sign])
    if any(r.draws is None for r in (*arch, *base)):
        return dm, np.array([])
    B = min(r.draws.shape[1] for r in (*arch, *base))  # type: ignore[union-attr]
    per_draw = []
    for k in range(B):
        ma = np.array([bs.estimate(a, a.draws[:, k]) for a in arch])  # type: ignore[index]
        mb = np.array([bs.estimate(b, b.draws[:, k]) for b in base])  # type: ignore[index]
        per_draw.append(100.0 / len(arch) * float(np.sum(sign * (ma - mb) / mb)))
    return dm, np.array(per_draw)


def delta_m_decisions(dataset: str, cells: dict[str, list[dict[str, Any]]], decision: DecisionSpec
                      ) -> dict[str, dict[str, Any]]:
    """Per complete architecture of one dataset (``cells``: architecture -> its cells, one per task, the same task
    order, the baseline among them): Δm with its decision's t interval (none for the baseline, whose Δm is 0 by
    definition), its decision against the baseline and against the best Δm, and its rank (1 = best Δm, ties
    averaged). Where the dataset's replicates are paired data draws (``DecisionSpec.paired``), Δm's standard error
    comes from the replicate pairs (``decisions.paired_delta_m``) and the comparison with the best from the
    replicates' differences.

    δ of Δm: the Δm a shift of δ_k on every task would give, 100/T Σ_k δ_k / |M̄_b,k| (percent)."""
    base = cells[BASELINE]
    paired = dataset in decision.paired
    sign = np.array([1.0 if HIGHER_IS_BETTER[c["metric"]] else -1.0 for c in base])
    base_runs = [runs_of(c) for c in base]
    delta = 100.0 / len(base) * sum(margin(decision, c["metric"], c["mean"]) / abs(c["mean"]) for c in base)
    out: dict[str, dict[str, Any]] = {BASELINE: {"delta_m": 0.0, "dm_lo": None, "dm_hi": None, "units": None,
                                                 "draws": None, "comparison": None}}
    for arch, cs in cells.items():
        if arch == BASELINE:
            continue
        runs = aligned(cs)
        dm, per_draw = delta_m_parts(runs, base_runs, sign)
        if not math.isfinite(dm.value):
            continue
        se, df = dm.se, dm.df
        if paired and all(dc.paired_units(a, y) for a, y in zip(runs, base_runs)):
            se, df = dc.paired_delta_m([bs.units(a) for a in runs], [bs.units(y) for y in base_runs], sign)
        test_var = bs.test_variance(per_draw) if per_draw.size else 0.0
        comparison = dc.with_test_variance(dm.value, se, df, test_var, delta)
        lo, hi = dc.interval(comparison)
        out[arch] = {"delta_m": dm.value, "dm_lo": _null(lo), "dm_hi": _null(hi),
                     "units": np.asarray(dm.per_seed), "draws": per_draw, "comparison": comparison}
    names = list(out)
    vs_base = [a for a in names if a != BASELINE]
    for a, label in zip(vs_base, dc.decide([dc.tests(out[a]["comparison"]) for a in vs_base], decision.alpha)):
        out[a]["dm_decision"] = label
    out[BASELINE]["dm_decision"] = None
    best = max(names, key=lambda a: (out[a]["delta_m"], a == BASELINE))
    family = [a for a in names if a != best]
    comps = [_versus_best(out[a], out[best], delta, paired) for a in family]
    for a, label in zip(family, dc.decide([dc.tests(c) for c in comps], decision.alpha)):
        out[a]["dm_decision_best"] = label
    out[best]["dm_decision_best"] = BEST
    ranks = _ranks({a: out[a]["delta_m"] for a in names})
    for a in names:
        out[a]["rank"] = ranks[a]
    return out


def _versus_best(a: dict[str, Any], best: dict[str, Any], delta: float, paired: bool = False) -> dc.Comparison:
    """Δm_a − Δm_best. Against the baseline (Δm 0 by definition) it is the vs-baseline comparison (negated when
    the baseline is the one compared); otherwise two independent sets of per-unit Δm with the baseline means
    fixed, plus the test-set variance of the paired per-resample difference."""
    if best["comparison"] is None:  # the baseline is the best
        return a["comparison"]
    if a["comparison"] is None:  # the baseline against the best architecture
        c = best["comparison"]
        return dc.Comparison(-c.diff, c.se, c.df, c.delta)
    b = min(a["draws"].size, best["draws"].size)
    test_var = bs.test_variance(a["draws"][:b] - best["draws"][:b]) if b else 0.0
    return dc.compare_units(a["units"], best["units"], test_var, delta, a["delta_m"] - best["delta_m"], paired)


def _ranks(values: dict[str, float]) -> dict[str, float]:
    """1 = the highest value, ties averaged (scipy.stats.rankdata)."""
    names = list(values)
    r = rankdata([-values[a] for a in names], method="average")
    return {a: float(x) for a, x in zip(names, r)}
