"""The leaderboard page: ``results/<study>.md`` (``leaderboard/<study>.md`` once published:
``bench.results.publish``) rendered with tabulate from the tables of ``bench.results.tables`` (definitions there)
and ``bench.results.repeats``, with the plots of ``bench.results.plots``. The same rows and metadata always give
byte-identical markdown; a study without repeated runs renders without their section.

This module is the page's pipeline (tables -> plots -> markdown -> file); its parts are rendered by
``bench.results.header`` (title, protocol, legend) and ``bench.results.sections`` (overall ranking, one section
per dataset, label scarcity), whose public functions are importable from here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from bench.paths import component
from bench.spec.decision import decision_from_meta

from . import store, verdicts
from .funnel import entire_space_section
from .gates import diagnostic_summary, gate_utilisation
from .header import explained, header, legend, missing_final_runs, provenance, wall_time  # noqa: F401
from .markdown import image
from .plots import leaderboard_plots
from .sections import (  # noqa: F401  (re-exported: the page's sections)
    configurations,
    dataset_section,
    gates_section,
    observed_labels,
    overall_section,
    published,
    scarcity_section,
    wandb_links,
)
from .tables import (
    arch_summary,
    overall_ranking,
    pareto_front,
    task_summary,
    with_gains,
)


def render(rows: pl.DataFrame, meta: dict[str, Any], plots: dict[str, list[tuple[str, str]]] | None = None) -> str:
    """The markdown leaderboard. ``plots`` maps a dataset label (or "" for study-wide plots, "overall" for the
    critical-difference diagram, "repeats:<label>") to (caption, relative path) pairs to link."""
    plots = plots or {}
    decision = decision_from_meta(meta)
    archs = arch_summary(rows, decision)
    cells = with_gains(task_summary(rows), decision)
    labels = list(meta.get("datasets", {})) or sorted(archs["dataset"].unique().to_list())
    lines = header(rows, meta)
    lines += verdicts.page_verdict(archs, labels)
    lines += legend(decision)  # before the tables and plots it explains
    if len(labels) > 1:
        lines += overall_section(archs, meta, labels, plots.get("overall", []))
    for label in labels:
        lines += dataset_section(rows, meta, label, archs, cells, plots)
        lines += entire_space_section(rows, label)  # data whose truth is known (synthetic-funnel)
    lines += scarcity_section(cells, meta, plots.get("scarcity", []))
    for caption, path in plots.get("", []):
        lines += [image(caption, path), ""]
    return "\n".join(lines)


def tables(rows: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The leaderboard's tables by name (what experiment tracking logs beside the page); list columns of
    per-seed values are left out."""
    archs = arch_summary(rows)
    cells = with_gains(task_summary(rows)).drop("values", "seeds", "replicates", "draws")
    return {"leaderboard": archs, "overall": overall_ranking(archs)[0], "tasks": cells, "pareto": pareto_front(cells),
            "gates": diagnostic_summary(rows), "gate_utilisation": gate_utilisation(rows)}


def build(root: Path, out_dir: Path, *, with_plots: bool = True, command: str | None = None) -> tuple[Path, str]:
    """Rebuild ``out_dir/<study>.md`` (and plots in ``out_dir/<study>/``) from the store at ``root``. ``command``:
    the exact command that produced the results, for the header (kept in the study's metadata for later
    rebuilds; default ``bench run --study NAME``)."""
    rows = store.read(root)
    meta = store.read_meta(root)
    if command:
        meta["command"] = command
        store.write_meta(root, meta)
    return write_page(rows, meta, out_dir, with_plots=with_plots)


def write_page(rows: pl.DataFrame, meta: dict[str, Any], out_dir: Path, *, with_plots: bool = True) -> tuple[Path, str]:
    """``out_dir/<study>.md`` and its plots in ``out_dir/<study>/`` from ``rows`` and ``meta`` alone (a store's, or
    a published folder's raw rows: ``bench.results.publish``). Returns the page's path and text."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = component(meta["study"], "study name")  # study.json is data too: its name never leaves out_dir
    for stale in (out_dir / name).glob("*.png"):  # plots of an earlier build that may not be made again
        stale.unlink()
    links = leaderboard_plots(rows, meta, out_dir, name) if with_plots and rows.height else {}
    text = render(rows, meta, links)
    path = out_dir / f"{name}.md"
    path.write_text(text)
    return path, text

