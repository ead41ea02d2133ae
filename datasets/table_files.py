"""The user's files, as ``table`` reads them (and ``bench predict``, ``encode_file``): paths and globs, CSV or
Parquet with each row's file and line, and the cell checks of numeric columns (``NUMERIC_RULE``), whose errors name
the file, line and column of the first bad cell.
"""

from __future__ import annotations

import glob
from pathlib import Path

import polars as pl
import torch

from bench.errors import UserError

from . import preprocess
from .feature_encoding import FeatureEncoding
from .preprocess import first_line

LINE = "__line"  # row number in its file (1-based, counting the header line)
FILE = "__file"


def resolve_paths(path, data_dir: str) -> list[Path]:
    """The files ``path`` names (a file, a glob or a list of them; relative ones from ``data_dir``, else the
    working directory), each of which must exist."""
    if path is None or path == "" or path == []:
        raise UserError("table: no path given; set path to a CSV or Parquet file, a glob or a list of files")
    items = [path] if isinstance(path, str) else path
    if not isinstance(items, (list, tuple)) or not all(isinstance(p, str) for p in items):
        raise UserError(f"table: path must be a file name, a glob or a list of them, got {path!r}")
    root = Path(data_dir).expanduser() if data_dir else Path.cwd()
    out: list[Path] = []
    for item in items:
        p = Path(item).expanduser()
        p = p if p.is_absolute() else root / p
        if any(ch in str(p) for ch in "*?[") and not p.is_file():  # a file named "t[1].csv" is that file
            matches = sorted(Path(m) for m in glob.glob(str(p)))
            if not matches:
                raise UserError(f"table: no file matches {p}")
            out.extend(matches)
        elif not p.is_file():
            raise UserError(f"table: file not found: {p}")
        else:
            out.append(p)
    return out


def check_row_widths(path: Path, separator: str) -> None:
    """Report the first CSV line whose field count differs from the header's (polars pads short rows)."""
    lines = preprocess.read_lines(path, skip_prefix="")
    # quoted fields may hold the separator: drop quoted spans before counting; a line with an odd number of
    # quotes belongs to a multi-line field, which a line-wise count cannot judge
    unquoted = pl.col("text").str.replace_all(r'"(?:[^"]|"")*"', "")
    lines = lines.with_columns(
        n=unquoted.str.count_matches(separator, literal=True) + 1,
        odd=pl.col("text").str.count_matches('"', literal=True) % 2 == 1,
    )
    if lines["odd"].any():
        return
    width = lines["n"][0]
    bad = lines.filter(pl.col("n") != width)
    if len(bad):
        raise UserError(
            f"{path}:{bad['line'][0]}: malformed row: {bad['n'][0]} fields, the header has {width}"
        )


def read_table(path: Path, separator: str, index: int) -> pl.DataFrame:
    """One CSV or Parquet file with two more columns: each row's line in the file (``LINE``) and the file's
    ``index`` among those read (``FILE``), for errors that name the row."""
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pl.read_parquet(path, glob=False)  # the resolved file itself, whatever its name holds
            first = 1
        else:
            check_row_widths(path, separator)
            raw = preprocess.read_bytes(path)
            frame = pl.read_csv(raw, separator=separator, infer_schema_length=None, encoding="utf8-lossy")
            first = 2
    except pl.exceptions.PolarsError as err:
        raise UserError(f"{path}: cannot read ({first_line(err)})") from None
    if frame.height == 0:
        raise UserError(f"{path}: no data rows" + (" (only a header line)" if frame.width else ""))
    for reserved in (LINE, FILE):
        if reserved in frame.columns:
            raise UserError(f"{path}: column name {reserved!r} is reserved")
    return frame.with_columns(
        pl.int_range(first, first + pl.len(), dtype=pl.Int64).alias(LINE), pl.lit(index, pl.Int32).alias(FILE)
    )


def read_frames(paths: list[Path], separator: str) -> pl.DataFrame:
    """The rows of every file as one frame (``read_table``'s, its row's file and line kept): the files must share
    their columns and types."""
    frames = [read_table(p, separator, i) for i, p in enumerate(paths)]
    try:
        return pl.concat(frames, how="vertical_relaxed") if len(frames) > 1 else frames[0]
    except pl.exceptions.PolarsError as err:
        raise UserError(f"table: the files do not share their columns and types ({first_line(err)})") from None


def locate_row(frame: pl.DataFrame, i: int, paths: list[Path]) -> str:
    """``file:line`` of row ``i`` of a frame read by ``read_table``."""
    return f"{paths[frame[FILE][i]]}:{frame[LINE][i]}"


# The one rule for numeric columns, in training (``table``) and in ``bench predict`` (``encode_file``) alike
NUMERIC_RULE = "a numeric column holds finite numbers; an empty cell (or NaN) is a missing value, imputed"


def as_numbers(frame: pl.DataFrame, columns: list[str], paths: list[Path], what: str) -> pl.DataFrame:
    """``columns`` of a frame read by ``read_table`` as Float64 with NaN as null (missing); the first cell that
    is not a number, or is ±inf, is a one-line error naming its file, line and column and stating
    ``NUMERIC_RULE`` (``what``: how the message calls the column)."""
    for c in columns:
        if not frame.schema[c].is_numeric():
            values = frame[c].cast(pl.Float64, strict=False)
            bad = (values.is_null() & frame[c].is_not_null()).arg_true()
            if len(bad):
                raise UserError(f"{locate_row(frame, bad[0], paths)}: {what} {c}: {frame[c][bad[0]]!r} is not a "
                                f"number ({NUMERIC_RULE})")
    frame = frame.with_columns(pl.col(c).cast(pl.Float64).fill_nan(None) for c in columns)
    for c in columns:
        infinite = frame[c].is_infinite().arg_true()
        if len(infinite):
            raise UserError(f"{locate_row(frame, infinite[0], paths)}: {what} {c}: {frame[c][infinite[0]]} is not a "
                            f"finite number ({NUMERIC_RULE})")
    return frame


def numbers_in_text(frame: pl.DataFrame, column: str, paths: list[Path]) -> None:
    """A text column of the features most of whose values are numbers is a numeric column with bad cells, not
    a categorical one: a one-line error naming the first cell that is not a number (``NUMERIC_RULE``, as
    ``bench predict`` would say of it); listing the column under ``categorical`` takes every value as a level."""
    col = frame[column].str.strip_chars().replace("", None)
    values = col.cast(pl.Float64, strict=False)
    present, numbers = col.is_not_null().sum(), values.is_not_null().sum()
    if not present or numbers * 2 < present:
        return
    i = (values.is_null() & col.is_not_null()).arg_true()[0]
    raise UserError(f"{locate_row(frame, i, paths)}: feature {column}: {frame[column][i]!r} is not a number, while "
                    f"{numbers:,} of its {present:,} values are ({NUMERIC_RULE}); fix the cell, or list {column} under "
                    "categorical to take its values as categories")


def encode_file(path: Path, encoding: dict, *, separator: str = ",") -> tuple[torch.Tensor, torch.Tensor]:
    """``x (N, d)`` and ``cat (N, F)`` of the rows of a CSV or Parquet file, encoded as a data set's training
    rows were (``encoding``: ``FeatureEncoding.to_dict()``). The file needs the source columns the encoding names,
    under those names (other columns are ignored); missing values are as in training: empty cells or nulls."""
    enc = FeatureEncoding.from_dict(encoding)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    frame = read_table(path, separator, 0)
    missing = [c for c in enc.columns if c not in frame.columns]
    if missing:
        raise UserError(f"{path} lacks {len(missing)} of the model's input columns: {', '.join(missing[:10])}"
                        + (", ..." if len(missing) > 10 else ""))
    frame = as_numbers(frame, [c for c, *_ in enc.numeric], [path], "numeric column")
    return enc.transform(frame.with_columns(pl.col(c["name"]).cast(pl.String) for c in enc.categorical))
