"""The labels of ``table``: the ``labels`` and ``observed_if`` options, each label column checked and mapped to
numbers by its kind (binary, regression, multiclass; null where the label is missing or not observed), and the
funnel that ``observed_if`` rules between binary labels declare.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from bench.errors import UnknownChoice, UserError

from .base import TASK_KINDS, Funnel, Task
from .table_files import locate_row

FLOAT32_MAX = 3.4028234663852886e38
LABEL_PREFIX = "__y_"  # a label's encoded column: __y_<label>


def label_column(name: str) -> str:
    """The frame column that holds label ``name`` mapped to numbers (``encode_labels``)."""
    return f"{LABEL_PREFIX}{name}"


# ---------------------------------------------------------------------------------------------- options


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


# ---------------------------------------------------------------------------------------------- label columns


def encode_labels(
    frame: pl.DataFrame, kinds: dict[str, str], rules: dict[str, str], paths: list[Path]
) -> tuple[pl.DataFrame, list[Task], dict[str, dict]]:
    """The frame with each label mapped to numbers (``encode_label``) in its ``label_column``, null where the
    label is missing or, by its ``observed_if`` rule, not observed; the tasks, and per label its kind and how its
    values were mapped."""
    tasks, label_info, label_series = [], {}, []
    for name, kind in kinds.items():
        series, task, info = encode_label(frame, name, kind, paths)
        if name in rules:
            where_observed = observed_where(frame, name, rules[name], paths)
            series = pl.select(pl.when(where_observed).then(series).otherwise(None)).to_series()
            info["observed_if"] = rules[name]
        tasks.append(task)
        label_info[name] = {"kind": kind, **info}
        label_series.append(series.alias(label_column(name)))
    return frame.with_columns(label_series), tasks, label_info


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
        return regression_label(frame, name, col, paths)
    levels = present.unique().sort().to_list()
    if kind == "binary":
        return binary_label(name, col, levels)
    return multiclass_label(name, col, levels)


def regression_label(
    frame: pl.DataFrame, name: str, col: pl.Series, paths: list[Path]
) -> tuple[pl.Series, Task, dict]:
    """A regression label: finite numbers within the float32 range; the first other cell is a one-line error
    naming its file and line."""
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


def binary_label(name: str, col: pl.Series, levels: list) -> tuple[pl.Series, Task, dict]:
    """A binary label (``levels``: its distinct values, sorted): booleans, 0/1 numbers, or exactly two distinct
    strings, the later in sorted order the positive class."""
    if len(levels) < 2:
        raise UserError(f"table: label {name} is binary but every row holds the same value ({levels[0]!r}); a "
                        "binary label needs both classes")
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


def multiclass_label(name: str, col: pl.Series, levels: list) -> tuple[pl.Series, Task, dict]:
    """A multiclass label (``levels``: its distinct values, sorted, at least 2; numbers must be integers): class
    k is the k-th level."""
    if len(levels) < 2:
        raise UserError(f"table: label {name} is multiclass but holds only {len(levels)} distinct value(s)")
    if col.dtype.is_float() and not all(float(v).is_integer() for v in levels):
        raise UserError(f"table: label {name} is multiclass but holds non-integer numbers such as {levels[0]}")
    mapping = {str(v): float(k) for k, v in enumerate(levels)}
    series = col.cast(pl.String).replace_strict(mapping, return_dtype=pl.Float32)
    return series, Task(name, "multiclass", len(levels)), {"classes": [str(v) for v in levels]}


# ---------------------------------------------------------------------------------------------- funnel


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
