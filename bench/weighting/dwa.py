"""Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019, eq. 7): weights from the rate of change of each
task's loss over the last two epochs.

    w_k(t) = K exp(r_k(t-1) / T) / sum_i exp(r_i(t-1) / T),    r_k(t-1) = L_k(t-1) / L_k(t-2)

with ``L_k`` the epoch's mean loss of task k, K the number of tasks and T the temperature (``dwa_temperature``,
2 in the paper). w_k = 1 for the first two epochs. A task whose loss falls more slowly gets more weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.errors import UserError

from .base import ALL, Weighting, register


@register("dwa")
class DWA(Weighting):
    """Weights from each task's loss descent over the last two epochs (Liu, Johns & Davison, CVPR 2019)."""

    @dataclass
    class Options:
        dwa_temperature: float = 2.0

    def __init__(self, kinds: list[str], dwa_temperature: float = 2.0) -> None:
        super().__init__(kinds)
        if not dwa_temperature > 0:
            raise UserError(f"dwa_temperature must be > 0, got {dwa_temperature}")
        self.temperature = float(dwa_temperature)
        nan = torch.full((1, self.n_tasks), float("nan"))
        # (S, T) each: the mean losses of the last two epochs (NaN before there are any), the current weights
        self.register_buffer("last", nan.clone(), persistent=False)
        self.register_buffer("before", nan.clone(), persistent=False)
        self.register_buffer("w", torch.ones(1, self.n_tasks), persistent=False)

    def options_key(self) -> tuple:
        return (("dwa_temperature", self.temperature),)

    def weights(self, rows: slice = ALL) -> torch.Tensor:
        return self.w[rows]

    @torch.no_grad()
    def epoch_end(self, mean_losses: torch.Tensor) -> None:
        self.before.copy_(self.last)
        self.last.copy_(mean_losses.detach().to(self.last))
        r = self.last / self.before  # r_k(t-1) = L_k(t-1) / L_k(t-2); NaN until two epochs are known
        w = self.n_tasks * torch.softmax(r / self.temperature, dim=-1)
        # a member with fewer than two epochs, or a zero or non-finite loss, keeps its previous weights
        ok = torch.isfinite(w).all(-1, keepdim=True)
        self.w.copy_(torch.where(ok, w, self.w))
