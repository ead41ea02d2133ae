"""Repeated runs: the trainability of each architecture's best configuration (MMoE paper, section 5.4, figure 6).

``bench run --repeats N`` (or ``repeats = N`` in the spec) retrains each unit's best configuration N more
times with seeds ``Study.repeat_seeds`` (1001..1000+N, distinct from the final seeds 1..seeds), trained as
one population (``bench.study.final``), test split read once per run. Each run is stored as stage ``repeat`` in
``results/repeat/<dataset>/<unit>/seed-<k>.parquet`` with the final stage's columns, and resumes the same way
(a stored run with the same configuration is never trained again).

The leaderboard reports them as a distribution, per dataset, task and architecture, of the test primary metric
(AUC, MSE or accuracy by task kind): median, interquartile range IQR = q75 - q25, min, max, and the fraction of
runs within ``TOLERANCE`` (relative) of the best run of any architecture on that task,

    within_a,k = 1/N_a sum_r [ s_k (M_r - B_k) >= -TOLERANCE |B_k| ],   B_k = the best M over all repeat runs

(s_k = +1 when higher is better, -1 otherwise), and a histogram of the runs per task (the paper's figure 6). A
study without repeats renders exactly as before.
"""

from __future__ import annotations

import polars as pl
from tabulate import tabulate

from bench.spec.metrics import HIGHER_IS_BETTER, PRIMARY

from .markdown import escape, image

TOLERANCE = 0.01  # "within 1% of the best"


# --- the pipeline ----------------------------------------------------------------------------------------
def repeat_runs(rows: pl.DataFrame) -> pl.DataFrame:
    """The repeat runs' test primary metric, one row per (dataset, architecture, task, seed)."""
    return (
        rows.filter((pl.col("stage") == "repeat") & (pl.col("split") == "test") & pl.col("draw").is_null())
        .filter(pl.col("metric") == pl.col("kind").replace_strict(PRIMARY, default=None))
        .filter(pl.col("value").is_finite())  # a diverged run is counted in no statistic
        .with_columns(pl.col("replicate").fill_null(1))  # a run is (replicate, seed)
        .select("dataset", "architecture", "task", "kind", "metric", "replicate", "seed", "value")
        .sort("dataset", "task", "architecture", "replicate", "seed")
    )


def repeat_summary(rows: pl.DataFrame, tolerance: float = TOLERANCE) -> pl.DataFrame:
    """Per (dataset, architecture, task): runs, median, q25, q75, iqr, min, max of the test primary metric, and
    ``within``, the fraction of runs within ``tolerance`` of the best run of any architecture on that task."""
    runs = repeat_runs(rows)
    # s_k: +1 when higher is better, -1 when lower is better
    sign = pl.col("metric").replace_strict({m: 1.0 if h else -1.0 for m, h in HIGHER_IS_BETTER.items()})
    oriented = sign * pl.col("value")
    best = (sign * oriented.max().over("dataset", "task")).alias("best")  # B_k, in the metric's own units
    return (
        runs.with_columns(best)
        .with_columns(within=(oriented - sign * pl.col("best")) >= -tolerance * pl.col("best").abs())
        .group_by("dataset", "architecture", "task", "kind", "metric")
        .agg(
            runs=pl.len().cast(pl.Int64),
            median=pl.col("value").median(),
            q25=pl.col("value").quantile(0.25, interpolation="linear"),
            q75=pl.col("value").quantile(0.75, interpolation="linear"),
            min=pl.col("value").min(),
            max=pl.col("value").max(),
            within=pl.col("within").mean(),
            oriented_median=(sign * pl.col("value")).median(),
        )
        .with_columns(iqr=pl.col("q75") - pl.col("q25"))
        # best median first within a task; ties by name, so the order never depends on hashing
        .sort(["dataset", "task", "oriented_median", "architecture"], descending=[False, False, True, False])
        .drop("oriented_median")
    )


# --- rendering -------------------------------------------------------------------------------------------
def section(rows: pl.DataFrame, label: str, plots: list[tuple[str, str]] | None = None) -> list[str]:
    """Markdown lines of dataset ``label``'s repeated runs (none when it has none)."""
    summary = repeat_summary(rows).filter(pl.col("dataset") == label)
    if not summary.height:
        return []
    seeds = repeat_runs(rows).filter(pl.col("dataset") == label)["seed"]
    n = summary["runs"].max()
    table = [
        [r["architecture"], escape(r["task"]), r["metric"], r["runs"], f"{r['median']:.4f}", f"{r['iqr']:.4f}",
         f"{r['min']:.4f}", f"{r['max']:.4f}", f"{r['within']:.0%}"]
        for r in summary.iter_rows(named=True)
    ]
    lines = [
        f"### {escape(label)}: repeated runs",
        "",
        f"Trainability (MMoE paper, figure 6): up to {n} independent runs (seeds {seeds.min()}–{seeds.max()}) of "
        f"each architecture's best configuration, test split evaluated once per run. Distribution of the test "
        f"primary metric per task; within {TOLERANCE:.0%}: fraction of runs within {TOLERANCE:.0%} of the best run "
        "of any architecture on that task (in the metric's better direction).",
        "",
        tabulate(table, headers=["architecture", "task", "metric", "runs", "median", "IQR", "min", "max",
                                 f"within {TOLERANCE:.0%}"], tablefmt="github", disable_numparse=True),
        "",
    ]
    for caption, path in plots or []:
        lines.append(image(caption, path))
    if plots:
        lines.append("")
    return lines
