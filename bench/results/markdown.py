"""Markdown cells of the leaderboard pages: numbers with their interval and n, significance marks, and inert
text from specs and data."""

from __future__ import annotations

from typing import Any

DASH = "—"


def number(value: float | None, fmt: str = ".4f", signed: bool = False) -> str:
    if value is None:
        return DASH
    text = f"{value:+{fmt}}" if signed else f"{value:{fmt}}"
    if text.startswith("-") and float(text) == 0:  # a tiny negative rounding to zero is printed as zero
        text = ("+" if signed else "") + text[1:]
    return text


def interval(mean: float | None, lo: float | None, hi: float | None, fmt: str = ".4f", signed: bool = False,
             unit: str = "") -> str:
    """``0.9446 [0.9431, 0.9461]``; the mean alone when there is no interval (one seed), a dash when no mean."""
    if mean is None:
        return DASH
    text = number(mean, fmt, signed) + unit
    if lo is None or hi is None:
        return text
    return f"{text} [{number(lo, fmt, signed)}, {number(hi, fmt, signed)}]"


def pvalue(p: float | None) -> str:
    if p is None:
        return DASH
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def significance(sig: str | None, p_holm: float | None) -> str:
    """▲ (significantly better), ▼ (significantly worse) with the Holm-adjusted p, or n.s."""
    if sig is None:
        return ""
    return "n.s." if sig == "n.s." else f"{'▲' if sig == '+' else '▼'} {pvalue(p_holm)}"


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*[]<>|"} | {"\n": " ", "\r": " "})


def escape(text: Any) -> str:
    """Text from a spec or a dataset (description, options, task names) as inert markdown: no links, HTML,
    emphasis or table cells can be injected."""
    return str(text).translate(_MD_SPECIAL)


def options_text(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
