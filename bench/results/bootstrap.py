"""Every source of variance in a cell's interval: a two-level bootstrap over replicates and seeds, crossed with
the test-set resamples stored beside each final run (``bench.training.bootstrap``, store column ``draw``).

A unit's runs on one task are (replicate r, seed s, value v_rs, draws D_rs[1..B]). Replicate r is the whole
pipeline run again (search and final seeds); seeds vary within one search's best configuration. The estimate is
the replicate-level mean

    M = 1/R sum_r  1/n_r sum_s v_rs                      (R = 1: the plain mean over seeds, as before)

and one bootstrap iteration i

    1. draws R replicates with replacement, and within each drawn replicate n_r of its seeds with replacement:
       weights W_i,rs (how often run rs was drawn, / (R n_r)), so that M*_i = sum_rs W_i,rs x_rs
       (``weights``; which configuration the search found is inside the interval once R > 1);
    2. draws one test resample b_i (uniform over 1..B) and uses x_rs = D_rs[b_i] (without stored draws: v_rs).

Comparisons (gains, Δm, against the best) are not bootstrapped: their intervals are the decisions' own t
intervals (``bench.results.decisions``), with the standard error
    se^2 = var_u(a)/n_a + var_u(b)/n_b + var_b(test)
u the top-level units (replicate means when R > 1, else seeds), n their number, and var_b(test) the variance over
the B test resamples of the difference computed on each resample (``test_variance``; the same resample on both
sides, so row-level difficulty common to both cancels), or over paired replicates var_r(d_r)/R + var_b(test).
A percentile bootstrap of a difference with three seeds a side is far narrower than the t test that decides it
(the bootstrap's variance is (n - 1)/n of the sample's and its quantiles normal, against t with a few df), which
showed intervals beyond -delta beside "inconclusive" decisions. With one standard error for both, an interval
beyond +-delta beside "inconclusive" can only come from the Holm adjustment (the interval is unadjusted).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

N_BOOT = 2000  # bootstrap iterations per interval
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Runs:
    """One unit's finite runs of one task, in a fixed (replicate, seed) order."""

    replicate: np.ndarray  # (n,) int
    value: np.ndarray  # (n,) the test metric
    draws: np.ndarray | None = None  # (n, B) the metric on each test resample; None when not stored for every run

    @property
    def n(self) -> int:
        return int(self.value.size)


def rng_for(*names: object) -> np.random.Generator:
    """A generator seeded from the names of what is resampled (stable across runs and machines)."""
    digest = hashlib.blake2b("\x1f".join(map(str, names)).encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def estimate(runs: Runs, values: np.ndarray | None = None) -> float:
    """M = 1/R sum_r mean_s v_rs (``values`` replace ``runs.value``, e.g. one test resample's column)."""
    v = runs.value if values is None else values
    return float(np.mean([v[runs.replicate == r].mean() for r in np.unique(runs.replicate)]))


def units(runs: Runs) -> np.ndarray:
    """The top-level units' values: replicate means when R > 1, else the runs themselves."""
    reps = np.unique(runs.replicate)
    if reps.size == 1:
        return runs.value
    return np.array([runs.value[runs.replicate == r].mean() for r in reps])


def weights(replicate: np.ndarray, rng: np.random.Generator, n_boot: int = N_BOOT) -> np.ndarray:
    """(n_boot, n) two-level bootstrap weights: R replicates drawn with replacement, then within each drawn one its
    n_r seeds with replacement; every row sums to 1 (the resampled replicate-level mean is W @ x)."""
    reps = np.unique(replicate)
    R, n = reps.size, replicate.size
    out = np.zeros((n_boot, n))
    chosen = rng.integers(0, R, size=(n_boot, R))  # step 1: the replicates of each iteration
    for slot in range(R):
        for j, r in enumerate(reps):
            idx = np.flatnonzero(replicate == r)
            m = idx.size
            picks = rng.integers(0, m, size=(n_boot, m))  # step 2: its seeds, had it been drawn in this slot
            # row i's picks land in block i of one bincount: counts (n_boot, m)
            counts = np.bincount((picks + m * np.arange(n_boot)[:, None]).ravel(), minlength=n_boot * m)
            counts = counts.reshape(n_boot, m)
            out[:, idx] += (chosen[:, slot] == j)[:, None] * counts / (m * R)
    return out


def draw_index(sides: list[Runs], rng: np.random.Generator, n_boot: int = N_BOOT) -> np.ndarray | None:
    """The test resample b_i of each iteration, common to every side; None unless every side has draws."""
    if any(s.draws is None for s in sides):
        return None
    B = min(s.draws.shape[1] for s in sides)  # type: ignore[union-attr]
    return rng.integers(0, B, size=n_boot)


def resampled(runs: Runs, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """(n_boot,) M*_i = sum_rs W_i,rs x_rs, with x the draw b_i of each run (or its value without draws)."""
    x = runs.value[None, :] if b is None else runs.draws[:, b].T  # type: ignore[index]
    return (w * x).sum(axis=1)


def percentile(boot: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The percentile interval [q_(1-c)/2, q_(1+c)/2] of a bootstrap distribution."""
    lo, hi = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def mean_boot(runs: Runs, name: tuple, n_boot: int = N_BOOT) -> np.ndarray:
    """The bootstrap distribution of one unit's estimate M (a cell of the leaderboard)."""
    rng = rng_for("cell", *name)
    w = weights(runs.replicate, rng, n_boot)
    return resampled(runs, w, draw_index([runs], rng, n_boot))


def test_variance(per_draw: np.ndarray) -> float:
    """var_b of an estimate computed on each test resample b (sample variance); 0 for fewer than two draws."""
    return float(np.var(per_draw, ddof=1)) if per_draw.size >= 2 else 0.0


def draw_values(runs: Runs, b: int) -> np.ndarray:
    """Every run's metric on test resample b."""
    return runs.draws[:, b]  # type: ignore[index]
