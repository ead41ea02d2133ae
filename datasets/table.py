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

Features follow ``preprocess.encode_features``, with training-split statistics only: numeric ones standardised
with imputation and a missing indicator (``NUMERIC_RULE``: a cell that is not a finite number, text or ±inf, is a
one-line error naming its file, line and column, here and in ``bench predict`` alike; a text column whose values are
mostly numbers is such a numeric column unless listed under ``categorical``); categorical ones one-hot with an
unknown level, or embedded (an index into an embedding table, rare and unseen levels out of vocabulary) by the
``encoding`` rule: ``auto`` embeds the columns with more than ``onehot_max`` training levels. A missing value of a
categorical column is a level of its own (``<missing>``), not an error. An integer column listed under
``categorical`` is a categorical column whose levels are its distinct values (e.g. an integer-coded ID). The leakage
check judges an embedded field as one source column, as it judges a one-hot block.
"""

from __future__ import annotations

import glob
import sys
from dataclasses import replace
from pathlib import Path

import polars as pl
import torch

from bench.errors import UnknownChoice, UserError

from . import preprocess, sources
from .base import TASK_KINDS, Funnel, MTLData, Task
from .preprocess import SPLITS, first_line, parse_names
from .registry import register_dataset

SPLIT_VALUES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test",
}
FLOAT32_MAX = 3.4028234663852886e38
LINE = "__line"  # row number in its file (1-based, counting the header line)
FILE = "__file"


def parse_labels(labels) -> dict[str, str]:
    """``{column: kind}`` from a dict (TOML) or ``"a:binary,b:regression"`` (command line)."""
    if labels is None or labels == "" or labels == {}:
        raise UserError("table: no labels given; set labels = {column = kind, ...} with kinds " + ", ".join(TASK_KINDS))
    if isinstance(labels, str):
        out = {}
        for item in labels.split(","):
            name, sep, kind = item.partition(":")
            if not sep or not name.strip():
                raise UserError(f"table: labels={labels!r}: expected column:kind pairs, e.g. click:binary")
            out[name.strip()] = kind.strip()
        labels = out
    if not isinstance(labels, dict):
        raise UserError(f"table: labels must map column names to kinds, got {labels!r}")
    for name, kind in labels.items():
        if kind not in TASK_KINDS:
            raise UnknownChoice(f"kind of label {name}", str(kind), TASK_KINDS)
    return dict(labels)


def resolve_paths(path, data_dir: str) -> list[Path]:
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


def locate_row(frame: pl.DataFrame, i: int, paths: list[Path]) -> str:
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


def parse_observed_if(value, labels: dict[str, str]) -> dict[str, str]:
    """``{label: column}`` from a dict (TOML) or ``"conversion:click"`` (command line): the label is observed
    only where that column is 1."""
    if value is None or value == "" or value == {}:
        return {}
    if isinstance(value, str):
        out = {}
        for item in value.split(","):
            name, sep, column = item.partition(":")
            if not sep or not name.strip() or not column.strip():
                raise UserError(f"table: observed_if={value!r}: expected label:column pairs, e.g. conversion:click")
            out[name.strip()] = column.strip()
        value = out
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise UserError(f"table: observed_if must map label names to column names, got {value!r}")
    for name in value:
        if name not in labels:
            raise UnknownChoice("label in observed_if", name, labels)
    return dict(value)


def observed_where(frame: pl.DataFrame, label: str, column: str, paths: list[Path]) -> pl.Series:
    """Rows where ``column`` (0/1, boolean, or a binary label's positive value) is 1: ``label`` is observed there."""
    col = frame[column]
    if col.dtype == pl.Boolean:
        flag = col
    else:
        values = col.cast(pl.Float64, strict=False)
        bad = (values.is_null() & col.is_not_null()) | ~(values.is_in([0.0, 1.0]) | values.is_null())
        if bad.any():
            i = bad.arg_true()[0]
            raise UserError(
                f"{locate_row(frame, i, paths)}: observed_if {label} = {column}: {column} must be 0/1, got {col[i]!r}"
            )
        flag = values == 1.0
    return flag.fill_null(False)


def encode_label(frame: pl.DataFrame, name: str, kind: str, paths: list[Path]) -> tuple[pl.Series, Task, dict]:
    """The label column as floats (null where missing), its task, and how values were mapped."""
    col = frame[name]
    if col.dtype.is_float():
        col = col.fill_nan(None)
    if col.dtype == pl.String:
        col = col.str.strip_chars().replace("", None)
    present = col.drop_nulls()
    if len(present) == 0:
        raise UserError(f"table: label {name} has no value in any row (every label is missing)")
    if kind == "regression":
        if not col.dtype.is_numeric():
            values = col.cast(pl.Float64, strict=False)
            if (values.is_null() & col.is_not_null()).any():
                i = (values.is_null() & col.is_not_null()).arg_true()[0]
                raise UserError(
                    f"{locate_row(frame, i, paths)}: label {name} is a regression label but {col[i]!r} is not a number"
                )
            col = values
        col = col.cast(pl.Float64)
        infinite = col.is_infinite()
        if infinite.any():
            i = infinite.arg_true()[0]
            raise UserError(f"{locate_row(frame, i, paths)}: label {name} is a regression label but {col[i]} is "
                            "not a finite number")
        if col.abs().max() > FLOAT32_MAX:
            i = (col.abs() > FLOAT32_MAX).arg_true()[0]
            raise UserError(f"{locate_row(frame, i, paths)}: label {name} is a regression label but {col[i]:g} is "
                            "beyond the float32 range")
        return col.cast(pl.Float32), Task(name, "regression"), {}
    levels = present.unique().sort().to_list()
    if kind == "binary" and len(levels) < 2:
        raise UserError(f"table: label {name} is binary but every row holds the same value ({levels[0]!r}); a "
                        "binary label needs both classes")
    if kind == "binary":
        if col.dtype == pl.Boolean:
            return col.cast(pl.Float32), Task(name, "binary"), {"positive": True}
        if col.dtype.is_numeric():
            if not set(levels) <= {0, 1}:
                shown = ", ".join(str(v) for v in levels[:6]) + (", ..." if len(levels) > 6 else "")
                raise UserError(f"table: label {name} is binary but holds values {shown}; a binary label is 0/1")
            return col.cast(pl.Float32), Task(name, "binary"), {"positive": 1}
        if len(levels) > 2:
            shown = ", ".join(repr(v) for v in levels[:6]) + (", ..." if len(levels) > 6 else "")
            raise UserError(f"table: label {name} is binary but holds {len(levels)} distinct values: {shown}")
        mapping = {str(v): float(k) for k, v in enumerate(levels)}
        positive = levels[-1]
        return col.cast(pl.String).replace_strict(mapping, return_dtype=pl.Float32), Task(name, "binary"), {
            "positive": positive
        }
    if len(levels) < 2:
        raise UserError(f"table: label {name} is multiclass but holds only {len(levels)} distinct value(s)")
    if col.dtype.is_float() and not all(float(v).is_integer() for v in levels):
        raise UserError(f"table: label {name} is multiclass but holds non-integer numbers such as {levels[0]}")
    mapping = {str(v): float(k) for k, v in enumerate(levels)}
    series = col.cast(pl.String).replace_strict(mapping, return_dtype=pl.Float32)
    return series, Task(name, "multiclass", len(levels)), {"classes": [str(v) for v in levels]}


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
    label_kinds = parse_labels(labels)
    observed_rules = parse_observed_if(observed_if, label_kinds)
    categorical_encoding = preprocess.CategoricalEncoding(encoding, onehot_max, min_count, hash_buckets)
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
    options = {
        "labels": label_kinds, "features": features, "categorical": sorted(categorical), "numeric": sorted(numeric),
        "split_column": split_column, "seed": seed, "separator": separator,
        "paths": [str(p) for p in paths],
    }
    options["encoding"] = categorical_encoding.options()
    if observed_rules:
        options["observed_if"] = observed_rules
    if not split_column:
        options.update(val_fraction=val_fraction, test_fraction=test_fraction)

    def build() -> MTLData:
        frames = [read_table(p, separator, i) for i, p in enumerate(paths)]
        try:
            frame = pl.concat(frames, how="vertical_relaxed") if len(frames) > 1 else frames[0]
        except pl.exceptions.PolarsError as err:
            raise UserError(f"table: the files do not share their columns and types ({first_line(err)})") from None
        columns = [c for c in frame.columns if c not in (LINE, FILE)]
        where = f"{paths[0]}" if len(paths) == 1 else f"{len(paths)} files"

        def known(name: str, role: str) -> None:
            if name not in columns:
                raise UnknownChoice(f"{role} column of {where}", name, columns)

        for name in label_kinds:
            known(name, "label")
        for name, column in observed_rules.items():
            known(column, f"observed_if ({name})")
            if column == name:
                raise UserError(f"table: observed_if: label {name} cannot be observed where it is itself 1")
        if split_column:
            known(split_column, "split")
            if split_column in label_kinds:
                raise UserError(f"table: {split_column} cannot be both the split column and a label")
        reserved = set(label_kinds) | {split_column}
        if features is None:
            chosen = [c for c in columns if c not in reserved]
        else:
            for name in features:
                known(name, "feature")
                if name in label_kinds:
                    raise UserError(f"table: label column {name} cannot also be a feature")
                if name == split_column:
                    raise UserError(f"table: the split column {name} cannot also be a feature")
            chosen = list(dict.fromkeys(features))
        for name in categorical + numeric:
            known(name, "feature")
            if name not in chosen:
                raise UserError(f"table: {name} is typed as a feature but is not among the features")
        both = set(categorical) & set(numeric)
        if both:
            raise UserError(f"table: {', '.join(sorted(both))} listed as both categorical and numeric")
        if not chosen:
            raise UserError("table: no feature columns left once labels and the split column are set aside")

        num_cols, cat_cols = [], []
        for c in chosen:
            dtype = frame.schema[c]
            if c in numeric:
                num_cols.append(c)
            elif c in categorical or dtype in (pl.String, pl.Boolean, pl.Categorical) or isinstance(dtype, pl.Enum):
                if c not in categorical and dtype == pl.String:
                    numbers_in_text(frame, c, paths)  # "12", "7", "abc", "3": a typo, not three levels
                cat_cols.append(c)
            elif dtype.is_numeric():
                num_cols.append(c)
            elif dtype == pl.Null:
                raise UserError(f"table: feature {c} has no values; drop it from the features")
            else:
                raise UserError(f"table: feature {c} has type {dtype}; list it under categorical or drop it")
        frame = frame.with_columns(pl.col(c).cast(pl.String) for c in cat_cols)
        frame = as_numbers(frame, num_cols, paths, "numeric feature")

        tasks_, label_info, label_series = [], {}, []
        for name, kind in label_kinds.items():
            series, task, info = encode_label(frame, name, kind, paths)
            if name in observed_rules:
                where_observed = observed_where(frame, name, observed_rules[name], paths)
                series = pl.select(pl.when(where_observed).then(series).otherwise(None)).to_series()
                info["observed_if"] = observed_rules[name]
            tasks_.append(task)
            label_info[name] = {"kind": kind, **info}
            label_series.append(series.alias(f"__y_{name}"))
        frame = frame.with_columns(label_series)

        if split_column:
            values = frame[split_column].cast(pl.String).str.strip_chars().str.to_lowercase()
            unknown = values.is_null() | ~values.is_in(list(SPLIT_VALUES))
            if unknown.any():
                i = unknown.arg_true()[0]
                raise UnknownChoice(
                    f"value of split column {split_column} (at {locate_row(frame, i, paths)})",
                    str(frame[split_column][i]), SPLIT_VALUES,
                )
            assigned = values.replace_strict(SPLIT_VALUES)
            parts = {s: frame.filter(assigned == s) for s in SPLITS}
            for s, part in parts.items():
                if len(part) == 0:
                    raise UserError(f"table: the {s} split is empty: no row has {split_column} = {s}")
        else:
            idx = preprocess.random_split(len(frame), val_fraction, test_fraction, seed)
            parts = {s: preprocess.take(frame, i) for s, i in idx.items()}

        info = {
            "options": options,
            "rows": {s: len(p) for s, p in parts.items()},
            "labels": label_info,
            "numeric": num_cols,
            "categorical": cat_cols,
        }
        return preprocess.to_data(
            "table", tasks_, parts, num_cols, cat_cols, [f"__y_{n}" for n in label_kinds], info, categorical_encoding
        )

    code = sources.code_digest(preprocess, sources, sys.modules[__name__])
    data = sources.cached(
        "table", options, {f"file{i}": p for i, p in enumerate(paths)}, build, code=code, use_cache=cache
    )
    data = replace(data, funnel=funnel_of(observed_rules, label_kinds))
    if task_names is not None:
        data = data.select_tasks(task_names)
    return data


def funnel_of(rules: dict[str, str], kinds: dict[str, str]) -> Funnel | None:
    """The funnel ``observed_if`` declares between binary labels (conversion observed only where click = 1:
    click -> conversion, conditional), when its rules form one chain; None otherwise."""
    after = {column: label for label, column in rules.items()
             if kinds.get(label) == "binary" and kinds.get(column) == "binary"}
    starts = [c for c in after if c not in after.values()]
    if len(starts) != 1 or len(after) != len(rules):
        return None
    chain = [starts[0]]
    while chain[-1] in after and len(chain) <= len(after):
        chain.append(after[chain[-1]])
    return Funnel(tuple(chain), (False, *[True] * (len(chain) - 1))) if len(chain) == len(after) + 1 else None


def encode_file(path: Path, encoding: dict, *, separator: str = ",") -> tuple[torch.Tensor, torch.Tensor]:
    """``x (N, d)`` and ``cat (N, F)`` of the rows of a CSV or Parquet file, encoded as a data set's training
    rows were (``encoding``: ``FeatureEncoding.to_dict()``). The file needs the source columns the encoding names,
    under those names (other columns are ignored); missing values are as in training: empty cells or nulls."""
    enc = preprocess.FeatureEncoding.from_dict(encoding)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    frame = read_table(path, separator, 0)
    missing = [c for c in enc.columns if c not in frame.columns]
    if missing:
        raise UserError(f"{path} lacks {len(missing)} of the model's input columns: {', '.join(missing[:10])}"
                        + (", ..." if len(missing) > 10 else ""))
    frame = as_numbers(frame, [c for c, *_ in enc.numeric], [path], "numeric column")
    return enc.transform(frame.with_columns(pl.col(c["name"]).cast(pl.String) for c in enc.categorical))
