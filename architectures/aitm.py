"""Adaptive Information Transfer Multi-task framework, AITM (Xi et al., KDD 2021, section 3, eq. 1-6).

Each step t of the funnel has its own tower input q_t (an MLP over the shared embeddings); from the second step on,
the Adaptive Information Transfer module mixes q_t with what the previous step transfers, p_{t-1}:

    p_{t-1} = g_{t-1}(z_{t-1})                                   (transfer: a linear map per step)
    z_t     = sum_{u in {p_{t-1}, q_t}} w_u h1(u),   w_u = softmax_u( <h2(u), h3(u)> / sqrt(k) )
    z_1     = q_1,   y^_t = sigmoid(tower_t(z_t))                (k: the width of z; h1, h2, h3 linear maps)

y^_t is the probability of reaching step t over every impression (the joint one: click, then conversion). The
behavioural expectation calibrator keeps the funnel's order, a later step never likelier than an earlier one:

    L = sum_t mean_x BCE(y_t, y^_t) + alpha L_lc,   L_lc = mean_x sum_{t >= 2} max(y^_t(x) - y^_{t-1}(x), 0)

alpha L_lc is this architecture's auxiliary loss (``forward(x, with_aux=True)``, ``calibration`` = alpha; 0: none),
added to the task losses by the trainer as the top-k gates' load balancing is. Outputs (``funnel.py``): a joint
step gets logit(y^_t); a conditional step (cvr, observed after a click) y^_t / y^_{t-1} as a probability (capped
just below 1 where the funnel is violated); ``joint=True`` gives logit(y^_t) for every step, which the trainer
scores against the joint labels. Tasks outside the funnel get a tower on their own q.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .base import ExpertOptions, widths
from .funnel import check_steps, conditional_view, ratio_logit
from .layers import ExpertBank, StackedLinear, Towers
from .registry import register


@dataclass
class AITMOptions(ExpertOptions):
    calibration: float = 0.6  # alpha: weight of the behavioural expectation calibrator (the paper's setting)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.calibration >= 0 and math.isfinite(self.calibration)):
            raise ValueError(f"calibration must be a finite number >= 0, got {self.calibration}")


@register("aitm")
class AITM(nn.Module):
    Options = AITMOptions
    needs_funnel = True
    funnel_loss = True

    def __init__(self, d_in: int, tasks: Mapping[str, int], *, funnel: Sequence[tuple[str, bool]] = (),
                 **options: Any) -> None:
        super().__init__()
        o = self.Options(**options)
        self.steps = check_steps("aitm", tasks, funnel)
        self.task_names = list(tasks)
        self.alpha = o.calibration
        self.has_aux_loss = o.calibration > 0
        ew = widths(o.expert_units, o.expert_layers)
        k = ew[-1]
        self.bottoms = ExpertBank(len(tasks), d_in, ew, o.dropout)  # q_t: one MLP per task
        self.transfer = StackedLinear(len(self.steps) - 1, k, k)  # g_t: one per step that passes information on
        self.attend = StackedLinear(3, k, k)  # h1, h2, h3 (value, key, query), shared by the steps
        self.scale = 1.0 / math.sqrt(k)
        self.towers = Towers(k, list(tasks), list(tasks.values()), widths(o.tower_units, o.tower_layers), o.dropout)

    def ait(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """z = sum_u w_u h1(u) over u in {p, q} ``(B, k)`` each: attention over the two items."""
        u = torch.stack([p, q], dim=1)  # (B, 2, k)
        v, key, query = self.attend(u.flatten(0, 1)).unflatten(1, u.shape[:2])  # 3 x (B, 2, k)
        w = torch.softmax((key * query).sum(-1) * self.scale, dim=1)  # (B, 2)
        return (w.unsqueeze(-1) * v).sum(1)  # (B, k)

    def forward(self, x: torch.Tensor, *, with_aux: bool = False, joint: bool = False):
        q = self.bottoms(x)  # (T, B, k)
        index = {t: i for i, t in enumerate(self.task_names)}
        z = list(q.unbind(0))
        for s, ((prev, _), (task, _)) in enumerate(zip(self.steps[:-1], self.steps[1:])):
            p = self.transfer(z[index[prev]])[s]  # (B, k): g_s(z_prev), the s-th transfer map
            z[index[task]] = self.ait(p, q[index[task]])
        out = self.towers(torch.stack(z))  # {task: logit of y^_t}
        view = out
        if not joint:
            ratios = {task: ratio_logit(out[task], out[prev])
                      for (prev, _), (task, _) in zip(self.steps[:-1], self.steps[1:])}
            view = conditional_view(out, self.steps, out, ratios)
        if not with_aux:
            return view
        return view, self.alpha * self.calibration_loss(out)

    def calibration_loss(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """L_lc = mean_x sum_{t >= 2} max(y^_t(x) - y^_{t-1}(x), 0): 0 exactly where the funnel's order holds."""
        y = torch.stack([torch.sigmoid(out[task].squeeze(-1)) for task, _ in self.steps])  # (steps, B)
        return torch.relu(y[1:] - y[:-1]).sum(0).mean()
