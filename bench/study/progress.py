"""One progress display over a whole study: the search trials and the final runs done of the study's total,
elapsed time, the time left, the current unit and the best validation value so far in its metric's own
orientation (``val mse (y1) 0.081``).

In a terminal it is a tqdm bar on stderr, with the log lines printed above it; otherwise (a file, a pipe, CI)
there is no bar and every log line ends with the same counts in brackets. ``bench run --quiet`` shows neither.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


@dataclass
class Progress:
    """Counts of the study's work: ``trials`` (the search budget of every unit) and ``runs`` (final seeds and
    repeats of every unit). ``done_*`` are what is done study-wide (other workers' and earlier runs' work
    included); the time left is estimated from this process's own rate since it started, so resumed work does not
    make it optimistic. ``bar``: draw a tqdm bar (a terminal)."""

    trials: int
    runs: int
    bar: bool = False
    start: float = field(default_factory=time.perf_counter)
    done_trials: int = 0
    done_runs: int = 0
    unit: str = ""
    best: str = ""
    _at_start: int | None = None
    _tqdm: Any = None

    @property
    def total(self) -> int:
        return self.trials + self.runs

    @property
    def done(self) -> int:
        return min(self.done_trials, self.trials) + min(self.done_runs, self.runs)

    def search(self, done_trials: int, unit: str, label: str, best: float | None) -> str:
        """A trial ended: ``done_trials`` counted study-wide, ``best`` the unit's best value in its metric's
        orientation (None before any complete trial). Returns the counts for the log line."""
        self.done_trials, self.unit = done_trials, unit
        if best is not None and math.isfinite(best):
            self.best = f"best {label} {best:.4g}"
        return self._update()

    def final(self, done_runs: int, unit: str) -> str:
        """Final runs (or repeats) were stored: ``done_runs`` counted study-wide. The search's best value is
        cleared: it was the previous search unit's, not this one's."""
        self.done_runs, self.unit, self.best = done_runs, unit, ""
        return self._update()

    def eta(self) -> float | None:
        """Seconds left at this process's rate so far (None before it has done anything)."""
        if self._at_start is None:
            return None
        ran = self.done - self._at_start
        elapsed = time.perf_counter() - self.start
        return elapsed / ran * (self.total - self.done) if ran > 0 else None

    def describe(self) -> str:
        elapsed = time.perf_counter() - self.start
        eta = self.eta()
        left = "" if eta is None or self.done >= self.total else f", about {minutes(eta)} left"
        return (f"[{min(self.done_trials, self.trials)}/{self.trials} trials, {min(self.done_runs, self.runs)}/"
                f"{self.runs} final runs, {minutes(elapsed)} elapsed{left}]")

    def _update(self) -> str:
        if self._at_start is None:  # the first report: what was done before this process counted for nothing
            self._at_start = max(self.done - 1, 0)
        if self.bar:
            self._draw()
        return self.describe()

    def _draw(self) -> None:
        from tqdm import tqdm

        if self._tqdm is None:
            self._tqdm = tqdm(total=self.total, initial=self._at_start, unit="run", file=sys.stderr,
                              dynamic_ncols=True, desc="study", smoothing=0.1)
        self._tqdm.set_description_str(f"{'search' if self.done_trials < self.trials else 'final'} {self.unit}",
                                       refresh=False)
        self._tqdm.set_postfix_str(self.best, refresh=False)
        self._tqdm.update(self.done - self._tqdm.n)

    def writer(self, out: Callable[[str], None]) -> Callable[[str], None]:
        """``out`` printing above the bar (the bar is cleared, the line printed, the bar redrawn)."""
        if not self.bar:
            return out

        def write(line: str) -> None:
            from tqdm import tqdm

            with tqdm.external_write_mode(file=sys.stderr):
                out(line)

        return write

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None
