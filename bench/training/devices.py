"""The training device: resolving a device name, and describing the hardware for the results' provenance."""

from __future__ import annotations

import os
import platform

import torch

from bench.architectures import gemm
from bench.errors import UnknownChoice, UserError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``/``gpu`` or ``cuda:N``."""
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "gpu":
        name = "cuda"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {device!r}; valid choices: auto, cpu, cuda, cuda:N, gpu") from None
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"unknown device {device!r}; valid choices: auto, cpu, cuda, cuda:N, gpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} asked for, but no CUDA GPU is available; use --device cpu")
    return dev


ACCELERATORS = ("auto", "cpu", "gpu", "cuda")


def check_accelerator(name: str) -> str:
    """A Lightning accelerator name this harness trains on (auto: CUDA when available, else CPU), checked before
    anything is written: an unknown name, or a GPU asked for where none is, is a one-line ``UserError``."""
    if name not in ACCELERATORS:
        raise UnknownChoice("accelerator", name, ACCELERATORS)
    if name in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(f"--accelerator {name} asked for, but no CUDA GPU is available here; use cpu or auto")
    return name


def hardware(accelerator: str = "cpu") -> str:
    """A short description of the device ``accelerator`` trains on (stored with every result row): on a CPU its
    model, cores, and which kernel runs the layers' 2-D products (``architectures/gemm.py``: float rounding, and
    speed, differ between them). Raises ``UnknownChoice`` for a bad ``BENCH_GEMM``, so a run checks it first."""
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    cpu = cpu_model() or platform.processor() or platform.machine()
    kernel = "oneDNN" if gemm.onednn_active() else "torch's BLAS"
    return f"CPU {cpu}, {os.cpu_count()} cores, 2-D GEMMs on {kernel}"


def cpu_model() -> str | None:
    """The CPU's model name as Linux reports it (``/proc/cpuinfo``), else None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        return None
    return None
