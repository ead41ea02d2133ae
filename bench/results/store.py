"""The tidy results store of a study: long-format rows in parquet files under ``runs/<study>/``.

Layout of ``runs/<study>/``::

    study.json                        the spec's metadata (budget, datasets and options, spec hash): with the
                                      rows below, all the leaderboard needs
    spec.toml                         a copy of the spec file that was run
    optuna.journal                    Optuna JournalStorage (file backend): one Optuna study per unit, named
                                      "<dataset>/<arch>" or "<dataset>/single_task/<task>" (unless --storage)
    locks/                            the study's file locks (claims, units, and the lock every append to the
                                      journal takes: ``coordination.locks.JournalLock``)
    results/search/<dataset>/<unit>.parquet
                                      search-stage rows of one unit, re-exported from Optuna after its trials
    results/final/<dataset>/<unit>/seed-<k>.parquet
                                      one final run (best config retrained with seed k, test evaluated once)
    results/repeat/<dataset>/<unit>/seed-<k>.parquet
                                      one repeated run (--repeats N, seeds 1001..1000+N; bench.results.repeats)

``<unit>`` is the architecture's name, or ``single_task@<task>`` for the per-task single-task baselines. A name
becomes a path component through ``bench.paths.component`` only (task names come from the user's data): a ``/``,
a backslash, a glob or control character as ``%XX``, a leading ``.`` as ``%2E``; a name without them is its own path.
Every file is read with globbing off, so a ``[`` in a name is never a pattern.
Replicate k >= 2 of a study with ``replicates = R`` (``bench.spec.replicates``) has its own files beside these,
named with an ``r<k>-`` prefix: ``results/search/<dataset>/r<k>-<unit>.parquet``,
``results/<stage>/<dataset>/<unit>/r<k>-seed-<j>.parquet`` and ``models/<dataset>/<unit>/r<k>-seed-<j>.ckpt``,
and its own Optuna studies, named ``<dataset>/<arch>[/<task>]#r<k>``. Replicate 1 keeps the names above, so a
store written before replicates is its replicate 1 and resumes unchanged.
The final and repeated runs' rows live here only, never in Optuna's study attributes; with ``--storage URL``
each run's file is also kept in the database (``bench.coordination.shared``) for the other machines' stores.
Every file is written whole to a temporary name and renamed, so a crash never leaves a partial file, and
workers writing different units or seeds never touch the same file. ``read(dir)`` concatenates them all.

One row per (study, dataset, architecture, target, stage, trial, seed, split, task, metric):

- ``stage`` "search": ``split`` "val"; for every finished trial one row ``task`` "*", ``metric`` "objective"
  (the best validation objective; for a pruned trial the last reported one; null for a failure), plus
  for complete trials one row per task and metric at the best epoch. ``status`` complete/pruned/failed.
- ``stage`` "final": ``split`` "val" and "test", one row per task and metric; ``trial`` is the search trial
  whose configuration was retrained.
- ``stage`` "repeat": as "final", for the repeated runs of the same configuration (``bench.results.repeats``).

- ``observed`` on the "final" and "repeat" rows of a task's metrics: the rows of that split whose label of the task
  is observed, the rows the metric was computed on (all of them unless the dataset has missing labels). Null on
  every other row, and on rows written before the column existed.
- entire-space metrics, on data whose truth is known (``synthetic-funnel``): final and repeated runs also store,
  ``split`` "test", per binary task with a known truth, ``metric`` ``auc_entire`` (the AUC over every test impression
  against the outcome drawn for each, an unclicked impression's counterfactual conversion included) and
  ``calib_entire`` (mean |p^ - p| against the true probability the label was drawn from; lower is better), with
  ``observed`` the number of test impressions (``bench.training.metrics.entire_space_metrics``). The usual ``auc``
  and ``logloss`` of a task such as ``cvr`` stay those of its observed (clicked) rows.
- diagnostics of a gated architecture's final and repeated runs (``bench.training.diagnostics``): ``split``
  "test", ``kind`` "diagnostic", ``metric`` gate_weight / gate_entropy / gate_entropy_norm / gate_unused (per
  ``level`` and ``task``; gate_weight also per ``expert``) and expert_dead_units (per ``level`` and ``expert``,
  ``task`` "*"), stored in the run's file beside its metrics. ``level`` and ``expert`` are null on other rows.

- ``replicate``: the replicate (1..R) of the whole pipeline, search and final seeds, with its own sampler stream
  and, where the data allow it, its own data draw (``replicates = R`` in a spec). Null on rows written before the
  column existed; readers take null as replicate 1 (R = 1 is the single pipeline run of older stores).

- ``drawn_by`` on "search" rows: what drew the trial's configuration: "random" (a random sampler, or TPE in its
  random start-up of ``n_startup_trials``), "tpe" (TPE's model of the unit's earlier trials) or "grid". Null on
  other rows and on search rows written before the column existed (the leaderboard then infers it from the trial
  number and the start-up of the time, Optuna's default of 10).

- ``draw``: test-set sampling error (``bench.training.bootstrap``). Beside its ordinary rows, each final and repeated
  run stores its primary test metric (``split`` "test", the task's ``kind`` and ``metric``) on each of B resamples of
  the test split, one row per resample b with ``draw`` = b (1..B). The resamples depend only on the task's test
  labels (common random numbers: every unit is scored on the same resampled rows), so the leaderboard pairs them
  (``bench.results.bootstrap``). ``draw`` is null on every other row, and rows written before the column existed
  have no resamples: the leaderboard then says that its intervals leave out test-set error. Readers of a run's
  metrics filter ``draw`` null.

- ``epoch``: learning curves. Each final and repeated run also stores its per-epoch history (the MMoE paper's figure
  4 shows how the loss evolves): ``kind`` "curve", ``epoch`` e (0-based), ``split`` "train" with ``task`` "*" and
  ``metric`` "loss" (the epoch's mean training loss, the weighted sum the optimiser saw), and ``split`` "val" with one
  row per task and metric plus ``task`` "*", ``metric`` "objective". Only finite values are stored (a diverged
  epoch has no row). ``epoch`` is null on every other row. ``read`` leaves these rows out (every reader of a run's
  metrics sees exactly what it saw before they existed); ``read_curves`` returns them.

``wandb_run`` / ``wandb_url``: the W&B run of the trial or final run (``bench.tracking``); null when not
tracked, the URL only when tracked online.
"""

from __future__ import annotations

import errno
import io
import json
import os
import platform
import subprocess
import tempfile
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl

from bench.errors import UserError
from bench.paths import aside, component

SCHEMA: dict[str, pl.DataType] = {
    "study": pl.String,
    "dataset": pl.String,
    "architecture": pl.String,
    "target": pl.String,  # what the unit was tuned for: "mean", a main task, or single_task's own task
    "stage": pl.String,
    "trial": pl.Int64,
    "seed": pl.Int64,
    "status": pl.String,
    "split": pl.String,
    "task": pl.String,
    "kind": pl.String,  # task kind (binary/regression/multiclass); "" for the objective row
    "metric": pl.String,
    "value": pl.Float64,
    "n_params": pl.Int64,
    "seconds": pl.Float64,
    "epochs": pl.Int64,
    "config_hash": pl.String,
    "config": pl.String,  # JSON
    "git_commit": pl.String,
    "versions": pl.String,  # JSON: python and package versions
    "hardware": pl.String,
    "finished_at": pl.String,  # ISO 8601, UTC
    "wandb_run": pl.String,  # W&B run id (bench.tracking), null when not tracked
    "wandb_url": pl.String,  # its URL, when tracked online
    "level": pl.Int64,  # diagnostics (kind "diagnostic"): the extraction level; null otherwise
    "expert": pl.Int64,  # diagnostics: the expert, in the level's bank order; null otherwise
    "observed": pl.Int64,  # final/repeat metric rows: the split's rows with the task's label observed
    "replicate": pl.Int64,  # which replicate of the whole pipeline (search and final seeds) the row belongs to
    "drawn_by": pl.String,  # search rows: what drew the trial's configuration (random, tpe, grid); null otherwise
    "draw": pl.Int64,  # test-set resample (1..B) of a final/repeat run's primary test metric; null otherwise
    "epoch": pl.Int64,  # learning-curve rows (kind "curve"): the epoch; null otherwise
}

CURVE = "curve"  # the store's ``kind`` of learning-curve rows (``epoch`` set)
CURVE_COLUMNS = ["study", "dataset", "architecture", "target", "stage", "replicate", "seed", "config_hash", "split",
                 "task", "metric", "epoch", "value"]


def empty() -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMA)


def frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows (dicts with SCHEMA's keys; missing ones null) as a frame with the store's schema."""
    return pl.DataFrame([{k: r.get(k) for k in SCHEMA} for r in rows], schema=SCHEMA, orient="row")


def write_atomic(df: pl.DataFrame, path: Path) -> None:
    """Write ``df`` to a temporary file beside ``path``, then rename it: ``path`` is the old file or the new one,
    never a partial one. A full disk (or any other OS error) is an ``OSError`` naming ``path``."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        df.write_parquet(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise OSError(err.errno, err.strerror or str(err), str(path)) from None
    except pl.exceptions.PolarsError as err:  # polars reports its own I/O errors (a full disk among them)
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        code = errno.ENOSPC if "no space left" in text.lower() else errno.EIO
        raise OSError(code, os.strerror(code) if code == errno.ENOSPC else text, str(path)) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def read_file(path: Path | io.BytesIO) -> pl.DataFrame | None:
    """One stored parquet file (or its bytes), or None when it cannot be read (truncated, damaged)."""
    try:
        return pl.read_parquet(path, glob=False)  # a name holding "[" or "**" is a file name, not a pattern
    except (OSError, pl.exceptions.PolarsError, ValueError):
        return None


def encode(df: pl.DataFrame) -> bytes:
    """A stored file's bytes (what ``write_atomic`` writes): how a run is shared with workers on other machines
    (``bench.coordination.shared``)."""
    buffer = io.BytesIO()
    df.write_parquet(buffer)
    return buffer.getvalue()


def decode(content: bytes) -> pl.DataFrame | None:
    """The rows of ``encode``'s bytes, or None when they cannot be read."""
    return read_file(io.BytesIO(content))


def set_aside(path: Path) -> Path:
    """Rename a damaged file to ``<name>.damaged-<UTC time>`` beside it (ignored by ``read``; nothing is deleted)."""
    target = aside(path, "damaged")
    path.rename(target)
    return target


def unit_name(arch: str, target: str) -> str:
    """The unit's path component: ``mmoe``, ``single_task@<task>`` (``bench.paths.component``: never a
    separator, ``..`` or a glob character, whatever the task is called)."""
    return component(f"{arch}@{target}" if arch == "single_task" else arch, "unit name")


def replicate_prefix(replicate: int) -> str:
    """The file-name prefix of replicate k's files: none for replicate 1, ``r<k>-`` for the others."""
    return "" if replicate == 1 else f"r{int(replicate)}-"


def search_path(root: Path, dataset: str, arch: str, target: str, replicate: int = 1) -> Path:
    folder = Path(root) / "results" / "search" / component(dataset, "dataset label")
    return folder / f"{replicate_prefix(replicate)}{unit_name(arch, target)}.parquet"


def stage_path(root: Path, stage: str, dataset: str, arch: str, target: str, seed: int, replicate: int = 1) -> Path:
    """``results/<stage>/<dataset>/<unit>/[r<r>-]seed-<k>.parquet``: one file per (unit, replicate, seed)."""
    name = f"{replicate_prefix(replicate)}seed-{seed}.parquet"
    return (Path(root) / "results" / component(stage, "stage") / component(dataset, "dataset label")
            / unit_name(arch, target) / name)


def model_path(root: Path, dataset: str, arch: str, target: str, seed: int, replicate: int = 1) -> Path:
    """``models/<dataset>/<unit>/[r<r>-]seed-<k>.ckpt``: a final run's saved model (``bench.training.models``)."""
    name = f"{replicate_prefix(replicate)}seed-{seed}.ckpt"
    return Path(root) / "models" / component(dataset, "dataset label") / unit_name(arch, target) / name


def read(root: Path) -> pl.DataFrame:
    """All rows stored under ``root`` (a ``runs/<study>/`` directory) but the learning curves, in a stable order."""
    return read_with_curves(root)[0]


def read_curves(root: Path) -> pl.DataFrame:
    """The learning-curve rows stored under ``root`` (``CURVE_COLUMNS``), one per run, epoch, split, task and
    metric, in a stable order."""
    return read_with_curves(root)[1]


def read_with_curves(root: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``read`` and ``read_curves`` of ``root`` from one pass over its files."""
    rows = read_all(root)
    return rows.filter(pl.col("epoch").is_null()), curves_of(rows)


def curves_of(rows: pl.DataFrame) -> pl.DataFrame:
    """The learning-curve rows of ``rows`` (any frame with the store's columns), ``CURVE_COLUMNS`` only."""
    return (rows.filter(pl.col("epoch").is_not_null()).select(CURVE_COLUMNS)
            .with_columns(pl.col("replicate").fill_null(1))
            .sort(["dataset", "architecture", "target", "stage", "replicate", "seed", "split", "task", "metric",
                   "epoch"]))


def read_all(root: Path) -> pl.DataFrame:
    """Every row stored under ``root``, learning curves included, in a stable order."""
    files = sorted((root / "results").glob("**/*.parquet"))
    if not files:
        return empty()
    frames = []
    for f in files:
        df = read_file(f)
        if df is None:
            raise UserError(f"{f} is damaged (cannot be read as parquet); rerun `bench run` on the study: it sets "
                            "the file aside and restores or retrains that run")
        frames.append(df)
    df = pl.concat(frames, how="diagonal_relaxed")
    # files written before a column existed (e.g. wandb_run) get it as nulls
    df = df.with_columns([pl.lit(None, dtype=t).alias(k) for k, t in SCHEMA.items() if k not in df.columns])
    df = df.select([pl.col(k).cast(t) for k, t in SCHEMA.items()])
    return df.sort(["dataset", "architecture", "target", "stage", "replicate", "trial", "seed", "split", "task",
                    "metric", "level", "expert", "draw", "epoch"], nulls_last=True)


def run_files(root: Path, *stages: str) -> list[Path]:
    """The stored files of every run of ``stages`` (``stage_path``'s layout: any dataset, unit and replicate)."""
    return sorted(p for stage in stages for p in (Path(root) / "results" / stage).glob("*/*/*seed-*.parquet"))


def stored_seeds(root: Path, stage: str = "final") -> set[int]:
    """The seeds of every stored run of ``stage`` (any dataset, unit and replicate)."""
    return {int(p.stem.split("-")[-1]) for p in run_files(root, stage)}


def stored_replicates(root: Path) -> set[int]:
    """The replicates with any stored run or search rows (1 for files without an ``r<k>-`` prefix)."""
    found = set()
    for p in (Path(root) / "results").glob("*/*/**/*.parquet"):
        head = p.name.split("-", 1)[0]
        found.add(int(head[1:]) if head[:1] == "r" and head[1:].isdigit() and "-" in p.name else 1)
    return found


def write_meta(root: Path, meta: dict[str, Any]) -> None:
    tmp = root / ".study.json.tmp"
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, root / "study.json")
    except OSError as err:  # a full disk names the file (bench.cli reports it in one line)
        tmp.unlink(missing_ok=True)
        raise OSError(err.errno, err.strerror or str(err), str(root / "study.json")) from None


def read_meta(root: Path) -> dict[str, Any]:
    return json.loads((root / "study.json").read_text())


# --- the study directory ----------------------------------------------------------------------------------
def move_aside(root: Path) -> Path | None:
    """``--fresh``: rename ``runs/<study>`` to ``runs/<study>.old-<UTC time>`` (nothing is deleted)."""
    root = Path(root)
    if not root.exists():
        return None
    target = aside(root, "old")
    root.rename(target)
    return target


def ensure_writable(path: Path, what: str) -> None:
    """Check, without creating anything, that directory ``path`` exists or can be created, and can be written
    in (a temporary file in its nearest existing ancestor), or a ``UserError``."""
    path = Path(path)
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{what} {str(path)!r} cannot be a directory: {str(existing)!r} is a file")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".bench-write-check-"):
            pass
    except OSError as err:
        raise UserError(f"{what} {str(path)!r} is not writable ({err.strerror or err})") from None


# --- provenance ------------------------------------------------------------------------------------------
@cache
def git_commit() -> str:
    repo = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


@cache
def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for pkg in ("mtl-bench", "torch", "lightning", "optuna", "polars"):
        try:
            found[pkg] = version(pkg)
        except PackageNotFoundError:
            found[pkg] = "unknown"
    return json.dumps(found, sort_keys=True)


def now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()
