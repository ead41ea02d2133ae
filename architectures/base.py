"""Common base of the mixture-of-experts family: extraction levels, then one tower per task.

Options are typed dataclasses: ``TowerOptions`` (every architecture), ``ExpertOptions`` (the MoE family),
``GatedOptions`` (the gated members OMoE, MMoE, CGC and PLE: dense or sparse top-k gates) and one subclass per
architecture adding its own fields. An architecture of the family only says how its options map onto the
extraction levels (``levels_of()``).

Auxiliary loss: a ``MultiTaskNet`` with sparse gates and ``gate_aux_weight`` > 0 has ``has_aux_loss`` True; its
``forward(x, with_aux=True)`` returns ``({task: logits}, aux_loss)`` with ``aux_loss`` the weighted load-balancing
loss of all its gates (a scalar tensor), which the trainer adds to the task losses (``bench.training.system``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .layers import ExtractionLevel, Gating, Towers


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


@dataclass
class GatedOptions(ExpertOptions):
    """Options of the gated architectures: dense softmax gates, or noisy top-k gates (Shazeer et al., ICLR 2017;
    ``bench.architectures.layers.StackedGate``) with their load-balancing loss."""

    gate_top_k: int = 0  # 0: dense gates; k >= 1: each gate keeps its k largest logits
    gate_noise: float = 1.0  # scale of the learned noise std of the top-k gates in training (0: no noise)
    gate_aux_weight: float = 0.01  # weight of the load-balancing loss of the top-k gates (0: none)

    def gate_choices(self) -> tuple[int, str]:
        """How many experts one task's gate weighs, and in which options: the bound of ``gate_top_k``."""
        raise NotImplementedError

    def __post_init__(self) -> None:
        super().__post_init__()
        n, what = self.gate_choices()
        if not 0 <= self.gate_top_k <= n:
            raise ValueError(f"gate_top_k must be 0 (dense) or 1..{n} (the experts one task's gate weighs: {what}), "
                             f"got {self.gate_top_k}")
        for name in ("gate_noise", "gate_aux_weight"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")

    def gating(self) -> Gating:
        return Gating(self.gate_top_k, self.gate_noise, self.gate_aux_weight)


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
        gating = o.gating() if isinstance(o, GatedOptions) else Gating()
        self.has_aux_loss = gating.sparse and gating.aux_weight > 0
        ew = widths(o.expert_units, o.expert_layers)
        levels, d = [], d_in
        for i in range(s.n_levels):
            top = i == s.n_levels - 1
            levels.append(
                ExtractionLevel(
                    d, len(tasks), s.n_shared, s.n_specific, ew, o.dropout, tied_gates=s.tied_gates,
                    shared_gate=not top, gating=gating,
                )
            )
            d = ew[-1]
        self.levels = nn.ModuleList(levels)
        self.towers = Towers(d, list(tasks), list(tasks.values()), widths(o.tower_units, o.tower_layers), o.dropout)

    def forward(self, x: torch.Tensor, *, with_aux: bool = False):
        """``{task: logits}``; with ``with_aux``, ``({task: logits}, aux_loss)`` (a zero tensor when no gate
        contributed one: dense gates, evaluation mode)."""
        h, aux = x, None
        for level in self.levels:
            task_out, shared_out, level_aux = level(h)  # (T, B, h), (B, h) or None, scalar or None
            h = (task_out, shared_out)
            if level_aux is not None:
                aux = level_aux if aux is None else aux + level_aux
        out = self.towers(h[0])
        if not with_aux:
            return out
        return out, aux if aux is not None else x.new_zeros(())
