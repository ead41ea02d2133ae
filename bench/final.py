"""The final stage (and the repeats) trained as one population: every missing seed of a unit in one stacked
model (``bench.population.train_population``) instead of one ``bench.train.fit`` per seed.

``population_final_stage`` is a drop-in for ``bench.runner.final_stage``: same arguments, same tidy rows (one
per seed, split, task and metric; same columns), the same hooks per seed (``final_start`` for every seed before
training, ``final_end`` for every seed after, with that seed's rows, so a tracker still gets one run per
seed). The test split is read once per member, with its best weights.

The two paths agree to float rounding (``tests/test_final_population.py`` checks rtol 1e-4) when the model
has no dropout; with dropout > 0 the dropout masks are drawn differently, so only their distribution is the
same. ``seconds`` of a member is the population's wall time until that member stopped. The sequential path
stays available: ``[final] population = false`` in the spec or ``bench run --no-population``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import config_hash
from .search import Hooks

STAGES = ("final", "repeat")


def stage_path(root: Path, stage: str, dataset: str, arch: str, target: str, seed: int) -> Path:
    """``results/<stage>/<dataset>/<unit>/seed-<k>.parquet``: one file per (unit, seed) of a stage."""
    from .store import unit_name

    return Path(root) / "results" / stage / dataset / unit_name(arch, target) / f"seed-{seed}.parquet"


def device_of(accelerator: str) -> str:
    """The population's device for a Lightning ``accelerator`` name (auto, cpu, gpu, cuda)."""
    return {"gpu": "cuda"}.get(accelerator, accelerator)


def end_seed(hooks: Hooks, unit, result, seed: int, config: dict[str, Any], cfg: dict[str, Any],
             kinds: dict[str, str], finished: str) -> list[dict[str, Any]]:
    """The tidy rows of one final run (validation and test metrics per task with their traceability columns),
    after the ``final_end`` hooks have seen them. ``config`` is the unit's best configuration, ``cfg`` it with this
    run's seed."""
    base = {"seed": seed, "n_params": result.n_params, "seconds": result.seconds, "epochs": result.epochs,
            "config_hash": config_hash(config), "config": json.dumps(cfg, sort_keys=True), "status": "complete",
            "finished_at": finished}
    rows = [
        {**base, "split": split, "task": task, "kind": kinds[task], "metric": metric, "value": value}
        for split, per_task in (("val", result.val_metrics), ("test", result.test_metrics))
        for task, metrics in per_task.items()
        for metric, value in metrics.items()
    ]
    for hook in hooks.final_end:
        hook(unit, seed, cfg, rows, {"history": result.history, "best_epoch": result.best_epoch})
    return rows


def population_final_stage(data, arch: str, config: dict[str, Any], seeds: list[int], *, accelerator: str = "auto",
                           hooks: Hooks | None = None, unit=None) -> list[dict[str, Any]]:
    """Retrain ``config`` once per seed as one population, evaluate validation and, once per seed, test; the
    rows of ``bench.runner.final_stage`` (the caller adds the study's columns)."""
    from .population import seed_configs, train_population
    from .store import now

    hooks = hooks or Hooks()
    kinds = {t.name: t.kind for t in data.tasks}
    configs = seed_configs(config, seeds)
    for seed, cfg in zip(seeds, configs):
        for hook in hooks.final_start:
            hook(unit, seed, cfg)
    results = train_population(arch, data, configs, evaluate_test=True, device=device_of(accelerator))
    finished = now()
    rows = []
    for seed, cfg, result in zip(seeds, configs, results):
        rows += end_seed(hooks, unit, result, seed, config, cfg, kinds, finished)
    return rows


def train_seeds(data, arch: str, config: dict[str, Any], seeds: list[int], *, population: bool = True,
                accelerator: str = "auto", hooks: Hooks | None = None, unit=None) -> list[dict[str, Any]]:
    """The rows of ``seeds`` trained as one population, or (``population=False``) one fit after another."""
    if population:
        return population_final_stage(data, arch, config, seeds, accelerator=accelerator, hooks=hooks, unit=unit)
    from .runner import final_stage

    return final_stage(data, arch, config, seeds, accelerator=accelerator, hooks=hooks, unit=unit)
