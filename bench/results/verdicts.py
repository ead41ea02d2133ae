"""The verdict paragraphs of the leaderboard: generated from the decisions alone (``bench.results.decisions``),
so that no sentence claims more than its decision. "better" always means better by more than δ, "worse" worse by
more than δ, "equivalent" within ±δ; an inconclusive comparison is named as such, with its estimate and interval.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from bench.spec.decision import DecisionSpec

from .comparisons import BASELINE, margin
from .markdown import DASH, escape, interval


def _names(names: list[str]) -> str:
    names = [escape(n) for n in names]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _are(names: list[str]) -> str:
    return f"{_names(names)} {'is' if len(names) == 1 else 'are'}"


def task_sentence(task: str, metric: str, cells: list[dict[str, Any]], delta: str) -> str:
    """One task against the baseline: who is better, equivalent, worse, and the leading inconclusive one."""
    by: dict[str, list[dict[str, Any]]] = {}
    for c in cells:
        by.setdefault(c["decision"], []).append(c)
    names = {k: [c["architecture"] for c in v] for k, v in by.items()}
    what = f"{escape(task)} by more than δ = {delta}"
    parts = [f"{_are(names['better'])} better on {what}" if "better" in names
             else f"no architecture is better on {what}"]
    if "equivalent" in names:
        parts.append(f"{_are(names['equivalent'])} equivalent within ±δ")
    if "worse" in names:
        parts.append(f"{_are(names['worse'])} worse")
    if "inconclusive" in names:
        lead = max(by["inconclusive"], key=lambda c: c["gain"])
        others = len(names["inconclusive"]) - 1
        gain = interval(lead["gain"], lead["gain_lo"], lead["gain_hi"], signed=True)
        also = f" (as {'are' if others > 1 else 'is'} {others} other{'s' if others > 1 else ''})" if others else ""
        parts.append(f"{escape(lead['architecture'])}'s {gain} is inconclusive{also}")
    return "; ".join(parts)


def dm_sentence(archs: list[dict[str, Any]], delta: float) -> str:
    """Δm against the baseline and against the highest Δm."""
    others = [a for a in archs if a["architecture"] != BASELINE and a["dm_decision"] is not None]
    better = [a["architecture"] for a in others if a["dm_decision"] == "better"]
    worse = [a["architecture"] for a in others if a["dm_decision"] == "worse"]
    text = (f"on Δm, {_are(better)} better than single-task by more than δ = {delta:.3g}%" if better else
            f"on Δm, no architecture is better than single-task by more than δ = {delta:.3g}%")
    if worse:
        text += f", {_are(worse)} worse"
    best = next((a for a in archs if a["dm_decision_best"] == "best"), None)
    if best is not None:
        vs = {k: [a["architecture"] for a in archs if a["dm_decision_best"] == k]
              for k in ("worse", "equivalent", "inconclusive")}
        text += f". The highest Δm is {escape(best['architecture'])}'s ({best['delta_m']:+.3f}%)"
        said = [f"{_names(vs['worse'])} worse than it" if vs["worse"] else "",
                f"{_names(vs['equivalent'])} equivalent to it" if vs["equivalent"] else "",
                f"{_names(vs['inconclusive'])} not told apart from it (inconclusive)" if vs["inconclusive"] else ""]
        said = [s for s in said if s]
        if said:
            text += ": " + "; ".join(said)
    return text


def dm_margin(cells: pl.DataFrame, decision: DecisionSpec) -> float:
    """δ of Δm on one dataset: 100/T Σ_k δ_k / |M̄_b,k| (percent)."""
    base = cells.filter(pl.col("architecture") == BASELINE)
    if not base.height or base["mean"].null_count():
        return float("nan")
    return 100.0 / base.height * sum(margin(decision, r["metric"], r["mean"]) / abs(r["mean"])
                                     for r in base.iter_rows(named=True))


def best_sentence(task: str, cells: list[dict[str, Any]], delta: str) -> str:
    """One task without a baseline: the best architecture (lowest error / highest score) and the others against it."""
    by = {k: [c["architecture"] for c in cells if c["decision_best"] == k]
          for k in ("best", "worse", "equivalent", "inconclusive")}
    text = f"on {escape(task)} the best is {_names(by['best'])}"
    said = [f"{_are(by['worse'])} worse by more than δ = {delta}" if by["worse"] else "",
            f"{_are(by['equivalent'])} equivalent within ±δ" if by["equivalent"] else "",
            f"{_names(by['inconclusive'])} not told apart from it (inconclusive)" if by["inconclusive"] else ""]
    said = [s for s in said if s]
    return text + (": " + "; ".join(said) if said else "")


def baseline_free_verdict(label: str, cells: pl.DataFrame, decision: DecisionSpec) -> list[str]:
    """The verdict of a dataset without a single-task baseline: each task against its best architecture, δ relative
    to the best's mean where the margin is relative."""
    sentences = []
    for (task,), part in cells.filter(pl.col("decision_best").is_not_null()).sort("task").group_by(
            "task", maintain_order=True):
        rows = list(part.iter_rows(named=True))
        best = next(r for r in rows if r["decision_best"] == "best")
        m = decision.delta[best["metric"]]
        delta = f"{m.of(best['mean']):.3g} {best['metric']}" + (f" ({m.value * 100:g}% of the best's)"
                                                                  if m.relative else "")
        sentences.append(best_sentence(task, rows, delta))
    if not sentences:
        return []
    return [f"**Verdict.** On {escape(label)} (no single-task baseline; each task against its best architecture): "
            + "; ".join(sentences) + ".", ""]


def dataset_verdict(label: str, archs: pl.DataFrame, cells: pl.DataFrame, decision: DecisionSpec) -> list[str]:
    """The verdict paragraph of one dataset: against the single-task baseline, or, without one, against the best
    architecture of each task."""
    base = cells.filter(pl.col("architecture") == BASELINE)
    if not base.height:
        return baseline_free_verdict(label, cells, decision)
    sentences = []
    for r in base.sort("task").iter_rows(named=True):
        if r["mean"] is None:
            continue
        task_cells = cells.filter((pl.col("task") == r["task"]) & pl.col("decision").is_not_null())
        if task_cells.height:
            m = decision.delta[r["metric"]]
            delta = f"{m.of(r['mean']):.3g} {r['metric']}"
            if m.relative:
                delta += f" ({m.value * 100:g}% of single-task's)"
            sentences.append(task_sentence(r["task"], r["metric"], list(task_cells.iter_rows(named=True)), delta))
    if archs["delta_m"].drop_nulls().len() > 1:
        sentences.append(dm_sentence(list(archs.iter_rows(named=True)), dm_margin(cells, decision)))
    if not sentences:
        return []
    return [f"**Verdict.** On {escape(label)}, against the tuned single-task model: " + "; ".join(sentences) + ".", ""]


def page_verdict(archs: pl.DataFrame, labels: list[str]) -> list[str]:
    """The page's verdict: per dataset, which architectures Δm decides better or worse than single-task."""
    parts = []
    for label in labels:
        d = archs.filter((pl.col("dataset") == label) & (pl.col("architecture") != BASELINE)
                         & pl.col("dm_decision").is_not_null())
        if not d.height:
            continue
        better = d.filter(pl.col("dm_decision") == "better")["architecture"].to_list()
        worse = d.filter(pl.col("dm_decision") == "worse")["architecture"].to_list()
        text = f"{escape(label)}: " + (f"{_names(better)} better" if better else "none better")
        parts.append(text + (f", {_names(worse)} worse" if worse else ""))
    if not parts:
        return []
    return ["**Verdict.** Against the tuned single-task model on Δm (better or worse by more than δ; every other "
            "architecture is equivalent or inconclusive, see each dataset): " + "; ".join(parts) + ".", ""]


# --- the cells and notes of the dataset tables -----------------------------------------------------------
def delta_m_cell(r: dict[str, Any]) -> str:
    """Δm with its interval and decision against the baseline; the baseline's own Δm is 0, without an interval."""
    if r["architecture"] == BASELINE and r["delta_m"] is not None:
        return "0 (baseline)"
    text = interval(r["delta_m"], r["dm_lo"], r["dm_hi"], ".3f", signed=True, unit="%")
    return text if r["dm_decision"] is None else f"{text} {r['dm_decision']}"


def versus_best(r: dict[str, Any], cells: list[dict[str, Any] | None], tasks: list[str]) -> str:
    """The decisions against the best architecture: on Δm, then per task ("best" where it is the best)."""
    parts = [] if r["dm_decision_best"] is None else [f"Δm {r['dm_decision_best']}"]
    parts += [f"{escape(t)} {c['decision_best']}" for t, c in zip(tasks, cells)
              if c is not None and c["decision_best"] is not None]
    return "; ".join(parts) or DASH


def variance_note(d_archs: pl.DataFrame, paired: bool = False) -> list[str]:
    """What the intervals of this dataset contain: replicates (or not; paired data draws or not), and test-set
    error (or not)."""
    if not d_archs.height:
        return []
    r = int(d_archs["replicates"].max() or 1)
    searches = (f"{r} replicates of the whole pipeline, so which configuration each search found is inside them"
                if r > 1 else "one search per unit (R = 1): which configuration the search found is not inside them")
    if r > 1 and paired:
        searches += (" (each replicate a new data draw shared by every unit: gains, Δm and the comparisons with the "
                     "best are differenced replicate by replicate)")
    test = ("and over the same test-set resamples for every unit (paired)" if d_archs["test_error"].all() else
            "test-set error is not included (no test-set resamples stored for these runs)")
    return [f"Intervals: cells 95% percentile bootstrap (never outside the metric's range), gains and Δm the 95% t "
            f"interval of their decision, over the seeds and {searches}; {test}.", ""]


def delta_text(decision: DecisionSpec) -> str:
    """The margins, as the page states them."""
    return ", ".join(f"{m} {d.text()}" for m, d in sorted(decision.delta.items()))
