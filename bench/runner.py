"""Running a study: the search stage (one Optuna study per unit) and the final stage (best config x seeds).

A *unit* is what gets its own Optuna study and its own tuned configuration: (dataset, architecture) for the
multi-task architectures, and (dataset, single_task, task) for the single-task baselines, each tuned on its own
task's validation metric and trained on that task alone (the MMoE paper's protocol).

Everything resumes: the search runs only the trials missing from each unit's budget, the final stage only the
seeds missing from the store (or stored for a different configuration), and likewise the repeats
(``bench.repeats``). The test split is read only by the final runs and repeats (``final_stage``, or
``bench.final`` which trains a unit's missing seeds as one population, the default).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import workers
from .config import config_hash
from .errors import UserError
from .final import end_seed, stage_path, train_seeds
from .metrics import PRIMARY
from .search import Hooks, make_objective
from .study import Study, optuna_class


@dataclass(frozen=True)
class Unit:
    dataset: str  # the dataset's label in the study
    arch: str
    target: str  # "mean", the study's main task, or (single_task) the one task trained and tuned

    @property
    def optuna_name(self) -> str:
        name = f"{self.dataset}/{self.arch}"
        return f"{name}/{self.target}" if self.arch == "single_task" else name

    def __str__(self) -> str:
        return f"{self.dataset} | {self.arch}" + (f"[{self.target}]" if self.arch == "single_task" else "")


# --- data and units --------------------------------------------------------------------------------------
def load_data(study: Study) -> dict[str, Any]:
    """Every dataset of the study, loaded and checked (tasks, objective) before anything is written."""
    from bench import datasets

    out = {}
    for spec in study.datasets:
        try:
            data = datasets.load(spec.name, **spec.options)
        except (ValueError, FileNotFoundError, OSError) as err:
            if isinstance(err, UserError):
                raise
            raise UserError(f"dataset {spec.label} ({spec.name}): {err}") from None
        if spec.tasks:
            for t in spec.tasks:
                if t not in data.task_names:
                    raise UserError(f"dataset {spec.label}: unknown task {t!r}; valid choices: "
                                    f"{', '.join(data.task_names)}")
            data = data.select_tasks(list(spec.tasks))
        if study.objective != "mean" and study.objective not in data.task_names:
            raise UserError(f"unknown objective {study.objective!r} for dataset {spec.label}; valid choices: "
                            f"{', '.join(['mean', *data.task_names])}")
        out[spec.label] = data
    return out


def units(study: Study, data: dict[str, Any]) -> list[Unit]:
    out = []
    for spec in study.datasets:
        for arch in study.architectures:
            if arch == "single_task":
                out += [Unit(spec.label, arch, t) for t in data[spec.label].task_names]
            else:
                out.append(Unit(spec.label, arch, study.objective))
    return out


def unit_data(unit: Unit, data):
    return data.select_tasks([unit.target]) if unit.arch == "single_task" else data


def unit_fixed(study: Study, unit: Unit) -> dict[str, Any]:
    """Config entries set by the study, not searched: budget, search seed, objective."""
    objective = "mean" if unit.arch == "single_task" else unit.target
    return {"max_epochs": study.budget.max_epochs, "patience": study.budget.patience, "seed": 0,
            "objective": objective}


# --- Optuna plumbing -------------------------------------------------------------------------------------
def open_storage(root: Path, url: str | None, *, heartbeat: int = workers.DEFAULT_HEARTBEAT):
    """The study's own journal file (no server; file locks make it safe for several local processes), or a
    database (``RDBStorage`` with heartbeats) shared by many workers: see ``bench.workers``."""
    return workers.open_storage(root, url, heartbeat=heartbeat)


def _counted(trial) -> bool:
    """Trials that count toward the budget: finished ones, and failures of the configuration itself (not an
    interruption, not a spec mistake)."""
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and "error" in trial.user_attrs


def progress_state(optuna_study) -> tuple[int, float]:
    """(trials counted toward the budget, their seconds)."""
    counted = [t for t in optuna_study.get_trials(deepcopy=False) if _counted(t)]
    return len(counted), sum(t.user_attrs.get("seconds", 0.0) for t in counted)


def open_unit_study(study: Study, unit: Unit, storage, n_done: int | None = None):
    import optuna

    sampler_kw = {k: v for k, v in study.sampler.items() if k != "kind"}
    pruner_kw = {k: v for k, v in study.pruner.items() if k != "kind"}
    opt = optuna.create_study(storage=storage, study_name=unit.optuna_name, direction="maximize",
                              load_if_exists=True, pruner=optuna_class("pruner", study.pruner["kind"])(**pruner_kw))
    # a resumed unit continues the sampler's random stream where it left off instead of repeating its draws
    done = len(opt.get_trials(deepcopy=False))
    sampler_kw["seed"] = int(sampler_kw.get("seed", 0)) + done
    opt.sampler = optuna_class("sampler", study.sampler["kind"])(**sampler_kw)
    attrs = opt.user_attrs
    if "spec_hash" not in attrs:
        opt.set_user_attr("spec_hash", study.spec_hash)
    if "identity" not in attrs:  # what must not change under this name (checked by workers.check_identity)
        opt.set_user_attr("identity", workers.unit_identity(study, unit))
    return opt


def _state(trial) -> str:
    from optuna.trial import TrialState

    return {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(trial.state, "failed")


def search_rows(study: Study, unit: Unit, data, optuna_study) -> list[dict[str, Any]]:
    """Tidy rows of every counted trial of a unit (see ``bench.store``)."""
    from .store import git_commit, versions

    kinds = {t.name: t.kind for t in data.tasks}
    rows = []
    for trial in optuna_study.get_trials(deepcopy=False):
        if not _counted(trial):
            continue
        attrs = trial.user_attrs
        state = _state(trial)
        curve = [v for v in attrs.get("curve", []) if math.isfinite(v)]
        value = trial.value if state == "complete" else (curve[-1] if state == "pruned" and curve else None)
        base = {
            "study": study.name, "dataset": unit.dataset, "architecture": unit.arch, "target": unit.target,
            "stage": "search", "trial": trial.number, "seed": attrs.get("config", {}).get("seed", 0),
            "status": state, "split": "val", "n_params": attrs.get("n_params"), "seconds": attrs.get("seconds"),
            "epochs": len(attrs.get("curve", [])), "config_hash": attrs.get("config_hash"),
            "config": json.dumps(attrs.get("config", {}), sort_keys=True), "git_commit": git_commit(),
            "versions": versions(), "hardware": attrs.get("hardware"),
            "wandb_run": attrs.get("wandb_run"), "wandb_url": attrs.get("wandb_url"),
            "finished_at": trial.datetime_complete.replace(microsecond=0).isoformat()
            if trial.datetime_complete else None,
        }
        rows.append({**base, "task": "*", "kind": "", "metric": "objective", "value": value})
        for task, metrics in attrs.get("val_metrics", {}).items():
            for metric, v in metrics.items():
                rows.append({**base, "task": task, "kind": kinds.get(task, ""), "metric": metric, "value": v})
    return rows


# --- the final stage -------------------------------------------------------------------------------------
def final_stage(data, arch: str, config: dict[str, Any], seeds: list[int], *, accelerator: str = "auto",
                hooks: Hooks | None = None, unit: Unit | None = None) -> list[dict[str, Any]]:
    """Retrain ``config`` once per seed (config ``seed`` = the seed) and evaluate validation and, once, test.

    Returns tidy rows (split, task, kind, metric, value, seed, n_params, seconds, epochs, config_hash, config);
    the caller adds the study's columns. A population trainer that fits all seeds as one stacked model can
    replace this function: same arguments, same rows.
    """
    from .store import now
    from .train import fit

    hooks = hooks or Hooks()
    kinds = {t.name: t.kind for t in data.tasks}
    rows = []
    for seed in seeds:
        cfg = {**config, "seed": seed}
        for hook in hooks.final_start:
            hook(unit, seed, cfg)
        result = fit(arch, data, cfg, evaluate_test=True, accelerator=accelerator)
        rows += end_seed(hooks, unit, result, seed, config, cfg, kinds, now())
    return rows


# --- the whole study -------------------------------------------------------------------------------------
def _fmt(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.5g}"


def run_study(
    study: Study,
    runs_dir: Path,
    *,
    storage: str | None = None,
    accelerator: str = "auto",
    hooks: Hooks | None = None,
    out: Callable[[str], None] = print,
    fresh: bool = False,
    prepare_only: bool = False,
    max_failure_rate: float = 0.5,
    heartbeat: int = workers.DEFAULT_HEARTBEAT,
) -> Path:
    """Run what is missing of ``study``, as one of possibly many workers (``bench.workers``); returns its store
    directory ``runs_dir/<study>``. ``fresh`` moves an existing ``runs_dir/<study>`` aside first."""
    import optuna

    from . import store
    from .train import quiet_lightning

    quiet_lightning()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    hooks = hooks or Hooks()
    data = load_data(study)  # all checks pass before anything is written
    root = Path(runs_dir) / study.name
    all_units = units(study, data)
    # the storage is opened, and the stored studies' identities checked, before anything is written
    storage_obj = open_storage(root, storage, heartbeat=heartbeat) if storage else None
    if fresh:
        if storage:
            raise UserError("--fresh moves runs/<study>/ aside and works with the embedded storage only; with "
                            "--storage, give the study a new name")
        moved = workers.move_aside(root)
        if moved is not None:
            out(f"--fresh: moved {root} to {moved}")
    elif root.exists() or storage_obj is not None:
        probe = storage_obj if storage_obj is not None else (
            open_storage(root, None) if (root / "optuna.journal").exists() else None)
        if probe is not None:
            workers.check_identity(study, all_units, probe, root, url=storage)
    root.mkdir(parents=True, exist_ok=True)
    if storage_obj is None:
        storage_obj = open_storage(root, None)
    store.write_meta(root, study.meta())
    if study.path is not None:
        shutil.copyfile(study.path, root / "spec.toml")
    if prepare_only:  # --jobs N: checked and prepared here, trained by the workers
        return root
    hw = store.hardware(accelerator)
    budget = study.budget

    def note_hardware(unit, trial, config):
        trial.set_user_attr("hardware", hw)

    hooks = replace(hooks, trial_start=[note_hardware, *hooks.trial_start])
    coordinator = workers.Coordinator(root, storage_obj)
    stop = workers.StopFlag().install()
    sampler_kw = {k: v for k, v in study.sampler.items() if k != "kind"}
    sampler_cls = optuna_class("sampler", study.sampler["kind"])

    def new_sampler(n_trials: int):
        # one seed per trial (sampler seed + trials before it): distinct draws whichever worker asks
        return sampler_cls(**{**sampler_kw, "seed": int(sampler_kw.get("seed", 0)) + n_trials})

    def search_unit(i: int, unit: Unit, opt, *, wait: bool) -> None:
        udata = unit_data(unit, data[unit.dataset])
        done, spent = progress_state(opt)
        remaining = budget.trials - done
        time_left = None if budget.timeout is None else budget.timeout - spent
        if not wait and remaining > 0 and (time_left is None or time_left > 0):
            out(f"[{unit}] search: {done}/{budget.trials} trials done, running {remaining} ({i}/{len(all_units)})")

        def report(s, trial, unit=unit):
            n, _ = progress_state(s)
            best = s.best_value if any(_state(t) == "complete" for t in s.get_trials(deepcopy=False)) else None
            value = trial.value if trial.value is not None else (trial.user_attrs.get("curve") or [None])[-1]
            err = trial.user_attrs.get("error")
            out(f"[{unit}] trial {n}/{budget.trials} {_state(trial):<8} value {_fmt(value)}  "
                f"best {_fmt(best)}  {trial.user_attrs.get('seconds', 0.0):.1f} s" + (f"  ({err})" if err else ""))

        objective = make_objective(unit, udata, study.search[unit.arch], unit_fixed(study, unit),
                                   accelerator=accelerator, hooks=hooks)
        workers.search(opt, objective, unit=str(unit), lock_name=f"{study.name}:{unit.optuna_name}",
                       trials=budget.trials, timeout=budget.timeout, coordinator=coordinator,
                       new_sampler=new_sampler, max_failure_rate=max_failure_rate, stop=stop, report=report,
                       out=out, wait=wait)

    failed_finals: list[str] = []
    try:
        # 1. every unit's search, without waiting for other workers' trials
        opts = {}
        for i, unit in enumerate(all_units, 1):
            opts[unit] = opt = open_unit_study(study, unit, storage_obj)
            search_unit(i, unit, opt, wait=False)
        # 2. per unit: wait until no trial runs anywhere (retrying what others left), then train the final seeds
        # no other worker has claimed; seeds claimed elsewhere are left for step 3, so that parallel workers
        # train different units' final stages side by side instead of queueing on one unit
        later: list[tuple[Unit, Any, str, list[int] | None]] = []
        stages: list[tuple[str, list[int] | None]] = [("final", None)]
        if study.repeats:
            from .repeats import repeat_seeds

            stages.append(("repeat", repeat_seeds(study.repeats)))
        # Longest first (by the unit's mean seconds per complete trial): with several workers, the slowest final
        # stage starts first instead of running alone at the end.
        order = sorted(enumerate(all_units, 1), key=lambda iu: -_mean_trial_seconds(opts[iu[1]]))
        for i, unit in order:
            opt = opts[unit]
            search_unit(i, unit, opt, wait=True)
            udata = unit_data(unit, data[unit.dataset])
            rows = search_rows(study, unit, udata, opt)
            if rows:
                store.write_atomic(store.frame(rows), store.search_path(root, unit.dataset, unit.arch, unit.target))
            for stage, seeds in stages:  # repeat: trainability runs of the best configuration (bench.repeats)
                failed, busy = _final_unit(study, unit, udata, opt, root, hw, accelerator=accelerator, hooks=hooks,
                                           coordinator=coordinator, stop=stop, out=out, stage=stage, seeds=seeds)
                failed_finals += failed
                if busy:
                    later.append((unit, opt, stage, seeds))
        # 3. seeds other workers were training: wait for them (and train one whose worker died)
        for unit, opt, stage, seeds in later:
            udata = unit_data(unit, data[unit.dataset])
            failed, _ = _final_unit(study, unit, udata, opt, root, hw, accelerator=accelerator, hooks=hooks,
                                    coordinator=coordinator, stop=stop, out=out, stage=stage, seeds=seeds, wait=True)
            failed_finals += failed
    finally:
        stop.restore()
        coordinator.close()
    if failed_finals:
        raise UserError(f"{len(failed_finals)} final run(s) failed and were not stored: {'; '.join(failed_finals)}")
    return root


def _mean_trial_seconds(opt) -> float:
    seconds = [t.user_attrs.get("seconds", 0.0) for t in opt.get_trials(deepcopy=False) if _state(t) == "complete"]
    return sum(seconds) / len(seconds) if seconds else 0.0


def _final_unit(study: Study, unit: Unit, udata, opt, root: Path, hw: str, *, accelerator: str, hooks: Hooks,
                coordinator, stop, out: Callable[[str], None], stage: str = "final",
                seeds: list[int] | None = None, wait: bool = False) -> tuple[list[str], list[int]]:
    """The final stage of one unit: the best configuration retrained with every final seed not yet stored for
    it. Each (unit, seed) is claimed, so parallel workers never train the same one; its rows are kept in the
    Optuna storage too (study user attribute ``final:seed-<k>``), so workers on other machines write the same
    parquet file without training it again. Returns the failures (``"unit seed k: error"``) and the seeds
    another worker holds: ``wait=False`` leaves those to a later call with ``wait=True``, which waits for them
    (and trains one whose worker died).

    The seeds this worker claims are trained together as one population (``bench.final``) unless the study
    says ``population = false``. ``stage="repeat"`` with ``seeds``: the repeated runs (``bench.repeats``)."""
    import polars as pl

    from . import store
    from .workers import Terminated

    complete = [t for t in opt.get_trials(deepcopy=False) if _state(t) == "complete"]
    if not complete:
        out(f"[{unit}] no complete trial: skipping the final stage")
        return [], []
    best = opt.best_trial
    config = best.user_attrs["config"]
    chash = config_hash(config)
    seeds = seeds or study.final_seeds
    claim_prefix = f"{study.name}:{unit.optuna_name}:{stage}"

    def path(seed: int) -> Path:
        return stage_path(root, stage, unit.dataset, unit.arch, unit.target, seed)

    def stored(seed: int) -> bool:
        old = pl.read_parquet(path(seed)) if path(seed).is_file() else None
        if old is not None and old["config_hash"].unique().to_list() == [chash]:
            return True
        kept = opt.user_attrs.get(f"{stage}:seed-{seed}")
        if kept and kept.get("config_hash") == chash:  # trained by another worker (maybe on another machine)
            store.write_atomic(store.frame(kept["rows"]), path(seed))
            return True
        return False

    def train(batch: list[int]) -> list[str]:
        stop.check()
        try:
            rows = train_seeds(udata, unit.arch, config, batch, population=study.population,
                               accelerator=accelerator, hooks=hooks, unit=unit)
        except (SystemExit, KeyboardInterrupt):
            raise Terminated(stop.signum or 2) from None
        except UserError:
            raise
        except Exception as err:  # e.g. a non-finite loss with this seed: reported, never stored
            if len(batch) > 1:  # one bad seed must not cost the others: train them one by one
                out(f"[{unit}] {stage} seeds {batch[0]}..{batch[-1]} as a population failed "
                    f"({type(err).__name__}: {err}); training them one at a time")
                return [e for seed in batch for e in train([seed])]
            out(f"[{unit}] {stage} seed {batch[0]} failed: {type(err).__name__}: {err}")
            return [f"{unit} {'' if stage == 'final' else stage + ' '}seed {batch[0]}: {type(err).__name__}: {err}"]
        common = {"study": study.name, "dataset": unit.dataset, "architecture": unit.arch,
                  "target": unit.target, "stage": stage, "trial": best.number,
                  "git_commit": store.git_commit(), "versions": store.versions(), "hardware": hw}
        for seed in batch:
            seed_rows = [r for r in rows if r["seed"] == seed]
            df = store.frame([{**r, **common} for r in seed_rows])
            opt.set_user_attr(f"{stage}:seed-{seed}", {"config_hash": chash, "rows": df.to_dicts()})
            store.write_atomic(df, path(seed))
            test = df.filter(pl.col("split") == "test")
            summary = ", ".join(f"{r['task']} {r['metric']}={r['value']:.4f}" for r in test.iter_rows(named=True)
                                if r["metric"] == PRIMARY[r["kind"]])
            if stage == "final":
                out(f"[{unit}] final seed {seed} ({seeds.index(seed) + 1}/{len(seeds)}): "
                    f"test {summary}  {seed_rows[0]['seconds']:.1f} s")
        if stage != "final":  # many runs: one line
            test = pl.DataFrame([r for r in rows if r["split"] == "test" and r["metric"] == PRIMARY[r["kind"]]])
            medians = test.group_by("task", "metric", maintain_order=True).agg(pl.col("value").median())
            summary = ", ".join(f"{t} {m}={v:.4f}" for t, m, v in medians.iter_rows())
            out(f"[{unit}] {stage} seeds {batch[0]}..{batch[-1]} ({len(batch)} runs, up to "
                f"{seeds.index(batch[-1]) + 1}/{len(seeds)}): test median {summary}  "
                f"{max(r['seconds'] for r in rows):.1f} s")
        return []

    failures, busy = [], []
    with contextlib.ExitStack() as claims:  # first pass: claim the seeds no other worker is training
        mine = []
        for seed in seeds:
            if stored(seed):
                continue
            if not claims.enter_context(coordinator.claim(f"{claim_prefix}:{seed}")):
                busy.append(seed)
            elif not stored(seed):
                mine.append(seed)
        if mine:  # held until they are stored: trained together, as one population
            failures += train(mine)
    if not wait:
        return failures, busy
    for seed in busy:  # wait for the others' seeds (and train one whose worker died)
        with coordinator.wait_claim(f"{claim_prefix}:{seed}"):
            if not stored(seed):
                failures += train([seed])
    return failures, []
