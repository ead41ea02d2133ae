"""Customized Gate Control, CGC (Tang et al., RecSys 2020, section 4.2, eq. 1-4).

    g^k(x) = w^k(x) S^k(x),   w^k(x) = softmax(W_g^k x),   S^k(x) = [E_k,1..E_k,m_k, E_s,1..E_s,m_s]^T
    y^k(x) = t^k(g^k(x))

Each task has its own experts; task k's gate mixes task k's experts and the shared experts.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import GatedOptions, LevelSettings, MultiTaskNet
from .registry import register


@dataclass
class CGCOptions(GatedOptions):
    n_shared: int = 2
    n_specific: int = 2

    def gate_choices(self) -> tuple[int, str]:
        return self.n_shared + self.n_specific, f"n_shared + n_specific = {self.n_shared} + {self.n_specific}"


@register("cgc")
class CGC(MultiTaskNet):
    Options = CGCOptions

    @staticmethod
    def levels_of(o: CGCOptions) -> LevelSettings:
        return LevelSettings(n_shared=o.n_shared, n_specific=o.n_specific)
