"""Single-task baseline: one independent bottom and tower per task.

Nothing is shared and no gradient crosses tasks: y_k = h^k(f^k(x)). It is the extraction level with no
shared experts and one task-specific expert per task (so its gates vanish); the reference against which
MTL gain is measured (Tang et al., RecSys 2020, section 5.1).
"""

from __future__ import annotations

from .base import ExpertOptions, LevelSettings, MultiTaskNet
from .registry import register


@register("single_task")
class SingleTask(MultiTaskNet):
    Options = ExpertOptions

    @staticmethod
    def levels_of(o: ExpertOptions) -> LevelSettings:
        return LevelSettings(n_shared=0, n_specific=1)
