"""The leaderboard's tables: a short polars pipeline over the tidy rows of ``bench.results.store``, with the
statistics of ``bench.results.statistics`` (scipy) on every number.

Definitions (per dataset, on the final stage's test split, primary metric of each task's kind; docs/statistics.md
has the reasons and references). A run is one final seed of one replicate (store column ``replicate``, null = 1);
n = the runs whose score is finite, a diverged or missing run is never a number.

- cell: the replicate-level mean M = 1/R sum_r mean_s v_rs (R = 1: the mean over seeds) with a 95% percentile
  bootstrap interval: replicates drawn with replacement, then seeds within each, crossed with the stored test-set
  resamples (``bench.results.bootstrap``; without them the interval leaves out test-set error and says so).
- MTL gain of architecture a on task k (PLE paper, Tang et al. 2020), oriented so that positive is better:
      gain_k = s_k (M_a,k - M_single,k),   s_k = +1 if higher is better, -1 otherwise
  with the 95% t interval of the test that decides it (``bench.results.decisions``: seeds or replicates, and the
  test-set variance of the difference over the same resamples on both sides).
- Delta_m (Maninis et al. 2019; Vandenhende et al. 2021), in percent:
      Delta_m = 100/T sum_k s_k (M_a,k - M_single,k) / M_single,k
  with its decision's t interval (delta method; an architecture's tasks per seed together: one model gives them
  all). The baseline's
  own Delta_m is 0 by definition, shown without an interval.
- decisions (``bench.results.decisions``): per architecture and task, and on Delta_m, against the baseline and
  against the best: better / worse (by more than δ) / equivalent within ±δ (TOST) / inconclusive, Holm over the
  family; δ per metric from the spec's ``[decision]`` (``bench.spec.decision``).
- seesaw: one task decided better and another worse against the baseline.
- complete: an architecture with a finite score on every task of the dataset; only complete architectures
  get Delta_m and a rank (never a Delta_m over a subset of tasks), and only when the baseline is complete.
- rank within a dataset: by Delta_m, 1 = best, ties averaged; the overall mean rank averages these same ranks.
- across datasets: the mean rank and the median Delta_m; a Friedman test and the Nemenyi critical difference
  (Demsar 2006) only over at least 5 independent blocks (entries sharing data are one block).

- Pareto front (per dataset with two or more tasks, architectures with a score on every task): architecture a is
  dominated when another b is at least as good on every task and better on one, in the oriented mean test metric
  s_k M_k; the non-dominated ones are on the front. Means only: the intervals are drawn on the Pareto plot.
- gates and experts (utilisation, dead units, gate entropy, unused experts): defined with their tables in
  ``bench.results.gates``.

The same rows and metadata always give the same frames. Repeated runs (stage "repeat") have their own tables in
``bench.results.repeats``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from bench.spec.decision import DecisionSpec
from bench.spec.metrics import HIGHER_IS_BETTER, PRIMARY
from bench.spec.study import architectures_on

from . import bootstrap, comparisons, statistics
from .comparisons import BASELINE

ALPHA = 0.05  # level of the Friedman test; the decisions' is the spec's [decision] alpha
CONFIDENCE = 0.95  # level of every interval


def _nan_to_null(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


# --- per seed and per cell -------------------------------------------------------------------------------
def _metric(metric: str | None) -> pl.Expr:
    """The rows of ``metric``; without one, each task's primary metric (auc, mse or accuracy by task kind)."""
    return pl.col("metric") == (pl.col("kind").replace_strict(PRIMARY, default=None) if metric is None else metric)


def seed_scores(rows: pl.DataFrame, stage: str = "final", metric: str | None = None) -> pl.DataFrame:
    """The test primary metric (or ``metric``) of every run of ``stage``: one row per (dataset, architecture, task,
    replicate, seed), non-finite values kept (they are counted as failed seeds, never averaged); ``replicate`` null
    (rows stored before replicates) read as 1. The test-resample rows (``draw`` set) are not runs."""
    return (
        rows.filter((pl.col("stage") == stage) & (pl.col("split") == "test") & pl.col("draw").is_null())
        .filter(_metric(metric))
        .with_columns(pl.col("replicate").fill_null(1))
        .select("dataset", "architecture", "task", "kind", "metric", "replicate", "seed", "value")
        .sort("dataset", "architecture", "task", "replicate", "seed")
    )


def run_draws(rows: pl.DataFrame, stage: str = "final", metric: str | None = None) -> pl.DataFrame:
    """Per run, its primary test metric (or ``metric``: a funnel's entire-space ``auc_entire``) on the test
    resamples (``draw`` 1..B, in order): column ``draws``."""
    return (
        rows.filter((pl.col("stage") == stage) & (pl.col("split") == "test") & pl.col("draw").is_not_null())
        .filter(_metric(metric))
        .with_columns(pl.col("replicate").fill_null(1))
        .sort("draw")
        .group_by("dataset", "architecture", "task", "replicate", "seed")
        .agg(draws=pl.col("value"))
    )


def with_mean_ci(frame: pl.DataFrame, values: str) -> pl.DataFrame:
    """Adds n, mean, std and the 95% t interval [lo, hi] of each row's list column ``values`` (nulls where a
    statistic is undefined: no value, or one)."""
    ci = [statistics.mean_ci(v, CONFIDENCE) for v in frame[values].to_list()]
    return frame.with_columns(
        n=pl.Series([c.n for c in ci], dtype=pl.Int64),
        **{name: pl.Series([_nan_to_null(getattr(c, name)) for c in ci], dtype=pl.Float64)
           for name in ("mean", "std", "lo", "hi")},
    )


def task_summary(rows: pl.DataFrame, metric: str | None = None) -> pl.DataFrame:
    """Per (dataset, architecture, task): n finite runs (and n_failed non-finite ones), replicates, the
    replicate-level mean and its 95% percentile bootstrap interval [lo, hi] (replicates, seeds within, and test
    resamples when stored: ``test_error``). ``values``, ``seeds``, ``replicates`` and ``draws`` hold the finite
    runs in (replicate, seed) order for the comparisons. Of each task's primary metric, or of ``metric``."""
    finite = pl.col("value").is_finite()
    cells = (
        seed_scores(rows, metric=metric)
        .join(run_draws(rows, metric=metric), on=["dataset", "architecture", "task", "replicate", "seed"], how="left")
        .sort("dataset", "architecture", "task", "replicate", "seed")
        .group_by("dataset", "architecture", "task", "kind", "metric")
        .agg(
            values=pl.col("value").filter(finite),
            seeds=pl.col("seed").filter(finite),
            replicates=pl.col("replicate").filter(finite),
            draws=pl.col("draws").filter(finite),
            n_failed=(~finite).sum().cast(pl.Int64),
        )
        .sort("dataset", "architecture", "task")
    )
    return comparisons.cell_stats(cells)


def with_gains(tasks: pl.DataFrame, decision: DecisionSpec | None = None) -> pl.DataFrame:
    """Adds, against the single-task baseline of the same (dataset, task): the oriented gain with its decision's
    t interval [gain_lo, gain_hi] (paired over test resamples) and its ``decision`` (better / worse /
    equivalent / inconclusive, Holm over the dataset's cells); and ``decision_best``, against the best
    architecture on the task ("best" for that one). Baseline rows and cells without a baseline get null gains."""
    decision = decision or DecisionSpec()
    out: list[dict[str, Any]] = []
    order = []
    for _, d in tasks.with_row_index("_i").group_by("dataset", maintain_order=True):
        out += comparisons.task_decisions(d, decision)
        order += d["_i"].to_list()
    schema = {"gain": pl.Float64, "gain_lo": pl.Float64, "gain_hi": pl.Float64, "decision": pl.String,
              "decision_best": pl.String}
    extra = pl.DataFrame(out, schema=schema).with_columns(_i=pl.Series(order, dtype=pl.UInt32)).sort("_i")
    return pl.concat([tasks, extra.drop("_i")], how="horizontal")


# --- per architecture ------------------------------------------------------------------------------------
def trial_summary(rows: pl.DataFrame) -> pl.DataFrame:
    """Per (dataset, architecture): search trials complete / pruned / failed and mean seconds per trial
    (single-task sums its per-task units)."""
    trials = rows.filter((pl.col("stage") == "search") & (pl.col("metric") == "objective"))
    return (
        trials.group_by("dataset", "architecture")
        .agg(
            trials_complete=(pl.col("status") == "complete").sum().cast(pl.Int64),
            trials_pruned=(pl.col("status") == "pruned").sum().cast(pl.Int64),
            trials_failed=(pl.col("status") == "failed").sum().cast(pl.Int64),
            seconds_per_trial=pl.col("seconds").mean(),
        )
        .sort("dataset", "architecture")
    )


def params_summary(rows: pl.DataFrame) -> pl.DataFrame:
    """Parameter count of the final models (single-task: the sum of its per-task models; with replicates, those
    of replicate 1, whose configuration may differ from the others')."""
    return (
        rows.filter(pl.col("stage") == "final")
        .sort(pl.col("replicate").fill_null(1), maintain_order=True)  # replicate 1's first
        .group_by("dataset", "architecture", "target", maintain_order=True)
        .agg(pl.col("n_params").first())
        .group_by("dataset", "architecture")
        .agg(n_params=pl.col("n_params").sum())
    )


def arch_summary(rows: pl.DataFrame, decision: DecisionSpec | None = None) -> pl.DataFrame:
    """One row per (dataset, architecture): completeness, Delta_m with its decision's t interval (none for
    the baseline), its decisions against the baseline and the best Delta_m, seesaw, rank (by Delta_m, ties
    averaged), replicates, whether test-set error is included, parameters, trials and time; ordered by rank."""
    decision = decision or DecisionSpec()
    cells = with_gains(task_summary(rows), decision)
    out = []
    for (dataset,), d in cells.group_by("dataset", maintain_order=True):
        tasks = sorted(d["task"].unique().to_list())
        groups = {a: g.sort("task") for (a,), g in d.group_by("architecture", maintain_order=True)}
        observed = {a: set(g.filter(pl.col("n") > 0)["task"]) for a, g in groups.items()}  # tasks with a score
        complete = {a: obs == set(tasks) for a, obs in observed.items()}
        dms: dict[str, dict[str, Any]] = {}
        if complete.get(BASELINE, False):
            dms = comparisons.delta_m_decisions(
                dataset, {a: list(g.iter_rows(named=True)) for a, g in groups.items() if complete[a]}, decision)
        for a, g in groups.items():
            dm = dms.get(a, {})
            out.append({
                "dataset": dataset, "architecture": a, "n_tasks": len(tasks), "complete": complete[a],
                "missing": ", ".join(sorted(set(tasks) - observed[a])),
                "delta_m": dm.get("delta_m"), "dm_lo": dm.get("dm_lo"), "dm_hi": dm.get("dm_hi"),
                "dm_decision": dm.get("dm_decision"), "dm_decision_best": dm.get("dm_decision_best"),
                "seesaw": comparisons.seesaw(g["decision"].to_list()), "rank": dm.get("rank"),
                "replicates": int(g["n_replicates"].max() or 1), "test_error": bool(g["test_error"].all()),
            })
    schema = {"dataset": pl.String, "architecture": pl.String, "n_tasks": pl.Int64, "complete": pl.Boolean,
              "missing": pl.String, "delta_m": pl.Float64, "dm_lo": pl.Float64, "dm_hi": pl.Float64,
              "dm_decision": pl.String, "dm_decision_best": pl.String, "seesaw": pl.Boolean, "rank": pl.Float64,
              "replicates": pl.Int64, "test_error": pl.Boolean}
    return (
        pl.DataFrame(out, schema=schema)
        .join(params_summary(rows), on=["dataset", "architecture"], how="left")
        .join(trial_summary(rows), on=["dataset", "architecture"], how="left")
        .sort(["dataset", "rank", "delta_m", "architecture"], descending=[False, False, True, False],
              nulls_last=True)
    )


# --- across datasets -------------------------------------------------------------------------------------
MIN_INDEPENDENT = 5  # datasets a Friedman test and a Nemenyi critical difference need (Demsar 2006)


def blocks(meta: dict[str, Any], labels: list[str]) -> dict[str, str]:
    """Dataset label -> its block. Entries of one data set share its rows (the label fractions of one source, the
    task groups of one table, the correlations ``p`` of one synthetic draw): one block, never independent datasets.
    Only a different generator ``seed`` (a new synthetic draw) makes an independent dataset of the same name."""
    info = meta.get("datasets", {})
    out = {}
    for label in labels:
        d = info.get(label, {"name": label})
        seed = d.get("options", {}).get("seed")
        out[label] = d.get("name", label) + ("" if seed is None else f", seed={seed}")
    return out


def overall_ranking(archs: pl.DataFrame, expected: list[str] | None = None,
                    meta: dict[str, Any] | None = None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Mean over datasets of the per-dataset rank of Delta_m shown in each dataset's table (the same rank, 1 = best)
    for the architectures with a Delta_m on every dataset, best first, with the median Delta_m over datasets; and,
    only with at least ``MIN_INDEPENDENT`` independent blocks (``blocks``), the Friedman test and Nemenyi critical
    difference over the blocks (scores: mean Delta_m per block): ``{"friedman": Friedman | None, "cd": float |
    None, "excluded": {arch: reason}, "independent": N, "blocks": {block: [labels]}}``."""
    datasets = archs["dataset"].unique().sort().to_list()
    block_of = blocks(meta or {}, datasets)
    members: dict[str, list[str]] = {}
    for d in datasets:
        members.setdefault(block_of[d], []).append(d)
    info: dict[str, Any] = {"friedman": None, "cd": None, "excluded": {}, "independent": len(members),
                            "blocks": members}
    names = list(dict.fromkeys([*(expected or []), *archs["architecture"].unique().sort().to_list()]))
    scores: dict[str, dict[str, float]] = {}
    ranks: dict[str, list[float]] = {}
    listed = (meta or {}).get("datasets", {})  # entries that list their architectures (a subset)
    runs_on = {d: architectures_on(meta, d) for d in datasets if "architectures" in listed.get(d, {})}
    for a in names:
        g = archs.filter(pl.col("architecture") == a)
        by_ds = {r["dataset"]: (r["delta_m"], r["rank"]) for r in g.iter_rows(named=True)}
        not_run = [d for d in datasets if d in runs_on and a not in runs_on[d]]
        lacking = [d for d in datasets if by_ds.get(d, (None,))[0] is None and d not in not_run]
        if not_run or lacking:
            info["excluded"][a] = "; ".join(
                [*(["not run on " + ", ".join(not_run) + " (the spec's dataset entries)"] if not_run else []),
                 *(["no Δm on " + ", ".join(lacking)] if lacking else [])])
        else:
            scores[a] = {d: by_ds[d][0] for d in datasets}
            ranks[a] = [by_ds[d][1] for d in datasets]
    schema = {"architecture": pl.String, "mean_rank": pl.Float64, "median_delta_m": pl.Float64,
              "datasets": pl.Int64}
    if not scores:
        return pl.DataFrame(schema=schema), info
    table = pl.DataFrame(
        [{"architecture": a, "mean_rank": sum(ranks[a]) / len(ranks[a]),
          "median_delta_m": float(np.median(list(scores[a].values()))), "datasets": len(datasets)} for a in scores],
        schema=schema,
    ).sort(["mean_rank", "median_delta_m", "architecture"], descending=[False, True, False])
    if len(members) >= MIN_INDEPENDENT and len(scores) >= 3:
        per_block = {a: [float(np.mean([v[d] for d in ds])) for ds in members.values()] for a, v in scores.items()}
        info["friedman"] = statistics.friedman(per_block, higher_is_better=True)
        info["cd"] = statistics.nemenyi_cd(len(scores), len(members), ALPHA)
    return table, info


def correlation_summary(rows: pl.DataFrame, meta: dict[str, Any]) -> pl.DataFrame:
    """Performance against task correlation (MMoE paper, figure 4): for datasets with a correlation option
    ``p``, the test primary metric averaged over tasks per run, then its mean and 95% percentile bootstrap interval
    over the runs (final seeds of every replicate and repeated runs together)."""
    ps = {label: d["options"]["p"] for label, d in meta.get("datasets", {}).items()
          if "p" in d.get("options", {}) and not d.get("label_fraction")}  # scarcity studies: scarcity_summary
    schema = {"architecture": pl.String, "p": pl.Float64, "n": pl.Int64, "mean": pl.Float64, "lo": pl.Float64,
              "hi": pl.Float64, "metric": pl.String}
    if len(set(ps.values())) < 2:
        return pl.DataFrame(schema=schema)
    per_seed = (
        pl.concat([seed_scores(rows, "final"), seed_scores(rows, "repeat")])
        .filter(pl.col("dataset").is_in(list(ps)) & pl.col("value").is_finite())
        .with_columns(p=pl.col("dataset").replace_strict(ps, return_dtype=pl.Float64))
        .group_by("architecture", "p", "replicate", "seed", "metric")
        .agg(pl.col("value").mean())  # mean over tasks, per run
        .sort("architecture", "p", "metric", "replicate", "seed")  # a fixed order: the bootstrap indexes the runs
        .group_by("architecture", "p", "metric", maintain_order=True)
        .agg(pl.col("value"))
        .sort("architecture", "p")
    )
    out = []
    for r in per_seed.iter_rows(named=True):  # the runs' mean and its percentile bootstrap interval (in range)
        runs = bootstrap.Runs(np.ones(len(r["value"]), dtype=np.int64), np.asarray(r["value"], dtype=np.float64))
        lo, hi = bootstrap.percentile(bootstrap.mean_boot(runs, (r["architecture"], r["p"], r["metric"]))) \
            if runs.n >= 2 else (None, None)
        out.append({**r, "n": runs.n, "mean": float(runs.value.mean()), "lo": lo, "hi": hi})
    return pl.DataFrame(out, schema={**per_seed.schema, **schema}).select(list(schema))


def scarcity_summary(cells: pl.DataFrame, meta: dict[str, Any]) -> pl.DataFrame:
    """MTL gain of the scarce task against the fraction of its training labels kept (the label-scarcity
    experiment): per dataset entry with a ``label_fraction``, the gain cells (``with_gains``) of its scarce task,
    with the entry's group (the data set and options it shares with the other fractions) and fraction."""
    schema = {"group": pl.String, "task": pl.String, "fraction": pl.Float64, "dataset": pl.String,
              "architecture": pl.String, "metric": pl.String, "n": pl.Int64, "gain": pl.Float64,
              "gain_lo": pl.Float64, "gain_hi": pl.Float64, "decision": pl.String}
    scarce = [
        {"dataset": label, "task": task, "fraction": float(f),
         "group": d["name"] + "".join(f", {k}={v}" for k, v in sorted(d.get("options", {}).items()))}
        for label, d in meta.get("datasets", {}).items()
        for task, f in (d.get("label_fraction") or {}).items()
    ]
    if not scarce:
        return pl.DataFrame(schema=schema)
    return (
        cells.join(pl.DataFrame(scarce), on=["dataset", "task"])  # the scarce task's cells only
        .filter(pl.col("architecture") != BASELINE)
        .select(list(schema))
        .sort("group", "task", "architecture", "fraction")
    )


# --- per-task trade-off -----------------------------------------------------------------------------------
def pareto_front(cells: pl.DataFrame) -> pl.DataFrame:
    """Per (dataset, architecture) of the datasets with two or more tasks, for the architectures with a score on
    every task: ``on_front``, whether no other architecture dominates it in the oriented mean test metrics
    (``cells``: ``task_summary``)."""
    scored = (
        cells.filter(pl.col("mean").is_not_null())
        # s_k M_k: higher is better on every task
        .with_columns(score=pl.col("mean") * pl.col("metric").replace_strict(
            {m: 1.0 if h else -1.0 for m, h in HIGHER_IS_BETTER.items()}, return_dtype=pl.Float64))
        .with_columns(n_tasks=pl.col("task").n_unique().over("dataset"),
                      scored_tasks=pl.len().over("dataset", "architecture"))
        .filter((pl.col("n_tasks") >= 2) & (pl.col("scored_tasks") == pl.col("n_tasks")))  # complete ones only
        .select("dataset", "architecture", "task", "score")
    )
    dominated = (
        scored.join(scored, on=["dataset", "task"], suffix="_other")  # every pair of architectures, per task
        .filter(pl.col("architecture") != pl.col("architecture_other"))
        .group_by("dataset", "architecture", "architecture_other")
        # b dominates a: at least as good on every task, better on one
        .agg(dominated=(pl.col("score_other") >= pl.col("score")).all()
             & (pl.col("score_other") > pl.col("score")).any())
        .group_by("dataset", "architecture")
        .agg(pl.col("dominated").any())
    )
    return (
        scored.select("dataset", "architecture").unique()
        .join(dominated, on=["dataset", "architecture"], how="left")  # alone on its dataset: nothing dominates it
        .select("dataset", "architecture", on_front=~pl.col("dominated").fill_null(False))
        .sort("dataset", "architecture")
    )


def pareto_seeds(rows: pl.DataFrame) -> pl.DataFrame:
    """The per-seed test primary metrics of the final runs side by side: one row per (dataset, architecture,
    replicate, seed), one column per task (null where that run has no finite score on it); for the Pareto plots."""
    return (
        seed_scores(rows)
        .filter(pl.col("value").is_finite())
        .pivot(on="task", index=["dataset", "architecture", "replicate", "seed"], values="value", sort_columns=True)
        .sort("dataset", "architecture", "replicate", "seed")
    )
