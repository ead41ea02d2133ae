"""Stable short hashes of JSON-able configurations: config hashes in the results store and W&B, and the keys
of the dataset tensor cache. At the bottom of the layers, with ``bench.errors``."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def config_hash(config: dict[str, Any]) -> str:
    """A short stable hash of a JSON-able configuration (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def stream_seed(*parts: Any) -> int:
    """A stable seed in [0, 2**31) from JSON-able ``parts`` (e.g. the study's sampler seed, a dataset label, a
    unit, a replicate): the same on every machine and Python run, unlike ``hash()``; distinct parts give
    unrelated seeds (the first 31 bits of a SHA-256)."""
    blob = json.dumps(list(parts), separators=(",", ":"), default=str)
    return int(hashlib.sha256(blob.encode()).hexdigest()[:8], 16) & 0x7FFFFFFF
