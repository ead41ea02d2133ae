"""Feature encoding of tabular data: per-split polars frames to float32 features and int64 field codes, with
training-split statistics only; the fitted encoder (``FeatureEncoding``) serialises to JSON, so that ``bench
predict`` encodes new rows exactly as a data set's training rows were.

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

import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl
import torch

from bench.errors import UnknownChoice, UserError

from .base import Field

MISSING_LEVEL = "<missing>"
UNKNOWN_LEVEL = "<unknown>"


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
    encoding: FeatureEncoding | None = None  # what turns the source columns of new rows into the same features


@dataclass
class FeatureEncoding:
    """The fitted encoder of a data set (training-split statistics only), serialisable as plain JSON so that a
    saved model encodes new rows exactly as its training rows were (``bench predict``).

    ``numeric``: ``[name, mean, std, has_missing_column]`` per numeric source column. ``categorical``: per
    categorical source column in order, ``{"name", "kind": "onehot", "levels"}`` (levels sorted; the one-hot
    block is the levels, then ``<unknown>``) or ``{"name", "kind": "embedding", "levels", "size", "n_levels",
    "hashed"}`` (an embedded field: codes 1..V of the kept ``levels``, 0 for the others; or, hashed, the level's
    bucket of ``size``)."""

    numeric: list[tuple[str, float, float, bool]]
    categorical: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def fit(cls, train: pl.DataFrame, numeric: list[str], categorical: list[str],
            encoding: CategoricalEncoding | None = None) -> FeatureEncoding:
        encoding = encoding or CategoricalEncoding()
        stats = []
        for c in numeric:
            col = train[c]
            n_missing = col.null_count()
            mean = col.mean() if n_missing < len(col) else 0.0
            std = col.std(ddof=0) if n_missing < len(col) else 1.0
            std = std if std is not None and std > 0 else 1.0
            stats.append((c, float(mean if mean is not None else 0.0), float(std), bool(n_missing)))
        cats = []
        for c in categorical:
            text = train.select(pl.col(c).cast(pl.String).fill_null(MISSING_LEVEL)).to_series()
            counts = text.value_counts()  # (level, count) per training level
            level, n = counts.columns
            if not encoding.embeds(len(counts)):
                cats.append({"name": c, "kind": "onehot", "levels": sorted(counts[level].to_list())})
                continue
            kept = sorted(counts.filter(pl.col(n) >= encoding.min_count)[level].to_list())
            if encoding.hash_buckets and len(kept) > encoding.hash_buckets:  # too many levels: hashed buckets
                cats.append({"name": c, "kind": "embedding", "levels": None, "size": encoding.hash_buckets,
                             "n_levels": len(counts), "hashed": True})
            else:  # code 0: the out-of-vocabulary row (rarer and unseen levels)
                cats.append({"name": c, "kind": "embedding", "levels": kept, "size": len(kept) + 1,
                             "n_levels": len(kept), "hashed": False})
        return cls(stats, cats)

    @classmethod
    def identity(cls, names: list[str]) -> FeatureEncoding:
        """Numeric columns used as they are (mean 0, std 1, no missing values): data generated as tensors."""
        return cls([(n, 0.0, 1.0, False) for n in names], [])

    def to_dict(self) -> dict:
        return {"numeric": [list(s) for s in self.numeric], "categorical": [dict(c) for c in self.categorical]}

    @classmethod
    def from_dict(cls, d: dict) -> FeatureEncoding:
        return cls([(str(n), float(m), float(s), bool(k)) for n, m, s, k in d["numeric"]],
                   [dict(c) for c in d["categorical"]])

    @property
    def columns(self) -> list[str]:
        """The source columns a frame must have, numeric ones first."""
        return [s[0] for s in self.numeric] + [c["name"] for c in self.categorical]

    @property
    def fields(self) -> list[Field]:
        """The embedded fields, in the order of the code columns of ``cat``."""
        return [Field(c["name"], c["size"], c["n_levels"], hashed=c["hashed"])
                for c in self.categorical if c["kind"] == "embedding"]

    def layout(self) -> tuple[list[str], list[dict], list[int]]:
        """(numeric feature names, feature groups, start column of each one-hot block)."""
        names: list[str] = []
        groups: list[dict] = []
        for c, _, _, missing in self.numeric:
            cols = [len(names)]
            names.append(c)
            if missing:
                cols.append(len(names))
                names.append(f"{c}:missing")
            groups.append({"name": c, "kind": "numeric", "columns": cols})
        offsets: list[int] = []
        n_fields = 0
        for c in self.categorical:
            if c["kind"] == "embedding":
                groups.append({"name": c["name"], "kind": "embedding", "field": n_fields})
                n_fields += 1
                continue
            offsets.append(len(names))
            names.extend(f"{c['name']}={lv}" for lv in c["levels"])
            names.append(f"{c['name']}={UNKNOWN_LEVEL}")
            groups.append({"name": c["name"], "kind": "onehot", "columns": list(range(offsets[-1], len(names)))})
        return names, groups, offsets

    def transform(self, frame: pl.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (N, d)`` float32 and ``cat (N, F)`` int64 codes of ``frame`` (numeric columns as floats with nulls
        for missing values, categorical ones as strings)."""
        names, _, offsets = self.layout()
        exprs: list[pl.Expr] = []
        for c, mean, std, missing in self.numeric:
            exprs.append(((pl.col(c).fill_null(mean) - mean) / std).cast(pl.Float32).alias(c))
            if missing:
                exprs.append(pl.col(c).is_null().cast(pl.Float32).alias(f"{c}:missing"))
        x = torch.zeros(len(frame), len(names), dtype=torch.float32)
        if exprs:
            x[:, : len(exprs)] = frame.select(exprs).to_torch(dtype=pl.Float32)
        onehot = [c for c in self.categorical if c["kind"] == "onehot"]
        if onehot:
            # codes (N, n_onehot): index of each row's level within its column's block; unseen -> the unknown slot
            codes = frame.select(
                pl.col(c["name"]).cast(pl.String).fill_null(MISSING_LEVEL)
                .replace_strict(c["levels"], list(range(len(c["levels"]))), default=len(c["levels"]),
                                return_dtype=pl.Int64)
                for c in onehot
            ).to_torch(dtype=pl.Int64)
            x.scatter_(1, codes + torch.tensor(offsets, dtype=torch.int64), 1.0)
        columns = []
        for c in self.categorical:
            if c["kind"] != "embedding":
                continue
            text = frame.select(pl.col(c["name"]).cast(pl.String).fill_null(MISSING_LEVEL)).to_series()
            if c["hashed"]:
                uniq = text.unique().to_list()
                codes = text.replace_strict(uniq, [bucket(v, c["size"]) for v in uniq], return_dtype=pl.Int64)
            else:
                codes = text.replace_strict(c["levels"], list(range(1, len(c["levels"]) + 1)), default=0,
                                            return_dtype=pl.Int64)
            columns.append(codes.to_torch())
        cat = torch.stack(columns, dim=1) if columns else torch.zeros(len(frame), 0, dtype=torch.int64)
        return x, cat


def encode_features(
    frames: dict[str, pl.DataFrame], numeric: list[str], categorical: list[str],
    encoding: CategoricalEncoding | None = None,
) -> Encoded:
    """One float32 matrix per split from the named columns, and the int64 codes of the embedded categorical
    fields, with training-split statistics only (``FeatureEncoding``).

    ``frames`` maps ``train``/``val``/``test`` to frames holding the columns (numeric ones as floats with
    nulls for missing values, categorical ones as strings).
    """
    fitted = FeatureEncoding.fit(frames["train"], numeric, categorical, encoding)
    names, groups, _ = fitted.layout()
    tensors = {s: fitted.transform(f) for s, f in frames.items()}
    return Encoded({s: t[0] for s, t in tensors.items()}, names, groups, {s: t[1] for s, t in tensors.items()},
                   fitted.fields, fitted)
