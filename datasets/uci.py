"""The loading path shared by the UCI census data sets (``census-income``, ``adult``).

Both come as an official (train file, test file) pair. ``split=<official>`` trains on the train file and splits
the test file 1:1 at random (seeded) into validation and test (the MMoE paper's protocol); ``split="random"``
pools whichever official files are present and splits them by fractions. Features are encoded with training
statistics; the prepared tensors are cached, keyed by the files' hashes, the options and the code.

Feature protocols (option ``features``): the label columns, the columns the labels are derived from and sampling
weights are never features. ``strict`` (the default) also drops every column *coded from* a label's source (e.g.
household codes such as "Spouse of householder" or a joint tax return, which imply married): no feature restates
a label. ``paper`` keeps those columns, as the MMoE paper and the public reproductions do; a leaderboard of such
a study says so.

Categorical encoding (options ``encoding``, ``min_count``): ``onehot`` (the default, the papers' protocol) or
``embedding`` / ``auto`` (``feature_encoding.CategoricalEncoding``): the nominal columns as embedded fields,
vocabularies from the training split, levels rarer than ``min_count`` out of vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import polars as pl

from bench.errors import UnknownChoice, UserError

from . import feature_encoding, preprocess, sources
from .base import MTLData, Task
from .preprocess import parse_names
from .sources import OfficialFile


@dataclass(frozen=True)
class UCIDataset:
    """What differs between the UCI loaders; ``files`` has keys ``data`` (train file) and ``test``."""

    name: str
    files: dict[str, OfficialFile]
    parse_file: Callable[[Path], pl.DataFrame]  # -> columns, with labels as y_<task> 0/1 columns
    continuous: list[str]
    nominal: list[str]
    tasks: tuple[str, ...]
    excluded: list[str]  # never features: labels, their source columns, sampling weights
    coded_from_labels: list[str]  # features only under features="paper": columns coded from a label's source
    official_split: str  # the name of the official-pair split mode ("paper", "official")
    module: ModuleType  # the loader's module: its code is part of the cache key
    info: dict = field(default_factory=dict)

    @property
    def split_modes(self) -> tuple[str, str]:
        return (self.official_split, "random")

    def feature_columns(self, features: str) -> tuple[list[str], list[str]]:
        """(nominal feature columns, excluded columns) under feature protocol ``features``."""
        if features not in FEATURE_PROTOCOLS:
            raise UnknownChoice(f"{self.name} features", features, FEATURE_PROTOCOLS)
        dropped = [*self.excluded, *(self.coded_from_labels if features == "strict" else [])]
        return [c for c in self.nominal if c not in dropped], dropped


FEATURE_PROTOCOLS = ("strict", "paper")


def task_names(dataset: str, tasks, valid: tuple[str, ...]) -> list[str] | None:
    """The ``tasks`` option (a list, or a comma-separated string) checked against ``valid``; None if not given."""
    names = parse_names(tasks, "tasks")
    if names is None:
        return None
    if not names:
        raise UserError(f"{dataset}: tasks is empty; valid choices: {', '.join(valid)}")
    for name in names:
        if name not in valid:
            raise UnknownChoice(f"task of dataset {dataset}", name, valid)
    if len(set(names)) != len(names):
        raise UserError(f"{dataset}: a task is listed twice in {names}")
    return names


def load(
    ds: UCIDataset, *, split: str, val_fraction: float, test_fraction: float, seed: int, data_dir: str,
    download: bool, cache: bool, features: str = "strict", encoding: str = "onehot", min_count: int = 5,
) -> MTLData:
    """All of ``ds``'s tasks on the requested split (the caller selects tasks)."""
    if split not in ds.split_modes:
        raise UnknownChoice(f"{ds.name} split", split, ds.split_modes)
    categorical = feature_encoding.CategoricalEncoding(encoding, min_count=min_count)
    nominal, excluded = ds.feature_columns(features)
    if split == ds.official_split:
        files = {k: sources.fetch(spec, data_dir, download=download) for k, spec in ds.files.items()}
    else:
        preprocess.check_fractions(val_fraction, test_fraction)
        root = sources.resolve_data_dir(data_dir)
        present = {k: p for k, spec in ds.files.items() if (p := sources.locate(spec, root)) is not None}
        files = present or {k: sources.fetch(spec, data_dir, download=download) for k, spec in ds.files.items()}
    options = {"split": split, "seed": seed, "features": features}
    if split == "random":
        options.update(val_fraction=val_fraction, test_fraction=test_fraction)
    if categorical.mode != "onehot":  # the default's options (and data.info) stay as they were
        options.update(encoding=categorical.options())

    def build() -> MTLData:
        parsed = {k: ds.parse_file(p) for k, p in files.items()}
        if split == ds.official_split:
            val_idx, test_idx = preprocess.halve(len(parsed["test"]), seed)
            frames = {"train": parsed["data"], "val": preprocess.take(parsed["test"], val_idx),
                      "test": preprocess.take(parsed["test"], test_idx)}
        else:
            pooled = pl.concat([parsed[k] for k in ds.files if k in parsed])
            idx = preprocess.random_split(len(pooled), val_fraction, test_fraction, seed)
            frames = {s: preprocess.take(pooled, i) for s, i in idx.items()}
        info = {
            "options": options,
            "rows": {k: len(f) for k, f in parsed.items()},
            "positives": {k: {t: int(f[f"y_{t}"].sum()) for t in ds.tasks} for k, f in parsed.items()},
            "features": features,
            "excluded_columns": excluded,
            **ds.info,
        }
        return preprocess.to_data(
            ds.name, [Task(t, "binary") for t in ds.tasks], frames, ds.continuous, nominal,
            [f"y_{t}" for t in ds.tasks], info, categorical,
        )

    code = sources.code_digest(preprocess, feature_encoding, sources, ds.module, __import__(__name__, fromlist=["_"]))
    return sources.cached(ds.name, options, files, build, code=code, use_cache=cache)
