"""The study spec's ``wandb`` key: which W&B mode, project and entity a study asks for (``bench.tracking``
does the tracking; ``--wandb`` and ``WANDB_MODE`` take precedence over the spec, see
``bench.tracking.settings.resolve_mode``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.errors import UnknownChoice, UserError

MODES = ("online", "offline", "disabled")
SPEC_KEYS = ("mode", "project", "entity")


@dataclass(frozen=True)
class WandbSpec:
    """The study spec's ``wandb`` key: ``wandb = "offline"`` or a ``[wandb]`` table with these keys."""

    mode: str | None = None
    project: str | None = None
    entity: str | None = None


def parse_wandb(value: Any) -> WandbSpec:
    """Validate the spec's ``wandb`` value (absent: ``None``)."""
    if value is None:
        return WandbSpec()
    if isinstance(value, str):
        value = {"mode": value}
    if not isinstance(value, dict):
        raise UserError(f"wandb must be a mode ({', '.join(MODES)}) or a table with keys {', '.join(SPEC_KEYS)}; "
                        f"got {value!r}")
    for key in value:
        if key not in SPEC_KEYS:
            raise UnknownChoice("key of wandb", key, SPEC_KEYS)
    for key in SPEC_KEYS:
        if key in value and (not isinstance(value[key], str) or not value[key]):
            raise UserError(f"wandb.{key} must be a non-empty string, got {value[key]!r}")
    mode = value.get("mode")
    if mode is not None and mode not in MODES:
        raise UnknownChoice("wandb mode", mode, MODES)
    return WandbSpec(mode=mode, project=value.get("project"), entity=value.get("entity"))
