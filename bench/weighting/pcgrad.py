"""PCGrad (Yu, Kumar, Gupta, Levine, Hausman & Finn, NeurIPS 2020): project conflicting task gradients.

On the shared parameters, each task's gradient g_i is projected, for every other task j in random order, onto
the normal plane of g_j when they conflict:

    if g_i . g_j < 0:   g_i <- g_i - (g_i . g_j / ||g_j||^2) g_j           (Algorithm 1)

and the update is sum_i g_i. Task-specific parameters get their task's gradient unchanged. Costs one backward
pass per task through the shared part, plus T^2 dot products of the flattened shared gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .base import Shared, Weighting, register, task_gradients


def project(grads: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """PCGrad's projected sum of the task gradients ``grads (T, P)`` -> ``(P,)``."""
    out = grads.clone()
    n = len(grads)
    for i in range(n):  # T is 2-4: a loop over tasks, not over parameters
        order = torch.randperm(n, generator=generator).tolist()
        for j in order:
            if j == i:
                continue
            dot = out[i] @ grads[j]
            if dot < 0:
                out[i] = out[i] - dot / grads[j].square().sum().clamp_min(1e-20) * grads[j]
    return out.sum(0)


@register("pcgrad")
class PCGrad(Weighting):
    """Conflicting task gradients projected onto each other's normal plane (Yu et al., NeurIPS 2020)."""

    grad_based = True

    def __init__(self, kinds: list[str]) -> None:
        super().__init__(kinds)
        self.generator = torch.Generator().manual_seed(0)  # the random order of Algorithm 1, reproducible

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def backward(self, losses: torch.Tensor, shared: Shared, backward: Callable[[torch.Tensor], None]) -> None:
        grads = task_gradients(losses, shared.params)[:, shared.mask]  # (T, P_shared)
        backward(losses.sum())  # every parameter element: the plain sum (task-specific ones keep it)
        flat = shared.flat_grad()
        flat[shared.mask] = project(grads, self.generator)  # shared elements: the projected sum
        shared.set_flat_grad(flat)
