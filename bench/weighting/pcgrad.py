"""PCGrad (Yu, Kumar, Gupta, Levine, Hausman & Finn, NeurIPS 2020): project conflicting task gradients.

On the shared parameters, each task's gradient g_i is projected, for every other task j in random order, onto
the normal plane of g_j when they conflict:

    if g_i . g_j < 0:   g_i <- g_i - (g_i . g_j / ||g_j||^2) g_j           (Algorithm 1)

and the update is sum_i g_i. Task-specific parameters get their task's gradient unchanged. Costs one backward
pass per task (the task gradients), plus T^2 dot products of the flattened gradient.
"""

from __future__ import annotations

import torch

from .base import ALL, Weighting, register


def project(grads: torch.Tensor, generators: list[torch.Generator | None] | None = None) -> torch.Tensor:
    """PCGrad's projected sum of each member's task gradients ``grads (S, T, P)`` -> ``(S, P)``; member s's random
    order of the other tasks comes from ``generators[s]`` (the global generator where None)."""
    n_members, n_tasks = grads.shape[:2]
    generators = generators or [None] * n_members
    # (S, T, T): member s's order of the tasks j for task i, drawn as a one-member loop over i would draw them
    orders = torch.tensor([[torch.randperm(n_tasks, generator=g).tolist() for _ in range(n_tasks)]
                           for g in generators], device=grads.device).reshape(n_members, n_tasks, n_tasks)
    members = torch.arange(n_members, device=grads.device)
    sq = grads.square().sum(-1).clamp_min(1e-20)  # (S, T): ||g_j||^2
    out = grads.clone()
    for i in range(n_tasks):  # T is 2-4: loops over tasks, not over members or parameters
        for pos in range(n_tasks):
            j = orders[:, i, pos]  # (S,): each member's next task
            gj = grads[members, j]  # (S, P)
            dot = (out[:, i] * gj).sum(-1)  # (S,): g_i . g_j
            coef = torch.where((j != i) & (dot < 0), dot / sq[members, j], torch.zeros_like(dot))
            out[:, i] -= coef[:, None] * gj
    return out.sum(1)


@register("pcgrad")
class PCGrad(Weighting):
    """Conflicting task gradients projected onto each other's normal plane (Yu et al., NeurIPS 2020)."""

    grad_based = True

    def __init__(self, kinds: list[str]) -> None:
        super().__init__(kinds)
        self.generators = [torch.Generator().manual_seed(0)]  # per member: Algorithm 1's random order

    def seed(self, seeds: list[int]) -> None:
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

    @classmethod
    def stack(cls, members: list[PCGrad]) -> PCGrad:
        out = super().stack(members)
        out.generators = [g for m in members for g in m.generators]
        return out

    def keep(self, rows: torch.Tensor) -> None:
        super().keep(rows)
        self.generators = [self.generators[i] for i in rows.tolist()]

    def gradient(self, losses: torch.Tensor, grads: torch.Tensor, mask: torch.Tensor,
                 rows: slice = ALL) -> tuple[torch.Tensor, None]:
        shared = grads * mask[:, None, :]  # only shared elements take part in the dot products and projections
        projected = project(shared, self.generators[rows])
        # shared elements: the projected sum; task-specific ones (and embedding tables): the plain sum
        return torch.where(mask, projected, grads.sum(1)), None
