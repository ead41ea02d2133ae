"""The leaderboard's tables: a short polars pipeline over the tidy rows of ``bench.results.store``, with the
statistics of ``bench.results.statistics`` (scipy) on every number.

Definitions (per dataset, on the final stage's test split, primary metric of each task's kind; n = the seeds
whose score is finite, a diverged or missing seed is never a number):

- cell: mean over seeds with a 95% Student t interval.
- MTL gain of architecture a on task k (PLE paper, Tang et al. 2020), oriented so that positive is better:
      gain_k = s_k (M_a,k - M_single,k),   s_k = +1 if higher is better, -1 otherwise
  with a 95% Welch interval and a two-sided Welch test against the tuned single-task baseline; the p-values of
  all (architecture, task) cells of a dataset are Holm-corrected together. A gain is significant when its
  adjusted p < ALPHA, and "n.s." otherwise.
- Delta_m (Maninis et al. 2019; Vandenhende et al. 2021), in percent:
      Delta_m = 100/T sum_k s_k (M_a,k - M_single,k) / M_single,k
  with a 95% interval (per-seed Delta_m for the architecture, delta method for the baseline).
- seesaw: one task's gain significantly positive and another's significantly negative.
- complete: an architecture with a finite score on every task of the dataset; only complete architectures
  get Delta_m and a rank (never a Delta_m over a subset of tasks), and only when the baseline is complete.
- rank within a dataset: architectures ordered by Delta_m; the *top group* is every architecture whose per-seed
  Delta_m is not significantly below the best one's (one-sided Welch tests against the best, Holm-corrected,
  adjusted p >= ALPHA): its members share rank 1, the others take their place in the order.
- across datasets: each architecture's rank of Delta_m per dataset (1 = best, ties averaged), their mean, a
  Friedman test and the Nemenyi critical difference (Demsar 2006), over the architectures complete on every
  dataset; the others are listed apart with the reason.

- Pareto front (per dataset with two or more tasks, architectures with a score on every task): architecture a is
  dominated when another b is at least as good on every task and better on one, in the oriented mean test metric
  s_k M_k; the non-dominated ones are on the front. Means only: the intervals are drawn on the Pareto plot.
- gates and experts (``bench.training.diagnostics`` rows of the final runs): utilisation of expert n by task k's
  gate at level l = the mean over seeds of its mean gate weight; per run, the share of the experts' ReLU units that
  are dead, the normalised gate entropy and the share of unused experts (means over levels, tasks and experts),
  then their mean over seeds with a 95% t interval clipped to [0, 1].

The same rows and metadata always give the same frames. Repeated runs (stage "repeat") have their own tables in
``bench.results.repeats``.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from bench.spec.metrics import DIAGNOSTIC, HIGHER_IS_BETTER, PRIMARY

from . import statistics

BASELINE = "single_task"
# per-run diagnostics summarised on the leaderboard, in its column order: metric -> what the column says
DIAGNOSTIC_MEASURES = {"expert_dead_units": "dead units", "gate_entropy_norm": "normalised gate entropy",
                       "gate_unused": "unused experts"}
ALPHA = 0.05  # significance level of every test on the leaderboard
CONFIDENCE = 0.95  # level of every interval


def _nan_to_null(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


# --- per seed and per cell -------------------------------------------------------------------------------
def seed_scores(rows: pl.DataFrame, stage: str = "final") -> pl.DataFrame:
    """The test primary metric of every run of ``stage``: one row per (dataset, architecture, task, replicate,
    seed), non-finite values kept (they are counted as failed seeds, never averaged). Seeds repeat across
    replicates: a run is (replicate, seed), replicate null (rows before replicates) read as 1."""
    return (
        rows.filter((pl.col("stage") == stage) & (pl.col("split") == "test"))
        # keep each task's primary metric (auc, mse or accuracy by task kind)
        .filter(pl.col("metric") == pl.col("kind").replace_strict(PRIMARY, default=None))
        .with_columns(pl.col("replicate").fill_null(1))
        .select("dataset", "architecture", "task", "kind", "metric", "replicate", "seed", "value")
        .sort("dataset", "architecture", "task", "replicate", "seed")
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


def task_summary(rows: pl.DataFrame) -> pl.DataFrame:
    """Per (dataset, architecture, task): n finite seeds (and n_failed non-finite ones), mean, std and the 95%
    t interval [lo, hi]; ``values`` and ``seeds`` hold the finite per-seed scores for the tests."""
    cells = (
        seed_scores(rows)
        .group_by("dataset", "architecture", "task", "kind", "metric")
        .agg(
            values=pl.col("value").filter(pl.col("value").is_finite()),  # sorted by seed (seed_scores)
            seeds=pl.concat_list("replicate", "seed").filter(pl.col("value").is_finite()),  # runs: [r, seed]
            n_failed=(~pl.col("value").is_finite()).sum().cast(pl.Int64),
        )
        .sort("dataset", "architecture", "task")
    )
    return with_mean_ci(cells, "values")


def with_gains(tasks: pl.DataFrame) -> pl.DataFrame:
    """Adds, against the single-task baseline of the same (dataset, task): the oriented gain with its Welch
    interval [gain_lo, gain_hi] and two-sided p, p_holm (Holm over the dataset's cells), and ``sig`` ("+", "-"
    or "n.s."). Baseline rows and cells without a baseline get nulls."""
    base = tasks.filter(pl.col("architecture") == BASELINE).select("dataset", "task", base_values="values")
    joined = tasks.join(base, on=["dataset", "task"], how="left")
    out = []
    for r in joined.iter_rows(named=True):
        g = {"gain": None, "gain_lo": None, "gain_hi": None, "p": None}
        if r["architecture"] != BASELINE and r["base_values"] is not None and r["n"] > 0:
            s = 1.0 if HIGHER_IS_BETTER[r["metric"]] else -1.0  # s_k: gains are positive when better
            w = statistics.welch(r["values"], r["base_values"], CONFIDENCE)
            lo, hi = sorted((s * w.lo, s * w.hi))
            g = {"gain": _nan_to_null(s * w.diff), "gain_lo": _nan_to_null(lo), "gain_hi": _nan_to_null(hi),
                 "p": _nan_to_null(w.p)}
        out.append(g)
    gains = pl.DataFrame(out, schema={"gain": pl.Float64, "gain_lo": pl.Float64, "gain_hi": pl.Float64,
                                      "p": pl.Float64})
    frame = pl.concat([joined.drop("base_values"), gains], how="horizontal")
    # Holm over all tested cells of a dataset
    adjusted: list[float | None] = [None] * frame.height
    for _, idx in frame.with_row_index("i").group_by("dataset", maintain_order=True).agg("i").iter_rows():
        ps = [frame["p"][i] for i in idx]
        holm = statistics.holm([math.nan if p is None else p for p in ps])
        for i, p in zip(idx, holm, strict=True):
            adjusted[i] = _nan_to_null(p)
    frame = frame.with_columns(p_holm=pl.Series(adjusted, dtype=pl.Float64))
    return frame.with_columns(
        sig=pl.when(pl.col("p_holm") < ALPHA).then(pl.when(pl.col("gain") > 0).then(pl.lit("+")).otherwise(pl.lit("-")))
        .when(pl.col("p_holm").is_not_null()).then(pl.lit("n.s."))
        .otherwise(None)
    )


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


def _delta_m(arch: pl.DataFrame, base: pl.DataFrame, tasks: list[str]) -> statistics.DeltaM:
    """Delta_m of one architecture on one dataset; per-task values aligned by seed (NaN where a seed is
    missing, so that a seed counts only where it has every task)."""
    seeds = sorted({tuple(s) for v in arch["seeds"].to_list() for s in v})  # runs (replicate, seed)
    by_task = {r["task"]: dict(zip(map(tuple, r["seeds"]), r["values"], strict=True))
               for r in arch.iter_rows(named=True)}
    a = [[by_task[t].get(s, math.nan) for s in seeds] for t in tasks]
    b = [base.filter(pl.col("task") == t)["values"][0].to_list() for t in tasks]
    hib = [HIGHER_IS_BETTER[arch.filter(pl.col("task") == t)["metric"][0]] for t in tasks]
    return statistics.delta_m(a, b, hib, CONFIDENCE)


def arch_summary(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per (dataset, architecture): completeness, Delta_m with its interval, seesaw, top group and
    rank, parameters, trials and time; ordered by rank."""
    cells = with_gains(task_summary(rows))
    out = []
    for (dataset,), d in cells.group_by("dataset", maintain_order=True):
        tasks = sorted(d["task"].unique().to_list())
        base = d.filter(pl.col("architecture") == BASELINE)
        groups = {a: g for (a,), g in d.group_by("architecture", maintain_order=True)}
        observed = {a: set(g.filter(pl.col("n") > 0)["task"]) for a, g in groups.items()}  # tasks with a score
        complete = {a: obs == set(tasks) for a, obs in observed.items()}
        base_ok = complete.get(BASELINE, False)
        dms = {a: _delta_m(g, base, tasks) for a, g in groups.items() if complete[a] and base_ok}
        per_seed = {a: dm.per_seed for a, dm in dms.items() if dm.per_seed}
        top = statistics.top_group(per_seed, ALPHA) if per_seed else {}
        order = sorted(dms, key=lambda a: (-_finite_or(dms[a].value, -math.inf), a))
        for a, g in groups.items():
            dm = dms.get(a)
            gains = g.filter(pl.col("p_holm").is_not_null())
            t = top.get(a)
            rank = None
            if dm is not None and not math.isnan(dm.value):
                rank = 1 if t is not None and t.in_top else order.index(a) + 1
            out.append({
                "dataset": dataset, "architecture": a, "n_tasks": len(tasks), "complete": complete[a],
                "missing": ", ".join(sorted(set(tasks) - observed[a])),
                "delta_m": _nan_to_null(dm.value) if dm else None, "dm_lo": _nan_to_null(dm.lo) if dm else None,
                "dm_hi": _nan_to_null(dm.hi) if dm else None,
                "seesaw": statistics.seesaw(gains["gain"].to_list(), gains["p_holm"].to_list(), ALPHA),
                "top": bool(t.in_top) if t is not None else None,
                "p_top": _nan_to_null(t.p_adjusted) if t is not None else None,
                "rank": rank,
            })
    schema = {"dataset": pl.String, "architecture": pl.String, "n_tasks": pl.Int64, "complete": pl.Boolean,
              "missing": pl.String, "delta_m": pl.Float64, "dm_lo": pl.Float64, "dm_hi": pl.Float64,
              "seesaw": pl.Boolean, "top": pl.Boolean, "p_top": pl.Float64, "rank": pl.Int64}
    return (
        pl.DataFrame(out, schema=schema)
        .join(params_summary(rows), on=["dataset", "architecture"], how="left")
        .join(trial_summary(rows), on=["dataset", "architecture"], how="left")
        .sort(["dataset", "rank", "delta_m", "architecture"], descending=[False, False, True, False],
              nulls_last=True)
    )


def _finite_or(value: float | None, default: float) -> float:
    return value if value is not None and math.isfinite(value) else default


# --- across datasets -------------------------------------------------------------------------------------
def overall_ranking(archs: pl.DataFrame, expected: list[str] | None = None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Mean rank of Delta_m over datasets (1 = best, ties averaged) for the architectures with a Delta_m on
    every dataset, best first, with their mean Delta_m; and the Friedman test and Nemenyi critical difference
    over them (``{"friedman": Friedman | None, "cd": float | None, "excluded": {arch: reason}}``). ``expected``:
    the study's architectures, so that one with no results at all is listed too."""
    datasets = archs["dataset"].unique().sort().to_list()
    scores: dict[str, list[float]] = {}
    excluded: dict[str, str] = {}
    names = list(dict.fromkeys([*(expected or []), *archs["architecture"].unique().sort().to_list()]))
    for a in names:
        g = archs.filter(pl.col("architecture") == a)
        by_ds = {r["dataset"]: r["delta_m"] for r in g.iter_rows(named=True)}
        lacking = [d for d in datasets if by_ds.get(d) is None]
        if lacking:
            excluded[a] = "no Δm on " + ", ".join(lacking)
        else:
            scores[a] = [by_ds[d] for d in datasets]
    schema = {"architecture": pl.String, "mean_rank": pl.Float64, "mean_delta_m": pl.Float64, "datasets": pl.Int64}
    if not scores:
        return pl.DataFrame(schema=schema), {"friedman": None, "cd": None, "excluded": excluded}
    fr = statistics.friedman(scores, higher_is_better=True)
    table = pl.DataFrame(
        [{"architecture": a, "mean_rank": fr.mean_ranks[a], "mean_delta_m": sum(v) / len(v), "datasets": len(v)}
         for a, v in scores.items()], schema=schema,
    ).sort(["mean_rank", "mean_delta_m", "architecture"], descending=[False, True, False])
    cd = statistics.nemenyi_cd(len(scores), len(datasets), ALPHA) if len(scores) >= 2 and datasets else None
    return table, {"friedman": fr, "cd": cd, "excluded": excluded}


def correlation_summary(rows: pl.DataFrame, meta: dict[str, Any]) -> pl.DataFrame:
    """Performance against task correlation (MMoE paper, figure 4): for datasets with a correlation option
    ``p``, the test primary metric averaged over tasks per seed, then its mean and 95% t interval over seeds
    (final seeds and repeated runs together)."""
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
        .group_by("architecture", "p", "metric")
        .agg(pl.col("value"))
        .sort("architecture", "p")
    )
    return with_mean_ci(per_seed, "value").select(list(schema))


def scarcity_summary(cells: pl.DataFrame, meta: dict[str, Any]) -> pl.DataFrame:
    """MTL gain of the scarce task against the fraction of its training labels kept (the label-scarcity
    experiment): per dataset entry with a ``label_fraction``, the gain cells (``with_gains``) of its scarce task,
    with the entry's group (the data set and options it shares with the other fractions) and fraction."""
    schema = {"group": pl.String, "task": pl.String, "fraction": pl.Float64, "dataset": pl.String,
              "architecture": pl.String, "metric": pl.String, "n": pl.Int64, "gain": pl.Float64,
              "gain_lo": pl.Float64, "gain_hi": pl.Float64, "p_holm": pl.Float64, "sig": pl.String}
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
    """The per-seed test primary metrics of the final runs side by side: one row per (dataset, architecture, seed),
    one column per task (null where that seed has no finite score on it); for the Pareto plots."""
    return (
        seed_scores(rows)
        .filter(pl.col("value").is_finite())
        .pivot(on="task", index=["dataset", "architecture", "replicate", "seed"], values="value", sort_columns=True)
        .sort("dataset", "architecture", "replicate", "seed")
    )


# --- gates and experts ------------------------------------------------------------------------------------
def diagnostic_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """The gate and expert diagnostics of the final runs."""
    return rows.filter((pl.col("stage") == "final") & (pl.col("kind") == DIAGNOSTIC) & pl.col("value").is_finite())


def gate_utilisation(rows: pl.DataFrame) -> pl.DataFrame:
    """Per (dataset, architecture, level, task, expert): ``weight``, the mean over seeds of the mean gate weight
    task k's gate gives expert n, and ``n`` seeds (only the experts that gate weighs)."""
    return (
        diagnostic_rows(rows)
        .filter(pl.col("metric") == "gate_weight")
        .group_by("dataset", "architecture", "level", "task", "expert")
        .agg(weight=pl.col("value").mean(), n=pl.len().cast(pl.Int64))
        .sort("dataset", "architecture", "level", "task", "expert")
    )


def diagnostic_summary(rows: pl.DataFrame) -> pl.DataFrame:
    """Per (dataset, architecture, metric) of ``DIAGNOSTIC_MEASURES``: n seeds, mean, std and 95% t interval over
    seeds of each run's mean over levels and tasks (entropy, unused experts) or levels and experts (dead units);
    the interval clipped to [0, 1], where every one of them lies."""
    per_seed = (
        diagnostic_rows(rows)
        .filter(pl.col("metric").is_in(list(DIAGNOSTIC_MEASURES)))
        .with_columns(pl.col("replicate").fill_null(1))
        .group_by("dataset", "architecture", "metric", "replicate", "seed")
        .agg(pl.col("value").mean())  # one number per run
        .sort("dataset", "architecture", "metric", "replicate", "seed")
        .group_by("dataset", "architecture", "metric", maintain_order=True)
        .agg(values=pl.col("value"))
    )
    # every measure is a share in [0, 1]: the t interval (wide over few seeds) is clipped to it
    return with_mean_ci(per_seed, "values").drop("values").with_columns(pl.col("lo").clip(lower_bound=0.0),
                                                                        pl.col("hi").clip(upper_bound=1.0))
