"""Loss assembly of a training step, written once for ``MTLSystem`` and for populations (where it runs per member
under ``vmap``, on a ``rows`` slice of the members of the weighting method):

    L_k        task k's loss (``metrics.task_loss``; over its observed rows where labels may be missing; for a funnel
               architecture its joint view against joint labels, ``funnel_view``)
    w_k L_k    with the fixed ``loss_weights`` w_k (1 by default)                            (``task_losses``)
    total      the weighting method's combination of the w_k L_k, plus the auxiliary loss of an architecture that
               has one (sparse gates' load balancing), which is no task's               (``total_loss``)
    train_loss sum_k lambda_k w_k L_k with the method's current weights lambda_k, plus the auxiliary loss: what
               the history reports                                                      (``reported_loss``)
"""

from __future__ import annotations

import torch
from torch import nn

from bench import architectures, weighting
from bench.datasets import Task
from bench.errors import UnknownChoice

from .metrics import funnel_targets, task_loss


def fixed_weights(tasks: list[Task], loss_weights: dict[str, float] | None) -> list[float]:
    """The fixed w_k of each task, in task order (1 where ``loss_weights`` does not name it)."""
    weights = loss_weights or {}
    for name in weights:
        if name not in [t.name for t in tasks]:
            raise UnknownChoice("task in loss_weights", name, [t.name for t in tasks])
    return [float(weights.get(t.name, 1.0)) for t in tasks]


def funnel_view(model: nn.Module, tasks: list[Task], funnel: list[tuple[str, bool]] | None,
                partial: list[bool]) -> tuple[list[tuple[int, bool]] | None, list[bool]]:
    """How a model's losses are computed: for a funnel architecture (``has_funnel_loss``) the funnel steps as
    (label column, conditional), whose joint labels (``funnel_targets``) its joint view is scored against, and
    ``partial`` with every step's loss averaged over observed rows (a joint label is missing where the previous
    step's is); ``(None, partial)`` for any other model. Shared by ``MTLSystem`` and populations."""
    if not architectures.has_funnel_loss(model) or not funnel:
        return None, list(partial)
    names = [t.name for t in tasks]
    steps = [(names.index(t), bool(c)) for t, c in funnel]
    return steps, [p or k in {i for i, _ in steps} for k, p in enumerate(partial)]


def task_losses(tasks: list[Task], out: dict[str, torch.Tensor], y: torch.Tensor, weights: list[float],
                partial: list[bool], steps: list[tuple[int, bool]] | None) -> torch.Tensor:
    """``(T,)``: w_k L_k(logits_k, y[:, k]) per task from one model's logits ``out {task: (B, out_dim)}`` and
    labels ``y (B, T)`` (NaN where missing), ``weights`` the w_k, ``partial[k]``: L_k over task k's observed rows;
    ``steps`` (``funnel_view``): ``y`` made joint first, as a funnel architecture's joint view is scored."""
    if steps is not None:
        y = funnel_targets(y, steps)
    return torch.stack([weights[k] * task_loss(task.kind, out[task.name], y[:, k], partial[k])
                        for k, task in enumerate(tasks)])


def total_loss(method: weighting.Weighting, losses: torch.Tensor, aux: torch.Tensor | None,
               rows: slice = slice(None)) -> torch.Tensor:
    """``(S,)``: what each member of ``rows`` backpropagates (a loss-based method): the method's combination of
    its task losses ``losses (S, T)`` (``sum_k lambda_k w_k L_k`` unless the method says otherwise), plus its
    auxiliary loss ``aux`` (``(S,)``, None without one)."""
    total = method.combine(losses, rows)
    return total if aux is None else total + aux


def reported_loss(weights: torch.Tensor, losses: torch.Tensor, aux: torch.Tensor | None) -> torch.Tensor:
    """``(...,)``: the training loss a step reports, ``sum_k lambda_k w_k L_k`` with the method's current weights
    ``weights (..., T)`` (for uncertainty: without its log terms) and the task losses ``losses (..., T)``, plus the
    auxiliary loss ``aux (...)`` (None without one); detached."""
    weighted = (weights.to(losses) * losses.detach()).sum(-1)
    return weighted if aux is None else weighted + aux.detach()
