"""Running a study, top-down: prepare (check everything, then write the metadata), search every unit, then
train every unit's final seeds (and repeats) with its best configuration.

Everything resumes: the search runs only the trials missing from each unit's budget, the final stage only the
seeds missing from the store (or stored for a different configuration), and likewise the repeats. The test
split is read only by the final runs and repeats (``bench.study.final``). Each ``bench run`` process is one
worker; several share a study through its Optuna storage (``bench.coordination``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.coordination import identity
from bench.coordination.coordinator import Coordinator
from bench.coordination.signals import StopFlag
from bench.coordination.storage import DEFAULT_HEARTBEAT, open_storage, repair_journal
from bench.errors import UserError
from bench.paths import component
from bench.results import store
from bench.spec.hooks import Hooks
from bench.spec.study import Study

from .final import final_unit, keep_best_models, stored_runs
from .progress import Progress
from .search import mean_trial_seconds, open_unit_study, progress_state, search_rows, search_unit
from .units import RunContext, Unit, load_data, units


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
    heartbeat: int = DEFAULT_HEARTBEAT,
    keep_models: str = "all",
    progress_bar: bool = False,
) -> Path:
    """Run what is missing of ``study``, as one of possibly many workers; returns its store directory
    ``runs_dir/<study>``. ``fresh`` moves an existing ``runs_dir/<study>`` aside first; ``prepare_only``
    (``--jobs N``) checks and prepares the study for the workers without training. ``keep_models``: the final
    runs' models kept under ``runs_dir/<study>/models/`` (all, best: the best seed per unit, none);
    ``progress_bar``: draw the study's progress as a bar (a terminal) instead of only in the log lines."""
    import optuna

    from bench.training.devices import hardware
    from bench.training.fit import quiet_lightning

    quiet_lightning()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    root = Path(runs_dir) / component(study.name, "study name")
    hw = hardware(accelerator)  # stored with every row; checks BENCH_GEMM before anything is written
    data = load_data(study)  # every check passes before anything is written
    all_units = units(study, data)
    storage_obj = prepare(study, root, data, all_units, storage, heartbeat=heartbeat, fresh=fresh, out=out)
    if prepare_only:
        return root

    def note_provenance(unit, trial, config) -> None:  # what ran the trial, for its rows whenever exported
        trial.set_user_attr("hardware", hw)
        trial.set_user_attr("git_commit", store.git_commit())
        trial.set_user_attr("versions", store.versions())

    hooks = hooks or Hooks()
    n_runs = len(study.final_seeds) + len(study.repeat_seeds)
    progress = Progress(trials=study.budget.trials * len(all_units), runs=n_runs * len(all_units), bar=progress_bar)
    out = progress.writer(out)
    ctx = RunContext(study=study, root=root, data=data, coordinator=Coordinator(root, storage_obj),
                     stop=StopFlag().install(), hooks=replace(hooks, trial_start=[note_provenance, *hooks.trial_start]),
                     accelerator=accelerator, hardware=hw, out=out, max_failure_rate=max_failure_rate,
                     progress=progress, keep_models=keep_models)
    try:
        failed = train_units(ctx, all_units, storage_obj)
        if keep_models == "best":
            keep_best_models(root)
    finally:
        progress.close()
        ctx.stop.restore()
        ctx.coordinator.close()
    if failed:
        raise UserError(f"{len(failed)} final run(s) failed and were not stored: {'; '.join(failed)}")
    return root


def prepare(study: Study, root: Path, data: dict[str, Any], all_units: list[Unit], url: str | None, *,
            heartbeat: int, fresh: bool, out: Callable[[str], None]):
    """Open the storage and check the stored studies' identities (refusing a spec that changed results), or
    move the old store aside (``fresh``); then write the study's metadata (with what the leaderboard states of
    each dataset: split sizes, features) and spec. Returns the storage."""
    storage = open_storage(root, url, heartbeat=heartbeat) if url else None
    if fresh:
        if url:
            raise UserError("--fresh moves runs/<study>/ aside and works with the embedded storage only; with "
                            "--storage, give the study a new name")
        moved = store.move_aside(root)
        if moved is not None:
            out(f"--fresh: moved {root} to {moved}")
    elif root.exists() or storage is not None:
        if url is None:  # a torn write (crash, full disk) is repaired before anything appends to the journal
            repair_journal(root / "optuna.journal", out)
        probe = storage if storage is not None else (
            open_storage(root, None) if (root / "optuna.journal").exists() else None)
        if probe is not None:
            identity.check_identity(study, all_units, probe, root, url=url,
                                    stored_final_seeds=store.stored_seeds(root, "final"), data=data)
        extra = sorted(store.stored_replicates(root) - set(study.replicate_ids))
        if extra:
            raise UserError(f"study {study.name!r} has stored results of replicates {extra} beyond replicates = "
                            f"{study.replicates}; they would stay in the leaderboard: rerun with --fresh to move "
                            f"{root} aside, or give the study a new name")
    root.mkdir(parents=True, exist_ok=True)
    if storage is None:
        storage = open_storage(root, None)
    kept = {k: v for k, v in store.read_meta(root).items() if k == "command"} if (root / "study.json").is_file() else {}
    described = {spec.label: describe(data[spec.label]) for spec in study.datasets}  # replicate 1's draws
    store.write_meta(root, {**study.meta(), "data": described, **kept})
    if study.path is not None:
        try:
            shutil.copyfile(study.path, root / "spec.toml")
        except OSError as err:  # a full disk names the file (bench.cli reports it in one line)
            raise OSError(err.errno, err.strerror or str(err), str(root / "spec.toml")) from None
    return storage


def describe(data) -> dict[str, Any]:
    """What a leaderboard states about a loaded dataset: split sizes, input width, feature protocol, the training
    labels kept of a scarce task."""
    return {"rows": {s: len(getattr(data, s)) for s in ("train", "val", "test")}, "d_in": data.d_in,
            "features": data.info.get("features"), "excluded_columns": data.info.get("excluded_columns"),
            **({"label_fraction": data.info["label_fraction"]} if data.info.get("label_fraction") else {})}


def train_units(ctx: RunContext, all_units: list[Unit], storage) -> list[str]:
    """The search and final stages of every unit; returns the final runs that failed."""
    # 1. every unit's search, without waiting for other workers' trials
    opts = ctx.opts
    for unit in all_units:
        opts[unit] = open_unit_study(ctx.study, unit, storage, ctx.data[unit.data_key])
    if ctx.progress is not None:  # what earlier runs did counts as done from the first line on (a resumed run)
        ctx.progress.done_trials = sum(progress_state(o)[0] for o in opts.values())
        ctx.progress.done_runs = stored_runs(ctx.root)
    for i, unit in enumerate(all_units, 1):
        search_unit(ctx, unit, opts[unit], position=f"{i}/{len(all_units)}", wait=False)
    # 2. per unit: wait until no trial runs anywhere (retrying what others left), store its search rows, then
    # train the final seeds no other worker has claimed. Seeds claimed elsewhere are left for step 3, so that
    # parallel workers train different units' final stages side by side instead of queueing on one unit.
    # Longest first (mean seconds per complete trial): the slowest final stage starts first.
    stages: list[tuple[str, list[int] | None]] = [("final", None)]
    if ctx.study.repeats:  # trainability runs of the best configuration
        stages.append(("repeat", ctx.study.repeat_seeds))
    failed: list[str] = []
    later = []
    order = sorted(enumerate(all_units, 1), key=lambda iu: -mean_trial_seconds(opts[iu[1]]))
    for i, unit in order:
        search_unit(ctx, unit, opts[unit], position=f"{i}/{len(all_units)}", wait=True)
        rows = search_rows(ctx, unit, opts[unit])
        if rows:
            store.write_atomic(store.frame(rows), store.search_path(ctx.root, unit.dataset, unit.label, unit.target,
                                                                    unit.replicate))
        for stage, seeds in stages:
            unit_failed, busy = final_unit(ctx, unit, opts[unit], stage=stage, seeds=seeds)
            failed += unit_failed
            if busy:
                later.append((unit, stage, seeds))
    # 3. seeds other workers were training: wait for them (and train one whose worker died)
    for unit, stage, seeds in later:
        failed += final_unit(ctx, unit, opts[unit], stage=stage, seeds=seeds, wait=True)[0]
    return failed
