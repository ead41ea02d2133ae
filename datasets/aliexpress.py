"""AliExpress (Li et al., CIKM 2020): the public multi-task recommendation benchmark of MTReclib and its papers.

Search logs of AliExpress in five countries. The files need a login to download, so this loader only reads a
local folder: download ``aliexpress_<CC>_datasets.zip`` from Tianchi (https://tianchi.aliyun.com/dataset/74690),
turn it into ``AliExpress_<CC>/train.csv`` and ``test.csv`` with the preprocessing script of MTReclib
(https://github.com/easezyc/Multitask-Recommendation-Library, README "Datasets"), and put the folder at
``<data dir>/aliexpress/AliExpress_<CC>`` (or ``<data dir>/AliExpress_<CC>``, or name it with ``path``). The data
directory is ``--data-dir`` / ``data_dir``, else ``$BENCH_DATA_DIR`` (``bench.datasets.sources``).

Format of each file (as MTReclib reads it): a header line, then one row per impression with 82 comma-separated
fields: a leading id column (``search_id``), 16 integer-coded categorical fields, 63 numeric fields, then
``click`` and ``conversion`` (0/1). The loader verifies the header's field count and last two names, every row's
field count (the first bad row is reported as ``file:line``), that the categorical fields are integers and the
labels 0/1, and that each file has rows; it records the row counts in ``info["rows"]``.

Tasks: ``ctr`` (click) and ``ctcvr`` (click and conversion: y = click * conversion), the pair MTReclib trains;
``cvr`` (conversion given a click) is observed only on clicked rows, a task with missing labels (its loss and
metrics use the clicked rows only). The funnel (``MTLData.funnel``, for ESMM and AITM): ctr -> ctcvr, or ctr -> cvr
when ctcvr is not among the tasks. Features: the 16 categorical fields embedded (vocabularies from the training
split, levels with fewer than ``min_count`` training rows and unseen ones out of vocabulary, optionally hashed into
``hash_buckets``), the 63 numeric ones standardised with training statistics.

Splits: validation is a seeded random ``val_fraction`` of ``train.csv``; test is ``test.csv`` (the later days:
Tianchi splits train and test along time). The harness evaluates the test split only in a study's final stage.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import polars as pl
import torch

from bench.errors import UnknownChoice, UserError

from . import feature_encoding, preprocess, sources
from .base import Funnel, MTLData, Task
from .feature_encoding import CategoricalEncoding
from .preprocess import first_line, parse_names
from .registry import register_dataset
from .table_files import check_row_widths

COUNTRIES = ("NL", "ES", "FR", "US", "RU")
N_CATEGORICAL, N_NUMERIC = 16, 63
N_FIELDS = 1 + N_CATEGORICAL + N_NUMERIC + 2  # id, categorical, numeric, click, conversion
LABEL_NAMES = ("click", "conversion")
TASKS = ("ctr", "ctcvr", "cvr")
DEFAULT_TASKS = ("ctr", "ctcvr")
TIANCHI = "https://tianchi.aliyun.com/dataset/74690"
MTRECLIB = "https://github.com/easezyc/Multitask-Recommendation-Library"
FOLDER = "aliexpress"


def folder_name(country: str) -> str:
    return f"AliExpress_{country}"


def find_folder(country: str, data_dir: str, path: str) -> Path:
    """The folder holding ``train.csv`` and ``test.csv``; a one-line error saying where to get them when absent."""
    if path:
        candidates = [Path(path).expanduser()]
    else:
        root = sources.resolve_data_dir(data_dir)
        candidates = [root / FOLDER / folder_name(country), root / folder_name(country)]
    for folder in candidates:
        if (folder / "train.csv").is_file() and (folder / "test.csv").is_file():
            return folder
    missing = [f"{c}/{name}" for c in candidates[:1] for name in ("train.csv", "test.csv") if not (c / name).is_file()]
    raise UserError(
        f"aliexpress: {', '.join(missing)} not found; the files need a Tianchi login: download "
        f"aliexpress_{country}_datasets.zip from {TIANCHI}, make {folder_name(country)}/train.csv and test.csv with "
        f"MTReclib's preprocessing ({MTRECLIB}, README 'Datasets') and put the folder at {candidates[0]}"
        + (f" or {candidates[1]}" if len(candidates) > 1 else "")
        + " (or set path= to the folder)"
    )


def read_file(path: Path) -> pl.DataFrame:
    """One processed file, verified: columns ``c0..c15`` (Int64), ``n0..n62`` (Float64), ``click``, ``conversion``."""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as f:
            header = f.readline().strip()
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    names = [h.strip() for h in header.split(",")]
    if len(names) != N_FIELDS or tuple(names[-2:]) != LABEL_NAMES:
        raise UserError(
            f"{path}:1: not an AliExpress file: expected a header of {N_FIELDS} fields (id, {N_CATEGORICAL} "
            f"categorical, {N_NUMERIC} numeric, click, conversion), found {len(names)} ending in "
            f"{', '.join(names[-2:])}"
        )
    check_row_widths(path, ",")
    cat = [f"c{i}" for i in range(N_CATEGORICAL)]
    num = [f"n{i}" for i in range(N_NUMERIC)]
    if len(set(names)) != len(names):
        raise UserError(f"{path}:1: the header names a column twice")
    # the complete schema, in file order, under the header's own names (nothing inferred); then our names
    types = [pl.String, *[pl.Int64] * N_CATEGORICAL, *[pl.Float32] * N_NUMERIC, pl.Int64, pl.Int64]
    try:
        frame = pl.read_csv(path, has_header=True, schema=dict(zip(names, types, strict=True)), glob=False)
        frame.columns = ["id", *cat, *num, *LABEL_NAMES]
    except pl.exceptions.PolarsError as err:
        raise UserError(
            f"{path}: cannot read; the {N_CATEGORICAL} categorical fields must be integer codes and "
            f"the labels 0/1 ({first_line(err)})"
        ) from None
    if len(frame) == 0:
        raise UserError(f"{path}: the file has a header but no rows")
    for c in LABEL_NAMES:
        bad = frame.select((~pl.col(c).is_in([0, 1]) | pl.col(c).is_null()).arg_true())
        if len(bad):
            i = bad.item(0, 0)
            raise UserError(f"{path}:{i + 2}: {c} must be 0 or 1, got {frame[c][i]!r}")
    empty = frame.select(
        pl.any_horizontal(
            *[pl.col(c).is_null() for c in cat], *[pl.col(c).is_null() | pl.col(c).is_nan() for c in num]
        ).arg_true()
    )
    if len(empty):
        i = empty.item(0, 0)
        raise UserError(f"{path}:{i + 2}: a categorical or numeric field is empty or not a number")
    return frame.with_columns(pl.col(c).cast(pl.Float32) for c in LABEL_NAMES)


def label_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """``y_ctr`` = click, ``y_ctcvr`` = click * conversion, ``y_cvr`` = conversion where click = 1, else null."""
    click, conversion = pl.col("click"), pl.col("conversion")
    return frame.with_columns(
        click.alias("y_ctr"),
        (click * conversion).alias("y_ctcvr"),
        pl.when(click == 1).then(conversion).otherwise(None).alias("y_cvr"),
    )


@register_dataset("aliexpress")
def aliexpress(
    *,
    country: str = "NL",
    data_dir: str = "",
    path: str = "",
    tasks: list[str] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    min_count: int = 1,
    hash_buckets: int = 0,
    cache: bool = True,
) -> MTLData:
    """AliExpress search logs of one country: CTR and CTCVR (and CVR on clicked rows), from a local folder."""
    if country not in COUNTRIES:
        raise UnknownChoice("aliexpress country", str(country), COUNTRIES)
    names = parse_names(tasks, "tasks")
    names = list(DEFAULT_TASKS) if names is None else names
    if not names or len(set(names)) != len(names):
        raise UserError(f"aliexpress: tasks must be distinct and at least one, got {names}")
    for name in names:
        if name not in TASKS:
            raise UnknownChoice("task of dataset aliexpress", name, TASKS)
    if not 0 < val_fraction < 1:
        raise UserError(f"aliexpress: val_fraction must lie in (0, 1), got {val_fraction}")
    encoding = CategoricalEncoding("embedding", min_count=min_count, hash_buckets=hash_buckets)
    folder = find_folder(country, data_dir, path)
    files = {"train": folder / "train.csv", "test": folder / "test.csv"}
    options = {"country": country, "val_fraction": val_fraction, "seed": seed, "encoding": encoding.options()}

    def build() -> MTLData:
        train_file, test_file = (label_columns(read_file(files[k])) for k in ("train", "test"))
        n = len(train_file)
        n_val = round(n * val_fraction)
        if not 0 < n_val < n:
            raise UserError(f"aliexpress: {n} training rows with val_fraction={val_fraction} leave an empty split")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))  # seeded validation carve-out
        frames = {
            "train": preprocess.take(train_file, perm[n_val:].sort().values),
            "val": preprocess.take(train_file, perm[:n_val].sort().values),
            "test": test_file,
        }
        info = {
            "options": options,
            "rows": {"train.csv": len(train_file), "test.csv": len(test_file)},
            "clicks": {k: int(f["click"].sum()) for k, f in (("train.csv", train_file), ("test.csv", test_file))},
            "conversions": {
                k: int((f["click"] * f["conversion"]).sum())
                for k, f in (("train.csv", train_file), ("test.csv", test_file))
            },
        }
        cat = [f"c{i}" for i in range(N_CATEGORICAL)]
        num = [f"n{i}" for i in range(N_NUMERIC)]
        tasks_ = [Task(t, "binary") for t in TASKS]
        return preprocess.to_data("aliexpress", tasks_, frames, num, cat, [f"y_{t}" for t in TASKS], info, encoding)

    code = sources.code_digest(preprocess, feature_encoding, sources, sys.modules[__name__])
    data = sources.cached(f"aliexpress-{country}", options, files, build, code=code, use_cache=cache)
    data = data.select_tasks(names)
    data.info["tasks"] = names
    return replace(data, funnel=funnel_of(names))


def funnel_of(names: list[str]) -> Funnel | None:
    """The funnel the chosen tasks form: ctr -> ctcvr (joint, MTReclib's pair), else ctr -> cvr (conversion given
    a click); None without ctr or a conversion task."""
    if "ctr" in names and "ctcvr" in names:
        return Funnel(("ctr", "ctcvr"), (False, False))
    if "ctr" in names and "cvr" in names:
        return Funnel(("ctr", "cvr"), (False, True))
    return None
