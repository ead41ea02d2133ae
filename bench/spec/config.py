"""One configuration's settings: the training settings (``TrainConfig``), the flat config schema of an
architecture, and typed parsing of ``key=value`` settings against it (from the CLI or a study spec)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from bench.errors import UnknownChoice, UserError


def coerce(key: str, value: Any, default: Any) -> Any:
    """``value`` (a string from the command line, or a TOML value) converted to the type of ``default``."""
    if default is None or default is Ellipsis:
        return value
    kind = type(default)
    if isinstance(value, str) and kind is not str:
        text = value.strip()
        try:
            if kind is bool:
                low = text.lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return low in ("true", "1", "yes")
            if kind is int:
                return int(text)
            if kind is float:
                return float(text)
        except ValueError:
            raise UserError(f"{key}={value!r}: expected {kind.__name__}") from None
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UserError(f"{key}={value!r}: expected {kind.__name__}")
    return value


def check_keys(what: str, table: Any, valid) -> dict:
    """``table`` if it is a table whose keys are all in ``valid``, else a one-line ``UserError`` listing them."""
    if not isinstance(table, dict):
        raise UserError(f"{what} must be a table, got {table!r}")
    for key in table:
        if key not in valid:
            raise UnknownChoice(f"key in {what}", key, valid)
    return table


def parse_assignments(pairs: list[str], schema: dict[str, Any], what: str = "config key") -> dict[str, Any]:
    """``["lr=0.01", "n_experts=4"]`` -> ``{"lr": 0.01, "n_experts": 4}``, typed by ``schema``'s defaults."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"expected key=value, got {pair!r}")
        if key not in schema:
            raise UnknownChoice(what, key, schema)
        out[key] = coerce(key, value, schema[key])
    return out


OPTIMIZERS = ("adam", "adamw")


@dataclass
class TrainConfig:
    """How one configuration is trained (everything but the architecture's own options)."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"  # adam: L2 added to the gradient; adamw: decoupled decay
    batch_size: int = 256
    max_epochs: int = 30
    patience: int = 5  # epochs without a better validation objective before stopping
    eval_batch_size: int = 65_536
    seed: int = 0
    objective: str = "mean"  # "mean" over tasks, or one task's name
    weighting: str = "equal"  # how the task losses are combined (bench.weighting)
    # the weighting methods' options (``gradnorm_alpha``, ...): a flat config may hold any method's, each reads its own
    weighting_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from bench import weighting  # torch: only when a configuration is built

        weighting.check(self.weighting, self.weighting_options)
        if self.optimizer not in OPTIMIZERS:
            raise UnknownChoice("optimizer", self.optimizer, OPTIMIZERS)
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"lr must be a positive number, got {self.lr}")
        if self.weight_decay < 0:
            raise UserError(f"weight_decay must be >= 0, got {self.weight_decay}")
        for name in ("batch_size", "max_epochs", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.patience < 0:
            raise UserError(f"patience must be >= 0, got {self.patience}")


TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig) if f.name != "weighting_options")


def weighting_keys() -> dict[str, Any]:
    """Every weighting method's options, with their defaults (keys of a flat config beside ``TRAIN_KEYS``)."""
    from bench import weighting

    return weighting.all_options()


def config_schema(arch: str) -> dict[str, Any]:
    """Every key a flat config for ``arch`` may hold (training settings, weighting options, then architecture
    options), with defaults."""
    from bench import architectures  # torch: only when a configuration is built

    train = {k: v for k, v in asdict(TrainConfig()).items() if k != "weighting_options"}
    return {**train, **weighting_keys(), **architectures.options(arch)}


def split_config(arch: str, config: dict[str, Any]) -> tuple[TrainConfig, dict[str, Any]]:
    """Split a flat config into training settings and architecture options; unknown keys are an error."""
    from bench import architectures

    arch_keys = architectures.options(arch)
    wkeys = weighting_keys()
    train, wopts, opts = {}, {}, {}
    for key, value in config.items():
        if key in TRAIN_KEYS:
            train[key] = value
        elif key in wkeys:
            wopts[key] = value
        elif key in arch_keys:
            opts[key] = value
        else:
            raise UnknownChoice(f"config key for {arch}", key, [*TRAIN_KEYS, *wkeys, *arch_keys])
    return TrainConfig(**train, weighting_options=wopts), opts
