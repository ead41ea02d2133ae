"""Keep glibc's malloc from handing every step's temporaries back to the kernel.

A training step of a small model allocates and frees the same few buffers of 0.1-30 MB every step (expert
outputs, their gradients). glibc serves blocks above its mmap threshold (128 KiB, raised only as far as the
largest block freed so far) with fresh ``mmap`` calls and trims the top of the heap beyond 128 KiB of free
space, so each step page-faults its temporaries in again and the kernel zeroes every page: on this project's
CPU machine an MMoE step at batch 1024 took about 100-700 minor faults and 9-11 ms, against 0 faults and
7 ms with the settings below (``benchmarks/README.md``). PyTorch's own CPU tuning guide names the cause and
suggests preloading jemalloc or tcmalloc; ``mallopt`` gets the same effect without a dependency.

``tune()`` is called when training starts (never at import). It is skipped where the C library is not glibc,
where the user already chose (``MALLOC_*`` or ``GLIBC_TUNABLES`` malloc settings, an ``LD_PRELOAD``ed
allocator), or with ``BENCH_MALLOC=default``.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed value on 64-bit: blocks below it come from the heap
TRIM_THRESHOLD = 256 * 2**20  # free heap kept for reuse before any is returned to the kernel

_state: bool | None = None


def _user_chose() -> bool:
    env = os.environ
    if env.get("BENCH_MALLOC", "").lower() == "default" or env.get("LD_PRELOAD"):
        return True
    return "glibc.malloc" in env.get("GLIBC_TUNABLES", "") or any(k.startswith("MALLOC_") for k in env)


def tune() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; return whether they are raised."""
    global _state
    if _state is None:
        _state = False
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc" and not _user_chose():
            try:
                libc = ctypes.CDLL(None)
                _state = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                    libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
                )
            except (OSError, AttributeError):
                _state = False
    return _state
