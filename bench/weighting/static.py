"""Static weighting: fixed per-task weights, ``L = sum_i lambda_i L_i``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.errors import UserError

from .base import ALL, Weighting, register


def parse_weights(text: str, n_tasks: int) -> list[float]:
    """``"2,1"`` (one weight per task, in the data set's task order) or ``""`` (all 1)."""
    if not text.strip():
        return [1.0] * n_tasks
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"static_weights must be comma-separated numbers, got {text!r}") from None
    if len(values) != n_tasks:
        raise UserError(f"static_weights has {len(values)} weights for {n_tasks} tasks: {text!r}")
    if not all(v >= 0 and v < float("inf") for v in values) or not any(values):
        raise UserError(f"static_weights must be finite, >= 0 and not all 0, got {text!r}")
    return values


@register("static")
class Static(Weighting):
    """Fixed per-task weights lambda_i (static_weights = "2,1": one per task, in task order).

    Tunable as a categorical search-space entry (``static_weights = ["1,1", "2,1", "1,2"]``). Members of a
    population may have different weights (one row each)."""

    @dataclass
    class Options:
        static_weights: str = ""

    def __init__(self, kinds: list[str], static_weights: str = "") -> None:
        super().__init__(kinds)
        lam = torch.tensor([parse_weights(static_weights, self.n_tasks)])  # (1, T)
        self.register_buffer("lam", lam, persistent=False)

    def weights(self, rows: slice = ALL) -> torch.Tensor:
        return self.lam[rows]
