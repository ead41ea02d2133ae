"""Shared-Bottom (Caruana 1997; the baseline of Ma et al., KDD 2018, eq. 1): y_k = h^k(f(x)).

One bottom network f shared by every task, one tower h^k per task. It is the extraction level with a
single shared expert and no gate (a softmax over one choice is the constant 1).
"""

from __future__ import annotations

from collections.abc import Mapping

from .base import MultiTaskNet
from .registry import register


@register("shared_bottom")
class SharedBottom(MultiTaskNet):
    def __init__(
        self,
        d_in: int,
        tasks: Mapping[str, int],
        *,
        expert_units: int = 128,
        expert_layers: int = 1,
        tower_units: int = 32,
        tower_layers: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            d_in, tasks, n_levels=1, n_shared=1, n_specific=0, expert_units=expert_units,
            expert_layers=expert_layers, tower_units=tower_units, tower_layers=tower_layers, dropout=dropout,
        )
