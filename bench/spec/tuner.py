"""The tuner's sections of a study spec: ``[sampler]`` and ``[pruner]`` (an Optuna class by ``kind``, its other keys
that class's keyword arguments, checked against its signature), TPE's default start-up, and the grid sampler's
size, which must equal ``budget.trials``.

Optuna is imported only when a spec is checked or a sampler built, not with this module.
"""

from __future__ import annotations

import inspect
from typing import Any

from bench.errors import UnknownChoice, UserError

from .config import coerce
from .space import Param, with_encoder_space

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "percentile", "hyperband", "successive_halving", "none")


def optuna_options(what: str, table: dict, kinds: tuple[str, ...], default_kind: str) -> dict[str, Any]:
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


def check_grids(archs: list[str], space: dict[str, dict[str, Param]], trials: int) -> None:
    """With the grid sampler, ``trials`` must be the size of each architecture's grid."""
    for arch in archs:
        size = grid_size(f"search.{arch}", space[arch])
        # on data with embedded categorical fields the encoder's entries the spec leaves unset are searched
        # too; the data are not loaded yet: bench.study.units.units checks each dataset's grid exactly
        embedded = grid_size(f"search.{arch}", with_encoder_space(space[arch], True))
        if trials not in (size, embedded):
            note = f" ({embedded} on data with embedded categorical fields)" if embedded != size else ""
            raise UserError(f"sampler grid: the grid of {arch} has {size} points but budget.trials = "
                            f"{trials}; set trials to the grid's size{note}")
