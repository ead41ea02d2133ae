"""Architecture registry (timm-style): one file and one ``@register("name")`` add an architecture.

Every registered class is an ``nn.Module`` built as ``cls(d_in, tasks, **options)`` where ``tasks`` maps
task names to output widths, whose ``forward`` maps ``(B, d_in)`` features to ``{task: (B, out_dim)}``.
Its options are the fields (int, float or bool, with defaults) of its ``Options`` dataclass, plus the input
encoder's (``EncoderOptions``), which every architecture shares.

``create(name, d_in, tasks, fields=sizes)`` with categorical fields puts one ``FeatureEncoder`` in front of the
architecture (``layers.Encoded``, ``forward(x, cat)``); without fields it returns the architecture itself.

An architecture with an auxiliary training loss (sparse gates' load balancing) sets ``has_aux_loss`` True and
accepts ``forward(x, with_aux=True)``, returning ``({task: logits}, aux_loss)``: a scalar tensor, already
weighted, that the trainer adds to the weighted task losses (``has_aux_loss(model)`` says which).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from bench.errors import UnknownChoice

from .layers import Encoded, FeatureEncoder


@dataclass
class EncoderOptions:
    """The input encoder's options, shared by every architecture (no effect without categorical fields)."""

    embedding_dim: int = 8  # e: the width of every categorical field's embedding

    def __post_init__(self) -> None:
        if self.embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {self.embedding_dim}")


ENCODER_KEYS = tuple(f.name for f in dataclasses.fields(EncoderOptions))

_REGISTRY: dict[str, type[nn.Module]] = {}
MAX_PARAMS = 1_000_000_000  # check_options: a bound on a configuration's size (4 GB of float32 weights)


def register(name: str):
    """Class decorator adding an architecture to the registry under ``name``."""

    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} is registered twice")
        _REGISTRY[name] = cls
        cls.arch_name = name
        return cls

    return wrap


def available() -> list[str]:
    """Registered architecture names, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> type[nn.Module]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownChoice("architecture", name, _REGISTRY) from None


def options(name: str) -> dict[str, Any]:
    """The options of an architecture and their defaults: ``{option: default}`` (its own, then the encoder's)."""
    return {**{f.name: f.default for f in dataclasses.fields(get(name).Options)}, **asdict(EncoderOptions())}


def check_options(name: str, **opts: Any) -> None:
    """Raise ``ValueError`` (or ``UnknownChoice``) when ``opts`` (the others at their defaults) cannot build
    architecture ``name``, or build one of more than ``MAX_PARAMS`` parameters (with one input and one task): the
    model is built on the meta device, which runs every check of its constructor without allocating its
    weights, whatever their size."""
    import torch

    try:
        with torch.device("meta"):
            model = create(name, 1, {"t": 1}, **opts)
    except RuntimeError as err:  # sizes beyond what a tensor can hold
        raise ValueError(f"{name} with {opts} cannot be built ({str(err).splitlines()[0]})") from None
    n = sum(p.numel() for p in model.parameters())
    if n > MAX_PARAMS:
        raise ValueError(f"{name} with {opts} has {n:,} parameters, more than the {MAX_PARAMS:,} allowed")


def create(name: str, d_in: int, tasks: Mapping[str, int], *, fields: Sequence[int] = (), **opts: Any) -> nn.Module:
    """Build architecture ``name`` for ``d_in`` numeric features, categorical ``fields`` (embedding rows of each)
    and ``tasks`` (name -> output width)."""
    valid = options(name)
    for key in opts:
        if key not in valid:
            raise UnknownChoice(f"option of {name}", key, valid)
    enc = EncoderOptions(**{k: v for k, v in opts.items() if k in ENCODER_KEYS})
    own = {k: v for k, v in opts.items() if k not in ENCODER_KEYS}
    if not fields:
        return get(name)(d_in, dict(tasks), **own)
    encoder = FeatureEncoder(d_in, list(fields), enc.embedding_dim)
    return Encoded(encoder, get(name)(encoder.d_out, dict(tasks), **own))


def has_aux_loss(model: nn.Module) -> bool:
    """Whether ``model`` returns an auxiliary training loss with ``forward(..., with_aux=True)``."""
    return bool(getattr(model, "has_aux_loss", False))
