"""Statistics over per-seed results: intervals, tests, Δm, rankings.

Pure functions over plain sequences / numpy arrays of per-seed values. Every distribution comes from
``scipy.stats``; only the Holm procedure (a procedure, not a distribution) is written here.

Conventions, everywhere:

- Non-finite inputs (NaN, ±inf: a diverged or missing seed) are dropped first. When too few values remain
  for a quantity it is NaN, never a finite number computed from NaN.
- ``confidence=0.95`` is the two-sided confidence level c of every interval.
- std / var are sample statistics (ddof=1).

Formulas (n seeds, c the confidence level):

- ``mean_ci``:  mean ± t_{(1+c)/2, n-1} · s / sqrt(n)                       (Student t over seeds)
- ``welch``:    d = x̄_a − x̄_b,  se² = s_a²/n_a + s_b²/n_b,
                df = se⁴ / [ (s_a²/n_a)²/(n_a−1) + (s_b²/n_b)²/(n_b−1) ]     (Welch–Satterthwaite),
                d ± t_{(1+c)/2, df} · se,  p = 2 · P(T_df > |d|/se)           (scipy.stats.ttest_ind)
- ``holm``:     p_(1) ≤ … ≤ p_(m) sorted;  p̃_(i) = min(1, max_{j≤i} (m−j+1) p_(j))
- ``delta_m``:  Δm = 100/T · Σ_k s_k (M̄_a,k − M̄_b,k) / M̄_b,k,   s_k = +1 if higher is better else −1
                (Maninis et al. 2019). Per seed s of the architecture (baseline means fixed):
                Δm_s = 100/T · Σ_k s_k (M_a,k,s − M̄_b,k) / M̄_b,k, and Δm = mean_s Δm_s.
                Var(Δm) ≈ var_s(Δm_s)/n_a                                   (architecture: tasks correlated per seed)
                         + (100/T)² Σ_k M̄_a,k² s_b,k² / (n_b,k M̄_b,k⁴)       (baseline: delta method, tasks indep.)
                df by Welch–Satterthwaite over those components:  df = (Σ v_i)² / Σ v_i²/(n_i − 1).
- ``friedman``: ranks r_ij within each dataset i (1 = best, ties averaged), R̄_j = mean_i r_ij,
                χ²_F from scipy.stats.friedmanchisquare (with its tie correction), df = k − 1.
- ``nemenyi_cd``: CD = q_α · sqrt(k(k+1) / (6N)),  q_α = studentized_range.ppf(1−α, k, ∞) / sqrt(2)
                  (Demšar 2006, JMLR 7, Table 5).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

NAN = float("nan")

__all__ = [
    "DeltaM",
    "Friedman",
    "MeanCI",
    "Welch",
    "delta_m",
    "friedman",
    "holm",
    "mean_ci",
    "nemenyi_cd",
    "welch",
]


# ----------------------------------------------------------------------------------------------------------------------
# helpers


def _array(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """1-D float64 array of the values, as given (non-finite kept)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected a 1-D sequence of per-seed values, got shape {x.shape}")
    return x


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """The finite values only: NaN / ±inf (diverged or missing seeds) are dropped before any statistic."""
    x = _array(values)
    return x[np.isfinite(x)]


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _constant(x: np.ndarray) -> bool:
    # exact test for zero variance: np.var of identical floats can come out as ~1e-34 instead of 0
    return bool(np.all(x == x[0]))


def _ttest_ind(x: np.ndarray, y: np.ndarray, alternative: str = "two-sided"):
    """scipy.stats.ttest_ind(equal_var=False), without its "precision loss ... nearly identical" warning when a
    side is constant: its variance is then exactly 0, which is handled (both constant never reaches scipy)."""
    with warnings.catch_warnings():
        if _constant(x) or _constant(y):
            warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        return stats.ttest_ind(x, y, equal_var=False, alternative=alternative)


def _satterthwaite(components: Sequence[tuple[float, float]]) -> float:
    """Welch–Satterthwaite df = (Σ v_i)² / Σ v_i² / df_i over (variance component v_i, its df_i)."""
    total = sum(v for v, _ in components)
    denom = sum(v * v / d for v, d in components if v > 0)
    return total * total / denom if denom > 0 else NAN


# ----------------------------------------------------------------------------------------------------------------------
# mean and Student t interval


@dataclass(frozen=True)
class MeanCI:
    n: int  # finite values used
    mean: float
    std: float  # sample std, ddof=1
    lo: float
    hi: float


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> MeanCI:
    """Mean over seeds with a Student t interval: mean ± t_{(1+c)/2, n-1} · std / sqrt(n).

    n = 0: everything NaN. n = 1: the mean is the value; std, lo, hi are NaN (no spread to estimate).
    """
    _check_confidence(confidence)
    x = _finite(values)
    n = int(x.size)
    if n == 0:
        return MeanCI(0, NAN, NAN, NAN, NAN)
    mean = float(np.mean(x))
    if n == 1:
        return MeanCI(1, mean, NAN, NAN, NAN)
    std = 0.0 if _constant(x) else float(np.std(x, ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)  # t quantile · standard error
    return MeanCI(n, mean, std, mean - half, mean + half)


# ----------------------------------------------------------------------------------------------------------------------
# Welch's unequal-variance t test


@dataclass(frozen=True)
class Welch:
    diff: float  # mean(a) - mean(b)
    lo: float
    hi: float
    p: float  # two-sided
    df: float  # Welch–Satterthwaite degrees of freedom
    n_a: int
    n_b: int


def welch(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, confidence: float = 0.95) -> Welch:
    """Welch's t interval for mean(a) - mean(b) and its two-sided p-value (scipy.stats.ttest_ind, equal_var=False).

    Edge cases, decided here rather than left to scipy:
    - a side empty: everything NaN (n_a, n_b still reported).
    - a side with 1 value: diff computed, p / lo / hi / df NaN (that side's variance is unknown).
    - both sides constant (zero variance), means differ: there is no noise to explain the difference, so
      p = 0.0 and lo = hi = diff; df NaN (0/0). scipy gives p = 0.0 too (t = ±inf) but reports a meaningless df = 1.
    - both sides constant, equal means: p / lo / hi / df NaN (0/0: scipy gives p = NaN as well).
    """
    _check_confidence(confidence)
    x, y = _finite(a), _finite(b)
    n_a, n_b = int(x.size), int(y.size)
    if n_a == 0 or n_b == 0:
        return Welch(NAN, NAN, NAN, NAN, NAN, n_a, n_b)
    diff = float(np.mean(x) - np.mean(y))
    if n_a < 2 or n_b < 2:
        return Welch(diff, NAN, NAN, NAN, NAN, n_a, n_b)
    if _constant(x) and _constant(y):
        diff = float(x[0] - y[0])  # exact: the means of identical floats can differ in the last bit
        if diff != 0:
            return Welch(diff, diff, diff, 0.0, NAN, n_a, n_b)
        return Welch(diff, NAN, NAN, NAN, NAN, n_a, n_b)
    res = _ttest_ind(x, y)
    ci = res.confidence_interval(confidence_level=confidence)  # diff ± t_{(1+c)/2, df} · se
    return Welch(diff, float(ci.low), float(ci.high), float(res.pvalue), float(res.df), n_a, n_b)


# ----------------------------------------------------------------------------------------------------------------------
# Holm-Bonferroni


def holm(pvalues: Sequence[float] | np.ndarray) -> list[float]:
    """Holm step-down adjusted p-values, in the input order: p̃_(i) = min(1, max_{j≤i} (m−j+1) p_(j)).

    NaN entries stay NaN and do not count in m (a comparison that could not be made is not a test).
    Ties keep their input order (stable sort); the running max gives tied p-values the same adjusted value.
    """
    p = _array(pvalues)
    if np.any(np.isinf(p)) or np.any((p[~np.isnan(p)] < 0) | (p[~np.isnan(p)] > 1)):
        raise ValueError(f"p-values must lie in [0, 1] (or be NaN), got {p.tolist()}")
    out = np.full(p.shape, NAN)
    idx = np.flatnonzero(~np.isnan(p))
    m = idx.size
    if m == 0:
        return out.tolist()
    order = idx[np.argsort(p[idx], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]  # (m - j + 1) p_(j), j = 1..m
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))  # step-down: monotone, capped at 1
    return out.tolist()


# ----------------------------------------------------------------------------------------------------------------------
# Δm against a baseline


@dataclass(frozen=True)
class DeltaM:
    value: float  # Δm in percent
    lo: float
    hi: float
    se: float  # standard error of Δm (delta method)
    df: float  # Welch–Satterthwaite degrees of freedom of se
    per_seed: tuple[float, ...]  # Δm_s per architecture seed with the baseline means fixed; () if not aligned


_DELTA_M_NAN = DeltaM(NAN, NAN, NAN, NAN, NAN, ())


def delta_m(
    a_per_task: Sequence[Sequence[float] | np.ndarray],
    base_per_task: Sequence[Sequence[float] | np.ndarray],
    higher_is_better: Sequence[bool],
    confidence: float = 0.95,
) -> DeltaM:
    """Δm (percent) of an architecture against the baseline, with a delta-method t interval.

    a_per_task[k]: the architecture's per-seed values of task k; base_per_task[k] likewise for the baseline, whose
    seeds are independent of the architecture's (and, being single-task models, independent across tasks).

    Aligned case (the architecture's tasks all have the same number of values, taken as seed-aligned by index: one
    multi-task model per seed gives every task's value): a seed with a non-finite value in any task is dropped from
    every task (the model failed), Δm_s is formed per seed, and var_s(Δm_s)/n_a is the architecture's variance
    component, which carries the correlation between tasks of the same model.
    Otherwise (unequal lengths): non-finite values are dropped per task, tasks are treated as independent
    (component (100/T)² Σ_k s_a,k² / (n_a,k M̄_b,k²) with df n_a,k − 1 each, which ignores the correlation), and
    per_seed is ().

    All NaN (per_seed ()) when some task has no finite value (for either side) or some baseline mean is 0
    (the relative change (M̄_a − M̄_b)/M̄_b is undefined). value is finite but se / lo / hi / df NaN when a
    variance cannot be estimated (a side of some task with a single value). When every variance component is 0,
    se = 0, lo = hi = value, df NaN.
    """
    _check_confidence(confidence)
    sign, arch, base, aligned = _delta_m_values(a_per_task, base_per_task, higher_is_better)
    if any(v.size == 0 for v in arch) or any(v.size == 0 for v in base):
        return _DELTA_M_NAN
    mb = np.array([float(np.mean(v)) for v in base])
    if np.any(mb == 0):
        return _DELTA_M_NAN
    ma = np.array([float(np.mean(v)) for v in arch])
    scale = 100.0 / len(arch)

    # Δm = 100/T Σ_k s_k (M̄_a,k − M̄_b,k) / M̄_b,k
    value = float(scale * np.sum(sign * (ma - mb) / mb))
    components, per_seed = _delta_m_components(sign, arch, base, ma, mb, aligned)
    return _delta_m_interval(value, components, per_seed, confidence)


def _delta_m_values(
    a_per_task: Sequence[Sequence[float] | np.ndarray],
    base_per_task: Sequence[Sequence[float] | np.ndarray],
    higher_is_better: Sequence[bool],
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], bool]:
    """The inputs of ``delta_m`` checked and cleaned: (the sign s_k of each task, the architecture's values per
    task, the baseline's finite values per task, whether the architecture's are seed-aligned). Aligned: a seed
    with a non-finite value in any task is dropped from every task; otherwise non-finite values per task."""
    T = len(a_per_task)
    if T == 0 or len(base_per_task) != T or len(higher_is_better) != T:
        raise ValueError(
            f"need one entry per task in each input: got {T} architecture, {len(base_per_task)} baseline, "
            f"{len(higher_is_better)} higher_is_better"
        )
    sign = np.array([1.0 if h else -1.0 for h in higher_is_better])
    base = [_finite(v) for v in base_per_task]
    raw = [_array(v) for v in a_per_task]
    aligned = len({r.size for r in raw}) == 1
    if aligned:
        keep = np.all(np.isfinite(np.stack(raw)), axis=0)  # drop a seed that failed on any task
        arch = [r[keep] for r in raw]
    else:
        arch = [r[np.isfinite(r)] for r in raw]
    return sign, arch, base, aligned


def _var(x: np.ndarray) -> float:
    """Sample variance (ddof 1): NaN for fewer than two values, exactly 0 for constant ones."""
    return NAN if x.size < 2 else 0.0 if _constant(x) else float(np.var(x, ddof=1))


def _delta_m_components(
    sign: np.ndarray, arch: list[np.ndarray], base: list[np.ndarray], ma: np.ndarray, mb: np.ndarray, aligned: bool
) -> tuple[list[tuple[float, float]], tuple[float, ...]]:
    """The delta-method variance components of Δm, each with its df, and the per-seed Δm_s (aligned case only,
    else ()): the architecture's (per seed when aligned, else per task) and each task's baseline."""
    scale = 100.0 / len(arch)
    components: list[tuple[float, float]] = []  # (variance component, its df)
    per_seed: tuple[float, ...] = ()
    if aligned:
        # Δm_s = 100/T Σ_k s_k (M_a,k,s − M̄_b,k) / M̄_b,k: linear in the seed's values, so mean_s Δm_s = Δm
        dm_s = scale * np.sum(sign[:, None] * (np.stack(arch) - mb[:, None]) / mb[:, None], axis=0)
        per_seed = tuple(float(d) for d in dm_s)
        n_a = dm_s.size
        components.append((_var(dm_s) / n_a, n_a - 1))
    else:
        for x, b in zip(arch, mb):
            # ∂Δm/∂M̄_a,k = s_k · 100/T / M̄_b,k  →  (100/T)² s_a,k² / (n_a,k M̄_b,k²)
            components.append((scale**2 * _var(x) / (x.size * b**2), x.size - 1))
    for y, a, b in zip(base, ma, mb):
        # ∂Δm/∂M̄_b,k = −s_k · 100/T · M̄_a,k / M̄_b,k²  →  (100/T)² M̄_a,k² s_b,k² / (n_b,k M̄_b,k⁴)
        components.append((scale**2 * a**2 * _var(y) / (y.size * b**4), y.size - 1))
    return components, per_seed


def _delta_m_interval(value: float, components: list[tuple[float, float]], per_seed: tuple[float, ...],
                      confidence: float) -> DeltaM:
    """Δm with its t interval from the variance components (Welch–Satterthwaite df): NaN where a component
    cannot be estimated, the point itself when every component is 0."""
    if any(math.isnan(v) for v, _ in components):
        return DeltaM(value, NAN, NAN, NAN, NAN, per_seed)
    se = math.sqrt(sum(v for v, _ in components))
    if se == 0:
        return DeltaM(value, value, value, 0.0, NAN, per_seed)
    df = _satterthwaite(components)
    half = float(stats.t.ppf((1 + confidence) / 2, df)) * se
    return DeltaM(value, value - half, value + half, se, df, per_seed)


# ----------------------------------------------------------------------------------------------------------------------
# Friedman test and Nemenyi critical difference across datasets


@dataclass(frozen=True)
class Friedman:
    mean_ranks: dict[str, float]  # 1 = best
    statistic: float  # Friedman χ² (tie-corrected, scipy)
    p: float
    n_datasets: int  # N: datasets (blocks) used
    k: int  # architectures


def friedman(ranks_or_scores: Mapping[str, Sequence[float] | np.ndarray], higher_is_better: bool = True) -> Friedman:
    """Mean rank per architecture over datasets and the Friedman test (datasets as blocks).

    ranks_or_scores[arch][i]: the architecture's score on dataset i (same dataset order for all). Scores are
    ranked within each dataset (rank 1 = best, ties averaged, scipy.stats.rankdata); a dataset with a non-finite
    score for any architecture is dropped (ranks need every architecture). Statistic and p need k ≥ 3 and N ≥ 2
    (scipy.stats.friedmanchisquare), and are NaN otherwise, or when every dataset is a full tie (χ² = 0/0);
    the mean ranks are given whenever N ≥ 1.
    """
    names = list(ranks_or_scores)
    k = len(names)
    if k == 0:
        return Friedman({}, NAN, NAN, 0, 0)
    cols = [_array(ranks_or_scores[name]) for name in names]
    if len({c.size for c in cols}) != 1:
        raise ValueError("every architecture needs one score per dataset, in the same order")
    table = np.stack(cols, axis=1)  # (datasets, architectures)
    table = table[np.all(np.isfinite(table), axis=1)]
    N = table.shape[0]
    if N == 0:
        return Friedman(dict.fromkeys(names, NAN), NAN, NAN, 0, k)
    ranks = stats.rankdata(-table if higher_is_better else table, axis=1)  # within each dataset, 1 = best
    mean_ranks = {name: float(r) for name, r in zip(names, ranks.mean(axis=0))}
    statistic = p = NAN
    all_tied = bool(np.all(table == table[:, :1]))
    if k >= 3 and N >= 2 and not all_tied:
        # χ²_F is symmetric in the rank direction, so the raw scores can go to scipy as they are
        res = stats.friedmanchisquare(*table.T)
        statistic, p = float(res.statistic), float(res.pvalue)
    return Friedman(mean_ranks, statistic, p, N, k)


def nemenyi_cd(k: int, n_datasets: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of mean ranks (Demšar 2006): CD = q_α sqrt(k(k+1) / (6N)).

    q_α = studentized range quantile at 1−α for k groups and infinite df, divided by sqrt(2) (Demšar's Table 5:
    k=2: 1.960, k=3: 2.343, ..., k=10: 3.164). scipy's studentized_range.ppf takes df = inf directly (it switches to
    the asymptotic form) and is fast: ~1 ms per call, measured with scipy 1.17.
    """
    if k < 2 or n_datasets < 1:
        raise ValueError(f"need k >= 2 architectures and n_datasets >= 1, got k={k}, n_datasets={n_datasets}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    q = float(stats.studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)
    return q * math.sqrt(k * (k + 1) / (6 * n_datasets))
