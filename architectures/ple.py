"""Progressive Layered Extraction, PLE (Tang et al., RecSys 2020, section 4.3, eq. 5-6).

    g^{k,j}(x) = w^{k,j}(g^{k,j-1}(x)) S^{k,j}(x)      task k's gate at level j
    y^k(x)     = t^k(g^{k,N}(x))

A stack of ``n_levels`` CGC extraction levels. Every level below the top also has a shared gate over all
of its experts, whose output is the input of the next level's shared experts; task k's experts and gate
at level j read task k's output of level j-1. A one-level PLE is CGC.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import GatedOptions, LevelSettings, MultiTaskNet
from .registry import register


@dataclass
class PLEOptions(GatedOptions):
    n_levels: int = 2
    n_shared: int = 2
    n_specific: int = 2

    def gate_choices(self) -> tuple[int, str]:
        return self.n_shared + self.n_specific, f"n_shared + n_specific = {self.n_shared} + {self.n_specific}"


@register("ple")
class PLE(MultiTaskNet):
    Options = PLEOptions

    @staticmethod
    def levels_of(o: PLEOptions) -> LevelSettings:
        return LevelSettings(n_shared=o.n_shared, n_specific=o.n_specific, n_levels=o.n_levels)
