"""Common base of the mixture-of-experts family: extraction levels, then one tower per task.

Options are typed dataclasses: ``TowerOptions`` (every architecture), ``ExpertOptions`` (the MoE family) and
one subclass per architecture adding its own fields. An architecture of the family only says how its options map
onto the extraction levels (``levels()``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .layers import ExtractionLevel, Towers


def widths(units: int, layers: int) -> list[int]:
    """Hidden widths of an MLP of ``layers`` layers of ``units`` units."""
    if units < 1 or layers < 1:
        raise ValueError(f"an MLP needs units >= 1 and layers >= 1, got units={units}, layers={layers}")
    return [units] * layers


@dataclass
class TowerOptions:
    tower_units: int = 32
    tower_layers: int = 1
    dropout: float = 0.0  # after every hidden layer, experts and towers alike

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass
class ExpertOptions(TowerOptions):
    expert_units: int = 64
    expert_layers: int = 1


@dataclass(frozen=True)
class LevelSettings:
    """How an architecture of the family fills its extraction levels."""

    n_shared: int
    n_specific: int
    n_levels: int = 1
    tied_gates: bool = False


class MultiTaskNet(nn.Module):
    """A PLE-style stack of extraction levels with towers on top (PLE paper, eq. 5-6).

    Every level below the top has a shared gate whose output feeds the next level's shared experts;
    the top level's task outputs feed the towers: y_k = t^k(g^{k,N}(x)).
    Single-task, Shared-Bottom, OMoE, MMoE and CGC are one-level settings of this class.
    Subclasses set ``Options`` (an ``ExpertOptions`` dataclass) and ``levels_of(options)``.
    """

    Options = ExpertOptions

    @staticmethod
    def levels_of(o: Any) -> LevelSettings:
        raise NotImplementedError

    def __init__(self, d_in: int, tasks: Mapping[str, int], **options: Any) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("at least one task is needed")
        o = self.Options(**options)
        s = self.levels_of(o)
        if s.n_levels < 1:
            raise ValueError(f"n_levels must be >= 1, got {s.n_levels}")
        self.task_names = list(tasks)
        ew = widths(o.expert_units, o.expert_layers)
        levels, d = [], d_in
        for i in range(s.n_levels):
            top = i == s.n_levels - 1
            levels.append(
                ExtractionLevel(
                    d, len(tasks), s.n_shared, s.n_specific, ew, o.dropout, tied_gates=s.tied_gates, shared_gate=not top
                )
            )
            d = ew[-1]
        self.levels = nn.ModuleList(levels)
        self.towers = Towers(d, list(tasks), list(tasks.values()), widths(o.tower_units, o.tower_layers), o.dropout)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = x
        for level in self.levels:
            h = level(h)  # (task outputs (T, B, h), shared output (B, h) or None)
        return self.towers(h[0])
