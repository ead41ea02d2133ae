"""The leaderboard's entire-space section: on data whose truth is known (``synthetic-funnel``), each architecture's
CVR over every test impression beside its usual score on the clicked rows (the sample selection bias question no
real log can answer: ``bench.spec.metrics.ENTIRE``, stored by final runs), and each architecture's entire-space AUC
decided against the single-task baseline's as a gain is (``bench.results.tables.with_gains``: the same δ, t test
and Holm correction; the test-set variance from the runs' resamples of every impression, metric ``auc_entire`` with
``draw`` set, common to every model)."""

from __future__ import annotations

import math

import polars as pl
from tabulate import tabulate

from bench.spec.decision import DecisionSpec
from bench.spec.metrics import ENTIRE

from .comparisons import BASELINE
from .markdown import DASH, escape, interval
from .statistics import mean_ci
from .tables import task_summary, with_gains

COLUMNS = {"auc": "AUC, observed rows", "auc_entire": "AUC, every impression", "calib_entire": "mean abs(p^ - p)"}
ENTIRE_GAIN = "gain vs single-task, every impression"


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


def entire_decisions(rows: pl.DataFrame, label: str, decision: DecisionSpec,
                     tasks: set[str] | None = None) -> dict[tuple[str, str], str]:
    """(architecture, task) -> "gain [lo, hi] decision" of its entire-space AUC against the single-task
    baseline's, decided as the dataset's table decides a gain (``tables.with_gains``: d = mean_a - mean_base, the
    decision's t interval with AUC's δ, Holm over the decided cells; replicates paired where the dataset's draws
    are, the test-set term where every run stored its resamples; rows stored before them: seeds only, as the
    page's note says). ``tasks``: those to decide, ``partial_tasks`` when not given."""
    tasks = partial_tasks(rows, label) if tasks is None else tasks
    cells = (task_summary(rows.filter(pl.col("dataset") == label), metric="auc_entire")
             .filter(pl.col("task").is_in(sorted(tasks)))
             .with_columns(metric=pl.lit("auc")))  # an AUC, judged with AUC's δ and orientation
    gains = with_gains(cells, decision).filter(pl.col("gain").is_not_null())
    return {(r["architecture"], r["task"]): f"{interval(r['gain'], r['gain_lo'], r['gain_hi'], signed=True)} "
            f"{r['decision']}" for r in gains.iter_rows(named=True)}


def partial_tasks(rows: pl.DataFrame, label: str) -> set[str]:
    """The tasks of dataset ``label`` whose test labels the log records on fewer rows than every impression (a
    funnel's CVR): only there does the entire-space AUC differ from the usual one, which the dataset's table
    already decides (deciding it again here, in another Holm family, could label one comparison twice)."""
    test = rows.filter((pl.col("stage") == "final") & (pl.col("split") == "test") & (pl.col("dataset") == label)
                       & pl.col("draw").is_null() & pl.col("metric").is_in(["auc", "auc_entire"]))
    seen = test.group_by("task", "metric").agg(pl.col("observed").max())
    by = {(t, m): o for t, m, o in seen.iter_rows()}
    return {t for (t, m), o in by.items() if m == "auc" and o is not None
            and by.get((t, "auc_entire")) is not None and o < by[(t, "auc_entire")]}


def entire_space_section(rows: pl.DataFrame, label: str, decision: DecisionSpec | None = None) -> list[str]:
    """Per task with a known truth, a table of each architecture's mean over seeds [95% t interval] of its AUC on
    the observed rows, its AUC over every impression and its calibration against the true probability, and its
    entire-space AUC gain over single-task with its decision (``entire_decisions``), best entire-space AUC first;
    nothing on data without truth."""
    cells = entire_cells(rows, label)
    if not cells.height:
        return []
    decision = decision or DecisionSpec()
    partial = partial_tasks(rows, label)
    decided = entire_decisions(rows, label, decision, partial)
    lines = []
    for task in sorted(cells["task"].unique().to_list()):
        part = cells.filter(pl.col("task") == task)
        decides = task in partial
        table = []
        for arch in part["architecture"].unique().to_list():
            by_metric = {m: part.filter((pl.col("architecture") == arch) & (pl.col("metric") == m))["value"].to_list()
                         for m in COLUMNS}
            stats = {m: mean_ci(v) if v else None for m, v in by_metric.items()}
            versus = ("0 (baseline)" if arch == BASELINE else decided.get((arch, task), DASH)) if decides else DASH
            table.append([escape(arch), *[cell(s) for s in stats.values()], versus,
                          max(len(v) for v in by_metric.values()), stats["auc_entire"]])
        table.sort(key=lambda r: -(r[-1].mean if r[-1] is not None else float("-inf")))
        lines += [f"Entire impression space, task {escape(task)} (test split, final runs; mean over seeds [95% t "
                  "interval, clipped to [0, 1]], n seeds):", "",
                  tabulate([r[:-1] for r in table], headers=["architecture", *COLUMNS.values(), ENTIRE_GAIN, "n"],
                           tablefmt="github", disable_numparse=True), ""]
    lines += ["AUC, observed rows: the usual score, on the rows whose label the log records (for a conversion: the "
              "clicked impressions). AUC, every impression: against the outcome drawn for every test impression, the "
              "conversions unclicked impressions would have had included. mean abs(p^ - p): mean absolute difference "
              "between the predicted and the true probability the label was drawn from (lower is better). "
              f"{ENTIRE_GAIN}: the difference of the AUCs over every impression, with the 95% t interval and the "
              "decision of the same test as a gain's (δ, Holm over the dataset's entire-space comparisons; the "
              "test-set variance "
              f"from resamples of every impression{_test_error_note(rows, label)}); only for a task the log records "
              "on some impressions (a dash for one observed on every impression: its AUC is the usual one, decided "
              "in the table above).", ""]
    return lines


def _test_error_note(rows: pl.DataFrame, label: str) -> str:
    """What the entire-space decisions' variance holds, for the legend: rows stored before the entire-space
    resamples have seeds (replicates) only."""
    stored = rows.filter((pl.col("dataset") == label) & (pl.col("metric") == "auc_entire")
                         & pl.col("draw").is_not_null()).height
    return "" if stored else "; none stored for these runs, so the test-set error is not included"
