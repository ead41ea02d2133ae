"""The units of a study and their data.

A *unit* is what gets its own Optuna study and its own tuned configuration: (dataset, architecture) for the
multi-task architectures, and (dataset, single_task, task) for the single-task baselines, each tuned on its own
task's validation metric and trained on that task alone (the MMoE paper's protocol).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.coordination.coordinator import Coordinator
from bench.coordination.signals import StopFlag
from bench.coordination.trials import grid_sampler
from bench.errors import UserError
from bench.hashing import stream_seed
from bench.paths import component
from bench.results import store
from bench.results.markdown import visible
from bench.spec.hooks import Hooks
from bench.spec.replicates import replicate_options
from bench.spec.space import ENCODER_SPACE, Param, with_encoder_space
from bench.spec.study import Study, grid_size, optuna_class, sampler_kwargs, unit_label, unit_text


@dataclass(frozen=True)
class Unit:
    dataset: str  # the dataset's label in the study
    arch: str  # the registered architecture that is built
    target: str  # "mean", the study's main task, or (single_task) the one task trained and tuned
    weighting: str = "equal"  # the loss weighting (bench.weighting) its configurations train with
    replicate: int = 1  # which run of the whole pipeline (bench.spec.replicates); 1: the study without replicates

    @property
    def label(self) -> str:
        """The name its results are stored and ranked under: ``mmoe``, or ``mmoe+gradnorm``."""
        return unit_label(self.arch, self.weighting)

    @property
    def optuna_name(self) -> str:
        """``<dataset>/<arch>[/<task>]``, with ``#r<k>`` after it for replicate k >= 2 (replicate 1 keeps the
        name of a study without replicates, so that older stores resume)."""
        name = f"{self.dataset}/{self.label}"
        name = f"{name}/{self.target}" if self.arch == "single_task" else name
        return name if self.replicate == 1 else f"{name}#r{self.replicate}"

    @property
    def data_key(self) -> str:
        """Its data's key in ``RunContext.data``: the dataset's label, ``<label>@r<k>`` for replicate k >= 2
        (``@`` is never in a label)."""
        return data_key(self.dataset, self.replicate)

    @property
    def objective(self) -> str:
        """The training objective of its trials: its target, but "mean" for a single-task unit, whose data hold
        its one task only (``unit_data``)."""
        return "mean" if self.arch == "single_task" else self.target

    def __str__(self) -> str:  # log lines: a task name's control characters (ANSI escapes) shown, not sent raw
        target = visible(self.target) if self.arch == "single_task" else None
        return f"{self.dataset} | {unit_text(self.label, target, self.replicate)}"


def data_key(label: str, replicate: int) -> str:
    return label if replicate == 1 else f"{label}@r{replicate}"


def load_data(study: Study) -> dict[str, Any]:
    """Every dataset of the study, loaded and checked (tasks, objective) before anything is written: keyed by
    its label, and by ``<label>@r<k>`` for replicate k >= 2 (its own draw, ``replicate_options``; the same
    object when the draw is fixed)."""
    out = {}
    for spec in study.datasets:
        first = out[spec.label] = load_one(study, spec, 1)
        for r in study.replicate_ids[1:]:
            fixed = replicate_options(spec.name, spec.options, r) == spec.options
            out[data_key(spec.label, r)] = first if fixed else load_one(study, spec, r)
    return out


def load_one(study: Study, spec, replicate: int):
    """Replicate ``replicate``'s draw of one dataset (``spec``), its tasks and label fractions applied."""
    from bench import datasets

    options = replicate_options(spec.name, spec.options, replicate)
    mask_seed = options["seed"] if options != spec.options else 0  # a replicate's own draw masks its own labels
    try:
        data = datasets.load(spec.name, **options)
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
        data = data.with_label_fraction(task, fraction, seed=mask_seed)
    objective = study.objective_for(spec.label)
    if objective != "mean" and objective not in data.task_names:
        raise UserError(f"unknown objective {objective!r} for dataset {spec.label}; valid choices: "
                        f"{', '.join(['mean', *data.task_names])}")
    return data


def units(study: Study, data: dict[str, Any]) -> list[Unit]:
    """The study's units on its loaded data; a one-line ``UserError`` when an architecture needs what a dataset
    lacks (a funnel: ESMM, AITM; embedded fields: STEM) and, with the grid sampler, when a unit's grid
    (``unit_space``: on data with embedded fields, ``embedding_dim``'s choices too) is not ``budget.trials`` points."""
    from bench import architectures

    out = []
    for spec in study.datasets:
        d = data[spec.label]
        for arch in study.architectures_of(spec.label):
            try:
                if architectures.requirements(arch):
                    architectures.check_data(arch, d.task_names, d.field_sizes, d.funnel_steps)
            except UserError as err:
                raise UserError(f"dataset {spec.label}: {err}") from None
            if arch == "single_task":
                out += [Unit(spec.label, arch, t) for t in data[spec.label].task_names]
            else:
                out += [Unit(spec.label, arch, study.objective_for(spec.label), w) for w in study.weightings_of(arch)]
    for unit in out:  # the names its paths are made of (bench.paths.component): one that cannot be, refused now
        store.unit_name(unit.label, unit.target if unit.arch != "single_task" else
                        component(unit.target, f"task name of dataset {unit.dataset}"))
        component(unit.dataset, "dataset label")
    # replicates 2..R after the whole of replicate 1 (a study's first replicate is done first, as without them)
    out += [replace(u, replicate=r) for r in study.replicate_ids[1:] for u in list(out)]
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
    return with_encoder_space(study.search[unit.arch], bool(data[unit.data_key].fields))


def unit_data(unit: Unit, data):
    """A unit's training data: its own task only for a single-task unit. ``data``: the unit's dataset
    (``RunContext.data[unit.data_key]``).

    A single-task unit trains on its task's observed rows (``select_tasks``). Where those are fewer than the
    dataset's training rows -- a task keeping a fraction of its labels (``label_fraction``), a funnel's CVR observed
    on clicked rows only, any missing labels -- an epoch of it would be a fraction of the others' steps, and the same
    ``max_epochs`` and ``patience`` would give it a fraction of their optimisation (1 step an epoch at 1% of 8,000
    rows and batch 256, against 32; 3 against 55 for CVR at a 5% click rate on 14,000 rows). Its observed rows are
    therefore tiled to the dataset's training size: an epoch is as many steps for every unit, each observed row drawn
    about n_full/n_own times an epoch in a shuffled order."""
    if unit.arch != "single_task":
        return data
    own = data.select_tasks([unit.target])
    n_full, n_own = len(data.train), len(own.train)
    if 0 < n_own < n_full:
        import torch

        own = replace(own, train=own.train.rows(torch.arange(n_full) % n_own))
    return own


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
        """The sampler for a unit's next trial: one seed per sampled configuration, the unit's stream
        (``sampler_stream``) + the ordinal of the configuration about to be drawn
        (``bench.coordination.trials.next_ordinal``: interrupted trials not counted), so the draws are distinct
        whichever worker asks and the same after an interruption. A grid sampler gets the unit's space as its
        grid (the searched entries' choices) and visits each point once (a retried trial keeps its point)."""
        kind = self.study.sampler["kind"]
        kwargs = sampler_kwargs(self.study.sampler, self.study.budget.trials)
        if kind == "grid":  # one seed for all: it shuffles the grid, and trial n takes point n of that order
            space = unit_space(self.study, unit, self.data)
            return grid_sampler({k: list(p.choices) for k, p in space.items() if p.kind == "categorical"}, **kwargs)
        kwargs["seed"] = sampler_stream(self.study.sampler, unit) + ordinal
        return optuna_class("sampler", kind)(**kwargs)


def sampler_stream(sampler: dict[str, Any], unit: Unit) -> int:
    """The first seed of a unit's sampler stream (trial k draws with this + k): a stable hash of the study's
    sampler seed, the dataset's label, the unit (architecture and weighting, and a single-task unit's task) and
    its replicate, so units draw independently. ``common_draws = true``: the study's seed for every unit of
    replicate 1 (trial k draws the same configuration in every unit, as before per-unit streams) and one stream
    per replicate for the others."""
    seed = int(sampler.get("seed", 0))
    if sampler.get("common_draws"):
        return seed if unit.replicate == 1 else stream_seed("sampler", seed, unit.replicate)
    target = unit.target if unit.arch == "single_task" else None
    return stream_seed("sampler", seed, unit.dataset, unit.label, target, unit.replicate)
