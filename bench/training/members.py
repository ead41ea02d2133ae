"""A population's members (``bench.training.population``): their configs, one per member (``seed_configs``), what
they must share (``check_configs``), how many one vmap call runs (``default_members_per_call``), and each member's
own part of the training (``Member``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from bench import architectures
from bench.datasets import BatchLoader
from bench.errors import UserError
from bench.spec.config import TrainConfig, split_config

from .rules import BestEpoch, EarlyStop

CPU_GROUP = 8


def default_members_per_call(device: torch.device, n_members: int) -> int:
    """How many members one vmap call runs: all of them on a GPU (one kernel launch serves S members); at most
    ``CPU_GROUP`` on a CPU, where stacked temporaries S times larger than one model's fall out of cache and
    per-call overhead is already small next to the arithmetic."""
    return n_members if device.type == "cuda" else min(n_members, CPU_GROUP)


def seed_configs(config: dict[str, Any], seeds) -> list[dict[str, Any]]:
    """One config per seed: ``config`` with ``seed`` replaced (the repeated-run population)."""
    return [{**config, "seed": int(s)} for s in seeds]


@dataclass
class Member:
    """One member's own part: its config, data order and random draws, and the rules of its run as ``MTLSystem``
    follows them for one fit (``bench.training.rules``)."""

    config: dict[str, Any]
    train: TrainConfig
    loader: BatchLoader  # only its ``permutation(epoch)`` is used: the data order ``fit`` would see
    generator: torch.Generator  # its dropout masks and gate noise, seeded with its own seed (as fit seeds torch)
    record: BestEpoch = field(default_factory=BestEpoch)  # history; best epoch, state: its (P,) row of the buffer
    stop: EarlyStop | None = None
    seconds: float = 0.0
    error: str | None = None  # why the member failed (a non-finite training loss, no finite validation epoch)

    def __post_init__(self) -> None:
        self.stop = EarlyStop(self.train.patience)


def check_configs(arch: str, configs: list[dict[str, Any]]) -> list[TrainConfig]:
    """Split every config; members must share everything that fixes shapes or batch boundaries."""
    if not configs:
        raise UserError("a population needs at least one config")
    defaults = architectures.options(arch)
    trains, shapes = [], []
    for cfg in configs:
        train, opts = split_config(arch, dict(cfg))
        trains.append(train)
        shapes.append({**defaults, **opts})
    for i, (train, opts) in enumerate(zip(trains[1:], shapes[1:]), start=1):
        for key, value in opts.items():
            if value != shapes[0][key]:
                raise UserError(
                    f"population members must share the architecture options; {key} is {shapes[0][key]!r} "
                    f"in config 0 but {value!r} in config {i} (members may differ in: seed, lr, weight_decay, "
                    "optimizer, patience, max_epochs, objective, eval_batch_size)"
                )
        if train.batch_size != trains[0].batch_size:
            raise UserError(
                f"population members must share batch_size; it is {trains[0].batch_size} in config 0 but "
                f"{train.batch_size} in config {i}"
            )
    return trains
