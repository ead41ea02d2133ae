"""The leaderboard's entire-space section: on data whose truth is known (``synthetic-funnel``), each architecture's
CVR over every test impression beside its usual score on the clicked rows (the sample selection bias question no
real log can answer: ``bench.spec.metrics.ENTIRE``, stored by final runs)."""

from __future__ import annotations

import math

import polars as pl
from tabulate import tabulate

from bench.spec.metrics import ENTIRE

from .comparisons import BASELINE
from .markdown import DASH, escape, interval
from .statistics import mean_ci

COLUMNS = {"auc": "AUC, observed rows", "auc_entire": "AUC, every impression", "calib_entire": "mean abs(p^ - p)"}


def entire_cells(rows: pl.DataFrame, label: str) -> pl.DataFrame:
    """Final test rows of dataset ``label`` for the tasks with entire-space metrics: (architecture, task, metric,
    seed, value) for the metrics of ``COLUMNS``; a single-task unit only for its own task."""
    final = rows.filter((pl.col("stage") == "final") & (pl.col("split") == "test") & (pl.col("dataset") == label)
                        & pl.col("draw").is_null()  # the run's own scores, not its test-set resamples
                        & pl.col("metric").is_in(list(COLUMNS)) & pl.col("value").is_finite())
    tasks = final.filter(pl.col("metric").is_in(list(ENTIRE)))["task"].unique().to_list()
    return (final.filter(pl.col("task").is_in(tasks)
                         & ((pl.col("architecture") != BASELINE) | (pl.col("target") == pl.col("task"))))
            .select("architecture", "task", "metric", "seed", "value"))


def cell(s) -> str:
    """A mean with its interval (none with one seed: no NaN reaches the page), a dash without values."""
    if s is None:
        return DASH
    lo, hi = (min(1.0, max(0.0, v)) if math.isfinite(v) else None for v in (s.lo, s.hi))  # all three in [0, 1]
    return interval(s.mean, lo, hi)


def entire_space_section(rows: pl.DataFrame, label: str) -> list[str]:
    """Per task with a known truth, a table of each architecture's mean over seeds [95% t interval] of its AUC on
    the observed rows, its AUC over every impression and its calibration against the true probability, best
    entire-space AUC first; nothing on data without truth."""
    cells = entire_cells(rows, label)
    if not cells.height:
        return []
    lines = []
    for task in sorted(cells["task"].unique().to_list()):
        part = cells.filter(pl.col("task") == task)
        table = []
        for arch in part["architecture"].unique().to_list():
            by_metric = {m: part.filter((pl.col("architecture") == arch) & (pl.col("metric") == m))["value"].to_list()
                         for m in COLUMNS}
            stats = {m: mean_ci(v) if v else None for m, v in by_metric.items()}
            table.append([escape(arch), *[cell(s) for s in stats.values()], max(len(v) for v in by_metric.values()),
                          stats["auc_entire"]])
        table.sort(key=lambda r: -(r[-1].mean if r[-1] is not None else float("-inf")))
        lines += [f"Entire impression space, task {escape(task)} (test split, final runs; mean over seeds [95% t "
                  "interval, clipped to [0, 1]], n seeds):", "",
                  tabulate([r[:-1] for r in table], headers=["architecture", *COLUMNS.values(), "n"],
                           tablefmt="github", disable_numparse=True), ""]
    lines += ["AUC, observed rows: the usual score, on the rows whose label the log records (for a conversion: the "
              "clicked impressions). AUC, every impression: against the outcome drawn for every test impression, the "
              "conversions unclicked impressions would have had included. mean abs(p^ - p): mean absolute difference "
              "between the predicted and the true probability the label was drawn from (lower is better).", ""]
    return lines
