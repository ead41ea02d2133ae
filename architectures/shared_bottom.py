"""Shared-Bottom (Caruana 1997; the baseline of Ma et al., KDD 2018, eq. 1): y_k = h^k(f(x)).

One bottom network f shared by every task, one tower h^k per task. It is the extraction level with a
single shared expert and no gate (a softmax over one choice is the constant 1).
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import ExpertOptions, LevelSettings, MultiTaskNet
from .registry import register


@dataclass
class SharedBottomOptions(ExpertOptions):
    expert_units: int = 128  # one bottom carries every task: wider by default


@register("shared_bottom")
class SharedBottom(MultiTaskNet):
    Options = SharedBottomOptions

    @staticmethod
    def levels_of(o: SharedBottomOptions) -> LevelSettings:
        return LevelSettings(n_shared=1, n_specific=0)
