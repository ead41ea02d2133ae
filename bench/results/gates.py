"""The leaderboard's gates-and-experts tables, from the ``bench.training.diagnostics`` rows of the final runs
(definitions as in ``bench.results.tables``, docs/statistics.md):

- utilisation of expert n by task k's gate at level l = the mean over seeds of its mean gate weight;
- per run, the share of the experts' ReLU units that are dead, the normalised gate entropy and the share of unused
  experts (means over levels, tasks and experts), then their mean over seeds with a 95% t interval clipped to
  [0, 1].

The same rows always give the same frames.
"""

from __future__ import annotations

import polars as pl

from bench.spec.metrics import DIAGNOSTIC

from .tables import with_mean_ci

# per-run diagnostics summarised on the leaderboard, in its column order: metric -> what the column says
DIAGNOSTIC_MEASURES = {"expert_dead_units": "dead units", "gate_entropy_norm": "normalised gate entropy",
                       "gate_unused": "unused experts"}


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
