"""Multi-gate Mixture-of-Experts, MMoE (Ma et al., KDD 2018, eq. 4-5).

    y_k = h^k(f^k(x)),   f^k(x) = sum_i g^k(x)_i f_i(x),   g^k(x) = softmax(W_gk x)

n shared experts, one softmax gate per task.
"""

from __future__ import annotations

from collections.abc import Mapping

from .base import MultiTaskNet
from .registry import register


@register("mmoe")
class MMoE(MultiTaskNet):
    def __init__(
        self,
        d_in: int,
        tasks: Mapping[str, int],
        *,
        n_experts: int = 8,
        expert_units: int = 64,
        expert_layers: int = 1,
        tower_units: int = 32,
        tower_layers: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            d_in, tasks, n_levels=1, n_shared=n_experts, n_specific=0, expert_units=expert_units,
            expert_layers=expert_layers, tower_units=tower_units, tower_layers=tower_layers, dropout=dropout,
        )
