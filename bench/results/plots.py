"""The leaderboard's plots (PNG, matplotlib's Agg backend): per-task metrics, MTL gains, performance against
task correlation, and histograms of repeated runs. Files carry no version string, so they change only when
the results do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from .repeats import repeat_runs
from .tables import correlation_summary, task_summary, with_gains

Links = dict[str, list[tuple[str, str]]]  # dataset label (or "" / "repeats:<label>") -> (caption, relative path)


def leaderboard_plots(rows: pl.DataFrame, meta: dict[str, Any], out_dir: Path, prefix: str) -> Links:
    """PNG plots next to the markdown: per-task metric with error bars, MTL gain per task, and (several
    correlations) performance against task correlation. Returns captions and paths relative to ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = with_gains(task_summary(rows))
    plot_dir = out_dir / prefix
    plot_dir.mkdir(parents=True, exist_ok=True)
    links: dict[str, list[tuple[str, str]]] = {}
    meta_png = {"Software": None}  # no version string: the files change only when the results do
    for label in sorted(tasks["dataset"].unique().to_list()):
        d = tasks.filter(pl.col("dataset") == label)
        archs = sorted(d["architecture"].unique().to_list())
        task_names = sorted(d["task"].unique().to_list())
        width = 0.8 / max(len(task_names), 1)
        for kind, value_col, err_col, title in (("metrics", "mean", "std", "test metric (mean ± std over seeds)"),
                                                ("gain", "gain", "gain_se", "MTL gain vs single-task (± s.e.)")):
            fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(archs)), 3.6))
            for j, task in enumerate(task_names):
                sub = {r["architecture"]: r for r in d.filter(pl.col("task") == task).iter_rows(named=True)}
                xs = [i + (j - (len(task_names) - 1) / 2) * width for i in range(len(archs))]
                ys = [(sub.get(a) or {}).get(value_col) for a in archs]
                es = [(sub.get(a) or {}).get(err_col) or 0.0 for a in archs]
                metric = next(iter(sub.values()))["metric"] if sub else ""
                ax.bar(xs, [y if y is not None else 0.0 for y in ys], width, yerr=es, capsize=3,
                       label=f"{task} ({metric})")
            if kind == "gain":
                ax.axhline(0.0, color="black", linewidth=0.8)
            ax.set_xticks(range(len(archs)), archs, rotation=20)
            ax.set_title(f"{label}: {title}")
            ax.legend(fontsize=8)
            fig.tight_layout()
            fname = f"{label}-{kind}.png"
            fig.savefig(plot_dir / fname, dpi=100, metadata=meta_png)
            plt.close(fig)
            links.setdefault(label, []).append((f"{label}: {title}", f"{prefix}/{fname}"))
    corr = correlation_summary(rows, meta)
    if corr.height:
        corr = corr.filter(pl.col("metric") == corr["metric"].mode().sort()[0])  # one metric on the y axis
        fig, ax = plt.subplots(figsize=(6, 4))
        for arch in sorted(corr["architecture"].unique().to_list()):
            sub = corr.filter(pl.col("architecture") == arch)
            ax.errorbar(sub["p"].to_list(), sub["mean"].to_list(), yerr=[s or 0.0 for s in sub["std"].to_list()],
                        marker="o", capsize=3, label=arch)
        ax.set_xlabel("task correlation p")
        ax.set_ylabel(f"test {corr['metric'][0]} (mean over tasks)")
        ax.set_title("performance against task correlation")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(plot_dir / "correlation.png", dpi=100, metadata=meta_png)
        plt.close(fig)
        links[""] = [("performance against task correlation", f"{prefix}/correlation.png")]
    links.update(repeat_plots(rows, plot_dir, prefix))  # histograms of repeated runs (key "repeats:<label>")
    return links


def repeat_plots(rows: pl.DataFrame, plot_dir: Path, prefix: str) -> Links:
    """One PNG per dataset with repeats: per task, a histogram of the runs' test metric per architecture.
    Returns ``{"repeats:<label>": [(caption, path relative to the leaderboard directory)]}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs = repeat_runs(rows)
    links: dict[str, list[tuple[str, str]]] = {}
    for label in sorted(runs["dataset"].unique().to_list()):
        d = runs.filter(pl.col("dataset") == label)
        tasks = sorted(d["task"].unique().to_list())
        archs = sorted(d["architecture"].unique().to_list())
        fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.4), squeeze=False)
        for ax, task in zip(axes[0], tasks):
            t = d.filter(pl.col("task") == task)
            lo, hi = t["value"].min(), t["value"].max()
            bins = np.linspace(lo, hi, 21) if hi > lo else np.linspace(lo - 0.5e-3, hi + 0.5e-3, 21)
            for arch in archs:
                values = t.filter(pl.col("architecture") == arch)["value"].to_list()
                if values:
                    ax.hist(values, bins=bins, histtype="step", linewidth=1.5, label=f"{arch} ({len(values)})")
            ax.set_xlabel(f"test {t['metric'][0]}")
            ax.set_ylabel("runs")
            ax.set_title(f"{label}: {task}")
            ax.legend(fontsize=7)
        fig.tight_layout()
        fname = f"{label}-repeats.png"
        fig.savefig(Path(plot_dir) / fname, dpi=100, metadata={"Software": None})
        plt.close(fig)
        links[f"repeats:{label}"] = [(f"{label}: repeated runs, histogram of the test metric",
                                      f"{prefix}/{fname}")]
    return links
