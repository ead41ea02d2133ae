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

    [search.all]                         # overrides for every architecture
    batch_size = [128, 256]              # a list: categorical
    [search.mmoe]
    n_experts = { low = 2, high = 8 }    # a range: int if both bounds are ints; log = true, step = ...
    dropout = 0.1                        # a scalar: fixed

Every name is checked (keys, architectures, datasets and their options, search-space keys) and reported on
one line listing the valid choices, before anything is written.
"""

from __future__ import annotations

import inspect
import math
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import UnknownChoice, UserError
from bench.hashing import config_hash

from .config import check_keys, coerce
from .decision import DecisionSpec, parse_decision
from .replicates import describe_draws
from .space import (
    Param,
    check_option_values,
    check_param_values,
    default_space,
    describe,
    parse_param,
    search_keys,
    with_encoder_space,
)
from .tracking import WandbSpec, parse_wandb

STUDY_KEYS = ("name", "description", "architectures", "weightings", "objective", "seeds", "budget", "sampler",
              "pruner", "datasets", "search", "wandb", "repeats", "final", "published", "decision", "replicates")
PUBLISHED_KEYS = ("source", "dataset", "metric", "notes", "values")
FINAL_KEYS = ("population",)
BUDGET_KEYS = ("trials", "max_epochs", "patience", "timeout")
DATASET_KEYS = ("name", "label", "tasks", "options", "objective", "label_fraction")
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "percentile", "hyperband", "successive_halving", "none")
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
MAX_SEEDS = 1000  # final seeds of a study (trained as one population per unit): a bound on mistyped values
MAX_REPEATS = 100_000
MAX_REPLICATES = 100  # runs of the whole pipeline: a bound on mistyped values
REPEAT_SEED0 = 1000  # repeat r uses seed REPEAT_SEED0 + r, never one of the final seeds 1..seeds


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
                                   **({"label_fraction": d.label_fraction} if d.label_fraction else {})}
                         for d in self.datasets},
            "search": {arch: {k: describe(p) for k, p in sorted(space.items())} for arch, space in self.search.items()},
            "published": [asdict(p) for p in self.published],
            "decision": self.decision.meta(),
        }


def unit_text(arch: str, target: str | None, replicate: int | None = 1) -> str:
    """A unit as every user-facing text spells it (logs, progress, pages): ``mmoe``, ``single_task[y1]``, with
    `` r<k>`` after it for replicate k >= 2 (a null replicate is replicate 1). Raw text: escape it for its context."""
    text = f"{arch}[{target}]" if arch == "single_task" and target else arch
    return f"{text} r{replicate}" if replicate and replicate != 1 else text


def unit_label(arch: str, weighting: str = "equal") -> str:
    """``mmoe`` with equal weighting, ``mmoe+gradnorm`` with another: the name results are stored under."""
    return arch if weighting == "equal" else f"{arch}+{weighting}"


# --- finding a spec ----------------------------------------------------------------------------------------
def study_dirs() -> list[Path]:
    """Where study names are looked up: ``studies/`` in the current directory, then the shipped specs (package
    data of ``bench.studies``, read with importlib.resources)."""
    from importlib.resources import files

    here = Path.cwd() / "studies"
    shipped = Path(str(files("bench.studies")))
    return [here] if shipped.resolve() == here.resolve() else [here, shipped]


def available_studies() -> list[str]:
    names = set()
    for d in study_dirs():
        if d.is_dir():
            names |= {p.stem for p in d.glob("*.toml")}
    return sorted(names)


def find_study(name_or_path: str) -> Path:
    """A study name found in ``studies/`` or a path to a ``.toml`` file."""
    path = Path(name_or_path)
    if name_or_path.endswith(".toml") or path.parent != Path(".") or "/" in name_or_path:
        if path.is_dir():
            _directory(name_or_path)
        if not path.is_file():
            raise UserError(f"study file {name_or_path!r} does not exist")
        return path
    for d in study_dirs():
        candidate = d / f"{name_or_path}.toml"
        if candidate.is_file():
            return candidate
    if path.is_dir():
        _directory(name_or_path)
    raise UnknownChoice("study", name_or_path, available_studies())


def _directory(name: str) -> None:
    """``--study`` names a directory (``runs/<study>/``, ``studies/``): say so, not "does not exist"."""
    specs = sorted(p.name for p in Path(name).glob("*.toml"))
    hint = f" holding {', '.join(specs[:5])}{', ...' if len(specs) > 5 else ''}" if specs else ""
    raise UserError(f"study {name!r} is a directory{hint}, not a study spec: give a .toml file or a study name")


def load_study(name_or_path: str) -> Study:
    path = find_study(name_or_path)
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not a study spec (not UTF-8 text: byte {err.start} is {err.object[err.start]:#04x})"
                        ) from None
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{path}: invalid TOML: {err}") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or err})") from None
    return parse_study(raw, default_name=path.stem, path=path)


# --- validation ------------------------------------------------------------------------------------------
def _typed(what: str, value: Any, kind: type) -> Any:
    return coerce(what, value, kind())  # a TOML value of the wrong type is a one-line error


def _optuna_kwargs(what: str, table: dict, kinds: tuple[str, ...], default_kind: str) -> dict[str, Any]:
    """A sampler or pruner table: ``kind`` plus keyword arguments of that Optuna class, checked by name."""
    if not isinstance(table, dict):
        raise UserError(f"{what} must be a table, got {table!r}")
    table = dict(table)
    kind = table.pop("kind", default_kind)
    if kind not in kinds:
        raise UnknownChoice(what, kind, kinds)
    cls = optuna_class(what, kind)
    params = inspect.signature(cls).parameters
    valid = {n: p.default for n, p in params.items()
             if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n != "search_space"}  # grid: from the space
    if what == "sampler":
        valid["common_draws"] = False  # ours, not Optuna's: every unit draws from the same stream (RunContext)
    for key, value in table.items():
        if key not in valid:
            raise UnknownChoice(f"option of {what} {kind}", key, valid)
        default = valid[key]
        if isinstance(default, bool | int | float | str) and default is not None:
            table[key] = coerce(f"{what}.{key}", value, default)
    return {"kind": kind, **table}


def startup_trials(trials: int) -> int:
    """TPE's random start-up when the spec sets no ``n_startup_trials``: about a third of a unit's
    ``budget.trials``, at least 4 and at most 10.

    Optuna's TPESampler "uses random sampling ... until the given number of trials finish in the same study"
    (n_startup_trials, default 10: https://optuna.readthedocs.io/en/stable/reference/samplers/generated/
    optuna.samplers.TPESampler.html); with this harness's budgets of 10-20 trials per unit that default left
    TPE never guiding. A third keeps enough random points for its two Parzen estimators (the "good" one is fit
    to the best min(ceil(0.1 n), 25) of the n finished trials: Optuna's default gamma) and leaves two thirds to
    TPE; 10 (Optuna's default) is enough start-up for larger budgets."""
    return min(10, max(4, round(trials / 3)))


def sampler_kwargs(sampler: dict[str, Any], trials: int) -> dict[str, Any]:
    """The keyword arguments of the spec's Optuna sampler (the ``[sampler]`` table without ``kind`` and
    ``common_draws``), TPE's ``n_startup_trials`` defaulting to ``startup_trials(trials)``."""
    kwargs = {k: v for k, v in sampler.items() if k not in ("kind", "common_draws")}
    if sampler.get("kind", "tpe") == "tpe":
        kwargs.setdefault("n_startup_trials", startup_trials(trials))
    return kwargs


def optuna_class(what: str, kind: str):
    import optuna

    if what == "sampler":
        return {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
                "grid": optuna.samplers.GridSampler}[kind]
    return {
        "median": optuna.pruners.MedianPruner,
        "percentile": optuna.pruners.PercentilePruner,
        "hyperband": optuna.pruners.HyperbandPruner,
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
        "none": optuna.pruners.NopPruner,
    }[kind]


def grid_size(where: str, space: dict[str, Param]) -> int:
    """The number of points of a grid search over ``space``: every searched entry must be a list of choices."""
    size = 1
    for key, param in space.items():
        if param.kind in ("int", "float"):
            raise UserError(f"{where}.{key}: sampler grid needs a list of choices, not a range "
                            f"({param.low}..{param.high}); give the values as a list or fix the value")
        if param.kind == "categorical":
            size *= len(param.choices)
    return size


def parse_study(raw: dict[str, Any], default_name: str = "study", path: Path | None = None) -> Study:
    """Validate a parsed TOML table into a ``Study``; every mistake is a one-line ``UserError``."""
    from bench import architectures, datasets

    check_keys("study spec", raw, STUDY_KEYS)
    name = _typed("name", raw.get("name", default_name), str)
    if not LABEL_RE.match(name):
        raise UserError(f"study name {name!r} must be letters, digits, '_', '.', '+' or '-'")

    # default: every registered architecture that runs on any data (not those needing a funnel or embedded fields)
    archs = raw.get("architectures", [a for a in architectures.available() if not architectures.requirements(a)])
    if not isinstance(archs, list) or not archs:
        raise UserError("architectures must be a non-empty list of names")
    for arch in archs:
        if arch not in architectures.available():
            raise UnknownChoice("architecture", arch, architectures.available())
    if len(set(archs)) != len(archs):
        raise UserError("architectures lists a name twice")
    from bench import weighting

    weightings = raw.get("weightings", ["equal"])
    if not isinstance(weightings, list) or not weightings or not all(isinstance(w, str) for w in weightings):
        raise UserError("weightings must be a non-empty list of names")
    for w in weightings:
        if w not in weighting.available():
            raise UnknownChoice("weighting", w, weighting.available())
    if len(set(weightings)) != len(weightings):
        raise UserError("weightings lists a name twice")

    budget_raw = check_keys("budget", raw.get("budget", {}), BUDGET_KEYS)
    b = Budget()
    budget = Budget(
        trials=_typed("budget.trials", budget_raw.get("trials", b.trials), int),
        max_epochs=_typed("budget.max_epochs", budget_raw.get("max_epochs", b.max_epochs), int),
        patience=_typed("budget.patience", budget_raw.get("patience", b.patience), int),
        timeout=_typed("budget.timeout", budget_raw["timeout"], float) if "timeout" in budget_raw else None,
    )
    if budget.trials < 1 or budget.max_epochs < 1 or budget.patience < 0:
        raise UserError("budget: trials and max_epochs must be >= 1, patience >= 0")
    if budget.timeout is not None and budget.timeout <= 0:
        raise UserError("budget.timeout must be > 0 seconds")

    seeds = _typed("seeds", raw.get("seeds", 5), int)
    if not 1 <= seeds <= MAX_SEEDS:
        raise UserError(f"seeds must be between 1 and {MAX_SEEDS}, got {seeds}")
    objective = _typed("objective", raw.get("objective", "mean"), str)
    repeats = _typed("repeats", raw.get("repeats", 0), int)
    if not 0 <= repeats <= MAX_REPEATS:
        raise UserError(f"repeats must be between 0 and {MAX_REPEATS}, got {repeats}")
    replicates = _typed("replicates", raw.get("replicates", 1), int)
    if not 1 <= replicates <= MAX_REPLICATES:
        raise UserError(f"replicates must be between 1 and {MAX_REPLICATES}, got {replicates}")
    final_raw = check_keys("final", raw.get("final", {}), FINAL_KEYS)
    population = _typed("final.population", final_raw.get("population", True), bool)

    ds_raw = raw.get("datasets")
    if not isinstance(ds_raw, list) or not ds_raw:
        raise UserError("a study needs at least one [[datasets]] entry")
    specs: list[DatasetSpec] = []
    for i, entry in enumerate(ds_raw):
        check_keys(f"datasets[{i}]", entry, DATASET_KEYS)
        if "name" not in entry:
            raise UserError(f"datasets[{i}] needs a name; valid choices: {', '.join(datasets.available())}")
        ds_name = entry["name"]
        datasets.get(ds_name)  # UnknownChoice lists the registered datasets
        valid_opts = datasets.options(ds_name)
        opts = {}
        for key, value in check_keys(f"options of dataset {ds_name}", entry.get("options", {}), valid_opts).items():
            opts[key] = coerce(f"{ds_name}.{key}", value, valid_opts[key])
        label = _typed(f"datasets[{i}].label", entry.get("label", ds_name), str)
        if not LABEL_RE.match(label):
            raise UserError(f"dataset label {label!r} must be letters, digits, '_', '.', '+' or '-'")
        tasks = entry.get("tasks")
        if tasks is not None and not (isinstance(tasks, list) and tasks and all(isinstance(t, str) for t in tasks)):
            raise UserError(f"datasets[{i}].tasks must be a non-empty list of task names")
        ds_objective = _typed(f"datasets[{i}].objective", entry["objective"], str) if "objective" in entry else None
        fractions = None
        if "label_fraction" in entry:
            fractions = entry["label_fraction"]
            if not isinstance(fractions, dict):
                raise UserError(f"datasets[{i}].label_fraction must be a table of task = fraction, got {fractions!r}")
            fractions = dict(fractions)
            for task, f in fractions.items():
                f = _typed(f"datasets[{i}].label_fraction.{task}", f, float)
                if not 0.0 < f <= 1.0:
                    raise UserError(f"datasets[{i}].label_fraction.{task} must be in (0, 1], got {f}")
                fractions[task] = f
            if not fractions:
                raise UserError(f"datasets[{i}].label_fraction needs at least one task = fraction")
        specs.append(DatasetSpec(ds_name, label, opts, tuple(tasks) if tasks else None, ds_objective,
                                 dict(fractions) if fractions else None))
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise UserError(f"dataset labels must be distinct, got {labels}; give each entry a 'label'")

    search_raw = check_keys("search", raw.get("search", {}), ["all", *architectures.available()])
    space: dict[str, dict[str, Param]] = {}
    for arch in archs:
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
        space[arch] = merged

    sampler = _optuna_kwargs("sampler", raw.get("sampler", {}), SAMPLERS, "tpe")
    sampler.setdefault("seed", 0)
    if sampler["kind"] == "grid":
        for arch in archs:
            size = grid_size(f"search.{arch}", space[arch])
            # on data with embedded categorical fields the encoder's entries the spec leaves unset are searched
            # too; the data are not loaded yet: bench.study.units.units checks each dataset's grid exactly
            embedded = grid_size(f"search.{arch}", with_encoder_space(space[arch], True))
            if budget.trials not in (size, embedded):
                note = f" ({embedded} on data with embedded categorical fields)" if embedded != size else ""
                raise UserError(f"sampler grid: the grid of {arch} has {size} points but budget.trials = "
                                f"{budget.trials}; set trials to the grid's size{note}")
    pruner = _optuna_kwargs("pruner", raw.get("pruner", {}), PRUNERS, "median")
    tracking = parse_wandb(raw.get("wandb"))
    published = parse_published(raw.get("published", []), labels)
    decision = parse_decision(raw.get("decision", {}))

    return Study(
        name=name, datasets=specs, architectures=list(archs), budget=budget, search=space, objective=objective,
        seeds=seeds, sampler=sampler, pruner=pruner, description=str(raw.get("description", "")), path=path, raw=raw,
        wandb=tracking, repeats=repeats, population=population, published=published, weightings=list(weightings),
        decision=decision,
        replicates=replicates,
    )


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
        dataset = _typed(f"{where}.dataset", entry["dataset"], str)
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
        out.append(Published(_typed(f"{where}.source", entry["source"], str), dataset,
                             _typed(f"{where}.metric", entry["metric"], str),
                             {a: {t: float(v) for t, v in pt.items()} for a, pt in values.items()},
                             _typed(f"{where}.notes", entry.get("notes", ""), str)))
    return out
