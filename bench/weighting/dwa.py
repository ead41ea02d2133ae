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

from .base import Weighting, register


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
        self.history: list[torch.Tensor] = []  # mean losses of the last two epochs, oldest first
        self.register_buffer("w", torch.ones(self.n_tasks), persistent=False)

    def weights(self) -> torch.Tensor:
        return self.w

    def epoch_end(self, mean_losses: torch.Tensor) -> None:
        self.history = [*self.history, mean_losses.detach().float().cpu()][-2:]
        if len(self.history) == 2:
            r = self.history[1] / self.history[0]  # r_k(t-1) = L_k(t-1) / L_k(t-2)
            w = self.n_tasks * torch.softmax(r / self.temperature, dim=0)
            if bool(torch.isfinite(w).all()):  # a zero or non-finite loss keeps the previous weights
                self.w.copy_(w.to(self.w))
