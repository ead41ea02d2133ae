"""Shared and Task-specific EMbeddings, STEM-Net (Su et al., AAAI 2024, section 4).

Every categorical field has T + 1 embeddings: one per task and a shared one (``FeatureEncoder`` with ``sets`` =
T + 1, built by ``registry.create``; the numeric columns go beside each). Task t's experts read its own embeddings
E_t, the shared experts the shared ones E_s; task t's gate reads both and weighs every expert, the other tasks'
own experts through a stop-gradient (All Forward Task-specific Backward, AFTB):

    f^t(x) = sum_{n in own(t) + shared} g^t_n(x) E_n(x) + sum_{n of tasks j != t} g^t_n(x) sg(E_n(x))
    g^t(x) = softmax(W_t [E_t(x) + E_s(x)]),   y_t = tower_t(f^t(x))

So the other tasks' knowledge reaches task t forward, while task t's loss trains only its own embeddings and
experts, the shared ones, its gate and its tower: task j's embeddings get task j's gradient alone. One extraction
level (``ExtractionLevel(all_forward=True)``); the gates are linear softmax gates as MMoE's here (the authors' code
uses MLP gates) and may be noisy top-k (``gate_top_k``). The gate input is the sum of the two encodings, the
numeric columns counted twice, which a linear gate absorbs in its weights.

Only on data with embedded categorical fields: without them there is nothing task-specific to embed (a one-line
error from ``registry.create``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .base import GatedOptions, widths
from .layers import ExtractionLevel, Towers
from .registry import register


@dataclass
class STEMOptions(GatedOptions):
    n_shared: int = 1  # shared experts (reading the shared embeddings)
    n_specific: int = 1  # experts of each task (reading its own embeddings)

    def gate_choices(self) -> tuple[int, str]:
        # a task's gate weighs n_shared + T n_specific experts; T >= 1 is not known here, so the bound of one task
        return self.n_shared + self.n_specific, (f"n_shared + n_specific = {self.n_shared} + {self.n_specific}, "
                                                 "the experts of one task and the shared ones")


@register("stem")
class STEM(nn.Module):
    Options = STEMOptions
    task_embeddings = True  # registry.create: T + 1 sets of embeddings in front

    def __init__(self, d_in: int, tasks: Mapping[str, int], **options: Any) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("at least one task is needed")
        o = self.Options(**options)
        gating = o.gating()
        self.task_names = list(tasks)
        self.has_aux_loss = gating.sparse and gating.aux_weight > 0
        ew = widths(o.expert_units, o.expert_layers)
        self.level = ExtractionLevel(d_in, len(tasks), o.n_shared, o.n_specific, ew, o.dropout, gating=gating,
                                     all_forward=True)
        self.towers = Towers(ew[-1], list(tasks), list(tasks.values()), widths(o.tower_units, o.tower_layers),
                             o.dropout)

    def forward(self, h: torch.Tensor, *, with_aux: bool = False):
        """``h (T + 1, B, d)``: each task's encoding, then the shared one -> ``{task: logits}``."""
        own, shared = h[:-1], h[-1]  # (T, B, d), (B, d)
        task_out, _, aux = self.level((own, shared, own + shared))  # gate t reads E_t + E_s
        out = self.towers(task_out)
        if not with_aux:
            return out
        return out, aux if aux is not None else h.new_zeros(())
