"""Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018): homoscedastic task uncertainty as learned weights.

With ``s_i = log sigma_i^2`` learned per task (initialised 0):

    regression (their eq. 5):      L_i / (2 sigma_i^2) + log sigma_i  =  0.5 exp(-s_i) L_i + 0.5 s_i
    classification (their eq. 10): L_i / sigma_i^2 + log sigma_i      =      exp(-s_i) L_i + 0.5 s_i

A task whose loss stays high (a noisier task) is driven to a larger sigma_i, that is a smaller weight.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import ALL, Weighting, register


@register("uncertainty")
class Uncertainty(Weighting):
    """Learned homoscedastic-uncertainty weights (Kendall, Gal & Cipolla, CVPR 2018)."""

    def __init__(self, kinds: list[str]) -> None:
        super().__init__(kinds)
        self.log_var = nn.Parameter(torch.zeros(1, self.n_tasks))  # s_i, (S, T)
        # c_i: 1/2 for regression (Gaussian likelihood), 1 for classification (softmax/Bernoulli likelihood)
        c = torch.tensor([[0.5 if k == "regression" else 1.0 for k in kinds]])  # (1, T)
        self.register_buffer("c", c, persistent=False)

    def weights(self, rows: slice = ALL) -> torch.Tensor:
        return (self.c[rows] * torch.exp(-self.log_var[rows])).detach()

    def combine(self, losses: torch.Tensor, rows: slice = ALL) -> torch.Tensor:
        s = self.log_var[rows]
        return (self.c[rows] * torch.exp(-s) * losses + 0.5 * s).sum(-1)
