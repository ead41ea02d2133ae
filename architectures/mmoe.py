"""Multi-gate Mixture-of-Experts, MMoE (Ma et al., KDD 2018, eq. 4-5).

    y_k = h^k(f^k(x)),   f^k(x) = sum_i g^k(x)_i f_i(x),   g^k(x) = softmax(W_gk x)

n shared experts, one softmax gate per task.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import GatedOptions, LevelSettings, MultiTaskNet
from .registry import register


@dataclass
class MMoEOptions(GatedOptions):
    n_experts: int = 8

    def gate_choices(self) -> tuple[int, str]:
        return self.n_experts, f"n_experts = {self.n_experts}"


@register("mmoe")
class MMoE(MultiTaskNet):
    Options = MMoEOptions

    @staticmethod
    def levels_of(o: MMoEOptions) -> LevelSettings:
        return LevelSettings(n_shared=o.n_experts, n_specific=0)
