"""Publishing a study: its page, plots and the raw rows the page is built from, in ``leaderboard/``.

``bench run`` and ``bench leaderboard`` write a page where a user's results belong (``results/<study>.md``, not
tracked by git); ``bench publish`` is the separate step that puts a study into the published folder::

    leaderboard/<study>.md            the page
    leaderboard/<study>/*.png         its plots
    leaderboard/<study>/rows.parquet  every row of the study's store (``store.read``: search trials, final and
                                      repeated runs, diagnostics; each row with its config, package versions,
                                      hardware and git commit), in the store's order
    leaderboard/<study>/study.json    the study's metadata (``store.read_meta``), what the page states besides
    leaderboard/<study>/spec.toml     the spec file that was run (when the store kept it)
    leaderboard/<study>/curves.parquet  the final and repeated runs' learning curves (``store.read_curves``),
                                      when the store holds any
    leaderboard/<study>/findings.md   the maintainers' findings, written by hand from the page (optional; kept
                                      when the study is published again, shown last on the page as inert text)

The page is built from the published files themselves (``read_published``), so ``bench leaderboard --from
leaderboard/<study>/`` rebuilds it byte-identical with no ``runs/``: nothing on it comes from the clock or the
machine that builds it (the date, wall time and environment are the rows').
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl

from bench.errors import UserError
from bench.spec.study import LABEL_RE

from . import store
from .leaderboard import write_page

ROWS = "rows.parquet"
META = "study.json"
SPEC = "spec.toml"
CURVES = "curves.parquet"
FINDINGS = "findings.md"


def publish(root: Path, out_dir: Path, *, with_plots: bool = True) -> tuple[Path, pl.DataFrame]:
    """Copy the store at ``root`` (a ``runs/<study>/``) into ``out_dir/<study>/`` as raw rows, metadata and spec,
    then build ``out_dir/<study>.md`` and its plots from those copies. Returns the page's path and the rows."""
    (rows, curve_rows), meta = store.read_with_curves(root), store.read_meta(root)
    if not rows.height:
        raise UserError(f"study {meta['study']!r} has no stored results in {root}/ yet; run it first "
                        f"(bench run --study {meta['study']})")
    folder = Path(out_dir) / meta["study"]
    folder.mkdir(parents=True, exist_ok=True)
    store.write_atomic(rows, folder / ROWS)
    (folder / ROWS).chmod(0o644)  # a published file, readable as the page beside it (the store's are private)
    (folder / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    spec = Path(root) / SPEC
    if spec.is_file():
        shutil.copyfile(spec, folder / SPEC)
    else:
        (folder / SPEC).unlink(missing_ok=True)  # a spec of an earlier publication is not this one's
    if curve_rows.height:
        store.write_atomic(curve_rows, folder / CURVES)
        (folder / CURVES).chmod(0o644)
    else:
        (folder / CURVES).unlink(missing_ok=True)  # curves of an earlier publication are not this one's
    rows, meta = read_published(folder)
    path, _ = write_page(rows, meta, Path(out_dir), with_plots=with_plots, **read_extras(folder))
    return path, rows


def read_extras(folder: Path) -> dict[str, Any]:
    """What a published folder may hold beside its rows: ``curve_rows`` (curves.parquet) and ``findings``
    (findings.md), each None when absent; a damaged one is a one-line error."""
    folder = Path(folder)
    curve_rows = findings = None
    if (folder / CURVES).is_file():
        curve_rows = store.read_file(folder / CURVES)
        if curve_rows is None:
            raise UserError(f"{folder / CURVES} is damaged (cannot be read as parquet)")
        missing = [c for c in store.CURVE_COLUMNS if c not in curve_rows.columns]
        if missing:
            raise UserError(f"{folder / CURVES} lacks the columns {', '.join(missing)}")
        curve_rows = curve_rows.select([pl.col(c).cast(store.SCHEMA[c]) for c in store.CURVE_COLUMNS])
    if (folder / FINDINGS).is_file():
        try:
            findings = (folder / FINDINGS).read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise UserError(f"{folder / FINDINGS} is not UTF-8 text ({err})") from None
    return {"curve_rows": curve_rows, "findings": findings}


def read_published(folder: Path) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The raw rows and metadata of a published folder (``leaderboard/<study>/``), or a one-line error saying
    what is missing."""
    folder = Path(folder)
    missing = [name for name in (META, ROWS) if not (folder / name).is_file()]
    if missing:
        raise UserError(f"--from {str(folder)!r} is not a published study folder: no {' or '.join(missing)} in it "
                        "(`bench publish --study NAME` writes leaderboard/NAME/ with both)")
    rows = store.read_file(folder / ROWS)
    if rows is None:
        raise UserError(f"{folder / ROWS} is damaged (cannot be read as parquet)")
    try:
        meta = json.loads((folder / META).read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{folder / META} is not valid JSON ({err})") from None
    # the names become file names of the page and its plots: a downloaded folder is checked as a spec would be
    names = [meta.get("study"), *meta.get("datasets", {})] if isinstance(meta, dict) else [None]
    names += rows["dataset"].unique().sort().to_list() if "dataset" in rows.columns else []
    bad = [n for n in names if not isinstance(n, str) or not LABEL_RE.match(n)]
    if bad:
        raise UserError(f"{folder}: {bad[0]!r} is not a valid study or dataset name (letters, digits and _ . + - "
                        "only)")
    # rows published before a column existed get it as nulls; order kept as published (the store's)
    rows = rows.with_columns([pl.lit(None, dtype=t).alias(k) for k, t in store.SCHEMA.items() if k not in rows.columns])
    return rows.select([pl.col(k).cast(t) for k, t in store.SCHEMA.items()]), meta
