"""The search stage: built-in search spaces, the Optuna objective and the pruning callback.

This is the only module that calls ``trial.suggest_*``; models and training code never see a ``trial``.
Each trial trains one configuration with ``bench.train.fit`` on the train split, is judged on the validation
split only (``evaluate_test=False``) and may be pruned after any validation epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lightning.pytorch.callbacks import Callback

from .config import config_hash
from .errors import UserError
from .study import Param

# --- built-in search spaces -------------------------------------------------------------------------------
_COMMON: dict[str, Param] = {
    "lr": Param(low=1e-4, high=1e-2, log=True),
    "batch_size": Param(choices=(128, 256, 512)),
    "weight_decay": Param(low=1e-7, high=1e-3, log=True),
    "dropout": Param(low=0.0, high=0.3),
    "tower_units": Param(choices=(16, 32, 64)),
    "tower_layers": Param(low=1, high=2),
}
_EXPERTS = {"expert_units": Param(choices=(32, 64, 128)), "expert_layers": Param(low=1, high=2)}
_DEFAULTS: dict[str, dict[str, Param]] = {
    "single_task": {**_EXPERTS},
    "shared_bottom": {"expert_units": Param(choices=(64, 128, 256)), "expert_layers": Param(low=1, high=2)},
    "cross_stitch": {"column_units": Param(choices=(32, 64, 128)), "column_layers": Param(low=1, high=3)},
    "omoe": {**_EXPERTS, "n_experts": Param(low=2, high=8)},
    "mmoe": {**_EXPERTS, "n_experts": Param(low=2, high=8)},
    "cgc": {**_EXPERTS, "n_shared": Param(low=1, high=3), "n_specific": Param(low=1, high=3)},
    "ple": {**_EXPERTS, "n_levels": Param(low=1, high=3), "n_shared": Param(low=1, high=3),
            "n_specific": Param(low=1, high=3)},
}


def default_space(arch: str) -> dict[str, Param]:
    """Built-in search space of ``arch``: learning rate, batch size, weight decay, dropout, tower and
    expert widths and depths, and the architecture's own counts (experts, PLE levels)."""
    from bench import architectures

    opts = architectures.options(arch)
    common = {k: v for k, v in _COMMON.items() if k in opts or k in ("lr", "batch_size", "weight_decay")}
    return {**common, **_DEFAULTS.get(arch, {})}


def suggest(trial, space: dict[str, Param]) -> dict[str, Any]:
    """One configuration drawn from ``space`` (fixed entries are set as user attributes' config, not sampled)."""
    config: dict[str, Any] = {}
    for name, p in space.items():
        if p.kind == "fixed":
            config[name] = p.value
        elif p.kind == "categorical":
            config[name] = trial.suggest_categorical(name, list(p.choices))
        elif p.kind == "int":
            config[name] = trial.suggest_int(name, p.low, p.high, step=p.step or 1, log=p.log)
        else:
            config[name] = trial.suggest_float(name, float(p.low), float(p.high), step=p.step, log=p.log)
    return config


# --- pruning ---------------------------------------------------------------------------------------------
class OptunaPruning(Callback):
    """Reports ``pl_module.last_objective`` (the validation objective, higher is better) after each validation
    epoch and raises ``optuna.TrialPruned`` when the pruner says so. Also keeps the curve and parameter count,
    which the objective stores on the trial even when it is pruned, and the system's per-epoch history (for
    tracking hooks)."""

    def __init__(self, trial) -> None:
        self.trial = trial
        self.curve: list[float] = []
        self.n_params: int | None = None
        self.history: list[dict[str, Any]] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        self.n_params = sum(p.numel() for p in pl_module.model.parameters() if p.requires_grad)
        self.history = pl_module.history  # the system's own list: epochs up to a pruning stay in it

    def on_validation_end(self, trainer, pl_module) -> None:
        import optuna

        if trainer.sanity_checking or pl_module.last_objective is None:
            return
        value = float(pl_module.last_objective)
        self.curve.append(value)
        if not math.isfinite(value):
            return  # early stopping's check_finite ends a diverged run; never report -inf to the pruner
        self.trial.report(value, step=trainer.current_epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {trainer.current_epoch} with {value:.6g}")


# --- the objective ---------------------------------------------------------------------------------------
@dataclass
class Hooks:
    """Where a trial and a final run start and end: the place for experiment tracking (e.g. W&B).

    ``trial_start(unit, trial, config)``, ``trial_end(unit, trial, config, record)`` (record: state, seconds,
    n_params, curve, history (per epoch: train_loss, val metrics), and val_metrics or error);
    ``final_start(unit, seed, config)``, ``final_end(unit, seed, config, rows, record)`` (rows: the tidy rows
    about to be stored, which a hook may extend with store columns such as ``wandb_run``; record: history,
    best_epoch). ``bench.tracking.Tracker.hooks()`` is the W&B implementation.
    """

    trial_start: list[Callable[..., None]] = field(default_factory=list)
    trial_end: list[Callable[..., None]] = field(default_factory=list)
    final_start: list[Callable[..., None]] = field(default_factory=list)
    final_end: list[Callable[..., None]] = field(default_factory=list)


def make_objective(
    unit,
    data,
    space: dict[str, Param],
    fixed: dict[str, Any],
    *,
    accelerator: str = "auto",
    hooks: Hooks | None = None,
) -> Callable:
    """The Optuna objective of one (dataset, architecture[, task]) unit: sample, fit on train, return the best
    validation objective. Per-epoch values, parameter count, seconds and the config go to user attributes."""
    import optuna

    from bench.train import fit

    hooks = hooks or Hooks()

    def objective(trial) -> float:
        config = {**suggest(trial, space), **fixed}
        trial.set_user_attr("config", config)
        trial.set_user_attr("config_hash", config_hash(config))
        for hook in hooks.trial_start:
            hook(unit, trial, config)
        pruning = OptunaPruning(trial)
        start = time.perf_counter()
        record: dict[str, Any] = {"state": "failed"}
        try:
            result = fit(unit.arch, data, config, evaluate_test=False, accelerator=accelerator, callbacks=[pruning])
            if not math.isfinite(result.val_objective):
                raise FloatingPointError("non-finite validation objective (diverged)")
            record.update(state="complete", val_metrics=result.val_metrics, best_epoch=result.best_epoch)
            return result.val_objective
        except optuna.TrialPruned:
            record["state"] = "pruned"
            raise
        except UserError as err:
            # a mistake in the spec (e.g. an invalid fixed value): the runner stops and reports it
            record["user_error"] = str(err)
            raise
        except Exception as err:
            # an error of this configuration (kept as a failed trial that counts toward the budget)
            record["error"] = f"{type(err).__name__}: {err}"
            raise
        finally:
            record.update(seconds=time.perf_counter() - start, n_params=pruning.n_params, curve=pruning.curve,
                          history=pruning.history)
            for key in ("seconds", "n_params", "curve", "val_metrics", "best_epoch", "error", "user_error"):
                if key in record:
                    trial.set_user_attr(key, record[key])
            for hook in hooks.trial_end:
                hook(unit, trial, config, record)

    return objective
