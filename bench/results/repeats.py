"""Repeated runs: the trainability of each architecture's best configuration (MMoE paper, section 5.4, figure 6).

``bench run --repeats N`` (or ``repeats = N`` in the spec) retrains each unit's best configuration N more
times with seeds ``Study.repeat_seeds`` (1001..1000+N, distinct from the final seeds 1..seeds), trained as
one population (``bench.study.final``), test split read once per run. Each run is stored as stage ``repeat`` in
``results/repeat/<dataset>/<unit>/seed-<k>.parquet`` with the final stage's columns, and resumes the same way
(a stored run with the same configuration is never trained again).

The leaderboard reports them as a distribution, per dataset, task and architecture, of the test primary metric
(AUC, MSE or accuracy by task kind), with robust summaries only (one diverged run must not move them): median,
q25, q75 and IQR = q75 - q25, min and max. Against the best architecture's median they are judged on the error
scale e (e = M for a lower-is-better metric such as MSE; e = 1 - M for AUC or accuracy, whose best value is 1):

    B_k = min over architectures a of median_r e_a,r,k        (the median best on task k)
    within_a,k  = 1/N_a sum_r [ e_a,r,k <= (1 + TOLERANCE) B_k ]      ("within 10% of the median best")
    failures_a,k = sum_r [ e_a,r,k > FAILURE_RATIO B_k ]               (more than twice the median best's error)

and a histogram of the runs per task (the paper's figure 6), on a log axis when the runs span more than a decade,
with the failure threshold marked. A study without repeats renders exactly as before.

Where each replicate is its own data draw (``DecisionSpec.paired``: the MMoE paper's synthetic experiment), draws
can differ in difficulty far more than models do (30-fold on ``mmoe-synthetic``), and one pooled B_k would count
every run of a hard draw as a failure. There each run is judged against its own draw's median best,
B_k,r = min_a median_{runs of a in replicate r} e, and the histogram shows e / B_k,r (log axis, the failure ratio
and the 10% tolerance marked).
"""

from __future__ import annotations

import polars as pl
from tabulate import tabulate

from bench.spec.metrics import HIGHER_IS_BETTER, PRIMARY

from .markdown import escape, image

TOLERANCE = 0.10  # "within 10% of the median best": an error at most 10% above the best architecture's median
FAILURE_RATIO = 2.0  # a run with more than twice the best median's error failed to train


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


def higher_is_better() -> pl.Expr:
    """Per row, whether its ``metric`` is better higher (AUC, accuracy) or lower (MSE)."""
    return pl.col("metric").replace_strict(HIGHER_IS_BETTER, return_dtype=pl.Boolean)


def error(value: pl.Expr) -> pl.Expr:
    """The error scale e of a primary metric, and back (the map is its own inverse): the value itself when lower
    is better (MSE), 1 - value when higher is better (AUC, accuracy: 1 is perfect)."""
    return pl.when(higher_is_better()).then(1.0 - value).otherwise(value)


def judged_per_draw(runs: pl.DataFrame, paired: frozenset[str]) -> frozenset[str]:
    """The datasets whose repeated runs (``repeat_runs``) are judged per data draw: replicates that are data draws
    (``paired``), and more than one of them (with one draw its median best is the pooled one)."""
    return frozenset(d for d in paired if runs.filter(pl.col("dataset") == d)["replicate"].n_unique() > 1)


def judged_runs(rows: pl.DataFrame, per_draw: frozenset[str] = frozenset()) -> pl.DataFrame:
    """``repeat_runs`` with the error e, the median best it is judged against (``best_e``: B_k, or B_k,r for the
    datasets in ``per_draw``) and ``ratio`` = e / best_e."""
    runs = repeat_runs(rows).with_columns(e=error(pl.col("value")))
    # B_k: the best architecture's median over all its runs; B_k,r: over the runs of replicate r (its data draw)
    pooled = (runs.group_by("dataset", "task", "architecture").agg(pl.col("e").median())
              .group_by("dataset", "task").agg(pooled_e=pl.col("e").min()))
    drawn = (runs.group_by("dataset", "task", "replicate", "architecture").agg(pl.col("e").median())
             .group_by("dataset", "task", "replicate").agg(draw_e=pl.col("e").min()))
    return (
        runs.join(pooled, on=["dataset", "task"]).join(drawn, on=["dataset", "task", "replicate"])
        .with_columns(best_e=pl.when(pl.col("dataset").is_in(list(per_draw))).then(pl.col("draw_e"))
                      .otherwise(pl.col("pooled_e")))
        .with_columns(ratio=pl.col("e") / pl.col("best_e"))
        .drop("pooled_e", "draw_e")
    )


def repeat_summary(rows: pl.DataFrame, tolerance: float = TOLERANCE, failure: float = FAILURE_RATIO,
                   per_draw: frozenset[str] = frozenset()) -> pl.DataFrame:
    """Per (dataset, architecture, task): runs, median, q25, q75, iqr, min, max of the test primary metric;
    ``best_median`` (B_k as a metric value; for a ``per_draw`` dataset the lowest and highest B_k,r over its draws,
    ``best_median`` and ``best_high``), ``within`` (share of runs within ``tolerance`` of their median best on the
    error scale), ``failures`` (runs beyond ``failure`` times its error) and ``threshold`` (that limit as a metric
    value; null per draw, where each draw has its own)."""
    runs = judged_runs(rows, per_draw)
    sign = pl.when(higher_is_better()).then(1.0).otherwise(-1.0)  # +1 when higher is better: best median first
    return (
        runs
        .group_by("dataset", "architecture", "task", "kind", "metric")
        .agg(
            runs=pl.len().cast(pl.Int64),
            median=pl.col("value").median(),
            q25=pl.col("value").quantile(0.25, interpolation="linear"),
            q75=pl.col("value").quantile(0.75, interpolation="linear"),
            min=pl.col("value").min(),
            max=pl.col("value").max(),
            within=(pl.col("ratio") <= 1 + tolerance).mean(),
            failures=(pl.col("ratio") > failure).sum().cast(pl.Int64),
            best_e=pl.col("best_e").min(),
            best_high_e=pl.col("best_e").max(),
        )
        # back on the metric's own scale: B_k itself (per draw: its range) and the failure threshold
        .with_columns(iqr=pl.col("q75") - pl.col("q25"), best_median=error(pl.col("best_e")),
                      best_high=error(pl.col("best_high_e")),
                      threshold=pl.when(pl.col("dataset").is_in(list(per_draw))).then(None)
                      .otherwise(error(failure * pl.col("best_e"))))
        # best median first within a task; ties by name, so the order never depends on hashing
        .with_columns(oriented_median=sign * pl.col("median"))
        .sort(["dataset", "task", "oriented_median", "architecture"], descending=[False, False, True, False])
        .drop("oriented_median", "best_e", "best_high_e")
    )


# --- rendering -------------------------------------------------------------------------------------------
def section(rows: pl.DataFrame, label: str, plots: list[tuple[str, str]] | None = None,
            paired: frozenset[str] = frozenset()) -> list[str]:
    """Markdown lines of dataset ``label``'s repeated runs (none when it has none); ``paired``: the datasets whose
    replicates are data draws (``judged_per_draw``: each run judged against its own draw's median best)."""
    runs = repeat_runs(rows).filter(pl.col("dataset") == label)
    if not runs.height:
        return []
    draws = runs.select("replicate").n_unique()
    per_draw = judged_per_draw(runs, paired)
    summary = repeat_summary(rows, per_draw=per_draw).filter(pl.col("dataset") == label)
    n = summary["runs"].max()
    table = [
        [r["architecture"], escape(r["task"]), r["metric"], r["runs"], f"{r['median']:.4f}",
         f"{r['q25']:.4f}–{r['q75']:.4f}", f"{r['iqr']:.4f}", f"{r['failures']} ({r['failures'] / r['runs']:.0%})",
         f"{r['within']:.0%}", f"{r['min']:.4f}", f"{r['max']:.4f}"]
        for r in summary.iter_rows(named=True)
    ]
    over = f" over {draws} replicates (each its own search and, where the data allow, its own data draw)" \
        if draws > 1 else ""
    judged = _judged_text(summary, label in per_draw)
    lines = [
        f"### {escape(label)}: repeated runs",
        "",
        f"Trainability (MMoE paper, figure 6): up to {n} independent runs (seeds {runs['seed'].min()}–"
        f"{runs['seed'].max()}{over}) of each architecture's best configuration, test split evaluated once per run. "
        f"Robust summaries of the test primary metric per task: median, q25–q75 and IQR. {judged}",
        "",
        tabulate(table, headers=["architecture", "task", "metric", "runs", "median", "q25–q75", "IQR", "failures",
                                 f"within {TOLERANCE:.0%}", "min", "max"], tablefmt="github", disable_numparse=True),
        "",
    ]
    for caption, path in plots or []:
        lines.append(image(caption, path))
    if plots:
        lines.append("")
    return lines


def _judged_text(summary: pl.DataFrame, per_draw: bool) -> str:
    """What the failures and the within-10% share are judged against: the pooled median best and its threshold,
    or each run's own draw's median best (with the range of those bests)."""
    scale = "on the error scale (the MSE itself; 1 − AUC or 1 − accuracy)"
    within = f"within {TOLERANCE:.0%}: the share of runs whose error is at most {TOLERANCE:.0%} above it."
    if per_draw:
        bests = ", ".join(f"{escape(t)} {lo:.4f} to {hi:.4f}" for t, lo, hi in summary.select(
            "task", "best_median", "best_high").unique(maintain_order=True).rows())
        return (f"Each run is judged against its own data draw's median best (the best architecture's median over "
                f"that replicate's runs: {bests} across the draws) {scale}, because the draws differ in difficulty "
                f"more than the models: failures are runs with more than {FAILURE_RATIO:g}× their draw's median "
                f"best error; {within}")
    limits = ", ".join(f"{escape(t)} {m} {'<' if HIGHER_IS_BETTER[m] else '>'} {v:.4f}"
                       for t, m, v in summary.select("task", "metric", "threshold").unique(maintain_order=True).rows())
    bests = ", ".join(f"{escape(t)} {v:.4f}"
                      for t, v in summary.select("task", "best_median").unique(maintain_order=True).rows())
    return (f"Judged against the median best (the best architecture's median: {bests}) {scale}: failures are runs "
            f"with more than {FAILURE_RATIO:g}× the median best's error ({limits}); {within}")
