"""Dataset registry: ``@register_dataset("name")`` on a loader ``fn(**options) -> MTLData``.

A loader's keyword-only parameters (with defaults) are its options.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from bench.errors import UnknownChoice

from .base import MTLData

_LOADERS: dict[str, Callable[..., MTLData]] = {}


def register_dataset(name: str):
    def wrap(fn: Callable[..., MTLData]) -> Callable[..., MTLData]:
        if name in _LOADERS:
            raise ValueError(f"dataset {name!r} is registered twice")
        _LOADERS[name] = fn
        return fn

    return wrap


def available() -> list[str]:
    return sorted(_LOADERS)


def get(name: str) -> Callable[..., MTLData]:
    try:
        return _LOADERS[name]
    except KeyError:
        raise UnknownChoice("dataset", name, _LOADERS) from None


def options(name: str) -> dict[str, Any]:
    """The options of a dataset loader and their defaults."""
    sig = inspect.signature(get(name))
    return {p.name: p.default for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY}


def load(name: str, **opts: Any) -> MTLData:
    valid = options(name)
    for key in opts:
        if key not in valid:
            raise UnknownChoice(f"option of dataset {name}", key, valid)
    return get(name)(**opts)
