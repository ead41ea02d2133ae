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

from . import curves, store, verdicts
from .funnel import entire_space_section
from .gates import diagnostic_summary, gate_utilisation
from .header import explained, header, legend, missing_final_runs, provenance, wall_time  # noqa: F401
from .markdown import escape, image
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


def render(rows: pl.DataFrame, meta: dict[str, Any], plots: dict[str, list[tuple[str, str]]] | None = None,
           curve_rows: pl.DataFrame | None = None, findings: str | None = None) -> str:
    """The markdown leaderboard. ``plots`` maps a dataset label (or "" for study-wide plots, "overall" for the
    critical-difference diagram, "repeats:<label>", "curves") to (caption, relative path) pairs to link.
    ``curve_rows``: the runs' learning curves (``store.read_curves``), when stored; ``findings``: the maintainers'
    analysis published beside the rows (``bench.results.publish``), shown last as inert text."""
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
        lines += entire_space_section(rows, label, decision)  # data whose truth is known (synthetic-funnel)
        lines += curves.section(rows, curve_rows, label)  # replicates' selections, epochs trained and kept
    lines += scarcity_section(cells, meta, plots.get("scarcity", []))
    for caption, path in plots.get("", []):
        lines += [image(caption, path), ""]
    lines += curves.figure_lines(plots.get("curves"))
    lines += findings_section(findings)
    return "\n".join(lines)


def findings_section(findings: str | None) -> list[str]:
    """The maintainers' findings (``leaderboard/<study>/findings.md``), written from the rows after the study ran:
    each line as inert text (``escape``: no link, HTML or table can be injected by a published folder), blank lines
    kept as paragraph breaks and a leading ``- `` as a list item."""
    if not findings or not findings.strip():
        return []
    lines = ["## Findings", "", "Written by the maintainers from the rows and tables above (findings.md beside the raw "
             "rows); every number in it appears above.", ""]
    for line in findings.strip().splitlines():
        item = line.startswith("- ")
        lines.append(("- " + escape(line[2:])) if item else escape(line))
    return [*lines, ""]


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
    rows, curve_rows = store.read_with_curves(root)
    meta = store.read_meta(root)
    if command:
        meta["command"] = command
        store.write_meta(root, meta)
    return write_page(rows, meta, out_dir, with_plots=with_plots, curve_rows=curve_rows)


def write_page(rows: pl.DataFrame, meta: dict[str, Any], out_dir: Path, *, with_plots: bool = True,
               curve_rows: pl.DataFrame | None = None, findings: str | None = None) -> tuple[Path, str]:
    """``out_dir/<study>.md`` and its plots in ``out_dir/<study>/`` from ``rows`` and ``meta`` alone (a store's, or
    a published folder's raw rows: ``bench.results.publish``), with the learning curves and findings when there
    are. Returns the page's path and text."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = component(meta["study"], "study name")  # study.json is data too: its name never leaves out_dir
    for stale in (out_dir / name).glob("*.png"):  # plots of an earlier build that may not be made again
        stale.unlink()
    links = leaderboard_plots(rows, meta, out_dir, name) if with_plots and rows.height else {}
    if with_plots and curve_rows is not None and curve_rows.height:
        links.update(curves.curve_plots(curve_rows, out_dir / name, name))
    text = render(rows, meta, links, curve_rows, findings)
    path = out_dir / f"{name}.md"
    path.write_text(text)
    return path, text

