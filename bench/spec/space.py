"""Search spaces: the entry type (``Param``), its TOML form, and the built-in space of each architecture.

A study's space for an architecture is its built-in space (``default_space``) overridden by the spec's
``[search.all]`` and ``[search.<arch>]`` tables (``bench.spec.study``). Only the search stage
(``bench.study.search``) turns a space into ``trial.suggest_*`` calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.errors import UserError

from .config import TrainConfig, check_keys, coerce

RANGE_KEYS = ("low", "high", "log", "step")
# TrainConfig fields a search space may set; the others are set by the budget, the seeds and the objective
MAX_LR = 10.0  # a search space's learning rates are at most this (Adam, AdamW: far beyond any that trains)
SEARCHABLE_TRAIN_KEYS = ("lr", "weight_decay", "optimizer", "batch_size", "eval_batch_size", "weighting")


@dataclass(frozen=True)
class Param:
    """One search-space entry: a fixed ``value``, a list of ``choices``, or a ``low``..``high`` range."""

    value: Any = None
    choices: tuple | None = None
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None

    @property
    def kind(self) -> str:
        if self.choices is not None:
            return "categorical"
        if self.low is not None:
            return "int" if isinstance(self.low, int) and isinstance(self.high, int) else "float"
        return "fixed"


# --- built-in search spaces -------------------------------------------------------------------------------
_COMMON: dict[str, Param] = {
    "lr": Param(low=1e-4, high=1e-2, log=True),
    "batch_size": Param(choices=(128, 256, 512)),
    "weight_decay": Param(low=1e-7, high=1e-3, log=True),
    "dropout": Param(low=0.0, high=0.3),
    "tower_units": Param(choices=(16, 32, 64)),
    "tower_layers": Param(low=1, high=2),
}
_EXPERTS = {"expert_units": Param(choices=(32, 64, 128)), "expert_layers": Param(low=1, high=2)}
# dense gates (0) or noisy top-2 gating; 2 fits every gate of the spaces below (each weighs >= 2 experts), and
# k >= 2 because with k = 1 the softmax over the one kept logit is constant: the gate would learn from the
# load-balancing loss alone (Shazeer et al. 2017, section 2.1)
_GATES = {"gate_top_k": Param(choices=(0, 2))}
_DEFAULTS: dict[str, dict[str, Param]] = {
    "single_task": {**_EXPERTS},
    "shared_bottom": {"expert_units": Param(choices=(64, 128, 256)), "expert_layers": Param(low=1, high=2)},
    "cross_stitch": {"column_units": Param(choices=(32, 64, 128)), "column_layers": Param(low=1, high=3)},
    "omoe": {**_EXPERTS, "n_experts": Param(low=2, high=8), **_GATES},
    "mmoe": {**_EXPERTS, "n_experts": Param(low=2, high=8), **_GATES},
    "cgc": {**_EXPERTS, "n_shared": Param(low=1, high=3), "n_specific": Param(low=1, high=3), **_GATES},
    "ple": {**_EXPERTS, "n_levels": Param(low=1, high=3), "n_shared": Param(low=1, high=3),
            "n_specific": Param(low=1, high=3), **_GATES},
    # the funnel architectures: each step's MLP; AITM's calibrator weight alpha (the paper's 0.6 inside)
    "esmm": {**_EXPERTS},
    "aitm": {**_EXPERTS, "calibration": Param(low=0.0, high=1.0)},
    "stem": {**_EXPERTS, "n_shared": Param(low=1, high=2), "n_specific": Param(low=1, high=2), **_GATES},
}


# the input encoder's entries: searched only on data with categorical fields (``with_encoder_space``)
ENCODER_SPACE: dict[str, Param] = {"embedding_dim": Param(choices=(4, 8, 16))}


def with_encoder_space(space: dict[str, Param], has_fields: bool) -> dict[str, Param]:
    """The space a unit searches on its data: with embedded categorical fields, ``ENCODER_SPACE``'s entries
    where the spec sets none; without, no encoder entries at all (they would change nothing but the trial count
    a sampler spends on them)."""
    if has_fields:
        return {**ENCODER_SPACE, **space}
    return {k: v for k, v in space.items() if k not in ENCODER_SPACE}


def default_space(arch: str) -> dict[str, Param]:
    """Built-in search space of ``arch``: learning rate, batch size, weight decay, dropout, tower and
    expert widths and depths, the architecture's own counts (experts, PLE levels) and, for the gated ones, dense
    or top-2 gates."""
    from bench import architectures

    opts = architectures.options(arch)
    common = {k: v for k, v in _COMMON.items() if k in opts or k in ("lr", "batch_size", "weight_decay")}
    return {**common, **_DEFAULTS.get(arch, {})}


def search_keys(arch: str) -> dict[str, Any]:
    """The keys a search space for ``arch`` may set, with their defaults."""
    from bench import architectures

    from .config import weighting_keys

    train = TrainConfig()
    return {**{k: getattr(train, k) for k in SEARCHABLE_TRAIN_KEYS}, **weighting_keys(), **architectures.options(arch)}


def describe(param: Param) -> str:
    """A search-space entry as the leaderboard states it: ``0.1``, ``{128, 256}``, ``int 2..8``,
    ``1e-4..1e-2 (log)``."""
    if param.kind == "fixed":
        return f"{param.value}"
    if param.kind == "categorical":
        return "{" + ", ".join(str(c) for c in param.choices) + "}"
    text = f"{param.low:g}..{param.high:g}" if param.kind == "float" else f"int {param.low}..{param.high}"
    return text + (" (log)" if param.log else "") + (f" step {param.step:g}" if param.step else "")


def parse_param(where: str, spec: Any) -> Param:
    """A search-space entry from TOML: scalar (fixed), list (categorical) or ``{low, high[, log, step]}``."""
    if isinstance(spec, list):
        if not spec:
            raise UserError(f"{where}: an empty list of choices")
        return Param(choices=tuple(spec))
    if isinstance(spec, dict):
        check_keys(where, spec, RANGE_KEYS)
        if "low" not in spec or "high" not in spec:
            raise UserError(f"{where}: a range needs both 'low' and 'high'")
        low, high = spec["low"], spec["high"]
        for bound in (low, high):
            if isinstance(bound, bool) or not isinstance(bound, int | float):
                raise UserError(f"{where}: bounds must be numbers, got {bound!r}")
        if not low < high:
            raise UserError(f"{where}: low must be < high, got {low} and {high}")
        log = bool(spec.get("log", False))
        if log and low <= 0:
            raise UserError(f"{where}: a log range needs low > 0, got {low}")
        step = spec.get("step")
        if step is not None and log:
            raise UserError(f"{where}: a range cannot have both 'log' and 'step'")
        return Param(low=low, high=high, log=log, step=step)
    return Param(value=spec)


def check_param_values(where: str, param: Param, default: Any, key: str | None = None) -> None:
    """Fixed values and choices must have the option's type (ranges are numeric by construction); a training
    setting (``key`` a ``TrainConfig`` field) must also be valid for it, so that ``batch_size = 0`` is refused
    with the spec, not at the first trial."""
    values = [param.value] if param.kind == "fixed" else list(param.choices or ())
    for v in values:
        coerce(where, v, default)
    if key in SEARCHABLE_TRAIN_KEYS:
        for v in [*values, *([param.low, param.high] if param.kind in ("int", "float") else [])]:
            try:
                TrainConfig(**{key: coerce(where, v, default)})
            except UserError as err:
                raise UserError(f"{where}: {err}") from None
            if key == "lr" and coerce(where, v, default) > MAX_LR:
                raise UserError(f"{where}: a learning rate above {MAX_LR:g} only diverges, got {v:g}")
    from .config import weighting_keys

    if key in weighting_keys():  # a weighting method's option: its method judges the values
        from bench import weighting

        for v in [*values, *([param.low, param.high] if param.kind in ("int", "float") else [])]:
            try:
                weighting.check_option(key, coerce(where, v, default))
            except UserError as err:
                raise UserError(f"{where}: {err}") from None
    if param.kind in ("int", "float") and isinstance(default, bool | str):
        raise UserError(f"{where}: a numeric range for a {type(default).__name__} option")
    if param.kind == "float" and isinstance(default, int) and not isinstance(default, bool):
        raise UserError(f"{where}: integer option with non-integer bounds")


def check_option_values(arch: str, space: dict[str, Param]) -> None:
    """The space as it can be sampled must build the architecture, so that ``gate_top_k = -1``, a ``gate_top_k``
    above a fixed or searched ``n_experts``, ``dropout = 1.0`` or a model of more than a billion parameters is
    refused with the spec, in one line, before anything is written, not at a trial. Every fixed value, choice and
    range bound of an architecture option is built with the space's fixed options and with the other searched
    options at their lowest, then at their highest values (``gate_top_k = 4`` with ``n_experts`` searched over
    2..8 fails at ``n_experts = 2``; the largest model is the one of every highest value); options the space does
    not set are at their defaults. The model is built on the meta device (no weights allocated,
    ``architectures.check_options``)."""
    from bench import architectures

    defaults = architectures.options(arch)
    fixed = {k: coerce(k, p.value, defaults[k]) for k, p in space.items() if k in defaults and p.kind == "fixed"}
    searched = {k: [coerce(k, v, defaults[k]) for v in (p.choices if p.kind == "categorical" else (p.low, p.high))]
                for k, p in space.items() if k in defaults and p.kind != "fixed"}

    def extreme(values: list[Any], pick) -> Any:
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        return pick(numbers) if len(numbers) == len(values) else values[0]

    corners = [("lowest", {k: extreme(v, min) for k, v in searched.items()}),
               ("highest", {k: extreme(v, max) for k, v in searched.items()})]

    def error(options: dict[str, Any]) -> str | None:
        try:
            architectures.check_options(arch, **options)
        except UserError:
            raise
        except (TypeError, ValueError) as err:
            return str(err)
        return None

    why = error(fixed)
    if why:  # the fixed options together (the message names the option at fault)
        raise UserError(f"search.{arch}: {why}")
    for key, values in searched.items():
        for value in dict.fromkeys(values):
            for side, corner in corners:
                others = {k: v for k, v in corner.items() if k != key}
                why = error({**fixed, **others, key: value})
                if not why:
                    continue
                # a value that fails by itself (the fixed options, the rest at their defaults) is named alone
                for k, v in [(key, value), *others.items()]:
                    alone = error({**fixed, k: v})
                    if alone:
                        raise UserError(f"search.{arch}.{k} = {v!r}: {alone}")
                # else the one other searched option it fails with, when there is one: the message names only that
                culprit = next((k for k in others if error({**fixed, k: others[k], key: value})), None)
                named = {culprit: others[culprit]} if culprit else others
                why = error({**fixed, **named, key: value}) or why  # the error of the options named
                with_ = "" if not named else " with " + ", ".join(f"{k} = {v!r}" for k, v in named.items()) + (
                    f" (its {side} searched value)" if len(named) == 1 else f" (their {side} searched values)")
                raise UserError(f"search.{arch}.{key} = {value!r}{with_}: {why}")
