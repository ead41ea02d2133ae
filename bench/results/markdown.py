"""Markdown cells of the leaderboard pages: numbers with their interval and n, significance marks, and inert
text from specs and data."""

from __future__ import annotations

import html as _html
from typing import Any
from urllib.parse import quote

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


# control characters (an ANSI escape sequence among them) shown as text, never sent raw to a page or a terminal
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(9), *range(11, 32), *range(127, 160)]} | {ord("\n"): " ", ord("\r"): " "}
_MD_SPECIAL = str.maketrans(_CONTROL | {ord(c): "\\" + c for c in "\\`*[]<>|"})


def visible(text: Any) -> str:
    """Text from a spec or a dataset for a terminal line (a unit in a log line): control characters as ``\\xNN``,
    line breaks as spaces."""
    return str(text).translate(_CONTROL)


def escape(text: Any) -> str:
    """Text from a spec or a dataset (description, options, task names) as inert markdown: no links, HTML,
    emphasis or table cells can be injected. For markdown contexts only (paragraphs, headings, table cells, list
    items, image alt text); inside an HTML element of the page (``<summary>``) use ``html``: a markdown renderer
    leaves an HTML block as it is, so backslashes would show and ``<`` would stay live there."""
    return str(text).translate(_MD_SPECIAL)


def html(text: Any) -> str:
    """Text from a spec or a dataset as inert text inside an HTML element of the page (``<details><summary>``):
    entities for ``&``, ``<``, ``>`` and quotes, line breaks as spaces (a blank line would end the HTML block),
    other control characters as ``\\xNN``."""
    return visible(_html.escape(str(text), quote=True))


def image(caption: Any, path: str) -> str:
    """A markdown image: the caption as alt text (``escape``), the relative path percent-encoded as a URL (a
    ``%`` of an encoded file name, a space or a parenthesis cannot end or change the link)."""
    return f"![{escape(caption)}]({quote(str(path), safe='/+@=,')})"


def options_text(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
