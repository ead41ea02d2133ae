"""The units of a study and their data.

A *unit* is what gets its own Optuna study and its own tuned configuration: (dataset, architecture) for the
multi-task architectures, and (dataset, single_task, task) for the single-task baselines, each tuned on its own
task's validation metric and trained on that task alone (the MMoE paper's protocol).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.coordination.coordinator import Coordinator
from bench.coordination.signals import StopFlag
from bench.coordination.trials import grid_sampler
from bench.errors import UserError
from bench.spec.hooks import Hooks
from bench.spec.space import ENCODER_SPACE, Param, with_encoder_space
from bench.spec.study import Study, grid_size, optuna_class, unit_label


@dataclass(frozen=True)
class Unit:
    dataset: str  # the dataset's label in the study
    arch: str  # the registered architecture that is built
    target: str  # "mean", the study's main task, or (single_task) the one task trained and tuned
    weighting: str = "equal"  # the loss weighting (bench.weighting) its configurations train with

    @property
    def label(self) -> str:
        """The name its results are stored and ranked under: ``mmoe``, or ``mmoe+gradnorm``."""
        return unit_label(self.arch, self.weighting)

    @property
    def optuna_name(self) -> str:
        name = f"{self.dataset}/{self.label}"
        return f"{name}/{self.target}" if self.arch == "single_task" else name

    @property
    def objective(self) -> str:
        """The training objective of its trials: its target, but "mean" for a single-task unit, whose data hold
        its one task only (``unit_data``)."""
        return "mean" if self.arch == "single_task" else self.target

    def __str__(self) -> str:
        return f"{self.dataset} | {self.label}" + (f"[{self.target}]" if self.arch == "single_task" else "")


def load_data(study: Study) -> dict[str, Any]:
    """Every dataset of the study, loaded and checked (tasks, objective) before anything is written."""
    from bench import datasets

    out = {}
    for spec in study.datasets:
        try:
            data = datasets.load(spec.name, **spec.options)
        except (ValueError, FileNotFoundError, OSError) as err:
            if isinstance(err, UserError):
                raise
            raise UserError(f"dataset {spec.label} ({spec.name}): {err}") from None
        if spec.tasks:
            for t in spec.tasks:
                if t not in data.task_names:
                    raise UserError(f"dataset {spec.label}: unknown task {t!r}; valid choices: "
                                    f"{', '.join(data.task_names)}")
            data = data.select_tasks(list(spec.tasks))
        for task, fraction in (spec.label_fraction or {}).items():
            if task not in data.task_names:
                raise UserError(f"dataset {spec.label}: label_fraction names unknown task {task!r}; valid choices: "
                                f"{', '.join(data.task_names)}")
            data = data.with_label_fraction(task, fraction)
        objective = study.objective_for(spec.label)
        if objective != "mean" and objective not in data.task_names:
            raise UserError(f"unknown objective {objective!r} for dataset {spec.label}; valid choices: "
                            f"{', '.join(['mean', *data.task_names])}")
        out[spec.label] = data
    return out


def units(study: Study, data: dict[str, Any]) -> list[Unit]:
    """The study's units on its loaded data; a one-line ``UserError`` when an architecture needs what a dataset
    lacks (a funnel: ESMM, AITM; embedded fields: STEM) and, with the grid sampler, when a unit's grid
    (``unit_space``: on data with embedded fields, ``embedding_dim``'s choices too) is not ``budget.trials`` points."""
    from bench import architectures

    out = []
    for spec in study.datasets:
        d = data[spec.label]
        for arch in study.architectures:
            try:
                if architectures.requirements(arch):
                    architectures.check_data(arch, d.task_names, d.field_sizes, d.funnel_steps)
            except UserError as err:
                raise UserError(f"dataset {spec.label}: {err}") from None
            if arch == "single_task":
                out += [Unit(spec.label, arch, t) for t in data[spec.label].task_names]
            else:
                out += [Unit(spec.label, arch, study.objective_for(spec.label), w) for w in study.weightings_of(arch)]
    if study.sampler["kind"] == "grid":
        for unit in out:
            space = unit_space(study, unit, data)
            size = grid_size(f"search.{unit.arch}", space)
            if size != study.budget.trials:
                added = [k for k in ENCODER_SPACE if k in space and k not in study.search[unit.arch]]
                why = (f" ({', '.join(added)} searched over its default choices on its embedded categorical fields: "
                       f"fix it in [search.all] or list its choices)") if added else ""
                raise UserError(f"sampler grid: the grid of {unit.arch} on dataset {unit.dataset} has {size} points"
                                f"{why} but budget.trials = {study.budget.trials}; set trials to the grid's size")
    return out


def unit_space(study: Study, unit: Unit, data: dict[str, Any]) -> dict[str, Param]:
    """The space a unit searches, for every sampler: the study's space of its architecture, with the input
    encoder's entries (``embedding_dim``, default choices where the spec sets none) on data with embedded
    categorical fields and without them on data without (``bench.spec.space.with_encoder_space``). A grid
    sampler's points are this space's choices."""
    return with_encoder_space(study.search[unit.arch], bool(data[unit.dataset].fields))


def unit_data(unit: Unit, data):
    return data.select_tasks([unit.target]) if unit.arch == "single_task" else data


def unit_fixed(study: Study, unit: Unit) -> dict[str, Any]:
    """Config entries set by the study, not searched: budget, search seed, objective, weighting."""
    fixed = {"max_epochs": study.budget.max_epochs, "patience": study.budget.patience, "seed": 0,
             "objective": unit.objective}
    if unit.weighting != "equal":  # equal is the default: configurations of studies without weightings unchanged
        fixed["weighting"] = unit.weighting
    return fixed


@dataclass
class RunContext:
    """What the stages of one worker's run of a study share (``bench.study.run.run_study`` builds it)."""

    study: Study
    root: Path  # runs/<study>/
    data: dict[str, Any]  # dataset label -> MTLData
    coordinator: Coordinator
    stop: StopFlag
    hooks: Hooks
    accelerator: str
    hardware: str  # bench.training.devices.hardware(accelerator), stored with every row
    out: Callable[[str], None]
    max_failure_rate: float = 0.5
    opts: dict[Unit, Any] = field(default_factory=dict)  # every unit's Optuna study, once opened
    progress: Any = None  # bench.study.progress.Progress over the whole study
    keep_models: str = "all"  # final runs' models kept under runs/<study>/models/: all, best (one seed), none

    def new_sampler(self, unit: Unit, ordinal: int):
        """The sampler for a unit's next trial: one seed per sampled configuration (sampler seed + the ordinal
        of the configuration about to be drawn, ``bench.coordination.trials.next_ordinal``: interrupted trials
        not counted), so the draws are distinct whichever worker asks and the same after an interruption. A grid
        sampler gets the unit's space as its grid (the searched entries' choices) and visits each point once (a
        retried trial keeps its point)."""
        kind = self.study.sampler["kind"]
        kwargs = {k: v for k, v in self.study.sampler.items() if k != "kind"}
        if kind == "grid":  # one seed for all: it shuffles the grid, and trial n takes point n of that order
            space = unit_space(self.study, unit, self.data)
            return grid_sampler({k: list(p.choices) for k, p in space.items() if p.kind == "categorical"}, **kwargs)
        kwargs["seed"] = int(kwargs.get("seed", 0)) + ordinal
        return optuna_class("sampler", kind)(**kwargs)
