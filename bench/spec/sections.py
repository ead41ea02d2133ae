"""The sections of a study spec, each checked into its typed value: the architectures and weightings compared, the
budget, the run counts (seeds, repeats, replicates), the ``[[datasets]]`` entries, the search space of each
architecture, and the ``[[published]]`` numbers. ``study.parse_study`` calls them in the spec's order; every
mistake is a one-line ``UserError`` naming the key and, for a name, the valid choices.

The registries (``bench.architectures``, ``bench.datasets``, ``bench.weighting``) are imported when a spec is
checked, not with this module.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from bench.errors import UnknownChoice, UserError

from .config import check_keys, coerce
from .space import Param, check_option_values, check_param_values, default_space, parse_param, search_keys

PUBLISHED_KEYS = ("source", "dataset", "metric", "notes", "values")
BUDGET_KEYS = ("trials", "max_epochs", "patience", "timeout")
DATASET_KEYS = ("name", "label", "tasks", "options", "objective", "label_fraction", "architectures")
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
MAX_SEEDS = 1000  # final seeds of a study (trained as one population per unit): a bound on mistyped values
MAX_REPEATS = 100_000
MAX_REPLICATES = 100  # runs of the whole pipeline: a bound on mistyped values


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    label: str
    options: dict[str, Any] = field(default_factory=dict)
    tasks: tuple[str, ...] | None = None
    objective: str | None = None  # this dataset's tuning objective; None: the study's
    # label scarcity: task -> fraction of its training labels kept (the rest masked, seeded; validation and test
    # keep theirs); the single-task baseline trains on the same reduced labels
    label_fraction: dict[str, float] | None = None
    # the study's architectures run on this entry (a subset, e.g. STEM only where fields are embedded); None: all
    architectures: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Budget:
    trials: int = 20
    max_epochs: int = 30
    patience: int = 5
    timeout: float | None = None


@dataclass(frozen=True)
class Published:
    """Published numbers for comparison (a ``[[published]]`` table of the spec): never produced by the harness,
    shown apart from its results on the dataset's leaderboard section, with their source and the protocol
    differences that remain."""

    source: str  # citation: paper, table, how the numbers were obtained
    dataset: str  # a dataset label of the study
    metric: str  # e.g. "test AUC, mean over 400 runs"
    values: dict[str, dict[str, float]]  # architecture (any name the paper uses) -> task -> number
    notes: str = ""


def typed(what: str, value: Any, kind: type) -> Any:
    """``value`` as a ``kind``: a TOML value of the wrong type is a one-line error."""
    return coerce(what, value, kind())


def bounded(what: str, value: Any, low: int, high: int) -> int:
    """An integer setting (seeds, repeats, replicates) within ``low..high``."""
    n = typed(what, value, int)
    if not low <= n <= high:
        raise UserError(f"{what} must be between {low} and {high}, got {n}")
    return n


# ---------------------------------------------------------------------------------------------- what is compared


def default_architectures() -> list[str]:
    """Every registered architecture that runs on any data (not those needing a funnel or embedded fields)."""
    from bench import architectures

    return [a for a in architectures.available() if not architectures.requirements(a)]


def parse_architectures(archs: Any) -> list[str]:
    """The ``architectures`` list: registered names, each once."""
    from bench import architectures

    if not isinstance(archs, list) or not archs:
        raise UserError("architectures must be a non-empty list of names")
    for arch in archs:
        if arch not in architectures.available():
            raise UnknownChoice("architecture", arch, architectures.available())
    if len(set(archs)) != len(archs):
        raise UserError("architectures lists a name twice")
    return list(archs)


def parse_weightings(weightings: Any) -> list[str]:
    """The ``weightings`` list: registered loss weightings, each once."""
    from bench import weighting

    if not isinstance(weightings, list) or not weightings or not all(isinstance(w, str) for w in weightings):
        raise UserError("weightings must be a non-empty list of names")
    for w in weightings:
        if w not in weighting.available():
            raise UnknownChoice("weighting", w, weighting.available())
    if len(set(weightings)) != len(weightings):
        raise UserError("weightings lists a name twice")
    return list(weightings)


def parse_budget(table: Any) -> Budget:
    """The ``[budget]`` table, defaults from ``Budget``."""
    budget_raw = check_keys("budget", table, BUDGET_KEYS)
    b = Budget()
    budget = Budget(
        trials=typed("budget.trials", budget_raw.get("trials", b.trials), int),
        max_epochs=typed("budget.max_epochs", budget_raw.get("max_epochs", b.max_epochs), int),
        patience=typed("budget.patience", budget_raw.get("patience", b.patience), int),
        timeout=typed("budget.timeout", budget_raw["timeout"], float) if "timeout" in budget_raw else None,
    )
    if budget.trials < 1 or budget.max_epochs < 1 or budget.patience < 0:
        raise UserError("budget: trials and max_epochs must be >= 1, patience >= 0")
    if budget.timeout is not None and budget.timeout <= 0:
        raise UserError("budget.timeout must be > 0 seconds")
    return budget


# ---------------------------------------------------------------------------------------------- datasets


def parse_datasets(entries: Any) -> list[DatasetSpec]:
    """The ``[[datasets]]`` entries (at least one), their labels distinct."""
    if not isinstance(entries, list) or not entries:
        raise UserError("a study needs at least one [[datasets]] entry")
    specs = [parse_dataset(i, entry) for i, entry in enumerate(entries)]
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise UserError(f"dataset labels must be distinct, got {labels}; give each entry a 'label'")
    return specs


def parse_dataset(i: int, entry: Any) -> DatasetSpec:
    """Entry ``i`` of ``[[datasets]]``: a registered dataset, its options typed by the loader's defaults, its label,
    tasks, objective and label fractions."""
    from bench import datasets

    check_keys(f"datasets[{i}]", entry, DATASET_KEYS)
    if "name" not in entry:
        raise UserError(f"datasets[{i}] needs a name; valid choices: {', '.join(datasets.available())}")
    ds_name = entry["name"]
    datasets.get(ds_name)  # UnknownChoice lists the registered datasets
    valid_opts = datasets.options(ds_name)
    opts = {}
    for key, value in check_keys(f"options of dataset {ds_name}", entry.get("options", {}), valid_opts).items():
        opts[key] = coerce(f"{ds_name}.{key}", value, valid_opts[key])
    label = typed(f"datasets[{i}].label", entry.get("label", ds_name), str)
    if not LABEL_RE.match(label):
        raise UserError(f"dataset label {label!r} must be letters, digits, '_', '.', '+' or '-'")
    tasks = entry.get("tasks")
    if tasks is not None and not (isinstance(tasks, list) and tasks and all(isinstance(t, str) for t in tasks)):
        raise UserError(f"datasets[{i}].tasks must be a non-empty list of task names")
    ds_objective = typed(f"datasets[{i}].objective", entry["objective"], str) if "objective" in entry else None
    fractions = parse_label_fraction(i, entry["label_fraction"]) if "label_fraction" in entry else None
    archs = entry.get("architectures")
    if archs is not None and not (isinstance(archs, list) and archs and all(isinstance(a, str) for a in archs)):
        raise UserError(f"datasets[{i}].architectures must be a non-empty list of architecture names")
    return DatasetSpec(ds_name, label, opts, tuple(tasks) if tasks else None, ds_objective,
                       dict(fractions) if fractions else None, tuple(archs) if archs else None)


def parse_label_fraction(i: int, fractions: Any) -> dict[str, float]:
    """``datasets[i].label_fraction``: task = fraction of its training labels kept, each in (0, 1]."""
    if not isinstance(fractions, dict):
        raise UserError(f"datasets[{i}].label_fraction must be a table of task = fraction, got {fractions!r}")
    fractions = dict(fractions)
    for task, f in fractions.items():
        f = typed(f"datasets[{i}].label_fraction.{task}", f, float)
        if not 0.0 < f <= 1.0:
            raise UserError(f"datasets[{i}].label_fraction.{task} must be in (0, 1], got {f}")
        fractions[task] = f
    if not fractions:
        raise UserError(f"datasets[{i}].label_fraction needs at least one task = fraction")
    return fractions


# ---------------------------------------------------------------------------------------------- search spaces


def parse_search(table: Any, archs: list[str], weightings: list[str]) -> dict[str, dict[str, Param]]:
    """The ``[search.*]`` tables: per architecture, its built-in space overridden by ``search.all`` and then by
    its own table."""
    from bench import architectures

    search_raw = check_keys("search", table, ["all", *architectures.available()])
    return {arch: architecture_space(arch, search_raw, archs, weightings) for arch in archs}


def architecture_space(arch: str, search_raw: dict, archs: list[str], weightings: list[str]) -> dict[str, Param]:
    """The search space of ``arch``: ``default_space`` with the spec's entries merged in, every value checked. A
    ``search.all`` key that only other architectures of the study have applies to those and is skipped here."""
    valid = search_keys(arch)
    merged = dict(default_space(arch))
    for section in ("all", arch):
        table = search_raw.get(section, {})
        if not isinstance(table, dict):
            raise UserError(f"search.{section} must be a table")
        for key, value in table.items():
            if key not in valid:
                if section == "all" and any(key in search_keys(a) for a in archs):
                    continue  # an option some architectures have (e.g. n_experts) applies to those
                raise UnknownChoice(f"search key for {arch}", key, valid)
            merged[key] = parse_param(f"search.{section}.{key}", value)
    for key, param in merged.items():
        check_param_values(f"search.{arch}.{key}", param, valid[key], key)
    if "weighting" in merged and weightings != ["equal"] and arch != "single_task":
        raise UserError(f"search.{arch}.weighting: the study's weightings set it (one unit per weighting); "
                        "search it only without a weightings list")
    check_option_values(arch, merged)
    return merged


# ---------------------------------------------------------------------------------------------- published numbers


def parse_published(entries: Any, labels: list[str]) -> list[Published]:
    """``[[published]]`` tables: source, dataset (a label of the study), metric, values = {arch = {task = x}}."""
    if not isinstance(entries, list):
        raise UserError("published must be a list of [[published]] tables")
    out = []
    for i, entry in enumerate(entries):
        where = f"published[{i}]"
        check_keys(where, entry, PUBLISHED_KEYS)
        for key in ("source", "dataset", "metric", "values"):
            if key not in entry:
                raise UserError(f"{where} needs {key!r}")
        dataset = typed(f"{where}.dataset", entry["dataset"], str)
        if dataset not in labels:
            raise UnknownChoice(f"dataset label in {where}", dataset, labels)
        values = entry["values"]
        if not isinstance(values, dict) or not values:
            raise UserError(f"{where}.values must be a table: architecture = {{ task = number, ... }}")
        for arch, per_task in values.items():
            if not isinstance(per_task, dict) or not all(
                    isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                    for v in per_task.values()):
                raise UserError(f"{where}.values.{arch} must be a table of task = finite number")
        out.append(Published(typed(f"{where}.source", entry["source"], str), dataset,
                             typed(f"{where}.metric", entry["metric"], str),
                             {a: {t: float(v) for t, v in pt.items()} for a, pt in values.items()},
                             typed(f"{where}.notes", entry.get("notes", ""), str)))
    return out
