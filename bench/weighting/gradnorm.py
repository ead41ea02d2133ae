"""GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018): learned task weights that balance the tasks'
gradient norms on the shared parameters.

    G_i = || grad_W (w_i L_i) ||_2,   G_mean = mean_i G_i,
    r_i = Ltilde_i / mean_j Ltilde_j,  Ltilde_i = L_i(t) / L_i(0)        (relative inverse training rate)
    L_grad = sum_i | G_i - G_mean * r_i ** alpha |_1                       (eq. 2; the target is a constant)

The weights follow dL_grad/dw_i = sign(G_i - target_i) * ||grad_W L_i||, with the system's optimiser; the model
follows sum_i w_i L_i; after each step the weights are renormalised to sum to T. ``W``: every shared parameter
(those more than one task's loss depends on) rather than the paper's last shared layer, as LibMTL does; this
costs one backward pass per task through the shared part. ``gradnorm_alpha``: the asymmetry (1.5 in the paper's
NYUv2 runs; 0 balances the norms only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from bench.errors import UserError

from .base import Shared, Weighting, register, task_gradients


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
        self.w = nn.Parameter(torch.ones(self.n_tasks))
        self.initial: torch.Tensor | None = None  # L_i(0): the first step's losses

    def weights(self) -> torch.Tensor:
        return self.w.detach()

    def targets(self, losses: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        """``G_mean * r_i ** alpha`` for losses ``L (T,)`` and per-task gradient norms ``||grad_W L_i|| (T,)``."""
        if self.initial is None:
            self.initial = losses.detach().clone()
        ratio = losses.detach() / self.initial.clamp_min(1e-12)  # Ltilde_i
        r = ratio / ratio.mean()
        g = self.w.detach() * norms
        return g.mean() * r.pow(self.alpha)

    def backward(self, losses: torch.Tensor, shared: Shared, backward: Callable[[torch.Tensor], None]) -> None:
        grads = task_gradients(losses, shared.params)[:, shared.mask]  # (T, P_shared)
        norms = grads.norm(dim=1)  # ||grad_W L_i||
        target = self.targets(losses, norms)
        g = self.w.detach() * norms  # G_i
        backward((self.w.detach() * losses).sum())  # the model's gradients: sum_i w_i L_i
        self.w.grad = torch.sign(g - target) * norms  # dL_grad / dw_i

    @torch.no_grad()
    def after_step(self) -> None:
        self.w.clamp_(min=1e-6)
        self.w.mul_(self.n_tasks / self.w.sum())  # renormalise: sum_i w_i = T
