"""Single-task baseline: one independent bottom and tower per task.

Nothing is shared and no gradient crosses tasks: y_k = h^k(f^k(x)). It is the extraction level with no
shared experts and one task-specific expert per task (so its gates vanish); the reference against which
MTL gain is measured (Tang et al., RecSys 2020, section 5.1).
"""

from __future__ import annotations

from collections.abc import Mapping

from .base import MultiTaskNet
from .registry import register


@register("single_task")
class SingleTask(MultiTaskNet):
    def __init__(
        self,
        d_in: int,
        tasks: Mapping[str, int],
        *,
        expert_units: int = 64,
        expert_layers: int = 1,
        tower_units: int = 32,
        tower_layers: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            d_in, tasks, n_levels=1, n_shared=0, n_specific=1, expert_units=expert_units,
            expert_layers=expert_layers, tower_units=tower_units, tower_layers=tower_layers, dropout=dropout,
        )
