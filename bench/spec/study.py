"""Study specs: a declarative TOML file describing one benchmark, validated on load into typed dataclasses.

    name = "quickstart"                  # defaults to the file's stem
    architectures = ["mmoe", "ple"]      # default: all registered that run on any data (esmm, aitm, stem: by name)
    objective = "mean"                   # or one task's name (the MMoE paper's "main task" protocol); a dataset
                                         # entry may set its own (objective = "income")
    seeds = 5                            # final seeds: 1..seeds (the search trains with seed 0)
    repeats = 0                          # optional: N more runs of each best config (Study.repeat_seeds; --repeats)
    replicates = 1                       # optional: R runs of the whole pipeline, search and final seeds
                                         # (--replicates), each with its own sampler streams and, where the data
                                         # allow it, its own data draw (replicate_options); 1: one pipeline
    weightings = ["equal", "gradnorm"]   # optional: loss weightings (bench.weighting); each (architecture,
                                         # weighting) is a unit with the full budget, named "mmoe+gradnorm"

    [budget]                             # the same for every architecture
    trials = 20                          # per (dataset, architecture); per task for single_task
    max_epochs = 30
    patience = 5                         # early stopping
    timeout = 600                        # optional: seconds of trials per (dataset, architecture)

    [sampler]                            # kind = "tpe" | "random" | "grid", other keys go to the Optuna sampler
    seed = 0                             # grid: every searched entry a list of choices, trials = the grid's size
                                         # (on data with embedded fields embedding_dim's choices count too)
    n_startup_trials = 7                 # tpe: trials drawn at random before TPE guides (default: a third of
                                         # budget.trials, 4..10: startup_trials); multivariate = true,
                                         # constant_liar = true, ...: any keyword of optuna's TPESampler
    common_draws = false                 # true: trial k draws the same configuration in every unit (the
                                         # behaviour before per-unit streams); default: each unit (and each
                                         # replicate) its own stream, seeded from seed, dataset, unit, replicate

    [pruner]                             # kind = "median" | "percentile" | "hyperband" | "successive_halving" | "none"
    kind = "median"                      # other keys go to the Optuna pruner, checked against its signature:
    n_warmup_steps = 2                   # hyperband: min_resource, max_resource (epochs), reduction_factor;
                                         # successive_halving: min_resource, reduction_factor,
                                         # min_early_stopping_rate (docs/search.md compares median and hyperband)

    [final]                              # optional: how final seeds and repeats are trained (not what)
    population = true                    # all missing seeds of a unit as one population; false: one fit per
                                         # seed (bench run --no-population)

    [wandb]                              # optional W&B tracking (bench.tracking); --wandb and WANDB_MODE win
    mode = "offline"                     # "online" | "offline" | "disabled"; or simply: wandb = "offline"
    project = "mtl-bench"                # entity = "my-team" (optional)

    [decision]                           # optional: the leaderboard's decisions (bench.spec.decision)
    delta = { auc = 0.001, mse = "1%" }  # smallest difference that matters; alpha = 0.05

    [[published]]                        # optional: a paper's numbers, shown beside ours (never mixed in)
    source = "Ma et al., KDD 2018, Table 2"
    dataset = "p0.9"
    metric = "test AUC, mean over 400 runs"
    values = { mmoe = { y1 = 0.93 } }
    notes = "their tuner and budget differ"

    [[datasets]]
    name = "synthetic"
    label = "p0.9"                       # optional: a distinct name in the study (default: the dataset's name)
    tasks = ["y1", "y2"]                 # optional subset
    objective = "y1"                     # optional: this dataset's tuning objective (default: the study's)
    options = { p = 0.9, n_samples = 4000 }
    architectures = ["mmoe"]             # optional: only these of the study's run on this entry (default: all)

    [search.all]                         # overrides for every architecture
    batch_size = [128, 256]              # a list: categorical
    [search.mmoe]
    n_experts = { low = 2, high = 8 }    # a range: int if both bounds are ints; log = true, step = ...
    dropout = 0.1                        # a scalar: fixed

Every name is checked (keys, architectures, datasets and their options, search-space keys) and reported on
one line listing the valid choices, before anything is written.

The code: this module holds ``Study`` and ``parse_study``, which checks the sections in the spec's order with
``sections`` (architectures, weightings, budget, run counts, datasets, search spaces, published numbers) and
``tuner`` (sampler, pruner, grid size); ``lookup`` finds a spec by name and reads its TOML. Their names are
re-exported here, where the harness imports them from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.hashing import config_hash

from .config import check_keys
from .decision import DecisionSpec, parse_decision
from .lookup import available_studies, find_study, read_spec, study_dirs  # noqa: F401  (re-exported)
from .replicates import describe_draws
from .sections import (  # noqa: F401  (re-exported: the spec's types and bounds are imported from here)
    LABEL_RE,
    MAX_REPEATS,
    MAX_REPLICATES,
    MAX_SEEDS,
    Budget,
    DatasetSpec,
    Published,
    bounded,
    default_architectures,
    parse_architectures,
    parse_budget,
    parse_datasets,
    parse_published,
    parse_search,
    parse_weightings,
    typed,
)
from .space import Param, describe
from .tracking import WandbSpec, parse_wandb
from .tuner import (  # noqa: F401  (re-exported)
    PRUNERS,
    SAMPLERS,
    check_grids,
    grid_size,
    optuna_class,
    optuna_options,
    sampler_kwargs,
    startup_trials,
)

STUDY_KEYS = ("name", "description", "architectures", "weightings", "objective", "seeds", "budget", "sampler",
              "pruner", "datasets", "search", "wandb", "repeats", "final", "published", "decision", "replicates")
FINAL_KEYS = ("population",)
REPEAT_SEED0 = 1000  # repeat r uses seed REPEAT_SEED0 + r, never one of the final seeds 1..seeds


@dataclass
class Study:
    name: str
    datasets: list[DatasetSpec]
    architectures: list[str]
    budget: Budget
    search: dict[str, dict[str, Param]]  # arch -> param -> Param: built-in defaults merged with the spec's
    objective: str = "mean"
    seeds: int = 5
    sampler: dict[str, Any] = field(default_factory=lambda: {"kind": "tpe", "seed": 0})
    pruner: dict[str, Any] = field(default_factory=lambda: {"kind": "median"})
    description: str = ""
    path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    wandb: WandbSpec = field(default_factory=WandbSpec)  # W&B mode, project, entity (not in spec_hash)
    repeats: int = 0  # extra runs of each unit's best configuration (repeat_seeds); 0: none
    population: bool = True  # final seeds and repeats of a unit trained as one population (bench.study.final)
    published: list[Published] = field(default_factory=list)  # numbers from papers, shown beside ours
    weightings: list[str] = field(default_factory=lambda: ["equal"])  # loss weightings compared (bench.weighting)
    decision: DecisionSpec = field(default_factory=DecisionSpec)  # δ and α of the leaderboard's decisions
    replicates: int = 1  # runs of the whole pipeline (search and final seeds), each its own streams and data draw

    def weightings_of(self, arch: str) -> list[str]:
        """The weightings ``arch`` is run with: the study's, but only ``equal`` for the single-task baseline,
        which has one loss and nothing to weigh."""
        return ["equal"] if arch == "single_task" else self.weightings

    @property
    def labels(self) -> list[str]:
        """The names results are stored and ranked under: an architecture, or ``arch+weighting`` for a weighting
        other than ``equal``."""
        return [unit_label(a, w) for a in self.architectures for w in self.weightings_of(a)]

    def architectures_of(self, label: str) -> list[str]:
        """The architectures run on dataset ``label``: its entry's ``architectures`` (in the study's order), else
        all of the study's."""
        only = next((d.architectures for d in self.datasets if d.label == label), None)
        return [a for a in self.architectures if only is None or a in only]

    def objective_for(self, label: str) -> str:
        """The tuning objective of dataset ``label``: its own ``objective``, else the study's."""
        spec = next(d for d in self.datasets if d.label == label)
        return spec.objective or self.objective

    @property
    def final_seeds(self) -> list[int]:
        return list(range(1, self.seeds + 1))

    @property
    def repeat_seeds(self) -> list[int]:
        """Seeds of the repeated runs (trainability, MMoE paper figure 6): ``REPEAT_SEED0 + 1 ..
        REPEAT_SEED0 + repeats``, never one of the final seeds."""
        return [REPEAT_SEED0 + r for r in range(1, self.repeats + 1)]

    @property
    def replicate_ids(self) -> list[int]:
        """``1..replicates``: replicate 1 is the pipeline of a study without replicates (its paths and Optuna
        studies unchanged)."""
        return list(range(1, self.replicates + 1))

    @property
    def spec_hash(self) -> str:
        # replicates: more of them continue a study (as --replicates does), like more seeds
        dropped = ("wandb", "final", "published", "decision", "replicates")
        return config_hash({k: v for k, v in self.raw.items() if k not in dropped})

    def meta(self) -> dict[str, Any]:
        """What the leaderboard needs besides the result rows (stored as ``runs/<study>/study.json``)."""
        return {
            "study": self.name,
            "description": self.description,
            "spec_hash": self.spec_hash,
            "architectures": self.labels,
            **({"weightings": self.weightings} if self.weightings != ["equal"] else {}),
            "objective": self.objective,
            "seeds": self.final_seeds,
            "budget": {"trials": self.budget.trials, "max_epochs": self.budget.max_epochs,
                       "patience": self.budget.patience, "timeout": self.budget.timeout},
            "sampler": self.sampler,
            "startup_trials": startup_trials(self.budget.trials),  # TPE's start-up when the sampler sets none
            "pruner": self.pruner,
            "replicates": self.replicates,
            # what differs between replicates of each dataset (bench.spec.replicates), for the page to say
            "replicate_draws": describe_draws({d.label: {"name": d.name, "options": d.options} for d in self.datasets}),
            "datasets": {d.label: {"name": d.name, "options": d.options, "tasks": list(d.tasks or []),
                                   "objective": self.objective_for(d.label),
                                   **({"label_fraction": d.label_fraction} if d.label_fraction else {}),
                                   **({"architectures": [unit_label(a, w) for a in self.architectures_of(d.label)
                                                         for w in self.weightings_of(a)]} if d.architectures else {})}
                         for d in self.datasets},
            "search": {arch: {k: describe(p) for k, p in sorted(space.items())} for arch, space in self.search.items()},
            "published": [asdict(p) for p in self.published],
            "decision": self.decision.meta(),
        }


def architectures_on(meta: dict[str, Any], label: str) -> list[str]:
    """The architecture labels a study (its ``meta()``, as stored in study.json) runs on dataset ``label``."""
    entry = meta.get("datasets", {}).get(label, {})
    return list(entry.get("architectures", meta.get("architectures", [])))


def unit_text(arch: str, target: str | None, replicate: int | None = 1) -> str:
    """A unit as every user-facing text spells it (logs, progress, pages): ``mmoe``, ``single_task[y1]``, with
    `` r<k>`` after it for replicate k >= 2 (a null replicate is replicate 1). Raw text: escape it for its context."""
    text = f"{arch}[{target}]" if arch == "single_task" and target else arch
    return f"{text} r{replicate}" if replicate and replicate != 1 else text


def unit_label(arch: str, weighting: str = "equal") -> str:
    """``mmoe`` with equal weighting, ``mmoe+gradnorm`` with another: the name results are stored under."""
    return arch if weighting == "equal" else f"{arch}+{weighting}"


def load_study(name_or_path: str) -> Study:
    """The study a name (``studies/``, then the shipped specs) or a ``.toml`` path names, read and validated."""
    path = find_study(name_or_path)
    return parse_study(read_spec(path), default_name=path.stem, path=path)


def parse_study(raw: dict[str, Any], default_name: str = "study", path: Path | None = None) -> Study:
    """Validate a parsed TOML table into a ``Study``; every mistake is a one-line ``UserError``. The sections are
    checked in this order (``sections``, ``tuner``), so a spec with several mistakes reports the first."""
    check_keys("study spec", raw, STUDY_KEYS)
    name = typed("name", raw.get("name", default_name), str)
    if not LABEL_RE.match(name):
        raise UserError(f"study name {name!r} must be letters, digits, '_', '.', '+' or '-'")
    archs = parse_architectures(raw.get("architectures", default_architectures()))
    weightings = parse_weightings(raw.get("weightings", ["equal"]))
    budget = parse_budget(raw.get("budget", {}))
    seeds = bounded("seeds", raw.get("seeds", 5), 1, MAX_SEEDS)
    objective = typed("objective", raw.get("objective", "mean"), str)
    repeats = bounded("repeats", raw.get("repeats", 0), 0, MAX_REPEATS)
    replicates = bounded("replicates", raw.get("replicates", 1), 1, MAX_REPLICATES)
    final_raw = check_keys("final", raw.get("final", {}), FINAL_KEYS)
    population = typed("final.population", final_raw.get("population", True), bool)
    specs = parse_datasets(raw.get("datasets"))
    for i, s in enumerate(specs):
        for a in s.architectures or ():
            if a not in archs:
                raise UserError(f"datasets[{i}].architectures: {a!r} is not one of the study's architectures; valid "
                                f"choices: {', '.join(archs)}")
    space = parse_search(raw.get("search", {}), archs, weightings)
    sampler = optuna_options("sampler", raw.get("sampler", {}), SAMPLERS, "tpe")
    sampler.setdefault("seed", 0)
    if sampler["kind"] == "grid":
        check_grids(archs, space, budget.trials)
    pruner = optuna_options("pruner", raw.get("pruner", {}), PRUNERS, "median")
    tracking = parse_wandb(raw.get("wandb"))
    published = parse_published(raw.get("published", []), [s.label for s in specs])
    decision = parse_decision(raw.get("decision", {}))

    return Study(
        name=name, datasets=specs, architectures=archs, budget=budget, search=space, objective=objective,
        seeds=seeds, sampler=sampler, pruner=pruner, description=str(raw.get("description", "")), path=path, raw=raw,
        wandb=tracking, repeats=repeats, population=population, published=published, weightings=weightings,
        decision=decision,
        replicates=replicates,
    )
