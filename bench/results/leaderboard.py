"""The leaderboard page: ``leaderboard/<study>.md`` rendered with tabulate from the tables of
``bench.results.tables`` (definitions there) and ``bench.results.repeats``, with the plots of
``bench.results.plots``. The same rows and metadata always give byte-identical markdown; a study without
repeated runs renders without their section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
from tabulate import tabulate

from . import repeats, store
from .markdown import escape, options_text, pm
from .plots import leaderboard_plots
from .tables import BASELINE, arch_summary, overall_ranking, task_summary, with_gains


def provenance(rows: pl.DataFrame) -> dict[str, str]:
    """Date, commit and hardware of the final runs, read from the rows (so regeneration is byte-identical)."""
    final = rows.filter(pl.col("stage") == "final")
    src = final if final.height else rows

    def joined(col: str) -> str:
        vals = sorted(v for v in src[col].unique().to_list() if v)
        return ", ".join(vals) if vals else "unknown"

    dates = [v for v in src["finished_at"].to_list() if v]
    return {"date": max(dates)[:10] if dates else "unknown", "commit": joined("git_commit"),
            "hardware": joined("hardware")}


def wandb_links(rows: pl.DataFrame, dataset: str) -> dict[str, str]:
    """Markdown links to the W&B final runs of each architecture on ``dataset`` (only runs tracked online have a
    URL): ``[s1](url) [s2](url)``, single-task ``[y1 s1](url)``."""
    if "wandb_url" not in rows.columns:
        return {}
    runs = (
        rows.filter((pl.col("stage") == "final") & (pl.col("dataset") == dataset) & pl.col("wandb_url").is_not_null())
        .select("architecture", "target", "seed", "wandb_url")
        .unique()
        .sort("architecture", "target", "seed")
    )
    links: dict[str, list[str]] = {}
    for r in runs.iter_rows(named=True):
        label = f"{r['target']} s{r['seed']}" if r["architecture"] == BASELINE else f"s{r['seed']}"
        links.setdefault(r["architecture"], []).append(f"[{label}]({r['wandb_url']})")
    return {a: " ".join(v) for a, v in links.items()}


def render(rows: pl.DataFrame, meta: dict[str, Any], plots: dict[str, list[tuple[str, str]]] | None = None) -> str:
    """The markdown leaderboard. ``plots`` maps a dataset label (or "" for study-wide plots) to
    (caption, relative path) pairs to link."""
    plots = plots or {}
    name = meta["study"]
    b = meta["budget"]
    prov = provenance(rows)
    archs = arch_summary(rows)
    tasks = with_gains(task_summary(rows))
    seeds = meta.get("seeds", [])
    sampler = meta.get("sampler", {})
    pruner = meta.get("pruner", {})
    timeout = f", at most {b['timeout']:g} s per architecture" if b.get("timeout") else ""
    lines = [
        f"# Leaderboard: {name}",
        "",
        *([escape(meta["description"]), ""] if meta.get("description") else []),
        f"- command: `bench run --study {name}`",
        f"- date: {prov['date']}; git commit: {prov['commit']}",
        f"- hardware: {prov['hardware']}",
        f"- budget: {b['trials']} trials per architecture (single-task: per task){timeout}; at most "
        f"{b['max_epochs']} epochs, early-stopping patience {b['patience']}; sampler {sampler.get('kind', 'tpe')} "
        f"(seed {sampler.get('seed', 0)}), pruner {pruner.get('kind', 'median')}",
        f"- tuning objective: {meta.get('objective', 'mean')} (validation); final: best configuration retrained "
        f"with {len(seeds)} seeds, test split evaluated once per seed",
        "",
    ]

    overall = overall_ranking(archs)
    labels = list(meta.get("datasets", {})) or sorted(archs["dataset"].unique().to_list())
    if len(labels) > 1 and overall.height:
        ranks = {(r["dataset"], r["architecture"]): r["rank"] for r in archs.iter_rows(named=True)}
        table = [
            [r["architecture"], "—" if r["mean_rank"] is None else f"{r['mean_rank']:.2f}",
             pm(r["mean_delta_m"], None, ".2f", signed=True) + ("%" if r["mean_delta_m"] is not None else ""),
             *[ranks.get((d, r["architecture"])) or "—" for d in labels]]
            for r in overall.iter_rows(named=True)
        ]
        lines += ["## Overall ranking", "", tabulate(table, headers=["architecture", "mean rank", "mean Δm",
                                                                    *labels], tablefmt="github",
                                                            disable_numparse=True), ""]

    for label in labels:
        info = meta.get("datasets", {}).get(label, {})
        d_archs = archs.filter(pl.col("dataset") == label)
        d_tasks = tasks.filter(pl.col("dataset") == label)
        desc = escape(info.get("name", label) + (f" ({options_text(info['options'])})" if info.get("options") else ""))
        lines += [f"## {label}", "", f"Dataset: {desc}.", ""]
        if not d_archs.height:
            lines += ["No final results yet.", ""]
            continue
        task_meta = d_tasks.select("task", "metric").unique().sort("task").rows()
        by = {(r["architecture"], r["task"]): r for r in d_tasks.iter_rows(named=True)}
        headers = ["rank", "architecture", *[escape(f"{t} {m}") for t, m in task_meta],
                   *[escape(f"gain {t}") for t, _ in task_meta],
                   "Δm", "seesaw", "params", "trials c/p/f", "s/trial"]
        table = []
        for r in d_archs.iter_rows(named=True):
            a = r["architecture"]
            cells = [pm(by[(a, t)]["mean"], by[(a, t)]["std"]) if (a, t) in by else "—" for t, _ in task_meta]
            gains = [pm(by[(a, t)]["gain"], by[(a, t)]["gain_se"], signed=True)
                     if (a, t) in by and by[(a, t)]["gain"] is not None else "—" for t, _ in task_meta]
            trials = "—" if r["complete"] is None else f"{r['complete']}/{r['pruned']}/{r['failed']}"
            table.append([
                r["rank"] or "—", a, *cells, *gains,
                "—" if r["delta_m"] is None else f"{r['delta_m']:+.2f}%",
                "yes" if r["seesaw"] else "", "—" if r["n_params"] is None else f"{r['n_params']:,}",
                trials, "—" if r["seconds_per_trial"] is None else f"{r['seconds_per_trial']:.1f}",
            ])
        links = wandb_links(rows, label)
        if links:  # runs tracked online: link each architecture's final runs
            headers.append("W&B runs")
            for row, r in zip(table, d_archs.iter_rows(named=True)):
                row.append(links.get(r["architecture"], "—"))
        lines += [tabulate(table, headers=headers, tablefmt="github", disable_numparse=True), ""]
        for caption, path in plots.get(label, []):
            lines.append(f"![{caption}]({path})")
        if plots.get(label):
            lines.append("")
        lines += repeats.section(rows, label, plots.get(f"repeats:{label}"))  # nothing without repeat runs
    for caption, path in plots.get("", []):
        lines += [f"![{caption}]({path})", ""]
    lines += [
        "Metrics: test split, primary metric per task kind (binary: AUC, regression: MSE, multi-class: accuracy), "
        "mean ± std over seeds. gain: PLE paper's MTL gain against the single-task baseline (sign flipped for "
        "lower-is-better metrics, so positive is better) ± its standard error. Δm: mean relative improvement over "
        "single-task across tasks, same orientation. seesaw: gains of mixed signs. trials c/p/f: search trials "
        "complete/pruned/failed. s/trial: mean seconds per search trial.",
        "",
    ]
    return "\n".join(lines)


def tables(rows: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The leaderboard's tables by name (what experiment tracking logs beside the page)."""
    archs = arch_summary(rows)
    return {"leaderboard": archs, "overall": overall_ranking(archs), "tasks": with_gains(task_summary(rows))}


def build(root: Path, out_dir: Path, *, with_plots: bool = True) -> tuple[Path, str]:
    """Rebuild ``out_dir/<study>.md`` (and plots in ``out_dir/<study>/``) from the store at ``root``."""
    rows = store.read(root)
    meta = store.read_meta(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    links = leaderboard_plots(rows, meta, out_dir, meta["study"]) if with_plots and rows.height else {}
    text = render(rows, meta, links)
    path = out_dir / f"{meta['study']}.md"
    path.write_text(text)
    return path, text

