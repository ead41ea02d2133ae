"""Where a file or directory is set aside rather than deleted (a damaged journal's copy, a damaged result file,
``--fresh``'s old study directory): a free name beside it, stamped with the UTC time. At the bottom of the layers,
with ``bench.errors`` and ``bench.hashing``, since the results store and the coordination layer both set files
aside."""

from __future__ import annotations

import time
from pathlib import Path


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
