"""Shared parsing and splitting of tabular data, all in polars, and ``to_data``: per-split frames to an ``MTLData``,
tensors only at the end.

The features are encoded by ``feature_encoding`` (training-split statistics only; its rules are in that module's
docstring); its names (``CategoricalEncoding``, ``FeatureEncoding``, ``encode_features``, ...) are re-exported here,
where the loaders and tests have always found them.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import polars as pl
import torch

from bench.errors import UserError

from .base import MTLData, Split
from .feature_encoding import (  # noqa: F401  (re-exported)
    ENCODINGS,
    MISSING_LEVEL,
    UNKNOWN_LEVEL,
    CategoricalEncoding,
    Encoded,
    FeatureEncoding,
    bucket,
    encode_features,
)

SPLITS = ("train", "val", "test")



# ---------------------------------------------------------------------------------------------- raw files


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when the name ends in ``.gz``."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise UserError(f"{path}: not a valid gzip file ({err})") from None
    return raw


def read_lines(path: Path, *, skip_prefix: str = "|") -> pl.DataFrame:
    """Non-blank lines of a header-less text file as ``line`` (1-based number) and ``text``.

    Lines starting with ``skip_prefix`` are notes, not records (the official ``adult.test`` opens with
    ``|1x3 Cross validator``).
    """
    raw = read_bytes(path)
    if not raw.strip():
        raise UserError(f"{path}: the file is empty")
    try:
        # one column per line: the unit separator never occurs in these files; blank lines read as null
        lines = pl.read_csv(
            raw, has_header=False, separator="\x1f", quote_char=None, infer_schema=False,
            new_columns=["text"], encoding="utf8-lossy",
        )
    except pl.exceptions.PolarsError as err:
        raise UserError(f"{path}: cannot read ({first_line(err)})") from None
    text = pl.col("text").str.strip_chars()
    out = lines.with_row_index("line", offset=1).filter(text.is_not_null() & (text != ""))
    if skip_prefix:
        out = out.filter(~text.str.starts_with(skip_prefix))
    return out


def count_records(path: Path, separator: str = ",") -> tuple[int, set[int]]:
    """Rows and the set of fields-per-row counts of a header-less delimited file (download verification)."""
    lines = read_lines(path)
    counts = lines.select(pl.col("text").str.count_matches(separator, literal=True) + 1).to_series()
    return len(lines), set(counts.unique().to_list())


def read_records(path: Path, columns: list[str], *, separator: str = ",") -> pl.DataFrame:
    """A header-less delimited file as string columns (whitespace stripped) plus ``line``.

    Every row must have ``len(columns)`` fields; the first that does not is reported with its file and line.
    """
    lines = read_lines(path)
    n_fields = pl.col("text").str.count_matches(separator, literal=True) + 1
    bad = lines.filter(n_fields != len(columns))
    if len(bad):
        line, text = bad.row(0)
        found = text.count(separator) + 1
        raise UserError(
            f"{path}:{line}: malformed row: expected {len(columns)} {separator!r}-separated fields, found {found}"
        )
    fields = pl.col("text").str.split(separator).list.to_struct(fields=columns)
    out = lines.select("line", fields.alias("f")).unnest("f")
    return out.with_columns(pl.col(c).str.strip_chars() for c in columns)


def first_line(err: BaseException) -> str:
    lines = [s.strip() for s in str(err).splitlines() if s.strip()]
    return lines[0] if lines else type(err).__name__


def where(frame: pl.DataFrame, index: int, source: str | Path) -> str:
    """``file:line`` of a row of a frame read by ``read_records`` (or ``file`` when lines are not known)."""
    if "line" in frame.columns:
        return f"{source}:{frame['line'][index]}"
    return str(source)


def to_numbers(frame: pl.DataFrame, columns: list[str], source: str | Path, *, na: tuple[str, ...] = ("?", "")):
    """String columns cast to Float64; ``na`` markers become null, anything else unparsable is an error."""
    exprs = []
    for c in columns:
        text = pl.col(c).cast(pl.String).str.strip_chars()
        value = pl.when(text.is_in(list(na))).then(None).otherwise(text)
        bad = frame.select(((value.cast(pl.Float64, strict=False).is_null()) & value.is_not_null()).arg_true())
        if len(bad):
            i = bad.item(0, 0)
            raise UserError(f"{where(frame, i, source)}: column {c}: {frame[c][i]!r} is not a number")
        exprs.append(value.cast(pl.Float64).fill_nan(None).alias(c))
    return frame.with_columns(exprs)


# ---------------------------------------------------------------------------------------------- splits


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise UserError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must each lie in [0, 1) "
            "and sum to less than 1"
        )


def random_split(n: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, torch.Tensor]:
    """Row indices of a seeded random train/val/test split."""
    check_fractions(val_fraction, test_fraction)
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut_val, cut_test = n - n_val - n_test, n - n_test
    parts = {"train": perm[:cut_val], "val": perm[cut_val:cut_test], "test": perm[cut_test:]}
    for name, idx in parts.items():
        if len(idx) == 0:
            raise UserError(
                f"the {name} split is empty: {n} rows with val_fraction={val_fraction}, test_fraction={test_fraction}"
            )
    return {k: v.sort().values for k, v in parts.items()}


def halve(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random 1:1 split of ``n`` rows (the paper's validation/test split of the official test file)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    first, second = perm[: (n + 1) // 2].sort().values, perm[(n + 1) // 2 :].sort().values
    if len(second) == 0:
        raise UserError(f"cannot split {n} row(s) 1:1 into validation and test: the test split would be empty")
    return first, second


def take(frame: pl.DataFrame, idx: torch.Tensor) -> pl.DataFrame:
    return frame[idx.numpy()]


# ---------------------------------------------------------------------------------------------- frames to data


def label_tensor(frames: dict[str, pl.DataFrame], columns: list[str]) -> dict[str, torch.Tensor]:
    """``y (N, T)`` float32 per split from label columns already mapped to numbers; a null (a missing label)
    becomes NaN, the mark of an unobserved label (``bench.datasets.observed``)."""
    return {
        s: f.select(pl.col(c).cast(pl.Float32).fill_null(float("nan")) for c in columns).to_torch(dtype=pl.Float32)
        for s, f in frames.items()
    }


def parse_names(value, what: str) -> list[str] | None:
    """A list option given as a list, or as a comma-separated string (from the command line)."""
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise UserError(f"{what} must be a list of names, got {value!r}")


def to_data(
    name: str, tasks: list, frames: dict[str, pl.DataFrame], numeric: list[str], categorical: list[str],
    label_columns: list[str], info: dict, encoding: CategoricalEncoding | None = None,
) -> MTLData:
    """An ``MTLData`` from per-split frames: features encoded with training statistics, labels stacked."""
    enc = encode_features(frames, numeric, categorical, encoding)
    ys = label_tensor(frames, label_columns)
    return MTLData(
        name=name,
        tasks=tasks,
        train=Split(enc.x["train"], ys["train"], enc.cat["train"]),
        val=Split(enc.x["val"], ys["val"], enc.cat["val"]),
        test=Split(enc.x["test"], ys["test"], enc.cat["test"]),
        feature_names=enc.names,
        info={**info, "feature_groups": enc.groups, "encoding": enc.encoding.to_dict()},
        fields=enc.fields,
    )
