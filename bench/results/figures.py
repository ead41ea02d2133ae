"""How each kind of leaderboard plot is drawn (matplotlib, on the ``pyplot`` module passed in): bars of a task's
metric or gain with their intervals and seeds, the per-task Pareto view, the gates' utilisation heatmap and the
critical-difference diagram, with one colour and marker per architecture. Which plots a page gets, their files and
captions are ``bench.results.plots``'. Files carry no version string, so they change only when the results do.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from bench.spec.metrics import HIGHER_IS_BETTER

from .comparisons import BASELINE

META_PNG = {"Software": None}  # no version string: the files change only when the results do


def log_scale(ax, axis: str = "x") -> None:
    """A log axis whose tick labels are plain text ("0.1", "2", "10"): the default formatter writes mathtext
    ("$\\mathdefault{10^{-1}}$"), which the leaderboard turns off (``text.parse_math``: names are never math) and
    which would then print as its raw source."""
    from matplotlib.ticker import LogFormatter

    getattr(ax, f"set_{axis}scale")("log")
    which = ax.xaxis if axis == "x" else ax.yaxis
    which.set_major_formatter(LogFormatter())
    which.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def direction(metric: str) -> str:
    return "higher is better" if HIGHER_IS_BETTER[metric] else "lower is better"


def bars(ax, archs: list[str], by: dict[str, dict], kind: str) -> None:
    """Bars (mean or gain) with their 95% interval and the per-seed values as points, in the given order."""
    col, lo_col, hi_col = ("mean", "lo", "hi") if kind == "metrics" else ("gain", "gain_lo", "gain_hi")
    ys = [(by.get(a) or {}).get(col) for a in archs]
    lows = [(by.get(a) or {}).get(lo_col) for a in archs]
    highs = [(by.get(a) or {}).get(hi_col) for a in archs]
    points = []
    for i, a in enumerate(archs):
        r = by.get(a)
        if r is None or r[col] is None:  # no finite score, or no baseline to gain against
            continue
        values = r["values"]
        if kind == "gain":  # the seeds' own gains: oriented difference from the baseline's mean
            base = r["mean"] - (r["gain"] if HIGHER_IS_BETTER[r["metric"]] else -r["gain"])
            values = [(v - base) * (1 if HIGHER_IS_BETTER[r["metric"]] else -1) for v in values]
        points += [(i, v) for v in values]
    known = [v for v in [*ys, *lows, *highs, *(p[1] for p in points)] if v is not None]
    if not known:
        return
    lo_lim, hi_lim = min(known), max(known)
    pad = 0.15 * (hi_lim - lo_lim or abs(hi_lim) or 1.0)
    err = [[0.0 if y is None or lo is None else y - lo for y, lo in zip(ys, lows)],
           [0.0 if y is None or hi is None else hi - y for y, hi in zip(ys, highs)]]
    if kind == "gain":  # a gain is a difference from 0: bars rise or fall from 0, and the axis always holds 0
        ax.bar(range(len(archs)), [0.0 if y is None else y for y in ys], 0.6, bottom=0.0, yerr=err, capsize=3,
               color="#9ecae1", edgecolor="#3182bd")
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_ylim(min(0.0, lo_lim - pad), max(hi_lim + pad, 0.0))
    else:  # a metric on an axis zoomed to its values: dots and intervals, whose length means nothing, not bars
        shown = [i for i, y in enumerate(ys) if y is not None]
        ax.errorbar(shown, [ys[i] for i in shown], yerr=[[err[0][i] for i in shown], [err[1][i] for i in shown]],
                    fmt="o", color="#3182bd", capsize=3, markersize=5, zorder=2)
        reference = (by.get(BASELINE) or {}).get(col)
        if reference is not None:  # what a gain is measured against
            ax.axhline(reference, color="grey", linewidth=0.8, linestyle="--", zorder=1)
        ax.set_ylim(lo_lim - pad, hi_lim + pad)
    if points:
        xs, vs = zip(*points)
        ax.scatter(xs, vs, s=9, color="black", alpha=0.5, zorder=3)
    ax.set_xticks(range(len(archs)), archs, rotation=25, fontsize=8)


def pareto_plot(plt, cells: pl.DataFrame, front: pl.DataFrame, seeds: pl.DataFrame, order: list[str], label: str,
                 path: Path) -> None:
    """One panel per pair of tasks: each architecture's mean test metrics with their 95% intervals as error bars,
    its seeds as faint points, the non-dominated architectures (over all tasks) ringed and marked in the legend."""
    from itertools import combinations

    tasks = sorted(cells["task"].unique().to_list())
    pairs = list(combinations(tasks, 2))
    on_front = {r["architecture"] for r in front.iter_rows(named=True) if r["on_front"]}
    by = {(r["architecture"], r["task"]): r for r in cells.iter_rows(named=True)}
    fig, axes = plt.subplots(1, len(pairs), figsize=(5.2 * len(pairs), 4.4), squeeze=False)
    for ax, (tx, ty) in zip(axes[0], pairs):
        for i, arch in enumerate(order):
            cx, cy = by.get((arch, tx)), by.get((arch, ty))
            colour, marker = arch_style(arch, i)
            per_seed = seeds.filter(pl.col("architecture") == arch)
            if tx in per_seed.columns and ty in per_seed.columns:
                both = per_seed.filter(pl.col(tx).is_not_null() & pl.col(ty).is_not_null())
                ax.scatter(both[tx].to_list(), both[ty].to_list(), s=14, color=colour, alpha=0.3, linewidths=0)
            if cx is None or cy is None or cx["mean"] is None or cy["mean"] is None:
                continue  # no finite score on one of the two tasks
            xerr = [[cx["mean"] - cx["lo"]], [cx["hi"] - cx["mean"]]] if cx["lo"] is not None else None
            yerr = [[cy["mean"] - cy["lo"]], [cy["hi"] - cy["mean"]]] if cy["lo"] is not None else None
            ax.errorbar([cx["mean"]], [cy["mean"]], xerr=xerr, yerr=yerr, fmt=marker, color=colour, capsize=3,
                        markersize=5, elinewidth=1, label=arch + (" (front)" if arch in on_front else ""))
            if arch in on_front:
                ax.scatter([cx["mean"]], [cy["mean"]], s=160, facecolors="none", edgecolors="black", linewidths=1.2,
                           zorder=4)
        mx, my = metric_of(cells, tx), metric_of(cells, ty)
        ax.set_xlabel(f"{tx}: test {mx} ({direction(mx)})", fontsize=8)
        ax.set_ylabel(f"{ty}: test {my} ({direction(my)})", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(f"{label}: per-task trade-off, means with 95% intervals, seeds faint;\nringed: the Pareto front "
                 "(not dominated on every task)", fontsize=9)
    fig.savefig(path, dpi=100, metadata=META_PNG, bbox_inches="tight")
    plt.close(fig)


# Okabe & Ito's colour-blind-safe palette, one fixed colour per architecture (the baseline black, the reference);
# units of other names (``mmoe+gradnorm``) take tab10's colours by position, and every unit its own marker
ARCH_COLOURS = {BASELINE: "#000000", "shared_bottom": "#E69F00", "cross_stitch": "#56B4E9", "omoe": "#009E73",
                "mmoe": "#D55E00", "cgc": "#0072B2", "ple": "#CC79A7"}
MARKERS = "osD^vPX<>p*h"


def arch_style(arch: str, i: int) -> tuple[str, str]:
    """(colour, marker) of the ``i``-th architecture of a plot."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    colour = ARCH_COLOURS.get(arch) or to_hex(colormaps["tab10"](i % 10))
    return colour, MARKERS[i % len(MARKERS)]


def metric_of(cells: pl.DataFrame, task: str) -> str:
    """The primary metric of ``task`` in ``cells``."""
    return cells.filter(pl.col("task") == task)["metric"][0]


def gate_heatmap(plt, util: pl.DataFrame, archs: list[str], label: str, path: Path) -> None:
    fig = gate_figure(plt, util, archs, label)
    fig.savefig(path, dpi=100, metadata=META_PNG, bbox_inches="tight")
    plt.close(fig)


def gate_figure(plt, util: pl.DataFrame, archs: list[str], label: str):
    """One panel per gated architecture: rows (level, task), columns experts in bank order (shared first, then
    each task's own), colour the mean gate weight (the colour bar labelled), its value written in the cell;
    blank where that task's gate does not weigh that expert."""
    import numpy as np

    panels = []
    for arch in archs:
        a = util.filter(pl.col("architecture") == arch)
        keys = a.select("level", "task").unique().sort("level", "task").rows()  # (level, task) rows
        n_experts = int(a["expert"].max()) + 1
        grid = np.full((len(keys), n_experts), np.nan)
        index = {k: i for i, k in enumerate(keys)}
        for r in a.iter_rows(named=True):
            grid[index[(r["level"], r["task"])], r["expert"]] = r["weight"]
        panels.append((arch, keys, grid))
    # cells about 0.6 inch wide and 0.45 high: room for a two-decimal number at 8 pt
    width = sum(max(2.4, 0.6 * g.shape[1] + 1.4) for _, _, g in panels)
    height = max(2.4, 0.45 * max(len(k) for _, k, _ in panels) + 1.4)
    fig, axes = plt.subplots(1, len(panels), figsize=(width + 1.0, height), squeeze=False)
    image = None
    for ax, (arch, keys, grid) in zip(axes[0], panels):
        image = ax.imshow(np.ma.masked_invalid(grid), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        for (i, j), w in np.ndenumerate(grid):
            if not np.isnan(w):
                ax.text(j, i, f"{w:.2f}", ha="center", va="center", fontsize=8, color="white" if w < 0.6 else "black")
        ax.set_title(arch, fontsize=9)
        ax.set_xticks(range(grid.shape[1]), [str(e) for e in range(grid.shape[1])], fontsize=7)
        levels = {lvl for lvl, _ in keys}
        ax.set_yticks(range(len(keys)), [f"L{lvl} {t}" if len(levels) > 1 else t for lvl, t in keys], fontsize=7)
        ax.set_xlabel("expert", fontsize=8)
    bar = fig.colorbar(image, ax=axes[0].tolist(), fraction=0.03, pad=0.02)
    bar.set_label("mean gate weight (0 to 1)", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    fig.suptitle(f"{label}: mean gate weight on each expert (bank order: shared first, then each task's own),\ntest "
                 "split, mean over seeds; blank: not weighed by that gate", fontsize=8, y=1.06)
    return fig


def cd_diagram(plt, overall: pl.DataFrame, cd: float, path: Path) -> None:
    """Demsar's critical-difference diagram: mean ranks on an axis (1 = best, left), the CD as a bar, and a
    thick line under each group of architectures whose mean ranks differ by less than the CD."""
    names, ranks = overall["architecture"].to_list(), overall["mean_rank"].to_list()
    k = len(names)
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.32 * k))
    ax.set_xlim(0.5, k + 0.5)
    ax.set_ylim(-(k + 1.5), 2.0)
    ax.axhline(0, color="black", linewidth=1)
    for r in range(1, k + 1):
        ax.plot([r, r], [0, 0.15], color="black", linewidth=1)
        ax.text(r, 0.35, str(r), ha="center", fontsize=8)
    ax.plot([1, 1 + cd], [1.3, 1.3], color="black", linewidth=2)
    ax.text(1 + cd / 2, 1.5, f"CD = {cd:.2f}", ha="center", fontsize=8)
    for i, (name, rank) in enumerate(zip(names, ranks)):
        y = -(i + 1)
        ax.plot([rank, rank], [0, y], color="gray", linewidth=0.8)
        ax.plot(rank, 0, "o", color="black", markersize=3)
        ax.text(k + 0.45, y, f"{name} ({rank:.2f})", ha="right", va="center", fontsize=8)
        ax.plot([rank, k + 0.45 - 0.02 * k], [y, y], color="gray", linewidth=0.5, linestyle=":")
    # groups: maximal runs of consecutive architectures (by mean rank) within CD of each other
    groups: list[tuple[int, int]] = []
    for i in range(k):
        j = max(jj for jj in range(i, k) if ranks[jj] - ranks[i] < cd)  # ranks are sorted: j grows with i
        if j > i and (not groups or j > groups[-1][1]):  # not inside the previous group
            groups.append((i, j))
    for j, (a, b) in enumerate(groups):
        y = -0.35 - 0.25 * j
        ax.plot([ranks[a] - 0.03, ranks[b] + 0.03], [y, y], color="black", linewidth=3)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata=META_PNG)
    plt.close(fig)
