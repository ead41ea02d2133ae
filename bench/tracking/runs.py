"""What one W&B run receives, built on the training thread before W&B is touched (``bench.tracking.tracker``
sends it): run ids, names, the resolved configuration, and the summaries of a search trial and a final run. No
``wandb`` here.
"""

from __future__ import annotations

import math
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.spec.config import config_schema
from bench.spec.study import unit_text

_ID_CHARS = string.ascii_lowercase + string.digits


def new_run_id() -> str:
    """A W&B run id (8 characters from [a-z0-9], as ``wandb.util.generate_id`` draws them)."""
    return "".join(secrets.choice(_ID_CHARS) for _ in range(8))


def resolved_config(arch: str, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with every training and architecture default filled in: what the model was really built with."""
    return {**config_schema(arch), **config}


def finite(v: Any) -> Any:
    """``v``, but None for a non-finite float (what W&B is sent in place of NaN and infinities)."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def unit_label(unit) -> str:
    """The unit as logs and pages spell it: ``mmoe``, ``single_task[y1]``."""
    return unit_text(unit.label, unit.target if unit.arch == "single_task" else None)


def trial_label(trial) -> int:
    """The trial's number as logs and pages show it: its configuration's ordinal, from 1."""
    return int(trial.user_attrs.get("ordinal", trial.number)) + 1


# --- what one W&B run receives -----------------------------------------------------------------------------
@dataclass
class RunJob:
    """Everything one W&B run gets; built on the training thread, sent by the background thread."""

    id: str
    name: str
    group: str
    job_type: str
    tags: list[str]
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)  # one dict per epoch, with "epoch"
    summary: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, tuple[list[str], list[list[Any]]]] = field(default_factory=dict)  # name -> (columns, rows)
    images: dict[str, Path] = field(default_factory=dict)  # name -> PNG file


@dataclass
class TrackedRun:
    """What the harness recorded about a run it handed to W&B (for reports and tests)."""

    id: str
    name: str
    job_type: str
    url: str | None
    mode: str | None = None  # the mode it was written in; None until the background thread is done with it
    error: str | None = None


def trial_summary(trial, record: dict[str, Any], wall: float | None) -> dict[str, Any]:
    """The summary of a search trial's run: its state, best validation objective, best epoch, size, seconds
    (``wall``: from its start hook to its end hook), epochs, number, validation metrics and error."""
    curve = [v for v in record.get("curve", []) if isinstance(v, float) and math.isfinite(v)]
    summary: dict[str, Any] = {
        "state": record.get("state"), "val_objective": max(curve) if curve else None,
        "best_epoch": record.get("best_epoch"), "n_params": record.get("n_params"),
        "seconds": record.get("seconds"), "wall_seconds": wall, "epochs": len(record.get("curve", [])),
        "trial": trial_label(trial),
    }
    for task, metrics in (record.get("val_metrics") or {}).items():
        for metric, v in metrics.items():
            summary[f"val/{task}/{metric}"] = v
    if record.get("error") or record.get("user_error"):
        summary["error"] = record.get("error") or record.get("user_error")
    return summary


def final_summary(seed: int, rows: list[dict[str, Any]], record: dict[str, Any], wall: float | None) -> dict[str, Any]:
    """The summary of a final run's W&B run: size, seconds, epochs, best epoch and seed, then every stored row's
    value: ``<split>/<task>/<metric>``, and ``diagnostics/level<l>[/<task>][/expert<n>]/<metric>`` for the gate
    and expert diagnostics."""
    first = rows[0] if rows else {}
    summary: dict[str, Any] = {
        "n_params": first.get("n_params"), "seconds": first.get("seconds"), "epochs": first.get("epochs"),
        "wall_seconds": wall, "best_epoch": record.get("best_epoch"), "seed": seed,
    }
    for r in rows:
        if r.get("kind") == "diagnostic":  # gate and expert diagnostics: one key per level (and expert)
            where = "/".join([f"level{r['level']}", *([] if r["task"] == "*" else [r["task"]]),
                              *([] if r.get("expert") is None else [f"expert{r['expert']}"])])
            summary[f"diagnostics/{where}/{r['metric']}"] = r["value"]
        else:
            summary[f"{r['split']}/{r['task']}/{r['metric']}"] = r["value"]
    return summary
