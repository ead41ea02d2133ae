"""One-gate Mixture-of-Experts, OMoE (Ma et al., KDD 2018, eq. 2-3).

    y_k = h^k(f(x)),   f(x) = sum_i g(x)_i f_i(x),   g(x) = softmax(W_g x)

n shared experts and one softmax gate whose mixture is the same for every task: MMoE with tied gates.
"""

from __future__ import annotations

from collections.abc import Mapping

from .base import MultiTaskNet
from .registry import register


@register("omoe")
class OMoE(MultiTaskNet):
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
            tied_gates=True,
        )
