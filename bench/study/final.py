"""The final stage: each unit's best configuration retrained with the final seeds (and, for trainability, the
repeat seeds), the test split read once per run; rows stored per (unit, seed), each seed claimed so parallel
workers never train the same one.

By default a unit's missing seeds are trained as one population: one stacked model
(``bench.training.population.train_population``) instead of one ``bench.training.fit.fit`` per seed.
``population_final_stage`` is a drop-in for ``final_stage``: same arguments, same tidy rows (one
per seed, split, task and metric; same columns), the same hooks per seed (``final_start`` for every seed before
training, ``final_end`` for every seed after, with that seed's rows, so a tracker still gets one run per
seed). The test split is read once per member, with its best weights.

The two paths agree to float rounding (``tests/test_final_population.py`` checks rtol 1e-4), on a CPU with
dropout too: a member's dropout masks come from its own seed, as a fit's do, so a seed's result does not depend
on which seeds share its population (on a GPU the fit's fused dropout kernel draws other masks of the same
distribution). ``seconds`` of a member is the population's wall time until that member stopped. Both paths store,
beside each gated run's metrics, its gate and expert diagnostics on the test split (``bench.training.diagnostics``).
The sequential path stays available: ``[final] population = false`` in the spec or ``bench run --no-population``.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl

from bench.coordination import trials
from bench.coordination.signals import Terminated
from bench.errors import UserError, is_environment_error
from bench.hashing import config_hash
from bench.results import store
from bench.spec.hooks import Hooks
from bench.spec.metrics import ENTIRE, PRIMARY

from .search import trial_state
from .units import RunContext, Unit, unit_data


def final_unit(ctx: RunContext, unit: Unit, opt, *, stage: str = "final", seeds: list[int] | None = None,
               wait: bool = False) -> tuple[list[str], list[int]]:
    """The final stage of one unit: the best configuration retrained with every final seed not yet stored for
    it. Each (unit, seed) is claimed, so parallel workers never train the same one. Its rows live in the results
    store (``runs/<study>/results/``); with a database storage its file is also shared through the database
    (``Coordinator.publish``), so workers on other machines write the same parquet file without training it
    again. Nothing of it goes into Optuna's study user attributes; the rows that older versions kept there
    (``final:seed-<k>``) are still read. Returns the failures (``"unit seed k: error"``) and the seeds
    another worker holds: ``wait=False`` leaves those to a later call with ``wait=True``, which waits for them
    (and trains one whose worker died).

    The seeds this worker claims are trained together as one population unless the study says
    ``population = false``. ``stage="repeat"`` with ``seeds``: the repeated runs (``Study.repeat_seeds``)."""
    complete = [t for t in opt.get_trials(deepcopy=False) if trial_state(t) == "complete"]
    if not complete:
        ctx.out(f"[{unit}] no complete trial: skipping the final stage")
        return [], []
    runs = FinalRuns(ctx, unit, opt, stage, seeds or ctx.study.final_seeds)
    failures, busy = [], []
    with contextlib.ExitStack() as claims:  # first pass: claim the seeds no other worker is training
        mine = []
        for seed in runs.seeds:
            if runs.stored(seed):
                continue
            if not claims.enter_context(ctx.coordinator.claim(runs.claim(seed))):
                busy.append(seed)
            elif not runs.stored(seed):
                mine.append(seed)
        if mine:  # held until they are stored: trained together, as one population
            failures += runs.train(mine)
    if not wait:
        return failures, busy
    for seed in busy:  # wait for the others' seeds (and train one whose worker died)
        with ctx.coordinator.wait_claim(runs.claim(seed)):
            if not runs.stored(seed):
                failures += runs.train([seed])
    return failures, []


class FinalRuns:
    """The final (or repeated) runs of one unit's best configuration: where each seed's file is, whether it is
    stored (here, shared by another machine, or kept by an older version), training a batch of seeds and storing
    each one's rows. ``final_unit`` decides which seeds to train; this knows how."""

    def __init__(self, ctx: RunContext, unit: Unit, opt, stage: str, seeds: list[int]):
        self.ctx, self.unit, self.opt, self.stage, self.seeds = ctx, unit, opt, stage, seeds
        self.data = unit_data(unit, ctx.data[unit.data_key])
        best = opt.best_trial
        self.trial = trials.ordinals(opt.get_trials(deepcopy=False))[best.number]  # as the search rows number it
        self.config = best.user_attrs["config"]
        self.chash = config_hash(self.config)
        self.kept: dict[int, dict[str, Any]] = {}  # seed -> its run's record (best-epoch weights) until stored
        self.hooks = replace(ctx.hooks, final_end=[*ctx.hooks.final_end,
                                                   lambda _u, seed, _c, _r, rec: self.kept.update({seed: rec})])

    def claim(self, seed: int) -> str:
        return f"{self.ctx.study.name}:{self.unit.optuna_name}:{self.stage}:{seed}"

    def path(self, seed: int) -> Path:
        u = self.unit
        return store.stage_path(self.ctx.root, self.stage, u.dataset, u.label, u.target, seed, u.replicate)

    def of_best(self, rows: pl.DataFrame | None) -> bool:
        """Rows of a run trained with the best configuration (None: no rows)."""
        return rows is not None and rows["config_hash"].unique().to_list() == [self.chash]

    def stored(self, seed: int) -> bool:
        """Whether seed's run with the best configuration is in the store, after restoring it from where it may
        be kept (another machine's file in the database storage, an older version's Optuna attribute); a damaged
        file is set aside (then restored or retrained)."""
        path, ctx, unit = self.path(seed), self.ctx, self.unit
        old = store.read_file(path) if path.is_file() else None
        if old is None and path.is_file():
            ctx.out(f"[{unit}] {path} is damaged (cannot be read); set aside as {store.set_aside(path).name}")
        if self.of_best(old):
            return True
        content = ctx.coordinator.published(ctx.study.name, unit.optuna_name, self.stage, seed, config_hash=self.chash)
        shared = None if content is None else store.decode(content)
        if self.of_best(shared):
            store.write_atomic(shared, path)
            return True
        legacy = self.opt.user_attrs.get(f"{self.stage}:seed-{seed}")  # older versions kept rows in the study
        if legacy and legacy.get("config_hash") == self.chash and legacy.get("rows"):
            store.write_atomic(store.frame(legacy["rows"]), path)
            return True
        return False

    def failed(self, seed: int, error: str) -> str:
        self.ctx.out(f"[{self.unit}] {self.stage} seed {seed} failed: {error}")
        return f"{self.unit} {'' if self.stage == 'final' else self.stage + ' '}seed {seed}: {error}"

    def train(self, batch: list[int]) -> list[str]:
        """Train ``batch`` (as one population unless the study says otherwise) and store each seed's rows; the
        failures. A whole batch that fails is retrained one seed at a time, so one bad seed costs only itself."""
        ctx, unit = self.ctx, self.unit
        ctx.stop.check()
        try:
            rows, errors = train_seeds(self.data, unit.arch, self.config, batch, population=ctx.study.population,
                                       accelerator=ctx.accelerator, hooks=self.hooks, unit=unit, stop=ctx.stop.check)
        except (SystemExit, KeyboardInterrupt):
            raise Terminated(ctx.stop.signum or 2) from None
        except UserError:
            raise
        except Exception as err:  # the whole batch failed (e.g. out of memory): never stored
            if is_environment_error(err):  # the machine's (a full disk...): reported, not a failed seed
                raise
            if len(batch) > 1:
                ctx.out(f"[{unit}] {self.stage} seeds {batch[0]}..{batch[-1]} as a population failed "
                        f"({type(err).__name__}: {err}); training them one at a time")
                return [e for seed in batch for e in self.train([seed])]
            return [self.failed(batch[0], f"{type(err).__name__}: {err}")]
        # a seed that diverged (non-finite training loss, no finite validation epoch) is reported, never stored
        failures = [self.failed(seed, errors[seed]) for seed in batch if seed in errors]
        batch = [seed for seed in batch if seed not in errors]
        for seed in batch:
            self.store_seed(seed, [r for r in rows if r["seed"] == seed])
        if self.stage != "final" and batch:  # many runs: one line
            self.report_batch(batch, rows)
        return failures

    def store_seed(self, seed: int, seed_rows: list[dict[str, Any]]) -> None:
        """One run's rows with the study's columns: shared first (database storage), then its model, then its
        file, which marks the seed done here."""
        ctx, unit = self.ctx, self.unit
        common = {"study": ctx.study.name, "dataset": unit.dataset, "architecture": unit.label,
                  "target": unit.target, "stage": self.stage, "trial": self.trial, "replicate": unit.replicate,
                  "git_commit": store.git_commit(), "versions": store.versions(), "hardware": ctx.hardware}
        df = store.frame([{**r, **common} for r in seed_rows])
        ctx.coordinator.publish(ctx.study.name, unit.optuna_name, self.stage, seed, config_hash=self.chash,
                                content=store.encode(df))
        if self.stage == "final" and ctx.keep_models != "none":  # the model first: the rows mark the seed done
            save_model(ctx, unit, self.data, self.config, seed, self.kept.pop(seed, {}), df)
        store.write_atomic(df, self.path(seed))
        if self.stage == "final":
            test = df.filter((pl.col("split") == "test") & pl.col("draw").is_null())
            summary = ", ".join(f"{r['task']} {r['metric']}={r['value']:.4f}" for r in test.iter_rows(named=True)
                                if r["metric"] == PRIMARY.get(r["kind"]))
            ctx.out(f"[{unit}] final seed {seed} ({self.seeds.index(seed) + 1}/{len(self.seeds)}): "
                    f"test {summary}  {seed_rows[0]['seconds']:.1f} s  {runs_done(ctx, unit)}")

    def report_batch(self, batch: list[int], rows: list[dict[str, Any]]) -> None:
        """One line for a batch of repeated runs: the median test primary metric per task."""
        test = pl.DataFrame([r for r in rows if r["split"] == "test" and r["metric"] == PRIMARY.get(r["kind"])
                             and r.get("draw") is None])
        medians = test.group_by("task", "metric", maintain_order=True).agg(pl.col("value").median())
        summary = ", ".join(f"{t} {m}={v:.4f}" for t, m, v in medians.iter_rows())
        self.ctx.out(f"[{self.unit}] {self.stage} seeds {batch[0]}..{batch[-1]} ({len(batch)} runs, up to "
                     f"{self.seeds.index(batch[-1]) + 1}/{len(self.seeds)}): test median {summary}  "
                     f"{max(r['seconds'] for r in rows):.1f} s  {runs_done(self.ctx, self.unit)}")


def runs_done(ctx: RunContext, unit: Unit) -> str:
    """Count the final runs and repeats stored study-wide into the study's progress; its counts as text."""
    if ctx.progress is None:
        return ""
    return ctx.progress.final(stored_runs(ctx.root), str(unit))


def stored_runs(root: Path) -> int:
    """The final runs and repeats stored study-wide (every replicate's)."""
    return len(store.run_files(root, "final", "repeat"))


def save_model(ctx: RunContext, unit: Unit, data, config: dict[str, Any], seed: int, record: dict[str, Any],
               rows: pl.DataFrame) -> None:
    """Keep a final run's best-epoch weights with what predicting needs (``bench.training.models``) under
    ``runs/<study>/models/<dataset>/<unit>/seed-<k>.ckpt``."""
    from bench.training import models

    encoding = data.info.get("encoding")
    if record.get("state") is None or encoding is None:  # nothing to keep (e.g. a dataset without an encoder)
        return
    test = rows.filter((pl.col("split") == "test") & pl.col("draw").is_null())
    meta = {
        "study": ctx.study.name, "dataset": unit.dataset, "architecture": unit.label, "target": unit.target,
        "seed": seed, "config_hash": config_hash(config), "val_objective": float(record["val_objective"]),
        "test_metrics": {f"{r['task']}/{r['metric']}": float(r["value"]) for r in test.iter_rows(named=True)},
        "encoding": encoding, "git_commit": store.git_commit(), "versions": store.versions(),
    }
    try:
        models.save_model(store.model_path(ctx.root, unit.dataset, unit.label, unit.target, seed, unit.replicate),
                          unit.arch,
                          data.tasks, data.d_in, {**config, "seed": seed}, record["state"], meta,
                          fields=data.field_sizes, funnel=data.funnel_steps)
    except OSError as err:  # disk full, permissions: the run's results still count; say what was not kept
        ctx.out(f"[{unit}] final seed {seed}: model not saved ({err})")


def keep_best_models(root: Path) -> int:
    """``--keep-models best``: of each unit's saved models (per replicate) keep only the seed with the best
    validation objective (ties: the lowest seed); returns how many files were removed."""
    from bench.training import models

    removed = 0
    for unit_dir in sorted(p for p in (Path(root) / "models").glob("*/*") if p.is_dir()):
        by_replicate: dict[str, list[Path]] = {}  # "" (replicate 1) or "r<k>-" -> its models
        for f in unit_dir.glob("*seed-*.ckpt"):
            by_replicate.setdefault(f.name[:f.name.index("seed-")], []).append(f)
        for files in by_replicate.values():
            if len(files) < 2:
                continue
            best = models.best_seed(files)
            for f in files:
                if f != best:
                    f.unlink()
                    removed += 1
    return removed


Rows = list[dict[str, Any]]
Errors = dict[int, str]  # seed -> why its run failed (it has no rows)


def train_seeds(data, arch: str, config: dict[str, Any], seeds: list[int], *, population: bool = True,
                accelerator: str = "auto", hooks: Hooks | None = None, unit=None,
                stop: Callable[[], None] | None = None) -> tuple[Rows, Errors]:
    """The rows of ``seeds`` trained as one population, or (``population=False``) one fit after another, and the
    seeds that failed.
    ``stop`` (a SIGTERM flag's check) is called between steps of a population and between fits; what it raises
    ends the stage with nothing returned (one fit stops at its next batch by Lightning's own SIGTERM handling)."""
    if population:
        return population_final_stage(data, arch, config, seeds, accelerator=accelerator, hooks=hooks, unit=unit,
                                      stop=stop)
    return final_stage(data, arch, config, seeds, accelerator=accelerator, hooks=hooks, unit=unit, stop=stop)


def final_stage(data, arch: str, config: dict[str, Any], seeds: list[int], *, accelerator: str = "auto",
                hooks: Hooks | None = None, unit: Unit | None = None,
                stop: Callable[[], None] | None = None) -> tuple[Rows, Errors]:
    """Retrain ``config`` once per seed (config ``seed`` = the seed) and evaluate validation and, once, test.

    Returns tidy rows (split, task, kind, metric, value, seed, n_params, seconds, epochs, config_hash, config;
    the caller adds the study's columns) and the seeds whose fit failed (a non-finite training loss, no finite
    validation epoch, an error of the configuration), which have no rows. ``population_final_stage`` trains
    all seeds as one stacked model instead: same arguments, same rows.
    """
    from bench.training.fit import fit

    hooks = hooks or Hooks()
    kinds = {t.name: t.kind for t in data.tasks}
    rows, errors = [], {}
    for seed in seeds:
        if stop is not None:
            stop()
        cfg = {**config, "seed": seed}
        for hook in hooks.final_start:
            hook(unit, seed, cfg)
        try:
            result = fit(arch, data, cfg, evaluate_test=True, accelerator=accelerator, diagnose=True)
        except UserError:
            raise
        except Exception as err:  # this seed's failure; the others still train
            if is_environment_error(err):
                raise
            errors[seed] = f"{type(err).__name__}: {err}"
            continue
        rows += end_seed(hooks, unit, result, seed, config, cfg, kinds, store.now())
    return rows, errors


def population_final_stage(data, arch: str, config: dict[str, Any], seeds: list[int], *, accelerator: str = "auto",
                           hooks: Hooks | None = None, unit=None,
                           stop: Callable[[], None] | None = None) -> tuple[Rows, Errors]:
    """Retrain ``config`` once per seed as one population, evaluate validation and, once per seed, test; the
    rows and failures of ``final_stage`` (a member that diverged fails alone)."""
    from bench.training.population import seed_configs, train_population

    hooks = hooks or Hooks()
    kinds = {t.name: t.kind for t in data.tasks}
    configs = seed_configs(config, seeds)
    for seed, cfg in zip(seeds, configs):
        for hook in hooks.final_start:
            hook(unit, seed, cfg)
    results = train_population(arch, data, configs, evaluate_test=True, device=accelerator, diagnose=True,
                               stop=stop)
    finished = store.now()
    rows, errors = [], {}
    for seed, cfg, result in zip(seeds, configs, results):
        if result.error is not None:
            errors[seed] = f"FloatingPointError: {result.error}"
            continue
        rows += end_seed(hooks, unit, result, seed, config, cfg, kinds, finished)
    return rows, errors


def end_seed(hooks: Hooks, unit, result, seed: int, config: dict[str, Any], cfg: dict[str, Any],
             kinds: dict[str, str], finished: str) -> list[dict[str, Any]]:
    """The tidy rows of one final run (validation and test metrics per task, each with ``observed``: the rows of
    the split with the task's label observed, which the metric was computed on; then the gate and expert
    diagnostics of a gated architecture on the test split, kind ``diagnostic``; all with their traceability
    columns), after the ``final_end`` hooks have seen them. ``config`` is the unit's best configuration, ``cfg`` it
    with this run's seed."""
    base = {"seed": seed, "n_params": result.n_params, "seconds": result.seconds, "epochs": result.epochs,
            "config_hash": config_hash(config), "config": json.dumps(cfg, sort_keys=True), "status": "complete",
            "finished_at": finished}
    rows = [  # an entire-space metric (bench.spec.metrics.ENTIRE) was computed on every test impression
        {**base, "split": split, "task": task, "kind": kinds[task], "metric": metric, "value": value,
         "observed": result.observed.get("entire" if metric in ENTIRE else split, {}).get(task)}
        for split, per_task in (("val", result.val_metrics), ("test", result.test_metrics))
        for task, metrics in per_task.items()
        for metric, value in metrics.items()
    ]
    rows += [{**base, **r} for r in result.diagnostics or []]
    for hook in hooks.final_end:
        hook(unit, seed, cfg, rows, {"history": result.history, "best_epoch": result.best_epoch,
                                     "val_objective": result.val_objective, "state": result.state})
    # then its primary test metric on each test-set resample (store column ``draw``): not given to the hooks, but
    # with the run's W&B columns as a tracker set them on its rows
    tracked = {k: rows[0][k] for k in ("wandb_run", "wandb_url") if rows and rows[0].get(k) is not None}
    # (and a funnel's auc_entire on each resample of every impression)
    draws = [{**base, **tracked, "split": "test", "task": task, "kind": kinds[task],
              "metric": metric or PRIMARY[kinds[task]], "value": value, "draw": b,
              "observed": result.observed.get(over, {}).get(task)}
             for per_task, metric, over in ((result.test_draws, None, "test"), (result.entire_draws, "auc_entire",
                                                                                   "entire"))
             for task, values in (per_task or {}).items() for b, value in enumerate(values, 1)]
    return rows + draws + curve_rows(base, result.history)


def curve_rows(base: dict[str, Any], history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A run's learning curves as store rows (``bench.results.store``, kind "curve"): per epoch of ``history``
    (``{"epoch", "train_loss", "val_objective", "val/<task>/<metric>"}``) the training loss, the validation
    objective and every validation metric; non-finite values (a diverged epoch) left out."""
    rows = []
    for h in history:
        points = [("train", "*", "loss", h.get("train_loss")), ("val", "*", "objective", h.get("val_objective"))]
        # "val/<task>/<metric>": a task's name may hold "/", a metric's never does
        points += [("val", *key[len("val/"):].rsplit("/", 1), v) for key, v in h.items() if key.startswith("val/")]
        rows += [{**base, "kind": store.CURVE, "epoch": int(h["epoch"]), "split": split, "task": task,
                  "metric": metric, "value": float(v)}
                 for split, task, metric, v in points if v is not None and math.isfinite(v)]
    return rows
