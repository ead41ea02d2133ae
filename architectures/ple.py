"""Progressive Layered Extraction, PLE (Tang et al., RecSys 2020, section 4.3, eq. 5-6).

    g^{k,j}(x) = w^{k,j}(g^{k,j-1}(x)) S^{k,j}(x)      task k's gate at level j
    y^k(x)     = t^k(g^{k,N}(x))

A stack of ``n_levels`` CGC extraction levels. Every level below the top also has a shared gate over all
of its experts, whose output is the input of the next level's shared experts; task k's experts and gate
at level j read task k's output of level j-1. A one-level PLE is CGC.
"""

from __future__ import annotations

from collections.abc import Mapping

from .base import MultiTaskNet
from .registry import register


@register("ple")
class PLE(MultiTaskNet):
    def __init__(
        self,
        d_in: int,
        tasks: Mapping[str, int],
        *,
        n_levels: int = 2,
        n_shared: int = 2,
        n_specific: int = 2,
        expert_units: int = 64,
        expert_layers: int = 1,
        tower_units: int = 32,
        tower_layers: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            d_in, tasks, n_levels=n_levels, n_shared=n_shared, n_specific=n_specific, expert_units=expert_units,
            expert_layers=expert_layers, tower_units=tower_units, tower_layers=tower_layers, dropout=dropout,
        )
