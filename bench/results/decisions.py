"""Decisions a reader can act on: each architecture against the tuned single-task baseline and against the best
architecture, per task and on Δm, is **better**, **worse**, **equivalent** within ±δ, or **inconclusive**
(docs/statistics.md; Schuirmann 1987, Lakens 2017).

With d the oriented difference (> 0: better), se its standard error and df its degrees of freedom, three one-sided
t tests (scipy.stats.t) against the margin δ > 0 (``bench.spec.decision``):

    better:      H0 d <= δ,   p_b = P(T_df >= (d − δ)/se)         (better by more than δ)
    worse:       H0 d >= −δ,  p_w = P(T_df <= (d + δ)/se)         (worse by more than δ)
    equivalent:  H0 |d| >= δ, p_e = max(P(T_df >= (d + δ)/se), P(T_df <= (d − δ)/se))   (TOST, Schuirmann 1987)

Each kind of p is Holm-adjusted over the family (one family per dataset and comparison: the tasks against the
baseline, Δm against the baseline, the tasks against the best, Δm against the best); the label is the test whose
adjusted p < α (at α < 0.5 at most one can be: the three rejection regions are disjoint), else inconclusive.

Standard error: se² = var_u(a)/n_a + var_u(b)/n_b + var_b(test), u the top-level units (replicate means when
R > 1, else seeds), var_b(test) the variance of the paired difference over the test resamples (0 without stored
draws); df by Welch–Satterthwaite, the test-set component with infinite df. Where the replicates are paired (each
a data draw shared by both sides: ``DecisionSpec.paired``) the two unit terms become one, over the replicates'
differences: se² = var_r(d_r)/R + var_b(test), d_r = s (M_a,r − M_b,r), df = R − 1.

The interval shown beside a comparison is this test's own (``interval``): d ± t_df,0.975 se, before the Holm
adjustment, so that an interval and its decision rest on one standard error and one distribution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from . import bootstrap as bs
from .statistics import holm

NAN = float("nan")
BETTER, WORSE, EQUIVALENT, INCONCLUSIVE = "better", "worse", "equivalent", "inconclusive"


@dataclass(frozen=True)
class Comparison:
    diff: float  # oriented difference, > 0 is better
    se: float
    df: float
    delta: float  # the margin δ > 0, in the difference's units


@dataclass(frozen=True)
class Tests:
    p_better: float
    p_worse: float
    p_equivalent: float


def satterthwaite(components: Sequence[tuple[float, float]]) -> float:
    """df = (Σ v_i)² / Σ v_i²/df_i; a component with infinite df (the test-set one) adds nothing below."""
    total = sum(v for v, _ in components)
    denom = sum(v * v / d for v, d in components if v > 0 and math.isfinite(d))
    return total * total / denom if denom > 0 else math.inf


def tests(c: Comparison) -> Tests:
    """The three one-sided tests of the module docstring; NaN when d, se or δ is not usable (never tested)."""
    d, se, delta = c.diff, c.se, c.delta
    if not (math.isfinite(d) and math.isfinite(se) and math.isfinite(delta) and delta > 0):
        return Tests(NAN, NAN, NAN)
    if se == 0:  # no noise: each hypothesis is true or false
        return Tests(float(d <= delta), float(d >= -delta), float(abs(d) >= delta))
    t_hi, t_lo = (d - delta) / se, (d + delta) / se
    p_better = float(stats.t.sf(t_hi, c.df))
    p_worse = float(stats.t.cdf(t_lo, c.df))
    p_equivalent = max(float(stats.t.sf(t_lo, c.df)), float(stats.t.cdf(t_hi, c.df)))
    return Tests(p_better, p_worse, p_equivalent)


def decide(family: Sequence[Tests], alpha: float = 0.05) -> list[str]:
    """The label of every comparison of one family: Holm over the family per kind of test, then the one rejected."""
    adjusted = [holm([getattr(t, k) for t in family]) for k in ("p_better", "p_worse", "p_equivalent")]
    labels = []
    for better, worse, equivalent in zip(*adjusted):
        labels.append(BETTER if better < alpha else WORSE if worse < alpha else
                      EQUIVALENT if equivalent < alpha else INCONCLUSIVE)  # NaN < alpha is False
    return labels


def _var_mean(u: np.ndarray) -> tuple[float, float]:
    """(var(u)/n, n − 1): the squared standard error of a mean of units, NaN below two units."""
    if u.size < 2:
        return NAN, NAN
    return (0.0 if np.all(u == u[0]) else float(np.var(u, ddof=1))) / u.size, u.size - 1.0


def interval(c: Comparison, confidence: float = 0.95) -> tuple[float, float]:
    """The comparison's own t interval d ± t_df,(1+c)/2 se (unadjusted); NaN when se is unknown, [d, d] when 0."""
    if not (math.isfinite(c.diff) and math.isfinite(c.se)):
        return NAN, NAN
    if c.se == 0:
        return c.diff, c.diff
    half = float(stats.t.ppf((1 + confidence) / 2, c.df)) * c.se
    return c.diff - half, c.diff + half


def paired_units(a: bs.Runs, b: bs.Runs) -> bool:
    """Whether two units' replicates can be differenced replicate by replicate: the same R >= 2 replicates."""
    ra, rb = np.unique(a.replicate), np.unique(b.replicate)
    return ra.size >= 2 and np.array_equal(ra, rb)


def compare(a: bs.Runs, b: bs.Runs, sign: float, delta: float, paired: bool = False) -> Comparison:
    """Oriented d = s (M_a − M_b) with se² = var_u(a)/n_a + var_u(b)/n_b + var_b(test) (paired over draws); with
    ``paired`` replicates (the same data draw on both sides, replicate by replicate) se² = var_r(d_r)/R +
    var_b(test) instead."""
    diff = sign * (bs.estimate(a) - bs.estimate(b))
    if paired and paired_units(a, b):  # d_r = s (M_a,r − M_b,r): the draw's own difficulty cancels
        components = [_var_mean(sign * (bs.units(a) - bs.units(b)))]
    else:
        components = [_var_mean(bs.units(a)), _var_mean(bs.units(b))]
    if a.draws is not None and b.draws is not None:
        B = min(a.draws.shape[1], b.draws.shape[1])
        per_draw = np.array([sign * (bs.estimate(a, a.draws[:, k]) - bs.estimate(b, b.draws[:, k]))
                             for k in range(B)])
        components.append((bs.test_variance(per_draw), math.inf))
    return _comparison(diff, components, delta)


def _comparison(diff: float, components: list[tuple[float, float]], delta: float) -> Comparison:
    if any(math.isnan(v) for v, _ in components):
        return Comparison(diff, NAN, NAN, delta)
    se = math.sqrt(sum(v for v, _ in components))
    return Comparison(diff, se, satterthwaite(components), delta)


def compare_units(a: np.ndarray, b: np.ndarray, test_var: float, delta: float, diff: float | None = None,
                  paired: bool = False) -> Comparison:
    """d = mean(a) − mean(b) (or ``diff``) of two sets of top-level unit values (e.g. per-seed Δm),
    se² = var(a)/n_a + var(b)/n_b + a test-set variance component; ``paired`` (the same replicates, in order, on
    both sides): se² = var(a − b)/n + the test-set component."""
    if diff is None:
        diff = float(np.mean(a) - np.mean(b)) if a.size and b.size else NAN
    units = [_var_mean(a - b)] if paired and a.size == b.size >= 2 else [_var_mean(a), _var_mean(b)]
    return _comparison(diff, [*units, (test_var, math.inf)], delta)


def paired_delta_m(arch: Sequence[np.ndarray], base: Sequence[np.ndarray], sign: np.ndarray) -> tuple[float, float]:
    """(se, df) of Δm = 100/T Σ_k s_k (M_a,k − M_b,k)/M_b,k over R paired replicates (``arch[k]``, ``base[k]``: the
    replicate means of task k, in the same replicate order) by the delta method on the replicate pairs:
    ℓ_r = Σ_k g_a,k (A_r,k − M_a,k) + g_b,k (B_r,k − M_b,k), g_a,k = 100/T s_k / M_b,k,
    g_b,k = −100/T s_k M_a,k / M_b,k², se² = var_r(ℓ_r)/R, df = R − 1 (NaN below two replicates)."""
    A, B = np.stack(arch), np.stack(base)  # (T, R)
    if A.shape != B.shape or A.shape[1] < 2:
        return NAN, NAN
    ma, mb = A.mean(axis=1), B.mean(axis=1)
    scale = 100.0 / A.shape[0]
    g_a, g_b = scale * sign / mb, -scale * sign * ma / mb**2
    ell = (g_a[:, None] * (A - ma[:, None]) + g_b[:, None] * (B - mb[:, None])).sum(axis=0)
    var, df = _var_mean(ell)
    return math.sqrt(var), df


def with_test_variance(diff: float, se: float, df: float, test_var: float, delta: float) -> Comparison:
    """A comparison whose se and df come from elsewhere (Δm's delta method), with the test-set component added."""
    if not math.isfinite(se):
        return Comparison(diff, NAN, NAN, delta)
    components = [(se * se, df if math.isfinite(df) else math.inf), (test_var, math.inf)]
    return _comparison(diff, components, delta)
