"""Losses and whole-split metrics per task kind, and the validation objective (metric names and orientation:
``bench.spec.metrics``).

binary: BCE with logits; AUC and log loss.  regression: MSE; MSE and MAE.
multiclass: cross-entropy; accuracy and log loss.

Missing labels (NaN in ``y``, see ``bench.datasets.observed``): a task's loss averages over its observed rows
only, and its metrics are computed on its observed rows only.

Funnel architectures (``bench.architectures.has_funnel_loss``) are trained in their joint view against joint labels
(``funnel_targets``). On data whose truth is known (``MTLData.truth``), final runs also score each task over the
entire test impression space (``entire_space_metrics``): ``auc_entire``, the AUC against the outcome drawn for every
impression (the counterfactual conversions of unclicked ones included), and ``calib_entire``, the mean absolute
difference between the predicted and the true probability, mean_i |p^_i - p_i| (lower is better).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bench.spec.metrics import METRICS, PRIMARY, oriented


def task_loss(kind: str, logits: torch.Tensor, y: torch.Tensor, masked: bool = False) -> torch.Tensor:
    """Mean loss of one task. ``logits (B, out_dim)``, ``y (B,)`` as stored in a ``Split``.

    ``masked`` (a task with missing labels): the mean over observed rows only, with m_i = 1 where y_i is
    observed,

        L = sum_i m_i l(z_i, y_i) / max(1, sum_i m_i)

    A missing label is replaced by 0 before the loss and its term selected away by ``where``, so masked rows get
    exactly zero gradient and a batch with no observed label contributes exactly 0 (never NaN).
    """
    if masked:
        obs = ~torch.isnan(y)
        target = torch.where(obs, y, torch.zeros_like(y))
        if kind == "binary":
            per_row = F.binary_cross_entropy_with_logits(logits.squeeze(-1), target, reduction="none")
        elif kind == "regression":
            per_row = (logits.squeeze(-1) - target).square()
        else:
            per_row = F.cross_entropy(logits, target.long(), reduction="none")
        return torch.where(obs, per_row, torch.zeros_like(per_row)).sum() / obs.sum().clamp(min=1)
    if kind == "binary":
        return F.binary_cross_entropy_with_logits(logits.squeeze(-1), y)
    if kind == "regression":
        return F.mse_loss(logits.squeeze(-1), y)
    return F.cross_entropy(logits, y.long())


def funnel_targets(y: torch.Tensor, steps: list[tuple[int, bool]]) -> torch.Tensor:
    """The labels ``y (..., T)`` a funnel architecture's joint view is scored against: each conditional funnel step
    (``steps``: (label column, conditional) in funnel order) made joint, y'_t = 0 where y'_{t-1} = 0 (no click: no
    conversion) and y_t elsewhere (missing where y'_{t-1} is), so that it covers the entire space."""
    cols, prev = list(y.unbind(-1)), None
    for k, conditional in steps:
        if conditional and prev is not None:
            cols[k] = torch.where(prev == 0, torch.zeros_like(cols[k]), cols[k])
        prev = cols[k]
    return torch.stack(cols, dim=-1)


def entire_space_metrics(logits: torch.Tensor, prob: torch.Tensor, outcome: torch.Tensor) -> dict[str, float]:
    """A binary task scored over every impression of a generator's test split: ``auc_entire`` against the drawn
    outcomes ``outcome (N,)``, ``calib_entire`` = mean |sigmoid(logit) - prob| against the true probabilities
    ``prob (N,)``. Empty when a prediction is not finite; a value that is not finite (one class only) is left out."""
    z = logits.detach().double().reshape(-1)
    if not bool(torch.isfinite(z).all()):
        return {}
    values = {"auc_entire": auc(z, outcome.detach().reshape(-1)),
              "calib_entire": (torch.sigmoid(z) - prob.detach().double().reshape(-1)).abs().mean().item()}
    return {k: v for k, v in values.items() if math.isfinite(v)}


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """ROC AUC as the Mann-Whitney U statistic, ties counted half: P(score_pos > score_neg) + P(=)/2."""
    scores, labels = scores.double().flatten(), labels.flatten() > 0.5
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    _, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    # average 1-based rank of each distinct value: ranks of a tie group of size c ending at s are s-c+1..s
    ends = counts.cumsum(0).double()
    avg_rank = ends - (counts.double() - 1) / 2
    rank_sum_pos = avg_rank[inverse][labels].sum().item()
    return (rank_sum_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def check_finite_loss(loss: float, epoch: int) -> None:
    """A non-finite training loss (NaN or inf) ends a fit with ``FloatingPointError``: the one check that both
    ``MTLSystem`` and populations (per member) apply once per epoch."""
    if not math.isfinite(loss):
        raise FloatingPointError(f"non-finite training loss ({loss}) in epoch {epoch}")


def task_metrics(kind: str, logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Metrics of one task over a whole split, on the rows where its label is observed; NaN for every metric
    when any of those predictions is NaN or infinite (a diverged model gets no score: ranking NaNs would give AUC
    0.5 or so)."""
    logits, y = logits.detach().float(), y.detach().float()
    obs = ~torch.isnan(y)
    if not bool(obs.all()):
        logits, y = logits[obs], y[obs]
    if not bool(torch.isfinite(logits).all()) or len(y) == 0:
        return dict.fromkeys(METRICS[kind], math.nan)
    if kind == "binary":
        z = logits.squeeze(-1)
        return {"auc": auc(z, y), "logloss": F.binary_cross_entropy_with_logits(z, y).item()}
    if kind == "regression":
        err = logits.squeeze(-1) - y
        return {"mse": err.square().mean().item(), "mae": err.abs().mean().item()}
    target = y.long()
    return {
        "accuracy": (logits.argmax(-1) == target).float().mean().item(),
        "logloss": F.cross_entropy(logits, target).item(),
    }


def objective(tasks, metrics: dict[str, dict[str, float]], target: str = "mean") -> float:
    """The validation objective to maximise: the mean over tasks of each task's primary metric in
    higher-is-better orientation, or one task's (``target`` = its name)."""
    values = {t.name: oriented(PRIMARY[t.kind], metrics[t.name][PRIMARY[t.kind]]) for t in tasks}
    if target == "mean":
        return sum(values.values()) / len(values)
    return values[target]
