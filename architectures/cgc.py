"""Customized Gate Control, CGC (Tang et al., RecSys 2020, section 4.2, eq. 1-4).

    g^k(x) = w^k(x) S^k(x),   w^k(x) = softmax(W_g^k x),   S^k(x) = [E_k,1..E_k,m_k, E_s,1..E_s,m_s]^T
    y^k(x) = t^k(g^k(x))

Each task has its own experts; task k's gate mixes task k's experts and the shared experts.
"""

from __future__ import annotations

from collections.abc import Mapping

from .base import MultiTaskNet
from .registry import register


@register("cgc")
class CGC(MultiTaskNet):
    def __init__(
        self,
        d_in: int,
        tasks: Mapping[str, int],
        *,
        n_shared: int = 2,
        n_specific: int = 2,
        expert_units: int = 64,
        expert_layers: int = 1,
        tower_units: int = 32,
        tower_layers: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            d_in, tasks, n_levels=1, n_shared=n_shared, n_specific=n_specific, expert_units=expert_units,
            expert_layers=expert_layers, tower_units=tower_units, tower_layers=tower_layers, dropout=dropout,
        )
