"""The hooks protocol: where a search trial and a final run start and end.

Defined here, below both, so that the study stages (``bench.study``) call hooks and experiment tracking
(``bench.tracking``) implements them without either importing the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Hooks:
    """Where a trial and a final run start and end: the place for experiment tracking (e.g. W&B).

    ``trial_start(unit, trial, config)``, ``trial_end(unit, trial, config, record)`` (record: state, seconds,
    n_params, curve, history (per epoch: train_loss, val metrics), and val_metrics or error);
    ``final_start(unit, seed, config)``, ``final_end(unit, seed, config, rows, record)`` (rows: the tidy rows
    about to be stored, which a hook may extend with store columns such as ``wandb_run``; record: history,
    best_epoch, val_objective, state: the best-epoch weights). ``bench.tracking.Tracker.hooks()`` is the W&B
    implementation.
    """

    trial_start: list[Callable[..., None]] = field(default_factory=list)
    trial_end: list[Callable[..., None]] = field(default_factory=list)
    final_start: list[Callable[..., None]] = field(default_factory=list)
    final_end: list[Callable[..., None]] = field(default_factory=list)
