"""Fit one configuration and evaluate it: the unit of work of ``bench train`` and of every study trial."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch

from bench.datasets import MTLData

from . import allocator
from .bootstrap import entire_draws
from .diagnostics import diagnose as diagnostics_of
from .metrics import entire_space_metrics
from .system import MTLDataModule, MTLSystem, make_system


@dataclass
class FitResult:
    """What one fit produced: metrics of the best epoch on validation, and on test only when asked."""

    arch: str
    config: dict[str, Any]
    val_metrics: dict[str, dict[str, float]]
    val_objective: float
    best_epoch: int | None
    epochs: int
    n_params: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    test_metrics: dict[str, dict[str, float]] | None = None
    error: str | None = None  # a population member that failed (diverged): its metrics must not be stored
    # the architecture's best-epoch weights (``model.state_dict()``, on the CPU), kept by final runs only
    state: dict[str, torch.Tensor] | None = None
    # gate and expert diagnostics on the test split (bench.training.diagnostics), when asked and the model is gated
    diagnostics: list[dict[str, Any]] | None = None
    # observed labels per split and task: the rows each task's metrics were computed on
    observed: dict[str, dict[str, int]] = field(default_factory=dict)
    # the primary test metric per task on each test-set resample (bench.training.bootstrap), final runs only
    test_draws: dict[str, list[float]] | None = None
    # on data whose truth is known: auc_entire per task on each resample of every test impression (``entire_draws``)
    entire_draws: dict[str, list[float]] | None = None


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def quiet_lightning() -> None:
    """Silence Lightning's per-fit banners (GPU/TPU availability, 'fit' summaries) and known-benign warnings."""
    import logging

    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=".*The number of training batches.*")
    warnings.filterwarnings("ignore", message=".*treespec, LeafSpec.*")


def make_trainer(max_epochs: int, *, accelerator: str = "auto", progress: bool = False, callbacks=None) -> L.Trainer:
    """A Trainer with per-step work cut to the minimum: no logger, no checkpoint files, no sanity pass."""
    return L.Trainer(
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        num_sanity_val_steps=0,
        callbacks=callbacks or [],
    )


def fit(
    arch: str,
    data: MTLData,
    config: dict[str, Any] | None = None,
    *,
    evaluate_test: bool = False,
    accelerator: str = "auto",
    progress: bool = False,
    callbacks=None,
    loss_weights: dict[str, float] | None = None,
    diagnose: bool = False,
) -> FitResult:
    """Train ``arch`` with ``config`` on ``data``; select the best epoch on validation; read the test split only
    when ``evaluate_test`` (the final stage), never during search. ``diagnose`` (with ``evaluate_test``): the gate
    and expert diagnostics of the best weights on the test split, after training
    (``bench.training.diagnostics``)."""
    quiet_lightning()
    allocator.tune()
    config = dict(config or {})
    system: MTLSystem = make_system(
        arch, data.tasks, data.d_in, config, loss_weights, fields=data.field_sizes, partial=data.partial,
        funnel=data.funnel_steps,
    )
    cfg = system.train_config
    L.seed_everything(cfg.seed, verbose=False)  # dropout draws
    dm = MTLDataModule.for_system(data, system)
    trainer = make_trainer(cfg.max_epochs, accelerator=accelerator, progress=progress, callbacks=callbacks)
    start = time.perf_counter()
    trainer.fit(system, datamodule=dm)
    seconds = time.perf_counter() - start
    test = state = diagnostics = draws = entire = None
    if evaluate_test:
        if system.best_epoch is None:  # never evaluate test on weights with no finite validation epoch
            raise FloatingPointError("no finite validation epoch (diverged); the test split was not read")
        trainer.test(system, datamodule=dm, verbose=False)
        test, entire = with_truth(system.test_metrics, data, system, cfg.eval_batch_size)
        draws = system.test_draws
        state = {k: v.detach().cpu().clone() for k, v in system.model.state_dict().items()}
        if diagnose:
            diagnostics = diagnostics_of(system.model, data.test.x.to(system.device), [t.name for t in data.tasks],
                                         chunk=cfg.eval_batch_size, cat=data.test.cat.to(system.device))
    return FitResult(
        arch=arch,
        config=config,
        val_metrics=system.val_metrics,
        val_objective=system.best_objective,
        best_epoch=system.best_epoch,
        epochs=len(system.history),
        n_params=count_params(system.model),
        seconds=seconds,
        history=system.history,
        test_metrics=test,
        state=state,
        diagnostics=diagnostics,
        observed=observed_counts(data, evaluate_test),
        test_draws=draws,
        entire_draws=entire,
    )


def observed_counts(data: MTLData, evaluate_test: bool) -> dict[str, dict[str, int]]:
    """The rows each task's metrics were computed on, per split; ``entire``: the test impressions of the
    entire-space metrics (data whose truth is known)."""
    counts = {s: data.observed_counts(s) for s in ("val", *(("test",) if evaluate_test else ()))}
    if evaluate_test and data.truth is not None:
        counts["entire"] = {task: len(data.truth.x) for task in data.truth.prob}
    return counts


@torch.no_grad()
def with_truth(test: dict[str, dict[str, float]], data: MTLData, system: MTLSystem,
               chunk: int) -> tuple[dict[str, dict[str, float]], dict[str, list[float]] | None]:
    """The test metrics plus, on data whose truth is known, each such task's entire-space metrics
    (``entire_space_metrics``) from the model's predictions on every test impression; and their resampled AUCs
    (``entire_draws``; None without truth)."""
    truth = data.truth
    if truth is None:
        return test, None
    system.eval()
    x, cat = truth.x.to(system.device), truth.cat.to(system.device)
    chunks = [system(x[i : i + chunk], cat[i : i + chunk]) for i in range(0, len(x), chunk)]
    out = {k: dict(v) for k, v in test.items()}
    logits = {task: torch.cat([c[task] for c in chunks]).cpu() for task in truth.prob}
    for task, z in logits.items():
        out[task] = {**out.get(task, {}), **entire_space_metrics(z, truth.prob[task], truth.outcome[task])}
    return out, entire_draws(logits, truth.outcome)
