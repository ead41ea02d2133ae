"""What the funnel architectures (ESMM, AITM) share: the order of the funnel's steps and the two views of a step's
probability.

A data set declares its funnel (``bench.datasets.Funnel``) as ordered steps ``[(task, conditional), ...]``: a joint
step's label is 1 only where the previous step's is (ctcvr = click and conversion, over every impression), a
conditional step's is observed only where the previous step's is 1 (cvr, a conversion given a click). A funnel
architecture is built with those steps (``registry.create(..., funnel=steps)``) and returns, per task:

- by default, the logit of what the task's label is: P(reach step t) for a joint step, P(step t | step t-1) for a
  conditional one (its metrics, ``bench predict``, the entire-space CVR);
- with ``joint=True`` (training: ``funnel_loss`` is True), the logit of P(reach step t) for every step, which the
  trainer scores against the joint labels (a conditional step's label times the previous step's, 0 where that is
  0): the losses over the entire impression space, ESMM's L(ctr) + L(ctcvr) and AITM's per-step losses.

Both views in logits, exactly (s = sigmoid):

    logit(s(a) s(b))   = -logsumexp(-a, -b, -a - b)                              (``product_logit``)
    logit(s(a) / s(c)) = softplus(-c) + a - log(1 - exp(a - c)),   a < c           (``ratio_logit``)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from bench.errors import UserError

Steps = list[tuple[str, bool]]
RATIO_GAP = 1e-6  # ratio_logit: a - c is capped at -RATIO_GAP (a ratio of probabilities above 1 is read as ~1)


def product_logit(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """logit(sigmoid(a) sigmoid(b)): 1 - s(a) s(b) = (e^-a + e^-b + e^-(a+b)) / ((1 + e^-a)(1 + e^-b)), so the
    logit is -log(e^-a + e^-b + e^-(a+b)); finite and differentiable for finite a, b."""
    return -torch.logsumexp(torch.stack([-a, -b, -a - b]), dim=0)


def ratio_logit(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """logit(sigmoid(a) / sigmoid(c)), the conditional probability of a step from the joint ones of it (a) and of
    the step before (c); a ratio the model puts at 1 or above (a >= c, the funnel violated) is capped just below 1
    (a - c <= -RATIO_GAP)."""
    d = torch.clamp(a - c, max=-RATIO_GAP)
    return F.softplus(-c) + c + d - torch.log(-torch.expm1(d))


def check_steps(arch: str, tasks: Mapping[str, int], funnel: Sequence[tuple[str, bool]]) -> Steps:
    """The funnel steps an architecture is built with, or a one-line error: at least two steps, each a task with
    one output (binary)."""
    steps = [(str(t), bool(c)) for t, c in funnel]
    if len(steps) < 2:
        raise UserError(f"{arch} is a funnel architecture: it needs data whose tasks form a declared funnel "
                        f"(e.g. synthetic-funnel, aliexpress, a table with observed_if); tasks "
                        f"{', '.join(tasks)} have none")
    for task, _ in steps:
        if task not in tasks or tasks[task] != 1:
            raise UserError(f"{arch}: funnel step {task!r} must be a binary task of the data; tasks: "
                            f"{', '.join(tasks)}")
    return steps


def conditional_view(out: dict[str, torch.Tensor], steps: Steps, joint: dict[str, torch.Tensor],
                     conditional: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``out`` with each funnel step's logit in the view of its label: ``joint[task]`` for the first and joint
    steps, ``conditional[task]`` for conditional ones."""
    view = dict(out)
    for task, cond in steps:
        view[task] = conditional[task] if cond else joint[task]
    return view
