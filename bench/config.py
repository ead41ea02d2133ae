"""Typed parsing of ``key=value`` settings against a schema of defaults (from the CLI or a study spec)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .errors import UnknownChoice, UserError


def coerce(key: str, value: Any, default: Any) -> Any:
    """``value`` (a string from the command line, or a TOML value) converted to the type of ``default``."""
    if default is None or default is Ellipsis:
        return value
    kind = type(default)
    if isinstance(value, str) and kind is not str:
        text = value.strip()
        try:
            if kind is bool:
                low = text.lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return low in ("true", "1", "yes")
            if kind is int:
                return int(text)
            if kind is float:
                return float(text)
        except ValueError:
            raise UserError(f"{key}={value!r}: expected {kind.__name__}") from None
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UserError(f"{key}={value!r}: expected {kind.__name__}")
    return value


def parse_assignments(pairs: list[str], schema: dict[str, Any], what: str = "config key") -> dict[str, Any]:
    """``["lr=0.01", "n_experts=4"]`` -> ``{"lr": 0.01, "n_experts": 4}``, typed by ``schema``'s defaults."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"expected key=value, got {pair!r}")
        if key not in schema:
            raise UnknownChoice(what, key, schema)
        out[key] = coerce(key, value, schema[key])
    return out


def config_hash(config: dict[str, Any]) -> str:
    """A short stable hash of a JSON-able configuration (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
