"""Entire Space Multi-task Model, ESMM (Ma et al., SIGIR 2018, section 2.3, eq. 1-3), over a declared funnel.

    p(y=1, z=1 | x) = p(y=1 | x) p(z=1 | y=1, x)          pCTCVR = pCTR x pCVR
    L = sum_i l(y_i, f(x_i; theta_ctr)) + sum_i l(y_i & z_i, f(x_i; theta_ctr) x f(x_i; theta_cvr))

over every impression i (y the click, z the conversion): the CVR network is never trained on clicked rows alone,
only through the product, which removes the sample selection bias of a CVR trained where clicks were. The two
networks share the embeddings (the one ``FeatureEncoder`` in front) and nothing else: each step has its own MLP
(an extraction level with one task-specific expert, as single-task) and tower. For a longer funnel the product
runs on, P(reach step t) = prod_{s <= t} p(step s | step s-1) (ESM^2's chain).

Outputs (``funnel.py``): a joint step (ctcvr) gets logit(pCTR x pCVR); a conditional step (cvr, observed after a
click) gets logit(pCVR); with ``joint=True`` every step the logit of its product, which the trainer scores against
the joint labels (click x conversion): L(ctr) + L(ctcvr) as above.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .base import ExpertOptions, LevelSettings, MultiTaskNet
from .funnel import check_steps, conditional_view, product_logit
from .registry import register


@register("esmm")
class ESMM(MultiTaskNet):
    Options = ExpertOptions
    needs_funnel = True
    funnel_loss = True

    def __init__(self, d_in: int, tasks: Mapping[str, int], *, funnel: Sequence[tuple[str, bool]] = (),
                 **options: Any) -> None:
        steps = check_steps("esmm", tasks, funnel)
        super().__init__(d_in, tasks, **options)
        self.steps = steps

    @staticmethod
    def levels_of(o: ExpertOptions) -> LevelSettings:
        return LevelSettings(n_shared=0, n_specific=1)  # one MLP per step, over the shared embeddings

    def forward(self, x: torch.Tensor, *, with_aux: bool = False, joint: bool = False):
        out, aux = super().forward(x, with_aux=True)  # {task: logit of p(step | previous step)}
        products, running = {}, None
        for task, _ in self.steps:  # P(reach step t) = P(reach step t-1) p(step t | step t-1)
            running = out[task] if running is None else product_logit(running, out[task])
            products[task] = running
        view = {**out, **products} if joint else conditional_view(out, self.steps, products, out)
        return (view, aux) if with_aux else view
