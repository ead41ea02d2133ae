"""Saved models: a final run's best-epoch weights, kept so the winner can be reused (``bench predict``).

A model file is a Lightning checkpoint that ``MTLSystem.load_from_checkpoint`` reads (``state_dict`` and
``hyper_parameters``: architecture, tasks, input width, configuration), plus a ``bench`` entry holding what
prediction needs beside the weights: the dataset's fitted feature encoding (``FeatureEncoding.to_dict``:
training-split scaling and categorical levels) and where the model comes from (study, dataset, unit, seed,
config hash, validation objective, test metrics). Everything in it is tensors and plain Python values, so it is
read with ``torch.load(weights_only=True)``: loading a model file never runs code from it.

Size: the float32 weights (4 bytes per parameter, ``n_params`` in the results store) plus a few kB of metadata;
the encoding of a data set with many categorical levels adds their names.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any

import torch

from bench.datasets.base import Task
from bench.errors import UserError

from .system import UNREADABLE, MTLSystem, make_system, unreadable

FORMAT = 1  # version of the ``bench`` entry


def save_model(path: Path, arch: str, tasks: list[Task], d_in: int, config: dict[str, Any],
               state: dict[str, torch.Tensor], meta: dict[str, Any], fields: list[int] | tuple[int, ...] = (),
               funnel: list[tuple[str, bool]] | None = None) -> int:
    """Write ``state`` (the model's ``state_dict``, with its feature encoder when the data has embedded
    ``fields``) as a model file at ``path`` (atomically: a reader never sees half a file); ``meta`` goes into the
    ``bench`` entry (it must hold the ``encoding``); ``funnel``: the data's funnel steps (a funnel architecture is
    built with them). Returns the file's size in bytes. A full disk (or any other error of the file system) is an
    ``OSError`` naming ``path``, with no temporary file left behind: the checkpoint is serialised in memory, then
    written with plain file writes (``torch.save`` to a file reports a full disk as a ``RuntimeError`` of its
    own)."""
    system = make_system(arch, tasks, d_in, config, fields=fields, funnel=funnel)
    system.model.load_state_dict(state)  # same keys and shapes as the trained model, or this raises
    ckpt = {"state_dict": system.state_dict(), "hyper_parameters": dict(system.hparams),
            "bench": {"format": FORMAT, **meta}}
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise OSError(err.errno, err.strerror or str(err), str(path)) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return path.stat().st_size


def read_meta(path: Path) -> dict[str, Any]:
    """The ``bench`` entry of a model file; a file that is not an mtl-bench model is a one-line ``UserError``."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        meta = ckpt["bench"]
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or "encoding" not in meta:
            raise KeyError("bench")
    except UNREADABLE as err:
        raise unreadable(path, "model file", err) from None
    return meta


def best_seed(files: list[Path]) -> Path:
    """Of a unit's model files, the one with the best validation objective; ties go to the lowest seed (the test
    split plays no part)."""
    ordered = sorted(files, key=lambda f: int(f.stem.split("-")[-1]))
    return max(ordered, key=lambda f: read_meta(f)["val_objective"])  # max keeps the first of ties


def load_model(path: Path) -> tuple[MTLSystem, dict[str, Any]]:
    """The system a model file holds (in eval mode, on the CPU) and its ``bench`` entry."""
    meta = read_meta(path)
    system = MTLSystem.load_from_checkpoint(path)
    system.eval()
    return system, meta


@torch.no_grad()
def predict(system: MTLSystem, x: torch.Tensor, cat: torch.Tensor | None = None, *,
            batch_rows: int = 65_536) -> dict[str, torch.Tensor]:
    """Per-task predictions for ``x (N, d)`` (and the categorical codes ``cat (N, F)`` of a model with embedded
    fields): the probability of the positive class for a binary task ``(N,)``, class probabilities for a
    multi-class task ``(N, C)``, the value for a regression task ``(N,)``."""
    if x.shape[1] != system.hparams["d_in"]:
        raise UserError(f"the input has {x.shape[1]} feature columns once encoded; the model takes "
                        f"{system.hparams['d_in']}")
    if cat is None:
        cat = torch.zeros(len(x), 0, dtype=torch.int64)
    system.eval()
    chunks = [system(x[i : i + batch_rows], cat[i : i + batch_rows]) for i in range(0, len(x), batch_rows)]
    out = {}
    for task in system.tasks:
        logits = torch.cat([c[task.name] for c in chunks])
        if task.kind == "binary":
            out[task.name] = torch.sigmoid(logits.reshape(-1).double())  # float64: no ties from rounding
        elif task.kind == "multiclass":
            out[task.name] = torch.softmax(logits, dim=-1)
        else:
            out[task.name] = logits.reshape(-1)
    return out
