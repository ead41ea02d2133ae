"""Shared parsing, splitting and encoding of tabular data, all in polars; tensors only at the end.

Encoding rules (statistics from the training split only):

* numeric column: ``(v - mean_train) / std_train``; a missing value is imputed with ``mean_train`` (so it encodes
  as 0) and, where the training split has missing values, a ``<col>:missing`` 0/1 column is added beside it.
* categorical column, one-hot: the training split's levels (a missing value is its own level ``<missing>``) plus
  one ``<col>=<unknown>`` column that takes every level not seen in training (all zeros in training).
* categorical column, embedded (a ``Field``): an int64 code per row into the field's own embedding table. The
  vocabulary is the training split's levels with at least ``min_count`` rows (``<missing>`` is a level like any
  other), coded 1..V in sorted order; rarer levels and levels unseen in training take code 0, the
  out-of-vocabulary row, which the rare levels train. A field whose vocabulary would exceed ``hash_buckets``
  (when set) is hashed instead: code = crc32(level text) mod ``hash_buckets``, for every split alike.
* which categorical columns are embedded (``CategoricalEncoding.mode``): ``onehot`` none, ``embedding`` all,
  ``auto`` those with more than ``onehot_max`` (default 16) training levels. The default rule of ``auto``: a column
  of at most 16 levels stays one-hot, since its one-hot block (at most 17 columns) is about as wide as two
  8-wide embeddings and needs no width to tune; wider columns are embedded, since their one-hot block grows with
  the number of levels while an embedding stays ``embedding_dim`` wide.

The encoder returns, beside the tensors, the feature groups (which columns come from which source column), so the
leakage check can judge a one-hot group or an embedded field as a whole.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl
import torch

from bench.errors import UnknownChoice, UserError

from .base import Field, MTLData, Split

MISSING_LEVEL = "<missing>"
UNKNOWN_LEVEL = "<unknown>"
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


# ---------------------------------------------------------------------------------------------- encoding


ENCODINGS = ("onehot", "embedding", "auto")


@dataclass(frozen=True)
class CategoricalEncoding:
    """How categorical columns become features (see the module docstring): ``mode`` one of ``ENCODINGS``;
    ``onehot_max`` the most training levels an ``auto`` column may have and stay one-hot; ``min_count`` the
    training rows a level needs for its own embedding row; ``hash_buckets`` (0: never) the bucket count of a hashed
    field, used for fields whose vocabulary would be larger."""

    mode: str = "onehot"
    onehot_max: int = 16
    min_count: int = 5
    hash_buckets: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ENCODINGS:
            raise UnknownChoice("categorical encoding", str(self.mode), ENCODINGS)
        if self.onehot_max < 0:
            raise UserError(f"onehot_max must be >= 0, got {self.onehot_max}")
        if self.min_count < 1:
            raise UserError(f"min_count must be >= 1, got {self.min_count}")
        if self.hash_buckets < 0 or self.hash_buckets == 1:
            raise UserError(f"hash_buckets must be 0 (no hashing) or >= 2, got {self.hash_buckets}")

    def embeds(self, n_levels: int) -> bool:
        """Whether a column with ``n_levels`` training levels becomes an embedded field."""
        return self.mode == "embedding" or (self.mode == "auto" and n_levels > self.onehot_max)

    def options(self) -> dict:
        """The settings that change the tensors (part of a loader's cache key)."""
        return asdict(self) if self.mode != "onehot" else {"mode": "onehot"}


def bucket(level: str, buckets: int) -> int:
    """A level's hash bucket: crc32 of its UTF-8 text mod ``buckets`` (stable across runs and versions)."""
    return zlib.crc32(level.encode()) % buckets


@dataclass
class Encoded:
    """Feature tensors per split (numeric ``x``, categorical codes ``cat``), their names, the feature group of
    each source column and the embedded fields."""

    x: dict[str, torch.Tensor]
    names: list[str]
    groups: list[dict] = field(default_factory=list)  # [{"name", "kind": numeric|onehot|embedding, ...}]
    cat: dict[str, torch.Tensor] = field(default_factory=dict)
    fields: list[Field] = field(default_factory=list)


def field_codes(
    frames: dict[str, pl.DataFrame], column: str, encoding: CategoricalEncoding
) -> tuple[Field, dict[str, torch.Tensor]]:
    """An embedded field's description and its ``(N,)`` int64 codes per split (vocabulary from training only)."""
    text = pl.col(column).cast(pl.String).fill_null(MISSING_LEVEL)
    counts = frames["train"].select(text.alias(column)).to_series().value_counts()  # (level, count) per level
    levels, n = counts.columns
    kept = sorted(counts.filter(pl.col(n) >= encoding.min_count)[levels].to_list())
    out: dict[str, torch.Tensor] = {}
    if encoding.hash_buckets and len(kept) > encoding.hash_buckets:
        size = encoding.hash_buckets
        for split_name, frame in frames.items():
            values = frame.select(text.alias(column))[column]
            uniq = values.unique().to_list()
            codes = values.replace_strict(uniq, [bucket(v, size) for v in uniq], return_dtype=pl.Int64)
            out[split_name] = codes.to_torch()
        return Field(column, size, len(counts), hashed=True), out
    for split_name, frame in frames.items():
        codes = frame.select(
            text.replace_strict(kept, list(range(1, len(kept) + 1)), default=0, return_dtype=pl.Int64)
        ).to_series()
        out[split_name] = codes.to_torch()
    return Field(column, len(kept) + 1, len(kept)), out


def encode_features(
    frames: dict[str, pl.DataFrame], numeric: list[str], categorical: list[str],
    encoding: CategoricalEncoding | None = None,
) -> Encoded:
    """One float32 matrix per split from the named columns, and the int64 codes of the embedded categorical
    fields, with training-split statistics only.

    ``frames`` maps ``train``/``val``/``test`` to frames holding the columns (numeric ones as floats with
    nulls for missing values, categorical ones as strings).
    """
    encoding = encoding or CategoricalEncoding()
    train = frames["train"]
    names: list[str] = []
    groups: list[dict] = []
    num_exprs: list[pl.Expr] = []
    for c in numeric:
        col = train[c]
        n_missing = col.null_count()
        mean = col.mean() if n_missing < len(col) else 0.0
        std = col.std(ddof=0) if n_missing < len(col) else 1.0
        std = std if std is not None and std > 0 else 1.0
        mean = mean if mean is not None else 0.0
        cols = [len(names)]
        names.append(c)
        num_exprs.append(((pl.col(c).fill_null(mean) - mean) / std).cast(pl.Float32).alias(f"{c}"))
        if n_missing:
            cols.append(len(names))
            names.append(f"{c}:missing")
            num_exprs.append(pl.col(c).is_null().cast(pl.Float32).alias(f"{c}:missing"))
        groups.append({"name": c, "kind": "numeric", "columns": cols})
    n_num = len(names)

    level_lists: dict[str, list[str]] = {}
    offsets: list[int] = []
    fields: list[Field] = []
    codes_of: dict[str, list[torch.Tensor]] = {s: [] for s in frames}
    for c in categorical:
        levels = sorted(train[c].cast(pl.String).fill_null(MISSING_LEVEL).unique().to_list())
        if encoding.embeds(len(levels)):
            spec, codes = field_codes(frames, c, encoding)
            groups.append({"name": c, "kind": "embedding", "field": len(fields)})
            fields.append(spec)
            for split_name in frames:
                codes_of[split_name].append(codes[split_name])
            continue
        level_lists[c] = levels
        offsets.append(len(names))
        start = len(names)
        names.extend(f"{c}={lv}" for lv in levels)
        names.append(f"{c}={UNKNOWN_LEVEL}")
        groups.append({"name": c, "kind": "onehot", "columns": list(range(start, len(names)))})

    out: dict[str, torch.Tensor] = {}
    cats: dict[str, torch.Tensor] = {}
    for split_name, frame in frames.items():
        n = len(frame)
        cats[split_name] = (
            torch.stack(codes_of[split_name], dim=1) if fields else torch.zeros(n, 0, dtype=torch.int64)
        )
        n = len(frame)
        x = torch.zeros(n, len(names), dtype=torch.float32)
        if num_exprs:
            x[:, :n_num] = frame.select(num_exprs).to_torch(dtype=pl.Float32)
        if level_lists:
            # codes (N, n_cat): index of each row's level within its column's block; unseen -> the unknown slot
            codes = frame.select(
                pl.col(c).cast(pl.String).fill_null(MISSING_LEVEL)
                .replace_strict(lv, list(range(len(lv))), default=len(lv), return_dtype=pl.Int64)
                for c, lv in level_lists.items()
            ).to_torch(dtype=pl.Int64)
            x.scatter_(1, codes + torch.tensor(offsets, dtype=torch.int64), 1.0)
        out[split_name] = x
    return Encoded(out, names, groups, cats, fields)


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
        info={**info, "feature_groups": enc.groups},
        fields=enc.fields,
    )
