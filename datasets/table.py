"""``table``: the user's own CSV or Parquet file(s) as a multi-task data set.

A study spec names it in TOML, e.g.::

    [dataset]
    name = "table"
    path = "clicks.parquet"                 # a file, a glob ("parts/*.csv") or a list of files
    labels = { click = "binary", price = "regression", segment = "multiclass" }
    features = ["age", "city", "device"]    # default: every column that is not a label or the split column
    categorical = ["zip"]                   # force categorical (default: strings and booleans are)
    numeric = []                            # force numeric
    encoding = "auto"                       # categorical columns: auto (default), onehot or embedding
    onehot_max = 16                         # auto: at most this many training levels stay one-hot
    min_count = 5                           # embedded: rarer levels share the out-of-vocabulary row
    hash_buckets = 0                        # embedded: hash a field with a larger vocabulary into this many
    observed_if = { conversion = "click" }  # a label observed only where another 0/1 column is 1
    split_column = "fold"                   # values train / val (valid, validation, dev) / test
    val_fraction = 0.1                      # without split_column: a seeded random split
    test_fraction = 0.1
    seed = 0

From the command line, ``labels=click:binary,price:regression``, ``features=a,b,c`` and
``observed_if=conversion:click`` work too. A relative ``path`` is taken from ``data_dir`` when one is given
(option, ``--data-dir``), else from the working directory.

Labels: ``binary`` takes 0/1, booleans or exactly two distinct strings (the later in sorted order is 1);
``regression`` takes numbers; ``multiclass`` takes any values (classes in sorted order, at least 2). A missing
label (null, empty or NaN) means the task is not observed on that row: its loss and metrics skip the row. A label
may also be declared observed only where another column is 1 (``observed_if``: a conversion exists only where
there was a click); its value elsewhere is ignored. Between binary labels such rules declare the data's funnel
(click -> conversion, ``MTLData.funnel``), which the funnel architectures ESMM and AITM need. A task with no observed
label in a split is a one-line error.

Features follow ``feature_encoding.encode_features``, with training-split statistics only: numeric ones standardised
with imputation and a missing indicator (``NUMERIC_RULE``: a cell that is not a finite number, text or ±inf, is a
one-line error naming its file, line and column, here and in ``bench predict`` alike; a text column whose values are
mostly numbers is such a numeric column unless listed under ``categorical``); categorical ones one-hot with an
unknown level, or embedded (an index into an embedding table, rare and unseen levels out of vocabulary) by the
``encoding`` rule: ``auto`` embeds the columns with more than ``onehot_max`` training levels. A missing value of a
categorical column is a level of its own (``<missing>``), not an error. An integer column listed under
``categorical`` is a categorical column whose levels are its distinct values (e.g. an integer-coded ID). The leakage
check judges an embedded field as one source column, as it judges a one-hot block.

The code: this module checks the options, the columns' roles and the features' types, and splits the rows;
``table_files`` reads the files (and ``encode_file``, new rows for ``bench predict``) and checks their cells;
``table_labels`` encodes the labels and their ``observed_if`` rules and finds the funnel.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from bench.errors import UnknownChoice, UserError

from . import feature_encoding, preprocess, sources, table_files, table_labels
from .base import MTLData
from .feature_encoding import CategoricalEncoding
from .preprocess import SPLITS, parse_names
from .registry import register_dataset

# used here, and re-exported: the loader's names are still found here (bench predict imports encode_file)
from .table_files import (  # noqa: F401  (re-exported)
    FILE,
    LINE,
    NUMERIC_RULE,
    as_numbers,
    check_row_widths,
    encode_file,
    locate_row,
    numbers_in_text,
    read_frames,
    read_table,
    resolve_paths,
)
from .table_labels import (  # noqa: F401  (re-exported)
    FLOAT32_MAX,
    encode_label,
    encode_labels,
    funnel_of,
    label_column,
    observed_where,
    parse_labels,
    parse_observed_if,
)

SPLIT_VALUES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test",
}


@dataclass(frozen=True)
class TableOptions:
    """The loader's options, checked before any file is read (``table_options``): the files, the labels and their
    ``observed_if`` rules, the feature columns as given (None: every other column) and typed, the categorical
    encoding, and the split (a column, or seeded fractions)."""

    paths: list[Path]
    labels: dict[str, str]
    observed_if: dict[str, str]
    features: list[str] | None
    categorical: list[str]
    numeric: list[str]
    encoding: CategoricalEncoding
    split_column: str
    val_fraction: float
    test_fraction: float
    seed: int
    separator: str

    def key(self) -> dict:
        """The options that decide the data (the cache key, kept as ``info["options"]``)."""
        options = {
            "labels": self.labels, "features": self.features, "categorical": sorted(self.categorical),
            "numeric": sorted(self.numeric), "split_column": self.split_column, "seed": self.seed,
            "separator": self.separator, "paths": [str(p) for p in self.paths],
        }
        options["encoding"] = self.encoding.options()
        if self.observed_if:
            options["observed_if"] = self.observed_if
        if not self.split_column:
            options.update(val_fraction=self.val_fraction, test_fraction=self.test_fraction)
        return options


@register_dataset("table")
def table(
    *,
    path: str | list[str] | None = None,
    data_dir: str = "",
    labels: dict[str, str] | None = None,
    tasks: list[str] | None = None,
    features: list[str] | None = None,
    categorical: list[str] | None = None,
    numeric: list[str] | None = None,
    encoding: str = "auto",
    onehot_max: int = 16,
    min_count: int = 5,
    hash_buckets: int = 0,
    observed_if: dict[str, str] | None = None,
    split_column: str = "",
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    separator: str = ",",
    cache: bool = True,
) -> MTLData:
    """The user's own CSV/Parquet file(s): labels with their kinds, features, a split column or fractions."""
    opts, task_names = table_options(
        path=path, data_dir=data_dir, labels=labels, tasks=tasks, features=features, categorical=categorical,
        numeric=numeric, encoding=encoding, onehot_max=onehot_max, min_count=min_count, hash_buckets=hash_buckets,
        observed_if=observed_if, split_column=split_column, val_fraction=val_fraction, test_fraction=test_fraction,
        seed=seed, separator=separator,
    )
    data = sources.cached(
        "table", opts.key(), {f"file{i}": p for i, p in enumerate(opts.paths)}, lambda: build(opts),
        code=code_digest(), use_cache=cache,
    )
    data = replace(data, funnel=funnel_of(opts.observed_if, opts.labels))
    if task_names is not None:
        data = data.select_tasks(task_names)
    return data


def table_options(
    *, path, data_dir, labels, tasks, features, categorical, numeric, encoding, onehot_max, min_count, hash_buckets,
    observed_if, split_column, val_fraction, test_fraction, seed, separator,
) -> tuple[TableOptions, list[str] | None]:
    """``table``'s arguments checked, each mistake a one-line error, before any file is read: the options, and
    the tasks to keep (None: every label)."""
    label_kinds = parse_labels(labels)
    observed_rules = parse_observed_if(observed_if, label_kinds)
    categorical_encoding = CategoricalEncoding(encoding, onehot_max, min_count, hash_buckets)
    task_names = parse_names(tasks, "tasks")
    features = parse_names(features, "features")
    categorical = parse_names(categorical, "categorical") or []
    numeric = parse_names(numeric, "numeric") or []
    if task_names is not None:
        for t in task_names:
            if t not in label_kinds:
                raise UnknownChoice("task of dataset table (a label column)", t, label_kinds)
    if len(separator) != 1:
        raise UserError(f"table: separator must be one character, got {separator!r}")
    if not split_column:
        preprocess.check_fractions(val_fraction, test_fraction)
    paths = resolve_paths(path, data_dir)
    opts = TableOptions(paths, label_kinds, observed_rules, features, categorical, numeric, categorical_encoding,
                        split_column, val_fraction, test_fraction, seed, separator)
    return opts, task_names


def code_digest() -> str:
    """A digest of the code that turns the files into tensors (part of the cache key): a changed loader never
    reads a stale cache."""
    return sources.code_digest(preprocess, feature_encoding, sources, table_files, table_labels, sys.modules[__name__])


# ---------------------------------------------------------------------------------------------- building the data


def build(opts: TableOptions) -> MTLData:
    """The data set of checked options (what ``sources.cached`` stores): the files read, their columns checked
    against the options, the features typed, the labels encoded, the rows split, the features encoded with
    training statistics (``preprocess.to_data``)."""
    frame = read_frames(opts.paths, opts.separator)
    chosen = feature_columns(frame, opts)
    frame, num_cols, cat_cols = type_features(frame, chosen, opts)
    frame, tasks, label_info = encode_labels(frame, opts.labels, opts.observed_if, opts.paths)
    parts = split_rows(frame, opts)
    info = {
        "options": opts.key(),
        "rows": {s: len(p) for s, p in parts.items()},
        "labels": label_info,
        "numeric": num_cols,
        "categorical": cat_cols,
    }
    return preprocess.to_data(
        "table", tasks, parts, num_cols, cat_cols, [label_column(n) for n in opts.labels], info, opts.encoding
    )


def feature_columns(frame: pl.DataFrame, opts: TableOptions) -> list[str]:
    """The feature columns, once every column the options name (labels, ``observed_if`` columns, the split column,
    features, typed features) is checked to exist and to play one role only: the listed features, else every
    column that is not a label or the split column."""
    columns = [c for c in frame.columns if c not in (LINE, FILE)]
    where = f"{opts.paths[0]}" if len(opts.paths) == 1 else f"{len(opts.paths)} files"
    labels, split_column = opts.labels, opts.split_column

    def known(name: str, role: str) -> None:
        if name not in columns:
            raise UnknownChoice(f"{role} column of {where}", name, columns)

    for name in labels:
        known(name, "label")
    for name, column in opts.observed_if.items():
        known(column, f"observed_if ({name})")
        if column == name:
            raise UserError(f"table: observed_if: label {name} cannot be observed where it is itself 1")
    if split_column:
        known(split_column, "split")
        if split_column in labels:
            raise UserError(f"table: {split_column} cannot be both the split column and a label")
    reserved = set(labels) | {split_column}
    if opts.features is None:
        chosen = [c for c in columns if c not in reserved]
    else:
        for name in opts.features:
            known(name, "feature")
            if name in labels:
                raise UserError(f"table: label column {name} cannot also be a feature")
            if name == split_column:
                raise UserError(f"table: the split column {name} cannot also be a feature")
        chosen = list(dict.fromkeys(opts.features))
    for name in opts.categorical + opts.numeric:
        known(name, "feature")
        if name not in chosen:
            raise UserError(f"table: {name} is typed as a feature but is not among the features")
    both = set(opts.categorical) & set(opts.numeric)
    if both:
        raise UserError(f"table: {', '.join(sorted(both))} listed as both categorical and numeric")
    if not chosen:
        raise UserError("table: no feature columns left once labels and the split column are set aside")
    return chosen


def type_features(
    frame: pl.DataFrame, chosen: list[str], opts: TableOptions
) -> tuple[pl.DataFrame, list[str], list[str]]:
    """Each feature numeric or categorical (listed as one, else by its type: strings, booleans and categoricals
    are categorical, other numbers numeric); the frame with categorical features as strings and numeric ones as
    floats, checked (``NUMERIC_RULE``), and the numeric and categorical feature names."""
    num_cols, cat_cols = [], []
    for c in chosen:
        dtype = frame.schema[c]
        if c in opts.numeric:
            num_cols.append(c)
        elif c in opts.categorical or dtype in (pl.String, pl.Boolean, pl.Categorical) or isinstance(dtype, pl.Enum):
            if c not in opts.categorical and dtype == pl.String:
                numbers_in_text(frame, c, opts.paths)  # "12", "7", "abc", "3": a typo, not three levels
            cat_cols.append(c)
        elif dtype.is_numeric():
            num_cols.append(c)
        elif dtype == pl.Null:
            raise UserError(f"table: feature {c} has no values; drop it from the features")
        else:
            raise UserError(f"table: feature {c} has type {dtype}; list it under categorical or drop it")
    frame = frame.with_columns(pl.col(c).cast(pl.String) for c in cat_cols)
    frame = as_numbers(frame, num_cols, opts.paths, "numeric feature")
    return frame, num_cols, cat_cols


def split_rows(frame: pl.DataFrame, opts: TableOptions) -> dict[str, pl.DataFrame]:
    """The rows of each split: by the split column's values (``SPLIT_VALUES``; every split needs a row), else a
    seeded random split by the fractions."""
    if not opts.split_column:
        idx = preprocess.random_split(len(frame), opts.val_fraction, opts.test_fraction, opts.seed)
        return {s: preprocess.take(frame, i) for s, i in idx.items()}
    split_column = opts.split_column
    values = frame[split_column].cast(pl.String).str.strip_chars().str.to_lowercase()
    unknown = values.is_null() | ~values.is_in(list(SPLIT_VALUES))
    if unknown.any():
        i = unknown.arg_true()[0]
        raise UnknownChoice(
            f"value of split column {split_column} (at {locate_row(frame, i, opts.paths)})",
            str(frame[split_column][i]), SPLIT_VALUES,
        )
    assigned = values.replace_strict(SPLIT_VALUES)
    parts = {s: frame.filter(assigned == s) for s in SPLITS}
    for s, part in parts.items():
        if len(part) == 0:
            raise UserError(f"table: the {s} split is empty: no row has {split_column} = {s}")
    return parts
