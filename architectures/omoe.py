"""One-gate Mixture-of-Experts, OMoE (Ma et al., KDD 2018, eq. 2-3).

    y_k = h^k(f(x)),   f(x) = sum_i g(x)_i f_i(x),   g(x) = softmax(W_g x)

n shared experts and one softmax gate whose mixture is the same for every task: MMoE with tied gates.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import GatedOptions, LevelSettings, MultiTaskNet
from .registry import register


@dataclass
class OMoEOptions(GatedOptions):
    n_experts: int = 8

    def gate_choices(self) -> tuple[int, str]:
        return self.n_experts, f"n_experts = {self.n_experts}"


@register("omoe")
class OMoE(MultiTaskNet):
    Options = OMoEOptions

    @staticmethod
    def levels_of(o: OMoEOptions) -> LevelSettings:
        return LevelSettings(n_shared=o.n_experts, n_specific=0, tied_gates=True)
