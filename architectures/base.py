"""Common base of the mixture-of-experts family: extraction levels, then one tower per task."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .layers import ExtractionLevel, Towers


def widths(units: int, layers: int) -> list[int]:
    """Hidden widths of an MLP of ``layers`` layers of ``units`` units."""
    if units < 1 or layers < 1:
        raise ValueError(f"an MLP needs units >= 1 and layers >= 1, got units={units}, layers={layers}")
    return [units] * layers


def check_dropout(dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


class MultiTaskNet(nn.Module):
    """A PLE-style stack of extraction levels with towers on top (PLE paper, eq. 5-6).

    Every level below the top has a shared gate whose output feeds the next level's shared experts;
    the top level's task outputs feed the towers: y_k = t^k(g^{k,N}(x)).
    Single-task, Shared-Bottom, OMoE, MMoE and CGC are the one-level settings of this class.
    """

    def __init__(
        self,
        d_in: int,
        tasks: Mapping[str, int],
        *,
        n_levels: int,
        n_shared: int,
        n_specific: int,
        expert_units: int,
        expert_layers: int,
        tower_units: int,
        tower_layers: int,
        dropout: float,
        tied_gates: bool = False,
    ) -> None:
        super().__init__()
        if n_levels < 1:
            raise ValueError(f"n_levels must be >= 1, got {n_levels}")
        if not tasks:
            raise ValueError("at least one task is needed")
        check_dropout(dropout)
        self.task_names = list(tasks)
        ew = widths(expert_units, expert_layers)
        levels, d = [], d_in
        for i in range(n_levels):
            top = i == n_levels - 1
            levels.append(
                ExtractionLevel(
                    d, len(tasks), n_shared, n_specific, ew, dropout, tied_gates=tied_gates, shared_gate=not top
                )
            )
            d = ew[-1]
        self.levels = nn.ModuleList(levels)
        self.towers = Towers(d, list(tasks), list(tasks.values()), widths(tower_units, tower_layers), dropout)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = x
        for level in self.levels:
            h = level(h)  # (task outputs (T, B, h), shared output (B, h) or None)
        return self.towers(h[0])
