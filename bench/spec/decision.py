"""The ``[decision]`` table of a study spec: the smallest difference that matters, per primary metric, and the
level of the decisions on the leaderboard (``bench.results.decisions``; docs/statistics.md explains them).

    [decision]
    delta = { auc = 0.001, mse = "1%", accuracy = 0.001 }   # a number: absolute; "x%": x% of the baseline's mean
    alpha = 0.05

Defaults (any metric left out keeps its default): AUC 0.001, accuracy 0.001 (absolute), MSE 1% of the single-task
baseline's mean MSE on that task (of the best architecture's, in a study without a baseline). Not part of the
spec hash: changing δ re-renders the page, never retrains.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from bench.errors import UserError

from .metrics import PRIMARY
from .replicates import fixed_draws

DECISION_KEYS = ("delta", "alpha")


@dataclass(frozen=True)
class Margin:
    """δ of one metric: ``value`` itself, or (``relative``) that fraction of the baseline's mean."""

    value: float
    relative: bool = False

    def of(self, baseline_mean: float) -> float:
        return self.value * abs(baseline_mean) if self.relative else self.value

    def text(self) -> str:
        return f"{self.value * 100:g}% of the baseline's mean" if self.relative else f"{self.value:g}"


DEFAULT_DELTA: dict[str, Margin] = {"auc": Margin(0.001), "accuracy": Margin(0.001), "mse": Margin(0.01, True)}


@dataclass(frozen=True)
class DecisionSpec:
    delta: dict[str, Margin] = field(default_factory=lambda: dict(DEFAULT_DELTA))
    alpha: float = 0.05
    # dataset labels whose replicates are paired: each replicate a new data draw that every unit of the entry shares
    # (``bench.spec.replicates.draw_varies``), so comparisons difference replicate by replicate. Not from the
    # [decision] table: derived from the study's datasets (``decision_from_meta``).
    paired: frozenset[str] = frozenset()

    def meta(self) -> dict[str, Any]:
        """As stored in ``study.json`` (what the leaderboard reads back with ``decision_from_meta``)."""
        return {"alpha": self.alpha,
                "delta": {m: (f"{d.value * 100:g}%" if d.relative else d.value) for m, d in sorted(self.delta.items())}}


def _margin(where: str, value: Any) -> Margin:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise UserError(f"{where} must be a positive number or a percentage such as \"1%\", got {value!r}")
    relative = isinstance(value, str)
    text = value.strip() if isinstance(value, str) else ""
    if relative and not text.endswith("%"):
        raise UserError(f"{where} must be a positive number or a percentage such as \"1%\", got {value!r}")
    try:
        number = float(text[:-1]) / 100 if relative else float(value)
    except ValueError:
        raise UserError(f"{where} must be a positive number or a percentage such as \"1%\", got {value!r}") from None
    if not 0 < number < float("inf"):
        raise UserError(f"{where} must be > 0, got {value!r}")
    return Margin(number, relative)


def parse_decision(table: Any) -> DecisionSpec:
    """Validate a ``[decision]`` table; every mistake is a one-line ``UserError``."""
    if not isinstance(table, dict):
        raise UserError(f"decision must be a table (delta, alpha), got {table!r}")
    unknown = sorted(set(table) - set(DECISION_KEYS))
    if unknown:
        raise UserError(f"decision: unknown key {unknown[0]!r}; valid keys: {', '.join(DECISION_KEYS)}")
    deltas = table.get("delta", {})
    if not isinstance(deltas, dict):
        raise UserError(f"decision.delta must be a table of metric = margin, got {deltas!r}")
    metrics = sorted(set(PRIMARY.values()))
    delta = dict(DEFAULT_DELTA)
    for metric, value in deltas.items():
        if metric not in metrics:
            raise UserError(f"decision.delta: unknown metric {metric!r}; valid choices: {', '.join(metrics)}")
        delta[metric] = _margin(f"decision.delta.{metric}", value)
    alpha = table.get("alpha", 0.05)
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 0.5:
        raise UserError(f"decision.alpha must be a number in (0, 0.5), got {alpha!r}")
    return DecisionSpec(delta, float(alpha))


def decision_from_meta(meta: dict[str, Any]) -> DecisionSpec:
    """The study's decision settings from ``study.json`` (the defaults for studies stored before they existed),
    with the datasets whose replicates are paired data draws (``DecisionSpec.paired``)."""
    return dataclasses.replace(parse_decision(meta.get("decision", {})), paired=paired_datasets(meta))


def paired_datasets(meta: dict[str, Any]) -> frozenset[str]:
    """The labels of the study's datasets (``study.json``'s ``datasets``: label -> name and options) whose data are
    drawn anew in every replicate (``bench.spec.replicates.draw_varies``); a loader no longer registered is left
    out (unpaired: the conservative reading)."""
    return frozenset(label for label, fixed in fixed_draws(meta.get("datasets", {})).items() if fixed is None)
