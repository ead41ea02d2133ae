"""Architecture registry (timm-style): one file and one ``@register("name")`` add an architecture.

Every registered class is an ``nn.Module`` built as ``cls(d_in, tasks, **options)`` where ``tasks`` maps
task names to output widths, whose ``forward`` maps ``(B, d_in)`` features to ``{task: (B, out_dim)}``.
Its options are the fields (int, float or bool, with defaults) of its ``Options`` dataclass, plus the input
encoder's (``EncoderOptions``), which every architecture shares.

``create(name, d_in, tasks, fields=sizes)`` with categorical fields puts one ``FeatureEncoder`` in front of the
architecture (``layers.Encoded``, ``forward(x, cat)``); without fields it returns the architecture itself.

What an architecture needs of the data is said by class attributes: ``needs_funnel`` (ESMM, AITM: built with the
data's funnel steps, ``create(..., funnel=[(task, conditional), ...])``) and ``task_embeddings`` (STEM: T + 1 sets
of embeddings in front, so only on data with embedded fields). ``check_data`` refuses, in one line, data that lack
what it needs, before a study writes anything. A funnel architecture sets ``funnel_loss`` True: it accepts
``forward(..., joint=True)`` (``funnel.py``), the view its losses are computed in (``has_funnel_loss``).

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

from bench.errors import UnknownChoice, UserError

from .encoder import Encoded, FeatureEncoder


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

    cls = get(name)
    # what the architecture needs of the data, at its smallest: a two-step funnel, one embedded field
    needs = {"funnel": [("t", False), ("u", True)]} if getattr(cls, "needs_funnel", False) else {}
    tasks = {"t": 1, "u": 1} if needs else {"t": 1}
    if getattr(cls, "task_embeddings", False):
        needs["fields"] = [2]
    try:
        with torch.device("meta"):
            model = create(name, 1, tasks, **needs, **opts)
    except RuntimeError as err:  # sizes beyond what a tensor can hold
        raise ValueError(f"{name} with {opts} cannot be built ({str(err).splitlines()[0]})") from None
    n = sum(p.numel() for p in model.parameters())
    if n > MAX_PARAMS:
        raise ValueError(f"{name} with {opts} has {n:,} parameters, more than the {MAX_PARAMS:,} allowed")


def requirements(name: str) -> list[str]:
    """What architecture ``name`` needs of the data, in words (empty: any data)."""
    cls = get(name)
    needs = [what for attr, what in (("needs_funnel", "data with a funnel"),
                                     ("task_embeddings", "embedded categorical fields")) if getattr(cls, attr, False)]
    return needs


def check_data(name: str, tasks: Sequence[str], fields: Sequence[int] = (),
               funnel: Sequence[tuple[str, bool]] = ()) -> None:
    """A one-line ``UserError`` when data with these tasks, embedded ``fields`` and ``funnel`` steps lack what
    architecture ``name`` needs (a funnel; embedded categorical fields)."""
    cls = get(name)
    if getattr(cls, "needs_funnel", False) and len(funnel) < 2:
        raise UserError(f"{name} is a funnel architecture: it needs data whose tasks form a declared funnel "
                        f"(e.g. synthetic-funnel, aliexpress, a table with observed_if); tasks {', '.join(tasks)} "
                        "have none")
    if getattr(cls, "task_embeddings", False) and not fields:
        raise UserError(f"{name} needs embedded categorical fields (it gives each task its own embeddings beside "
                        f"shared ones); these data have none (tasks {', '.join(tasks)})")


def create(name: str, d_in: int, tasks: Mapping[str, int], *, fields: Sequence[int] = (),
           funnel: Sequence[tuple[str, bool]] = (), **opts: Any) -> nn.Module:
    """Build architecture ``name`` for ``d_in`` numeric features, categorical ``fields`` (embedding rows of each)
    and ``tasks`` (name -> output width); ``funnel``: the data's funnel steps (used by funnel architectures)."""
    valid = options(name)
    for key in opts:
        if key not in valid:
            raise UnknownChoice(f"option of {name}", key, valid)
    cls = get(name)
    check_data(name, list(tasks), fields, funnel)
    enc = EncoderOptions(**{k: v for k, v in opts.items() if k in ENCODER_KEYS})
    own = {k: v for k, v in opts.items() if k not in ENCODER_KEYS}
    if getattr(cls, "needs_funnel", False):
        own["funnel"] = list(funnel)
    if not fields:
        return cls(d_in, dict(tasks), **own)
    sets = len(tasks) + 1 if getattr(cls, "task_embeddings", False) else 1  # STEM: one per task, one shared
    encoder = FeatureEncoder(d_in, list(fields), enc.embedding_dim, sets)
    return Encoded(encoder, cls(encoder.d_out, dict(tasks), **own))


def has_aux_loss(model: nn.Module) -> bool:
    """Whether ``model`` returns an auxiliary training loss with ``forward(..., with_aux=True)``."""
    return bool(getattr(model, "has_aux_loss", False))


def has_funnel_loss(model: nn.Module) -> bool:
    """Whether ``model`` is a funnel architecture whose losses are computed in its ``joint=True`` view."""
    return bool(getattr(model, "funnel_loss", False))
