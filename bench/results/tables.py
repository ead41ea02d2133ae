"""The leaderboard's tables: a short polars pipeline over the tidy rows of ``bench.results.store``.

Definitions (per dataset, on the final stage's test split, primary metric of each task's kind):

- metric: mean ± standard deviation over the final seeds.
- MTL gain of architecture a on task k (PLE paper, Tang et al. 2020):
      gain_k = s_k (M_a,k - M_single,k),   s_k = +1 if higher is better, -1 otherwise
  with the standard error of a difference of independent means as its uncertainty:
      se_k = sqrt(sd_a,k^2 / n_a,k + sd_single,k^2 / n_single,k)
- Delta_m (Maninis et al. 2019; Vandenhende et al. 2021), in percent:
      Delta_m = 100/T sum_k s_k (M_a,k - M_single,k) / M_single,k
- seesaw: some gains are positive and others negative (the PLE paper's seesaw phenomenon).

Architectures are ranked by Delta_m within a dataset (single-task: 0 by definition); the overall ranking is
the mean of those ranks over datasets. The same rows and metadata always give byte-identical markdown.
Repeated runs (stage "repeat") have their own tables in ``bench.results.repeats``.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from bench.spec.metrics import HIGHER_IS_BETTER, PRIMARY

BASELINE = "single_task"


# --- the pipeline ----------------------------------------------------------------------------------------
def task_summary(rows: pl.DataFrame) -> pl.DataFrame:
    """Per (dataset, architecture, task): mean, std and count over seeds of the test primary metric."""
    return (
        rows.filter((pl.col("stage") == "final") & (pl.col("split") == "test"))
        # keep each task's primary metric (auc, mse or accuracy by task kind)
        .filter(pl.col("metric") == pl.col("kind").replace_strict(PRIMARY, default=None))
        .filter(pl.col("value").is_finite())  # a NaN or infinity never reaches the leaderboard
        .group_by("dataset", "architecture", "task", "kind", "metric")
        .agg(mean=pl.col("value").mean(), std=pl.col("value").std(), n=pl.len().cast(pl.Int64))
        .sort("dataset", "architecture", "task")
    )


def with_gains(tasks: pl.DataFrame) -> pl.DataFrame:
    """Adds gain, gain_se and rel (the relative improvement of Delta_m) against the single-task baseline."""
    base = tasks.filter(pl.col("architecture") == BASELINE).select(
        "dataset", "task", base_mean="mean", base_std="std", base_n="n"
    )
    # s_k: +1 when higher is better, -1 when lower is better
    sign = pl.col("metric").replace_strict({m: 1.0 if h else -1.0 for m, h in HIGHER_IS_BETTER.items()})
    is_base = pl.col("architecture") == BASELINE
    return (
        tasks.join(base, on=["dataset", "task"], how="left")
        .with_columns(
            gain=pl.when(is_base).then(None).otherwise(sign * (pl.col("mean") - pl.col("base_mean"))),
            gain_se=pl.when(is_base).then(None).otherwise(
                (pl.col("std") ** 2 / pl.col("n") + pl.col("base_std") ** 2 / pl.col("base_n")).sqrt()
            ),
            rel=pl.when(is_base).then(0.0).otherwise(
                sign * (pl.col("mean") - pl.col("base_mean")) / pl.col("base_mean")
            ),
        )
        .drop("base_mean", "base_std", "base_n")
    )


def trial_summary(rows: pl.DataFrame) -> pl.DataFrame:
    """Per (dataset, architecture): search trials complete / pruned / failed and mean seconds per trial
    (single-task sums its per-task units)."""
    trials = rows.filter((pl.col("stage") == "search") & (pl.col("metric") == "objective"))
    return (
        trials.group_by("dataset", "architecture")
        .agg(
            complete=(pl.col("status") == "complete").sum().cast(pl.Int64),
            pruned=(pl.col("status") == "pruned").sum().cast(pl.Int64),
            failed=(pl.col("status") == "failed").sum().cast(pl.Int64),
            seconds_per_trial=pl.col("seconds").mean(),
        )
        .sort("dataset", "architecture")
    )


def params_summary(rows: pl.DataFrame) -> pl.DataFrame:
    """Parameter count of the final models (single-task: the sum of its per-task models)."""
    return (
        rows.filter(pl.col("stage") == "final")
        .group_by("dataset", "architecture", "target")
        .agg(pl.col("n_params").first())
        .group_by("dataset", "architecture")
        .agg(n_params=pl.col("n_params").sum())
    )


def arch_summary(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per (dataset, architecture): Delta_m, seesaw, parameters, trials and time; ranked by Delta_m."""
    gains = with_gains(task_summary(rows))
    per_arch = gains.group_by("dataset", "architecture").agg(
        delta_m=pl.col("rel").mean() * 100.0,  # Delta_m in percent
        seesaw=(pl.col("gain") > 0).any() & (pl.col("gain") < 0).any(),
        n_tasks=pl.len().cast(pl.Int64),
    )
    return (
        per_arch.join(params_summary(rows), on=["dataset", "architecture"], how="left")
        .join(trial_summary(rows), on=["dataset", "architecture"], how="left")
        # rank 1 = highest Delta_m; ties share the best rank; no baseline -> no rank
        .with_columns(rank=pl.col("delta_m").rank("min", descending=True).over("dataset").cast(pl.Int64))
        .sort("dataset", "rank", "architecture", nulls_last=True)
    )


def overall_ranking(archs: pl.DataFrame) -> pl.DataFrame:
    """Mean rank over datasets (and mean Delta_m), best first."""
    return (
        archs.group_by("architecture")
        .agg(mean_rank=pl.col("rank").mean(), mean_delta_m=pl.col("delta_m").mean(), datasets=pl.len())
        .sort("mean_rank", pl.col("mean_delta_m"), "architecture", descending=[False, True, False], nulls_last=True)
    )


def correlation_summary(rows: pl.DataFrame, meta: dict[str, Any]) -> pl.DataFrame:
    """Performance against task correlation (MMoE paper, figure 4): for datasets with a correlation option
    ``p``, the test primary metric averaged over tasks per seed, then mean and std over seeds."""
    ps = {label: d["options"]["p"] for label, d in meta.get("datasets", {}).items() if "p" in d.get("options", {})}
    if len(set(ps.values())) < 2:
        return pl.DataFrame(schema={"architecture": pl.String, "p": pl.Float64, "mean": pl.Float64,
                                    "std": pl.Float64, "metric": pl.String})
    return (
        rows.filter((pl.col("stage") == "final") & (pl.col("split") == "test") & pl.col("dataset").is_in(list(ps)))
        .filter(pl.col("metric") == pl.col("kind").replace_strict(PRIMARY, default=None))
        .filter(pl.col("value").is_finite())
        .with_columns(p=pl.col("dataset").replace_strict(ps, return_dtype=pl.Float64))
        .group_by("architecture", "p", "seed", "metric")
        .agg(pl.col("value").mean())  # mean over tasks, per seed
        .group_by("architecture", "p", "metric")
        .agg(mean=pl.col("value").mean(), std=pl.col("value").std())
        .select("architecture", "p", "mean", "std", "metric")
        .sort("architecture", "p")
    )
