"""What the gates and experts of a trained mixture do: a diagnostic pass over a split (the test split, after
training; never in a training step), as tidy rows for the results store.

For every extraction level with gates (OMoE, MMoE, CGC, PLE, and STEM, whose task gates weigh every expert; not
Shared-Bottom, single-task or ESMM, whose levels have no gate, nor AITM, whose transfer attention is no gate),
measured with forward hooks on the level's task gates and expert layers, in evaluation mode, without gradients (the
model and the random state are left as they were):

- ``gate_weight`` (level, task, expert): mean over rows of task k's gate weight on expert n (utilisation); only
  the experts task k's gate weighs (CGC / PLE: its own and the shared ones). Experts are numbered in the level's
  bank order: shared first, then each task's own, in task order.
- ``gate_entropy`` (level, task): mean over rows of H(g(x)) = -sum_i g_i log g_i (0 log 0 = 0), in nats;
  ``gate_entropy_norm``: that divided by log C, C the choices of the gate (1: uniform weights, 0: one expert;
  a top-k gate reaches at most log k / log C).
- ``gate_unused`` (level, task): the share of the C experts whose mean weight is below ``UNUSED_WEIGHT``.
- ``expert_dead_units`` (level, expert; task ``*``): the share of the expert's ReLU units (all its layers) that
  are zero on at least ``DEAD_ROWS`` of the rows: 1 is a collapsed expert.

The thresholds and ``DIAGNOSTIC`` are defined in ``bench.spec.metrics``, which the leaderboard reads too.
Rows carry ``split``, ``task``, ``kind`` ``DIAGNOSTIC``, ``metric``, ``value``, ``level`` and ``expert`` (null
where it does not apply). Every value is a finite number: a non-finite one (weights gone non-finite) is left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bench.architectures.layers import ExtractionLevel
from bench.spec.metrics import DEAD_ROWS, DIAGNOSTIC, UNUSED_WEIGHT

__all__ = ["DEAD_ROWS", "DIAGNOSTIC", "UNUSED_WEIGHT", "diagnose", "gated_levels"]


def gated_levels(model: nn.Module) -> list[ExtractionLevel]:
    """The extraction levels of ``model`` whose task gates have parameters (a choice among experts), in order."""
    return [m for m in model.modules() if isinstance(m, ExtractionLevel) and m.task_gates.proj is not None]


@torch.no_grad()
def diagnose(
    model: nn.Module,
    x: torch.Tensor,
    task_names: list[str],
    *,
    chunk: int = 65_536,
    forward: Callable[[torch.Tensor, torch.Tensor | None], Any] | None = None,
    split: str = "test",
    cat: torch.Tensor | None = None,
) -> list[dict[str, Any]]:
    """The diagnostic rows of ``model`` on the rows ``x`` (``(R, d)``, with their categorical codes ``cat`` when
    the model has a feature encoder; read in chunks of ``chunk``); none for a model without gated levels.
    ``forward(x, cat)`` runs the model on a chunk (default ``model(x)`` or ``model(x, cat)``; a population passes
    ``functional_call`` with one member's weights, which fires the same hooks)."""
    levels = gated_levels(model)
    if not levels or len(x) == 0:
        return []
    if cat is not None and cat.shape[-1] == 0:
        cat = None
    forward = forward or (lambda xb, cb: model(xb) if cb is None else model(xb, cb))
    sums = _Sums(levels)
    handles = sums.hook(levels)
    was_training = model.training
    model.eval()  # no dropout, no gate noise
    try:
        for lo in range(0, len(x), chunk):
            forward(x[lo : lo + chunk], None if cat is None else cat[lo : lo + chunk])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    rows: list[dict[str, Any]] = []
    for i, level in enumerate(levels):
        rows += _level_rows(i, level, task_names, sums, len(x), split)
    return [r for r in rows if math.isfinite(r["value"])]  # no NaN or inf reaches the store


class _Sums:
    """What the forward hooks add up over the chunks, per level: gate weight sums (G, C), entropy sums (G,) and,
    per expert layer, the rows on which each unit is zero (N, h)."""

    def __init__(self, levels: list[ExtractionLevel]) -> None:
        self.gate: list[torch.Tensor | None] = [None] * len(levels)
        self.entropy: list[torch.Tensor | None] = [None] * len(levels)
        self.zeros: list[list[torch.Tensor | None]] = [[None] * len(lv.experts.layers) for lv in levels]

    def hook(self, levels: list[ExtractionLevel]) -> list:
        """Registers the hooks on every level's task gates and expert layers; returns their handles."""
        handles = []
        for i, level in enumerate(levels):
            handles.append(level.task_gates.register_forward_hook(self._on_gate(i)))
            handles += [layer.register_forward_hook(self._on_layer(i, j))
                        for j, layer in enumerate(level.experts.layers)]
        return handles

    def _on_gate(self, i: int):
        def hook(module, args, output) -> None:
            g = output[0].double()  # (G, B, C), G = 1 (tied gates) or T
            gs, ent = g.sum(1), -torch.special.xlogy(g, g).sum(-1).sum(1)  # (G, C), (G,)
            self.gate[i] = gs if self.gate[i] is None else self.gate[i] + gs
            self.entropy[i] = ent if self.entropy[i] is None else self.entropy[i] + ent

        return hook

    def _on_layer(self, i: int, j: int):
        def hook(module, args, output) -> None:
            dead = (output <= 0).sum(1)  # (N, B, h) pre-activations -> (N, h) rows where relu(.) == 0
            self.zeros[i][j] = dead if self.zeros[i][j] is None else self.zeros[i][j] + dead

        return hook


def _level_rows(i: int, level: ExtractionLevel, task_names: list[str], sums: _Sums, n_rows: int,
                split: str) -> list[dict[str, Any]]:
    """The rows of level ``i`` from the sums over ``n_rows`` rows: per task its gate weights, entropy,
    normalised entropy and unused share, then each expert's dead units."""
    base = {"split": split, "kind": DIAGNOSTIC}
    rows: list[dict[str, Any]] = []
    mean_gate = (sums.gate[i] / n_rows).tolist()  # (G, C)
    mean_entropy = (sums.entropy[i] / n_rows).tolist()  # (G,)
    n_choices = level.task_gates.n_choices
    for k, task in enumerate(task_names):
        gate = 0 if len(mean_gate) == 1 else k  # tied gates (OMoE): one gate for every task
        experts = level.choices[k].tolist()  # (C,) expert of each choice of task k's gate
        weights = mean_gate[gate]
        rows += [
            {**base, "task": task, "metric": "gate_weight", "value": w, "level": i, "expert": e}
            for e, w in sorted(zip(experts, weights))
        ]
        rows += [
            {**base, "task": task, "metric": "gate_entropy", "value": mean_entropy[gate], "level": i},
            {
                **base,
                "task": task,
                "metric": "gate_entropy_norm",
                "value": mean_entropy[gate] / math.log(n_choices),
                "level": i,
            },
            {
                **base,
                "task": task,
                "metric": "gate_unused",
                "level": i,
                "value": sum(w < UNUSED_WEIGHT for w in weights) / n_choices,
            },
        ]
    # a unit is dead when zero on >= DEAD_ROWS of the rows; the share of dead units over the expert's layers
    dead = torch.cat([z.double() / n_rows >= DEAD_ROWS for z in sums.zeros[i]], dim=1).double().mean(1)  # (N,)
    rows += [
        {**base, "task": "*", "metric": "expert_dead_units", "value": v, "level": i, "expert": e}
        for e, v in enumerate(dead.tolist())
    ]
    return rows
