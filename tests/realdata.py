"""Where the real-data tests find the UCI files: first where ``bench`` looks for a user's data
(``$BENCH_DATA_DIR``, read when the tests are collected), then ``../shared/data`` beside the checkout. A test whose
files are in neither is skipped, naming where it looked."""

from __future__ import annotations

import os
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def candidates() -> list[Path]:
    env = os.environ.get("BENCH_DATA_DIR", "")
    return [*([Path(env).expanduser()] if env else []), SHARED]


def real_data_dir(folder: str) -> Path:
    """The first candidate data folder holding ``folder`` (``census-income-kdd``, ``adult``); else the first
    candidate, where the skipped tests say the files were looked for."""
    found = [root for root in candidates() if (root / folder).is_dir()]
    return found[0] if found else candidates()[0]
