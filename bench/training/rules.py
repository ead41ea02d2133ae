"""The rules one training run follows from epoch to epoch, written once for ``MTLSystem`` (through Lightning's
callbacks) and for every member of a population (``bench.training.population``):

- ``objective_value``: the validation objective of an epoch (higher is better), -inf for a diverged epoch, which
  never counts as the best;
- ``BestEpoch``: the history (one row per validation epoch) and best-epoch keeping: the best objective so far, its
  epoch, metrics and weights;
- ``EarlyStop``: Lightning's ``EarlyStopping(mode="max", check_finite=True)`` on the float32 value logged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .metrics import objective


def objective_value(tasks, metrics: dict[str, dict[str, float]], target: str) -> float:
    """The epoch's objective ``objective(tasks, metrics, target)``; -inf where it is not finite (a diverged epoch
    never counts as the best)."""
    value = objective(tasks, metrics, target)
    return value if math.isfinite(value) else -math.inf


def flat_metrics(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    """``{task: {metric: v}}`` as the logged names ``{"val/<task>/<metric>": v}``."""
    return {f"val/{task}/{name}": v for task, ms in metrics.items() for name, v in ms.items()}


class BestEpoch:
    """One run's validation epochs: ``history`` (per epoch ``{"epoch", "val_objective", "val/<task>/<metric>"...,
    "train_loss"}``) and the best epoch so far (strictly better objective than every earlier one): its
    ``best_objective``, ``best_epoch``, ``val_metrics`` and ``state`` (the weights, as the caller copies them)."""

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.best_objective = -math.inf
        self.best_epoch: int | None = None
        self.val_metrics: dict[str, dict[str, float]] = {}
        self.state: Any = None

    def add(self, epoch: int, metrics: dict[str, dict[str, float]], value: float, weights: Callable[[], Any],
            **extra: float) -> bool:
        """Record epoch ``epoch`` (objective ``value`` from ``objective_value``; ``extra``: more entries of its
        history row, e.g. ``train_loss``); where it is the best so far, keep ``weights()``. True if it is."""
        self.history.append({"epoch": epoch, "val_objective": value, **flat_metrics(metrics), **extra})
        if value > self.best_objective:
            self.best_objective, self.best_epoch, self.val_metrics = value, epoch, metrics
            self.state = weights()
            return True
        return False


class EarlyStop:
    """``lightning``'s ``EarlyStopping(mode="max", patience, check_finite=True)``: stop at a non-finite value, or
    after ``patience`` values in a row that are not strictly above the best one, judged on the float32 value
    ``self.log`` stores (``current > best``, with ``best`` from -inf)."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best = torch.tensor(-math.inf)  # float32, as logged
        self.wait = 0

    def __call__(self, value: float | torch.Tensor) -> bool:
        """Whether to stop after this epoch's value (a float, or the logged float32 tensor)."""
        current = torch.as_tensor(value, dtype=torch.float32)
        if not torch.isfinite(current):
            return True
        if current > self.best.to(current.device):
            self.best, self.wait = current, 0
            return False
        self.wait += 1
        return self.wait >= self.patience
