"""The leaderboard's plots (PNG, matplotlib's Agg backend): per-task metrics, MTL gains, the per-task Pareto
view, the gates' utilisation of the experts, performance against task correlation, and histograms of repeated
runs. Files carry no version string, so they change only when
the results do. Which plots a page gets, their files and captions are here; how each kind is drawn is
``bench.results.figures``'."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from bench.paths import component
from bench.spec.decision import decision_from_meta
from bench.spec.study import unit_text

from .convergence import best_so_far
from .figures import META_PNG, bars, cd_diagram, direction, gate_heatmap, log_scale, metric_of, pareto_plot
from .gates import gate_utilisation
from .repeats import FAILURE_RATIO, TOLERANCE, judged_per_draw, judged_runs, repeat_runs, repeat_summary
from .tables import (
    BASELINE,
    arch_summary,
    correlation_summary,
    overall_ranking,
    pareto_front,
    pareto_seeds,
    scarcity_summary,
    task_summary,
    with_gains,
)

# dataset label (or "" / "overall" / "repeats:<label>") -> [(caption, path relative to the leaderboard directory)]
Links = dict[str, list[tuple[str, str]]]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    # names from specs and data (task names, labels) are text, never mathtext: "$x^$" in a task name would stop
    # savefig with a ParseException, "$\\alpha$" would show a Greek letter
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def leaderboard_plots(rows: pl.DataFrame, meta: dict[str, Any], out_dir: Path, prefix: str) -> Links:
    """PNG plots next to the markdown, per dataset: the test metric and the MTL gain per task, bars in rank
    order with their 95% intervals and the per-seed points; with two or more tasks, the Pareto view of the
    per-task metrics (pairwise for more than two); with gated architectures, the heatmap of the gates' utilisation
    of the experts; several datasets: the critical-difference diagram;
    several correlations: performance against task correlation; repeated runs: histograms. Returns captions and
    paths relative to ``out_dir``."""
    plt = _pyplot()
    decision = decision_from_meta(meta)  # the page's decisions and intervals (pairing of replicates included)
    cells = with_gains(task_summary(rows), decision)
    archs = arch_summary(rows, decision)
    plot_dir = out_dir / prefix
    plot_dir.mkdir(parents=True, exist_ok=True)
    front, seeds, util = pareto_front(cells), pareto_seeds(rows), gate_utilisation(rows)
    links: Links = {}
    for label in sorted(cells["dataset"].unique().to_list()):
        on = pl.col("dataset") == label
        order = archs.filter(on)["architecture"].to_list()  # rank order
        made = _dataset_plots(plt, cells.filter(on), order, front.filter(on), seeds.filter(on), util.filter(on),
                              label, plot_dir, prefix)
        if made:
            links[label] = made
    if len(cells["dataset"].unique()) > 1:
        links.update(_cd_plot(plt, archs, meta, plot_dir, prefix))
    links.update(_correlation_plot(plt, rows, meta, plot_dir, prefix))
    links.update(_scarcity_plot(plt, cells, meta, plot_dir, prefix))
    links.update(repeat_plots(rows, plot_dir, prefix, decision.paired))  # repeated runs (key "repeats:<label>")
    links.update(convergence_plots(rows, plot_dir, prefix))  # the searches' best so far (key "search:<label>")
    return links


def _dataset_plots(plt, d: pl.DataFrame, order: list[str], front: pl.DataFrame, seeds: pl.DataFrame,
                   util: pl.DataFrame, label: str, plot_dir: Path, prefix: str) -> list[tuple[str, str]]:
    """One dataset's plots (``d``, ``front``, ``seeds``, ``util``: its rows of the cells, the Pareto front, the
    per-seed scores and the gate utilisation; ``order``: its architectures in rank order): metric and gain bars,
    the Pareto view with two or more tasks, the gate heatmap with gated architectures. Returns their links."""
    tasks = sorted(d["task"].unique().to_list())
    links = _bar_plots(plt, d, order, tasks, label, plot_dir, prefix)
    if len(tasks) >= 2 and order:
        fname = component(f"{label}-pareto", "dataset label") + ".png"
        pareto_plot(plt, d, front, seeds, order, label, plot_dir / fname)
        links.append((f"{label}: per-task Pareto view (means with 95% intervals, seeds faint, the front ringed)",
                      f"{prefix}/{fname}"))
    if util.height:
        fname = component(f"{label}-gates", "dataset label") + ".png"
        gate_heatmap(plt, util, [a for a in order if a in util["architecture"].to_list()], label, plot_dir / fname)
        links.append((f"{label}: gate utilisation, task x expert per level (mean gate weight over seeds)",
                      f"{prefix}/{fname}"))
    return links


def _bar_plots(plt, d: pl.DataFrame, order: list[str], tasks: list[str], label: str, plot_dir: Path,
               prefix: str) -> list[tuple[str, str]]:
    """A dataset's test metric and MTL gain, one panel per task, architectures in rank order (no gain plot
    without the single-task baseline). Returns their links."""
    links = []
    for kind, title in (("metrics", "test metric"), ("gain", "MTL gain vs single-task")):
        shown = [a for a in order if kind == "metrics" or a != BASELINE]  # the baseline has no gain
        if not shown or (kind == "gain" and BASELINE not in order):  # no baseline, no gains
            continue
        fig, axes = plt.subplots(1, len(tasks), figsize=(max(4.5, 0.9 * len(shown)) * len(tasks), 3.8),
                                 squeeze=False)
        for ax, task in zip(axes[0], tasks):
            by = {r["architecture"]: r for r in d.filter(pl.col("task") == task).iter_rows(named=True)}
            metric = next(iter(by.values()))["metric"]
            bars(ax, shown, by, kind)
            ax.set_title(f"{label}: {task}", fontsize=9)
            ax.set_ylabel(f"test {metric} ({direction(metric)})" if kind == "metrics" else
                          f"gain in test {metric} (positive: better)", fontsize=8)
        fig.suptitle(f"{label}: {title}, " + (
            "mean (dot) with 95% interval, seeds as points;\ndashed: the single-task baseline's mean; the axis "
            "is zoomed to the values (not from 0), so no bars" if kind == "metrics" else
            "bars from 0 (no gain),\nmean with 95% interval, seeds as points"), fontsize=9)
        fig.tight_layout()
        fname = component(f"{label}-{kind}", "dataset label") + ".png"
        fig.savefig(plot_dir / fname, dpi=100, metadata=META_PNG)
        plt.close(fig)
        links.append((f"{label}: {title} (95% intervals, seeds as points)", f"{prefix}/{fname}"))
    return links


def _cd_plot(plt, archs: pl.DataFrame, meta: dict[str, Any], plot_dir: Path, prefix: str) -> Links:
    """The critical-difference diagram across datasets (key ``overall``), when there is a critical difference."""
    overall, tests = overall_ranking(archs, meta.get("architectures"), meta)
    if overall.height < 2 or tests["cd"] is None:
        return {}
    cd_diagram(plt, overall, tests["cd"], plot_dir / "critical-difference.png")
    return {"overall": [("critical-difference diagram: mean rank of Δm over datasets (Nemenyi)",
                         f"{prefix}/critical-difference.png")]}


def _correlation_plot(plt, rows: pl.DataFrame, meta: dict[str, Any], plot_dir: Path, prefix: str) -> Links:
    """Performance against task correlation (key ``""``), for datasets differing in their correlation ``p``."""
    corr = correlation_summary(rows, meta)
    if not corr.height:
        return {}
    corr = corr.filter(pl.col("metric") == corr["metric"].mode().sort()[0])  # one metric on the y axis
    fig, ax = plt.subplots(figsize=(6, 4))
    for arch in sorted(corr["architecture"].unique().to_list()):
        sub = corr.filter(pl.col("architecture") == arch)
        means, los, his = (sub[c].to_list() for c in ("mean", "lo", "hi"))
        err = [[m - lo if lo is not None else 0.0 for m, lo in zip(means, los)],
               [hi - m if hi is not None else 0.0 for m, hi in zip(means, his)]]
        ax.errorbar(sub["p"].to_list(), means, yerr=err, marker="o", capsize=3, label=arch)
    metric = corr["metric"][0]
    ax.set_xlabel("task correlation p")
    ax.set_ylabel(f"test {metric}, mean over tasks ({direction(metric)})")
    ax.set_title("performance against task correlation (95% intervals over runs)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(plot_dir / "correlation.png", dpi=100, metadata=META_PNG)
    plt.close(fig)
    return {"": [("performance against task correlation", f"{prefix}/correlation.png")]}


def _scarcity_plot(plt, cells: pl.DataFrame, meta: dict[str, Any], plot_dir: Path, prefix: str) -> Links:
    """The scarce task's MTL gain against the fraction of its training labels (key ``scarcity``), one panel per
    group of dataset entries differing only in that fraction."""
    scarce = scarcity_summary(cells, meta)
    if not scarce.height:
        return {}
    groups = scarce.select("group", "task").unique(maintain_order=True).rows()
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4), squeeze=False)
    for ax, (group, task) in zip(axes[0], groups):
        part = scarce.filter((pl.col("group") == group) & (pl.col("task") == task) & pl.col("gain").is_not_null())
        for arch in part["architecture"].unique(maintain_order=True).to_list():
            sub = part.filter(pl.col("architecture") == arch)
            gains, los, his = (sub[c].to_list() for c in ("gain", "gain_lo", "gain_hi"))
            err = [[g - lo for g, lo in zip(gains, los)], [hi - g for g, hi in zip(gains, his)]]
            ax.errorbar(sub["fraction"].to_list(), gains, yerr=err, marker="o", capsize=3, label=arch)
        ax.axhline(0.0, color="grey", linewidth=0.8)
        log_scale(ax)
        ax.set_xlabel(f"fraction of {task}'s training labels kept")
        ax.set_ylabel(f"MTL gain on {task} ({metric_of(part, task) if part.height else ''}; > 0 better)")
        ax.set_title(f"{group}"[:60], fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(plot_dir / "scarcity.png", dpi=100, metadata=META_PNG)
    plt.close(fig)
    return {"scarcity": [("MTL gain of the scarce task against the fraction of its training labels (the decisions' "
                          "95% t intervals)", f"{prefix}/scarcity.png")]}


def convergence_plots(rows: pl.DataFrame, plot_dir: Path, prefix: str) -> Links:
    """Per dataset, one PNG: the best validation objective so far against trial number, one line per unit (and
    replicate), in the metric's own orientation (``bench.results.convergence.best_so_far``); one panel per
    metric when the units' objectives differ (an AUC and an MSE never share an axis)."""
    from matplotlib.ticker import MaxNLocator

    curves = best_so_far(rows)
    links: Links = {}
    for label in sorted(curves["dataset"].unique().to_list()):
        plt = _pyplot()
        d = curves.filter(pl.col("dataset") == label)
        ylabels = sorted(d["ylabel"].unique().to_list())
        fig, axes = plt.subplots(1, len(ylabels), figsize=(6.5 * len(ylabels), 4), squeeze=False)
        for ax, ylabel in zip(axes[0], ylabels):
            panel = d.filter(pl.col("ylabel") == ylabel)
            for (arch, target, replicate), part in panel.group_by("architecture", "target", "replicate",
                                                                  maintain_order=True):
                ax.plot(part["position"].to_list(), part["best"].to_list(), marker=".",
                        label=unit_text(arch, target, replicate))
            ax.set_ylabel(ylabel, fontsize=8)
            ax.set_xlabel("search trial")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(fontsize=7, ncol=2)
        fig.suptitle(f"{label}: best validation objective so far", fontsize=9)
        fig.tight_layout()
        fname = component(f"{label}-search", "dataset label") + ".png"
        fig.savefig(plot_dir / fname, dpi=100, metadata=META_PNG)
        plt.close(fig)
        links[f"search:{label}"] = [(f"{label}: best validation objective so far against search trial, per unit",
                                     f"{prefix}/{fname}")]
    return links


def repeat_plots(rows: pl.DataFrame, plot_dir: Path, prefix: str, paired: frozenset[str] = frozenset()) -> Links:
    """One PNG per dataset with repeats: per task, a histogram of the runs' test metric per architecture (on a
    log axis when the runs span more than a decade), with the failure threshold (``bench.results.repeats``); for
    a dataset whose replicates are data draws (``paired``, more than one draw) the runs' error relative to their
    own draw's median best instead, with the failure ratio and the tolerance marked.
    Returns ``{"repeats:<label>": [(caption, path relative to the leaderboard directory)]}``."""
    import numpy as np

    plt = _pyplot()
    runs = repeat_runs(rows)
    per_draw = judged_per_draw(runs, paired)
    judged = judged_runs(rows, per_draw)
    limits = {(r["dataset"], r["task"]): r["threshold"] for r in repeat_summary(rows).iter_rows(named=True)}
    links: dict[str, list[tuple[str, str]]] = {}
    for label in sorted(runs["dataset"].unique().to_list()):
        if label in per_draw:
            links.update(_relative_repeat_plot(judged.filter(pl.col("dataset") == label), label, plot_dir, prefix))
            continue
        d = runs.filter(pl.col("dataset") == label)
        tasks = sorted(d["task"].unique().to_list())
        archs = sorted(d["architecture"].unique().to_list())
        fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.4), squeeze=False)
        for ax, task in zip(axes[0], tasks):
            t = d.filter(pl.col("task") == task)
            lo, hi = t["value"].min(), t["value"].max()
            log = lo > 0 and hi > 10 * lo  # a few runs decades away would squash the rest into one bin
            bins = (np.geomspace(lo, hi, 31) if log else np.linspace(lo, hi, 21) if hi > lo
                    else np.linspace(lo - 0.5e-3, hi + 0.5e-3, 21))
            for arch in archs:
                values = t.filter(pl.col("architecture") == arch)["value"].to_list()
                if values:
                    ax.hist(values, bins=bins, histtype="step", linewidth=1.5, label=f"{arch} ({len(values)})")
            if log:
                log_scale(ax)
            limit = limits.get((label, task))
            if limit is not None and lo <= limit <= hi:
                ax.axvline(limit, color="grey", linestyle="--", linewidth=0.8, label="failure threshold")
            _histogram_axes(ax, f"test {t['metric'][0]}" + (" (log scale)" if log else ""), label, task)
        links.update(_save_repeats(plt, fig, label, plot_dir, prefix,
                                   f"{label}: repeated runs, histogram of the test metric"))
    return links


def _histogram_axes(ax, xlabel: str, label: str, task: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel("runs")
    ax.set_title(f"{label}: {task}")
    ax.legend(fontsize=7)


def _save_repeats(plt, fig, label: str, plot_dir: Path, prefix: str, caption: str) -> Links:
    """Write dataset ``label``'s repeated-runs figure and return its link."""
    fig.tight_layout()
    fname = component(f"{label}-repeats", "dataset label") + ".png"
    fig.savefig(Path(plot_dir) / fname, dpi=100, metadata=META_PNG)
    plt.close(fig)
    return {f"repeats:{label}": [(caption, f"{prefix}/{fname}")]}


def _relative_repeat_plot(d: pl.DataFrame, label: str, plot_dir: Path, prefix: str) -> Links:
    """Per task, a histogram (log axis) of each run's error over its own draw's median best, per architecture,
    with the failure ratio and the tolerance of ``bench.results.repeats`` marked."""
    import numpy as np

    plt = _pyplot()
    tasks = sorted(d["task"].unique().to_list())
    archs = sorted(d["architecture"].unique().to_list())
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        t = d.filter(pl.col("task") == task)
        lo, hi = max(float(t["ratio"].min()), 1e-3), max(float(t["ratio"].max()), FAILURE_RATIO * 1.05)
        bins = np.geomspace(min(lo, 0.9), hi, 31)
        for arch in archs:
            values = t.filter(pl.col("architecture") == arch)["ratio"].to_list()
            if values:
                ax.hist(values, bins=bins, histtype="step", linewidth=1.5, label=f"{arch} ({len(values)})")
        log_scale(ax)
        ax.axvline(FAILURE_RATIO, color="grey", linestyle="--", linewidth=0.8, label=f"failure ({FAILURE_RATIO:g}x)")
        ax.axvline(1 + TOLERANCE, color="grey", linestyle=":", linewidth=0.8, label=f"within {TOLERANCE:.0%}")
        _histogram_axes(ax, f"test error / its draw's median best ({t['metric'][0]}; log scale)", label, task)
    return _save_repeats(plt, fig, label, plot_dir, prefix,
                         f"{label}: repeated runs, error relative to the median best of the run's own data draw")
