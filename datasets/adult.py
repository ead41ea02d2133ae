"""UCI Adult: ``adult.data`` (32,561 rows) and ``adult.test`` (16,281 rows), 15 comma-separated fields, no header.

Tasks (binary): ``income`` (> 50K) and ``never_married`` (marital status ``Never-married``, the same meaning as
census-income group 1). The official ``adult.test`` opens with a note line (``|1x3 Cross validator``) and its
labels end in ``.`` (``>50K.``); both it and the cleaned copy without them are read.

Never features: the label sources (income, marital status) and ``fnlwgt`` (a sampling weight, like
census-income's instance weight). ``relationship`` (its levels Husband, Wife and Unmarried are defined by marital
status) is dropped too under ``features="strict"`` (the default), kept under ``features="paper"`` (only the label
sources removed, as census-income's paper protocol does). ``?`` (missing) stays its own level of a categorical
column. Continuous columns (age, education_num, capital_gain, capital_loss, hours_per_week) are standardised, the
rest one-hot encoded, with training statistics.

Splits: ``split="official"`` trains on adult.data and splits adult.test 1:1 at random (seeded) into validation
and test (as census-income's paper protocol); ``split="random"`` pools the files present and splits them by
``val_fraction``/``test_fraction``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

from bench.errors import UserError

from . import uci
from .base import MTLData
from .preprocess import read_records, to_numbers
from .registry import register_dataset
from .sources import OfficialFile

COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation", "relationship",
    "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country", "income",
]
CONTINUOUS = ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
EXCLUDED = ["income", "marital_status", "fnlwgt"]
CODED_FROM_LABELS = ["relationship"]  # coded from marital status: a feature only under features="paper"
NOMINAL = [c for c in COLUMNS if c not in CONTINUOUS and c not in EXCLUDED]  # features="paper"
INCOME_LABELS = {"<=50K": 0.0, ">50K": 1.0}  # adult.test writes them with a trailing "."
NEVER_MARRIED = "Never-married"
TASKS = ("income", "never_married")

FILES = {
    "data": OfficialFile(
        "adult.data", "adult", "adult/adult.data", rows=32_561, fields=15,
        sha256=("5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",),
    ),
    "test": OfficialFile(
        "adult.test", "adult", "adult/adult.test", rows=16_281, fields=15,
        # the official file, and the cleaned copy (no note line, no "." after labels) in /work/shared/data
        sha256=(
            "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
            "710432867c555a7b7eb850b83724172b75e288ff12ca59f19a8bf4aadb3edf1c",
        ),
    ),
}


def parse_file(path: Path) -> pl.DataFrame:
    """One file: continuous columns as floats, nominal ones as strings, both labels as 0/1."""
    frame = read_records(path, COLUMNS).with_columns(pl.col("income").str.strip_suffix("."))
    bad = frame.filter(~pl.col("income").is_in(list(INCOME_LABELS)))
    if len(bad):
        raise UserError(
            f"{path}:{bad['line'][0]}: income label {bad['income'][0]!r} is neither "
            f"{' nor '.join(map(repr, INCOME_LABELS))} (a trailing '.' is allowed)"
        )
    frame = to_numbers(frame, CONTINUOUS, path)
    return frame.with_columns(
        pl.col("income").replace_strict(INCOME_LABELS, return_dtype=pl.Float32).alias("y_income"),
        (pl.col("marital_status") == NEVER_MARRIED).cast(pl.Float32).alias("y_never_married"),
    )


def choose_tasks(tasks) -> list[str]:
    return uci.task_names("adult", tasks, TASKS) or list(TASKS)


UCI = uci.UCIDataset(
    name="adult", files=FILES, parse_file=parse_file, continuous=CONTINUOUS, nominal=NOMINAL, tasks=TASKS,
    excluded=EXCLUDED, coded_from_labels=CODED_FROM_LABELS, official_split="official", module=sys.modules[__name__],
)


@register_dataset("adult")
def adult(
    *,
    data_dir: str = "",
    tasks: list[str] | None = None,
    split: str = "official",
    features: str = "strict",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    encoding: str = "onehot",
    min_count: int = 5,
    download: bool = True,
    cache: bool = True,
) -> MTLData:
    """UCI Adult: income > 50K and never married."""
    names = choose_tasks(tasks)
    data = uci.load(
        UCI, split=split, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, data_dir=data_dir,
        download=download, cache=cache, features=features, encoding=encoding, min_count=min_count,
    )
    data = data.select_tasks(names)
    data.info["tasks"] = names
    return data
