"""Paths made from what users give: a name (task, dataset label, study, architecture unit) as one path
component (``component``: encoded, never a separator, ``..`` or a glob character), and where a file or directory
is set aside rather than deleted (a damaged journal's copy, a damaged result file, ``--fresh``'s old study
directory): a free name beside it, stamped with the UTC time. Near the bottom of the layers, above ``bench.errors``
(a name that cannot be a path is a ``UserError``) and ``bench.hashing``, since the results store, the coordination
layer and the commands all build such paths."""

from __future__ import annotations

import re
import time
import unicodedata
from pathlib import Path

from bench.errors import UserError


def aside(path: Path, tag: str) -> Path:
    """``<name>.<tag>-<UTC time>`` beside ``path`` (``-2``, ``-3``, ... appended while that name is taken); the
    caller renames or copies ``path`` there."""
    path = Path(path)
    stamp = f"{path.name}.{tag}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    target, n = path.with_name(stamp), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{stamp}-{n}")
    return target


# --- names from users as path components ------------------------------------------------------------------
# Characters a name never carries into a path as they are: separators (``/``, and ``\`` for Windows tools and
# archives), the glob characters of pathlib, glob and polars (``*``, ``?``, ``[``, ``]``) and control characters
# (NUL among them). A leading ``.`` (``.``, ``..``, hidden files) is encoded too.
_UNSAFE = frozenset("/\\*?[]")
_HEX = frozenset("0123456789abcdefABCDEF")
MAX_COMPONENT = 240  # bytes of an encoded component (file systems allow 255, and ".<name>.<random>.tmp" is longer)


def _escaped(ch: str) -> str:
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8"))


def component(name: str, what: str = "name") -> str:
    """A user-given name (task, dataset label, study, unit) as one path component, reversibly (``name_of``):
    the characters above as ``%XX`` (their UTF-8 bytes), a ``%`` as ``%25`` where two hex digits follow it, and
    nothing else changed, so a name without them keeps the path it always had (``single_task@y1``,
    ``census-group1``, ``mmoe+gradnorm``, ``growth%``). The result never holds ``/``, ``\\``, NUL or a glob
    character and is never ``.`` or ``..``. An empty name, or one too long for a file name once encoded, is a
    one-line ``UserError`` naming it as ``what``."""
    if not isinstance(name, str) or not name:
        raise UserError(f"{what} {name!r} cannot name a file: it is empty")
    out = []
    for i, ch in enumerate(name):
        if ch in _UNSAFE or unicodedata.category(ch) == "Cc" or (i == 0 and ch == "."):
            out.append(_escaped(ch))
        elif ch == "%" and len(name) >= i + 3 and name[i + 1] in _HEX and name[i + 2] in _HEX:
            out.append("%25")
        else:
            out.append(ch)
    text = "".join(out)
    if len(text.encode("utf-8")) > MAX_COMPONENT:
        shown = name if len(name) <= 60 else name[:57] + "..."
        raise UserError(f"{what} {shown!r} is too long to name a file ({len(text.encode('utf-8'))} bytes once "
                        f"encoded; at most {MAX_COMPONENT}): shorten it")
    return text


_ENCODED = re.compile(r"(?:%[0-9A-Fa-f]{2})+")


def name_of(text: str) -> str:
    """The name a ``component`` encodes (``%XX`` runs decoded as UTF-8; any other ``%`` is itself)."""
    return _ENCODED.sub(lambda m: bytes.fromhex(m.group(0).replace("%", "")).decode("utf-8", "replace"), text)
