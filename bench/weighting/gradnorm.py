"""GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018): learned task weights that balance the tasks'
gradient norms on the shared parameters.

    G_i = || grad_W (w_i L_i) ||_2,   G_mean = mean_i G_i,
    r_i = Ltilde_i / mean_j Ltilde_j,  Ltilde_i = L_i(t) / L_i(0)        (relative inverse training rate)
    L_grad = sum_i | G_i - G_mean * r_i ** alpha |_1                       (eq. 2; the target is a constant)

The weights follow dL_grad/dw_i = sign(G_i - target_i) * ||grad_W L_i||, with the system's optimiser; the model
follows sum_i w_i L_i; after each step the weights are renormalised to sum to T. ``W``: every shared parameter
element (those more than one task's loss depends on) rather than the paper's last shared layer, as LibMTL does;
the per-task gradients cost one backward pass per task. ``gradnorm_alpha``: the asymmetry (1.5 in the paper's
NYUv2 runs; 0 balances the norms only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench.errors import UserError

from .base import ALL, Weighting, register


@register("gradnorm")
class GradNorm(Weighting):
    """Learned weights balancing the tasks' gradient norms on shared parameters (Chen et al., ICML 2018)."""

    grad_based = True

    @dataclass
    class Options:
        gradnorm_alpha: float = 1.5

    def __init__(self, kinds: list[str], gradnorm_alpha: float = 1.5) -> None:
        super().__init__(kinds)
        if not gradnorm_alpha >= 0:
            raise UserError(f"gradnorm_alpha must be >= 0, got {gradnorm_alpha}")
        self.alpha = float(gradnorm_alpha)
        self.w = nn.Parameter(torch.ones(1, self.n_tasks))  # (S, T)
        # (S, T): L_i(0), each member's first-step losses (NaN until its first step)
        self.register_buffer("initial", torch.full((1, self.n_tasks), float("nan")), persistent=False)

    def options_key(self) -> tuple:
        return (("gradnorm_alpha", self.alpha),)

    def weights(self, rows: slice = ALL) -> torch.Tensor:
        return self.w[rows].detach()

    def targets(self, losses: torch.Tensor, norms: torch.Tensor, rows: slice = ALL) -> torch.Tensor:
        """``G_mean * r_i ** alpha (S, T)`` for losses ``L (S, T)`` and per-task gradient norms ``||grad_W L_i||``."""
        losses = losses.detach()
        initial = self.initial[rows]
        initial = torch.where(torch.isnan(initial), losses, initial)  # the first step sets L_i(0)
        self.initial[rows] = initial
        ratio = losses / initial.clamp_min(1e-12)  # Ltilde_i
        r = ratio / ratio.mean(-1, keepdim=True)
        g = self.w[rows].detach() * norms  # G_i
        return g.mean(-1, keepdim=True) * r.pow(self.alpha)

    def gradient(self, losses: torch.Tensor, grads: torch.Tensor, mask: torch.Tensor,
                 rows: slice = ALL) -> tuple[torch.Tensor, torch.Tensor]:
        norms = (grads * mask[:, None, :]).norm(dim=-1)  # (S, T): ||grad_W L_i|| on the shared elements
        target = self.targets(losses, norms, rows)
        w = self.w[rows]
        own = (w * norms - target).abs().sum(-1)  # L_grad per member; d/dw_i = sign(G_i - target_i) ||grad_W L_i||
        update = torch.einsum("st,stp->sp", w.detach(), grads)  # the model's gradient: of sum_i w_i L_i
        return update, own

    @torch.no_grad()
    def after_step(self) -> None:
        self.w.clamp_(min=1e-6)
        self.w.mul_(self.n_tasks / self.w.sum(-1, keepdim=True))  # renormalise: sum_i w_i = T, per member
