"""Markdown cells of the leaderboard pages: numbers with their uncertainty, and inert text from specs and data."""

from __future__ import annotations

from typing import Any


def pm(mean: float | None, std: float | None, fmt: str = ".4f", signed: bool = False) -> str:
    if mean is None:
        return "—"
    text = f"{mean:+{fmt}}" if signed else f"{mean:{fmt}}"
    return f"{text} ± {std:{fmt}}" if std is not None else text


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*[]<>|"} | {"\n": " ", "\r": " "})


def escape(text: Any) -> str:
    """Text from a spec or a dataset (description, options, task names) as inert markdown: no links, HTML,
    emphasis or table cells can be injected."""
    return str(text).translate(_MD_SPECIAL)


def options_text(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
