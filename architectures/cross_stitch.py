"""Cross-Stitch networks (Misra et al., CVPR 2016, eq. 1), for T tasks.

One MLP column per task. After every hidden layer a learned T x T cross-stitch matrix mixes the columns:

    x~^k = sum_j alpha_kj x^j

initialised near identity (``self_weight`` on the diagonal, the rest spread evenly over the other
columns, 0.9 / 0.1 for two tasks as in the paper's best setting), then one tower per task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .base import TowerOptions, widths
from .layers import ExpertBank, Towers
from .registry import register


@dataclass
class CrossStitchOptions(TowerOptions):
    column_units: int = 64
    column_layers: int = 2
    self_weight: float = 0.9  # alpha_kk at initialisation; 1 - self_weight is spread over the other columns


@register("cross_stitch")
class CrossStitch(nn.Module):
    Options = CrossStitchOptions

    def __init__(self, d_in: int, tasks: Mapping[str, int], **options: Any) -> None:
        super().__init__()
        o = self.Options(**options)
        if not tasks:
            raise ValueError("at least one task is needed")
        n = len(tasks)
        self.task_names = list(tasks)
        cw = widths(o.column_units, o.column_layers)
        self.columns = ExpertBank(n, d_in, cw, o.dropout)  # column k is task k's network
        off = (1.0 - o.self_weight) / (n - 1) if n > 1 else 0.0
        init = torch.full((n, n), off).fill_diagonal_(o.self_weight if n > 1 else 1.0)
        # one (T, T) cross-stitch unit after each hidden layer
        self.stitch = nn.Parameter(init.expand(len(cw), n, n).clone())
        self.towers = Towers(
            cw[-1], list(tasks), list(tasks.values()), widths(o.tower_units, o.tower_layers), o.dropout
        )

    def no_weight_decay(self) -> set[str]:
        # decaying the mixing matrices would pull every task toward zero rather than toward independence
        return {"stitch"}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = x
        for i in range(len(self.columns.layers)):
            h = self.columns.layer(i, h)  # (T, B, h)
            h = torch.einsum("kj,jbh->kbh", self.stitch[i], h)
        return self.towers(h)
