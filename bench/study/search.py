"""The search stage: one Optuna study per unit, tuned on the validation split only.

This is the only module that calls ``trial.suggest_*``; models and training code never see a ``trial``.
Each trial trains one configuration with ``bench.training.fit.fit`` on the train split, is judged on the
validation split only (``evaluate_test=False``) and may be pruned after any validation epoch. The trials of a
unit are run by ``bench.coordination.trials.search``, which keeps the budget exact across workers.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from datetime import UTC
from typing import Any

from lightning.pytorch.callbacks import Callback

from bench.coordination import identity, trials
from bench.errors import UserError, is_environment_error
from bench.hashing import config_hash
from bench.results import store
from bench.spec.hooks import Hooks
from bench.spec.metrics import HIGHER_IS_BETTER, PRIMARY, objective_label
from bench.spec.space import Param
from bench.spec.study import Study, optuna_class

from .units import RunContext, Unit, unit_data, unit_fixed, unit_space


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
def drawn_by(trial) -> str:
    """What draws ``trial``'s configuration, called before its first ``suggest``: "grid", "random" (a random
    sampler, or TPE in its random start-up) or "tpe". Optuna's TPESampler samples at random while fewer than
    ``n_startup_trials`` of the study's trials are complete or pruned (``TPESampler._get_internal_repr``'s
    trials: states COMPLETE and PRUNED), which is what is counted here."""
    import optuna
    from optuna.trial import TrialState

    sampler = trial.study.sampler
    if isinstance(sampler, optuna.samplers.GridSampler):
        return "grid"
    if not isinstance(sampler, optuna.samplers.TPESampler):
        return "random"
    finished = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    return "random" if len(finished) < sampler._n_startup_trials else "tpe"


def make_objective(
    unit,
    data,
    space: dict[str, Param],
    fixed: dict[str, Any],
    *,
    accelerator: str = "auto",
    hooks: Hooks | None = None,
) -> Callable:
    """The Optuna objective of one (dataset, architecture[, task]) unit: sample ``space`` (the unit's, encoder
    entries included: ``bench.study.units.unit_space``), fit on train, return the best validation objective.
    Per-epoch values, parameter count, seconds and the config go to user attributes."""
    import optuna

    from bench.training.fit import fit

    hooks = hooks or Hooks()

    def objective(trial) -> float:
        config = _start_trial(unit, trial, space, fixed, hooks)
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
            if is_environment_error(err):  # the machine's (a full disk...): the trial is retried, not counted
                record["interrupted"] = f"{type(err).__name__}: {err}"
                raise
            # an error of this configuration (kept as a failed trial that counts toward the budget)
            record["error"] = f"{type(err).__name__}: {err}"
            raise
        finally:
            record.update(seconds=time.perf_counter() - start, n_params=pruning.n_params, curve=pruning.curve,
                          history=pruning.history)
            _end_trial(unit, trial, config, record, hooks)

    return objective


def _start_trial(unit, trial, space: dict[str, Param], fixed: dict[str, Any], hooks: Hooks) -> dict[str, Any]:
    """A trial's configuration: drawn from ``space`` (with who drew it) plus ``fixed``, kept with its hash in the
    trial's user attributes and handed to the ``trial_start`` hooks."""
    if "drawn_by" not in trial.user_attrs:  # a retry keeps its trial's
        trial.set_user_attr("drawn_by", drawn_by(trial))
    config = {**suggest(trial, space), **fixed}
    trial.set_user_attr("config", config)
    trial.set_user_attr("config_hash", config_hash(config))
    for hook in hooks.trial_start:
        hook(unit, trial, config)
    return config


def _end_trial(unit, trial, config: dict[str, Any], record: dict[str, Any], hooks: Hooks) -> None:
    """What a trial's fit left (``record``: state, seconds, size, curve, metrics, error) into its user attributes,
    then to the ``trial_end`` hooks (the per-epoch history too)."""
    # a trial's attributes stay small: the curve is one float per epoch (about 20 bytes each, bounded by
    # max_epochs; non-finite ones included, which Optuna's intermediate values omit), the per-epoch
    # history goes to the hooks only
    for key in ("seconds", "n_params", "curve", "val_metrics", "best_epoch", "error", "user_error"):
        if key in record:
            trial.set_user_attr(key, record[key])
    for hook in hooks.trial_end:
        hook(unit, trial, config, record)


# --- one unit's Optuna study -----------------------------------------------------------------------------
def open_unit_study(study: Study, unit: Unit, storage, data=None):
    """The unit's Optuna study (created on first use), with the spec's pruner and its identity. Its sampler is
    made anew before every trial (``RunContext.new_sampler``: one seed per trial)."""
    import optuna

    pruner_kw = {k: v for k, v in study.pruner.items() if k != "kind"}
    pruner = optuna_class("pruner", study.pruner["kind"])(**pruner_kw)
    if unit.optuna_name in {s.study_name for s in storage.get_all_studies()}:
        # loaded, not created: create_study(load_if_exists=True) would append a failed creation to the journal
        opt = optuna.load_study(storage=storage, study_name=unit.optuna_name, pruner=pruner)
    else:
        opt = optuna.create_study(storage=storage, study_name=unit.optuna_name, direction="maximize",
                                  load_if_exists=True, pruner=pruner)
    if data is not None and opt.metric_names is None:  # optuna-dashboard: "val auc (income)", not "Objective 0"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            opt.set_metric_names([objective_name(unit, unit_data(unit, data))])
    attrs = opt.user_attrs
    if "spec_hash" not in attrs:
        opt.set_user_attr("spec_hash", study.spec_hash)
    if "identity" not in attrs:  # what must not change under this name (checked by identity.check_identity)
        opt.set_user_attr("identity", identity.unit_identity(study, unit, data))
    return opt


def _objective_parts(unit: Unit, data) -> tuple[list, bool]:
    """The tasks a unit's objective averages (one for a main task or a single-task unit) and whether the
    objective is their primary metric negated (every one lower-is-better)."""
    tasks = [t for t in data.tasks if unit.objective in ("mean", t.name)]
    return tasks, not any(HIGHER_IS_BETTER[PRIMARY[t.kind]] for t in tasks)


def objective_name(unit: Unit, data) -> str:
    """What a unit's trials maximise, in words: ``val auc (income)`` for one task (a lower-is-better metric is
    maximised negated: ``-val mse (y1)``), or ``val mean of auc (income), -mse (price)`` over the tasks."""
    def one(task) -> str:
        metric = PRIMARY[task.kind]
        return f"{'' if HIGHER_IS_BETTER[metric] else '-'}{metric} ({task.name})"

    tasks, _ = _objective_parts(unit, data)
    if len(tasks) == 1:
        return f"val {one(tasks[0])}".replace("val -", "-val ")
    return "val mean of " + ", ".join(one(t) for t in tasks)


def objective_display(unit: Unit, data) -> tuple[str, float]:
    """(label, sign) to print a unit's objective value in its metric's own orientation: ``val mse (y1)`` with
    sign -1 (the objective is -MSE), ``val mean auc`` with +1; ``val objective`` when the tasks' metrics differ."""
    tasks, _ = _objective_parts(unit, data)
    return objective_label({t.name: t.kind for t in tasks})


def progress_state(optuna_study) -> tuple[int, float]:
    """(trials counted toward the budget, their seconds)."""
    counted = [t for t in optuna_study.get_trials(deepcopy=False) if trials.counted(t)]
    return len(counted), sum(t.user_attrs.get("seconds", 0.0) for t in counted)


def trial_state(trial) -> str:
    """complete, pruned or failed, as the results store names them."""
    from optuna.trial import TrialState

    return {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(trial.state, "failed")


def mean_trial_seconds(opt) -> float:
    """Mean seconds of the unit's complete trials (0 when none): how long its final stage will take, roughly."""
    seconds = [t.user_attrs.get("seconds", 0.0) for t in opt.get_trials(deepcopy=False)
               if trial_state(t) == "complete"]
    return sum(seconds) / len(seconds) if seconds else 0.0


def _fmt(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.5g}"


def search_unit(ctx: RunContext, unit: Unit, opt, *, position: str, wait: bool) -> None:
    """Run the unit's missing trials with the study's other workers; with ``wait``, return only once none of
    its trials runs anywhere (retrying those whose worker died). ``position`` ("3/14") is for the log line."""
    budget = ctx.study.budget
    udata = unit_data(unit, ctx.data[unit.data_key])
    done, spent = progress_state(opt)
    remaining = budget.trials - done
    time_left = None if budget.timeout is None else budget.timeout - spent
    if not wait and remaining > 0 and (time_left is None or time_left > 0):
        ctx.out(f"[{unit}] search: {done}/{budget.trials} trials done, running {remaining} ({position})")

    label, sign = objective_display(unit, udata)

    def report(s, trial) -> None:
        n, _ = progress_state(s)
        best = s.best_value if any(trial_state(t) == "complete" for t in s.get_trials(deepcopy=False)) else None
        value = trial.value if trial.value is not None else (trial.user_attrs.get("curve") or [None])[-1]
        err = trial.user_attrs.get("error")
        shown = [None if v is None else sign * v for v in (value, best)]  # in the metric's own orientation
        done = sum(progress_state(o)[0] for o in ctx.opts.values())
        counts = ctx.progress.search(done, str(unit), label, shown[1])
        # numbered as the page and the store's rows number it (the configuration's ordinal), from 1
        number = trials.ordinals(s.get_trials(deepcopy=False)).get(trial.number, n - 1) + 1
        ctx.out(f"[{unit}] trial {number}/{budget.trials} {trial_state(trial):<8} {label} {_fmt(shown[0])}  "
                f"best {_fmt(shown[1])}  {trial.user_attrs.get('seconds', 0.0):.1f} s  {counts}"
                + (f"  ({err})" if err else ""))

    objective = make_objective(unit, udata, unit_space(ctx.study, unit, ctx.data), unit_fixed(ctx.study, unit),
                               accelerator=ctx.accelerator, hooks=ctx.hooks)
    trials.search(opt, objective, unit=str(unit), lock_name=f"{ctx.study.name}:{unit.optuna_name}",
                  trials=budget.trials, timeout=budget.timeout, coordinator=ctx.coordinator,
                  new_sampler=lambda n: ctx.new_sampler(unit, n), max_failure_rate=ctx.max_failure_rate, stop=ctx.stop,
                  report=report, out=ctx.out, wait=wait)


def search_rows(ctx: RunContext, unit: Unit, optuna_study) -> list[dict[str, Any]]:
    """Tidy rows of every counted trial of a unit (see ``bench.results.store``)."""
    kinds = {t.name: t.kind for t in ctx.data[unit.data_key].tasks}
    rows = []
    all_trials = optuna_study.get_trials(deepcopy=False)
    number = trials.ordinals(all_trials)  # the configuration's ordinal: the same after an interruption
    for trial in all_trials:
        if not trials.counted(trial):
            continue
        attrs = trial.user_attrs
        state = trial_state(trial)
        curve = [v for v in attrs.get("curve", []) if math.isfinite(v)]
        value = trial.value if state == "complete" else (curve[-1] if state == "pruned" and curve else None)
        base = {
            "study": ctx.study.name, "dataset": unit.dataset, "architecture": unit.label, "target": unit.target,
            "stage": "search", "trial": number[trial.number], "seed": attrs.get("config", {}).get("seed", 0),
            "replicate": unit.replicate, "drawn_by": attrs.get("drawn_by"),
            "status": state, "split": "val", "n_params": attrs.get("n_params"), "seconds": attrs.get("seconds"),
            "epochs": len(attrs.get("curve", [])), "config_hash": attrs.get("config_hash"),
            "config": json.dumps(attrs.get("config", {}), sort_keys=True),
            "git_commit": attrs.get("git_commit") or store.git_commit(),  # trials of older runs: this commit
            "versions": attrs.get("versions") or store.versions(), "hardware": attrs.get("hardware"),
            "wandb_run": attrs.get("wandb_run"), "wandb_url": attrs.get("wandb_url"),
            # Optuna's times are naive local times: stored in UTC, as the final runs' are
            "finished_at": trial.datetime_complete.replace(microsecond=0).astimezone(UTC).isoformat()
            if trial.datetime_complete else None,
        }
        rows.append({**base, "task": "*", "kind": "", "metric": "objective", "value": value})
        for task, metrics in attrs.get("val_metrics", {}).items():
            for metric, v in metrics.items():
                rows.append({**base, "task": task, "kind": kinds.get(task, ""), "metric": metric, "value": v})
    return rows
