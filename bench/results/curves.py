"""Learning curves and what each replicate's search selected: how training went, beside what it reached.

The MMoE paper's figure 4 shows how the loss evolves during training at each task correlation; its
trainability question (figure 6) is partly a question of which learning rate a search lands on. Both are read
from the store (``bench.results.store``): the final and repeated runs' per-epoch curves (kind "curve",
``store.read_curves``) and the configuration each replicate's final runs used (their ``config``).

Per dataset, architecture (and target), split, task and metric, the curve summary at epoch e is

    median_e, q25_e, q75_e  over the runs that trained epoch e   (runs_e of them)

Early stopping ends runs at different epochs, so later epochs hold fewer runs: the page says so, and an epoch
that fewer than ``MIN_RUNS`` runs reached is not drawn. ``best_epochs`` is, per run, the epoch of its best
validation objective (the weights it kept) and the number of epochs it trained.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
from tabulate import tabulate

from bench.spec.metrics import PRIMARY
from bench.spec.study import unit_text

from .markdown import escape, image, number

MIN_RUNS = 3  # an epoch reached by fewer runs is too thin to summarise
RUN = ["dataset", "architecture", "target", "stage", "replicate", "seed"]


# --- the pipeline ----------------------------------------------------------------------------------------
def curve_summary(curves: pl.DataFrame) -> pl.DataFrame:
    """Per (dataset, architecture, target, split, task, metric, epoch): runs, median, q25 and q75 over the final
    and repeated runs that trained that epoch (epochs with fewer than ``MIN_RUNS`` runs left out)."""
    return (
        curves.group_by("dataset", "architecture", "target", "split", "task", "metric", "epoch")
        .agg(runs=pl.len().cast(pl.Int64), median=pl.col("value").median(),
             q25=pl.col("value").quantile(0.25, interpolation="linear"),
             q75=pl.col("value").quantile(0.75, interpolation="linear"))
        .filter(pl.col("runs") >= MIN_RUNS)
        .sort("dataset", "architecture", "target", "split", "task", "metric", "epoch")
    )


def best_epochs(curves: pl.DataFrame) -> pl.DataFrame:
    """Per run (``RUN``): ``epochs`` trained and ``best_epoch``, the first epoch of its highest validation
    objective (the objective is maximised: ``bench.spec.metrics.objective_label``)."""
    objective = curves.filter((pl.col("split") == "val") & (pl.col("task") == "*") & (pl.col("metric") == "objective"))
    return (
        objective.sort(*RUN, "epoch")
        .group_by(RUN, maintain_order=True)
        .agg(epochs=pl.col("epoch").max() + 1, best_epoch=pl.col("epoch").get(pl.col("value").arg_max()))
    )


def selections(rows: pl.DataFrame, label: str) -> tuple[list[str], pl.DataFrame]:
    """What each replicate's search selected on dataset ``label``: the configuration keys whose selected value
    differs between two replicates of any unit, and one row per (architecture, target, replicate) with ``values``,
    a dict of the keys on which that unit's own replicates disagree (a key an architecture does not have is never
    shown for it). No keys when the study has one replicate or every replicate selected the same."""
    final = (rows.filter((pl.col("stage") == "final") & (pl.col("dataset") == label) & pl.col("epoch").is_null())
             .with_columns(pl.col("replicate").fill_null(1))
             .select("architecture", "target", "replicate", "config")
             .unique(["architecture", "target", "replicate"]).sort("architecture", "target", "replicate"))
    configs = {}
    for r in final.iter_rows(named=True):
        config = json.loads(r["config"] or "{}")
        config.pop("seed", None)  # the final runs' own seeds
        configs[(r["architecture"], r["target"], r["replicate"])] = config

    def differs(a: str, t: str, k: str) -> bool:  # the replicates of unit (a, t) disagree on key k
        seen = [c.get(k) for (a2, t2, _), c in configs.items() if (a2, t2) == (a, t)]
        return any(v != seen[0] for v in seen)

    keys = sorted({k for (a, t, _), c in configs.items() for k in c if differs(a, t, k)})
    table = pl.DataFrame(
        [{"architecture": a, "target": t, "replicate": r,
          "values": {k: c[k] for k in keys if k in c and differs(a, t, k)}} for (a, t, r), c in configs.items()],
        schema={"architecture": pl.String, "target": pl.String, "replicate": pl.Int64, "values": pl.Object},
    )
    return keys, table


# --- rendering -------------------------------------------------------------------------------------------
def section(rows: pl.DataFrame, curves: pl.DataFrame | None, label: str) -> list[str]:
    """Markdown lines of dataset ``label``'s replicates' selections and learning curves (none when it has
    neither)."""
    return selection_lines(rows, label) + curve_lines(curves, label)


def figure_lines(plots: list[tuple[str, str]] | None) -> list[str]:
    """The study's learning-curve figure (``curve_plots``), once after the datasets' sections."""
    if not plots:
        return []
    return ["## Learning curves", "", *[image(caption, path) for caption, path in plots], ""]


def replicate_means(rows: pl.DataFrame, label: str) -> pl.DataFrame:
    """Per (architecture, target, replicate, task) on dataset ``label``: the mean over that replicate's final
    seeds of the task's primary test metric (finite scores only), the replicate-level values the page's cells
    average. Entries of one draw share replicate r's data (``bench.spec.replicates``), so they pair by r."""
    return (rows.filter((pl.col("stage") == "final") & (pl.col("dataset") == label) & (pl.col("split") == "test")
                        & pl.col("draw").is_null() & pl.col("epoch").is_null() & pl.col("value").is_finite())
            .filter(pl.col("metric") == pl.col("kind").replace_strict(PRIMARY, default=None))
            .with_columns(pl.col("replicate").fill_null(1))
            .group_by("architecture", "target", "replicate", "task", "metric")
            .agg(pl.col("value").mean())
            .sort("architecture", "target", "replicate", "task"))


def selection_lines(rows: pl.DataFrame, label: str) -> list[str]:
    """With two or more replicates: per unit and replicate, what its search selected (the keys on which
    replicates disagree) and its final seeds' mean test metric per task."""
    keys, table = selections(rows, label)
    replicates = sorted(table["replicate"].unique().to_list()) if table.height else []
    if len(replicates) < 2:
        return []
    means = replicate_means(rows, label)
    body = []
    for (arch, target), part in table.group_by("architecture", "target", maintain_order=True):
        by = {r["replicate"]: r["values"] for r in part.iter_rows(named=True)}
        unit = means.filter((pl.col("architecture") == arch) & (pl.col("target") == target))
        cells = []
        for k in replicates:
            scores = ", ".join(f"{escape(r['task'])} {r['value']:.4f}"
                               for r in unit.filter(pl.col("replicate") == k).iter_rows(named=True))
            cells.append("; ".join(c for c in (selected_cell(by.get(k)) if keys else "", scores) if c) or "—")
        body.append([escape(unit_text(arch, target)), *cells])
    metric = ", ".join(sorted(set(means["metric"].to_list()))) or "primary metric"
    chosen = (f"the selected value of {', '.join(escape(k) for k in keys)} (the keys on which two replicates of a "
              "unit disagree) and " if keys else "every replicate's search selected the same configuration for each "
              "unit; per replicate, ")
    return [
        f"### {escape(label)}: replicate by replicate",
        "",
        f"Per unit and replicate, {chosen}the mean over its final seeds of each task's test {metric}: the "
        "replicate-level values the cells above average, so the variance of the selection and of the data draw "
        "that their intervals contain. Datasets of one draw share replicate r's data, so their columns pair by r.",
        "",
        tabulate(body, headers=["unit", *[f"r{k}" for k in replicates]], tablefmt="github",
                 disable_numparse=True),
        "",
    ]


def selected_cell(values: dict[str, Any] | None) -> str:
    """``lr=0.001, dropout=0.1``: a replicate's selected values; a dash when it has no final runs."""
    if values is None:
        return "—"
    return escape(", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()))


def curve_lines(curves: pl.DataFrame | None, label: str) -> list[str]:
    if curves is None or not curves.filter(pl.col("dataset") == label).height:
        return []
    runs = best_epochs(curves.filter(pl.col("dataset") == label))
    stats = (runs.group_by("architecture", "target").agg(
        runs=pl.len(), epochs=pl.col("epochs").median(), best=pl.col("best_epoch").median(),
        best_q25=pl.col("best_epoch").quantile(0.25, interpolation="linear"),
        best_q75=pl.col("best_epoch").quantile(0.75, interpolation="linear"),
        at_first=(pl.col("best_epoch") == 0).mean(), at_last=(pl.col("best_epoch") == pl.col("epochs") - 1).mean())
        .sort("architecture", "target"))
    table = [[escape(unit_text(r["architecture"], r["target"])),
              r["runs"], number(r["epochs"], ".0f"), f"{number(r['best'], '.0f')} [{number(r['best_q25'], '.0f')}, "
              f"{number(r['best_q75'], '.0f')}]", f"{r['at_first']:.0%}", f"{r['at_last']:.0%}"]
             for r in stats.iter_rows(named=True)]
    lines = [
        f"### {escape(label)}: learning curves",
        "",
        "Every final and repeated run's training loss and validation metrics per epoch (store rows of kind "
        "\"curve\"), summarised per architecture: epochs trained and the epoch whose weights were kept (the best "
        "validation objective; median [IQR] over runs, epochs counted from 0); kept at epoch 0: the share of runs "
        "that never improved on their first epoch; kept at the last: the share still improving when they stopped "
        "(max_epochs reached). The curves themselves: the figure under \"Learning curves\" at the end of the page.",
        "",
        tabulate(table, headers=["unit", "runs", "epochs (median)", "kept epoch (median [IQR])", "kept at epoch 0",
                                 "kept at the last"], tablefmt="github", disable_numparse=True),
        "",
    ]
    return lines


# --- plots -----------------------------------------------------------------------------------------------
def curve_plots(curves: pl.DataFrame | None, plot_dir: Path, prefix: str) -> dict[str, list[tuple[str, str]]]:
    """One PNG per study with curves: a row per unit, a column per curve (training loss, then each validation
    metric per task), one line per dataset (so correlations or data sets compare within a panel): medians, and
    IQR bands over the runs that trained that epoch; log scale where the values are positive and span more than a
    decade. Returns ``{"curves": [(caption, path)]}``."""
    from .figures import log_scale
    from .plots import META_PNG, _pyplot  # the leaderboard's matplotlib setup (Agg, no mathtext)

    if curves is None or not curves.height:
        return {}
    plt = _pyplot()
    Path(plot_dir).mkdir(parents=True, exist_ok=True)
    summary = curve_summary(curves).filter(~((pl.col("split") == "val") & (pl.col("task") == "*")))
    if not summary.height:  # every epoch reached by too few runs: nothing to draw
        return {}
    units = summary.select("architecture", "target").unique().sort("architecture", "target").rows()
    panels = summary.select("split", "task", "metric").unique().sort(
        pl.col("split") != "train", "task", "metric").rows()
    labels = sorted(summary["dataset"].unique().to_list())
    fig, axes = plt.subplots(len(units), len(panels), figsize=(4.2 * len(panels), 2.8 * len(units)), squeeze=False)
    for i, (arch, target) in enumerate(units):
        for j, (split, task, metric) in enumerate(panels):
            ax = axes[i][j]
            part = summary.filter((pl.col("architecture") == arch) & (pl.col("target") == target)
                                  & (pl.col("split") == split) & (pl.col("task") == task)
                                  & (pl.col("metric") == metric))
            for label in labels:
                d = part.filter(pl.col("dataset") == label)
                if d.height:
                    line, = ax.plot(d["epoch"].to_list(), d["median"].to_list(), label=label, linewidth=1.2)
                    ax.fill_between(d["epoch"].to_list(), d["q25"].to_list(), d["q75"].to_list(),
                                    color=line.get_color(), alpha=0.2, linewidth=0)
            values = part["q25"].to_list() + part["q75"].to_list()
            if values and min(values) > 0 and max(values) > 10 * min(values):
                log_scale(ax, "y")
            unit = arch if target == "mean" else f"{arch}[{target}]"
            what = "training loss" if split == "train" else f"val {metric} ({task})"
            ax.set_title(f"{unit}: {what}", fontsize=8)
            ax.set_xlabel("epoch", fontsize=8)
            ax.tick_params(labelsize=7)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    fname = "curves.png"
    fig.savefig(Path(plot_dir) / fname, dpi=90, metadata=META_PNG)
    plt.close(fig)
    caption = (f"learning curves per unit: median and IQR over the final and repeated runs that trained each epoch "
               f"(runs stop early: later epochs hold fewer; an epoch fewer than {MIN_RUNS} runs reached is not drawn), "
               "one line per dataset")
    return {"curves": [(caption, f"{prefix}/{fname}")]}
