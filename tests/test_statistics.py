"""bench.results.statistics against scipy and hand computations on small hand-made inputs."""

from __future__ import annotations

import math
import warnings

import pytest
from scipy import stats

from bench.results.statistics import (
    DeltaM,
    delta_m,
    friedman,
    holm,
    mean_ci,
    nemenyi_cd,
    welch,
)

nan = float("nan")


def isnan(x: float) -> bool:
    return isinstance(x, float) and math.isnan(x)


# ---------------------------------------------------------------------------------------------------------------------
# mean_ci


def test_mean_ci_by_hand():
    r = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    # mean 3, s² = (4+1+0+1+4)/4 = 2.5, t_{0.975,4} = 2.776445105...
    t = stats.t.ppf(0.975, 4)
    assert t == pytest.approx(2.7764451051977987)
    half = t * math.sqrt(2.5) / math.sqrt(5)
    assert (r.n, r.mean, r.std) == (5, pytest.approx(3.0), pytest.approx(math.sqrt(2.5)))
    assert r.lo == pytest.approx(3.0 - half) and r.hi == pytest.approx(3.0 + half)
    assert half == pytest.approx(1.9632432, rel=1e-6)


def test_mean_ci_confidence_level():
    r = mean_ci([0.2, 0.4, 0.9], confidence=0.9)
    m, s = 0.5, math.sqrt(((0.3) ** 2 + 0.1**2 + 0.4**2) / 2)
    half = stats.t.ppf(0.95, 2) * s / math.sqrt(3)
    assert r.mean == pytest.approx(m) and r.std == pytest.approx(s)
    assert (r.lo, r.hi) == (pytest.approx(m - half), pytest.approx(m + half))


def test_mean_ci_drops_non_finite_and_small_n():
    r = mean_ci([1.0, nan, 3.0, float("inf")])
    assert r.n == 2 and r.mean == pytest.approx(2.0) and r.std == pytest.approx(math.sqrt(2))
    one = mean_ci([nan, 7.0])
    assert one.n == 1 and one.mean == 7.0 and isnan(one.std) and isnan(one.lo) and isnan(one.hi)
    zero = mean_ci([nan, float("-inf")])
    assert zero.n == 0 and all(isnan(v) for v in (zero.mean, zero.std, zero.lo, zero.hi))
    const = mean_ci([0.1, 0.1, 0.1])
    assert const.std == 0.0 and const.lo == const.hi == const.mean


# ---------------------------------------------------------------------------------------------------------------------
# welch


def test_welch_by_hand():
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0, 10.0]
    va, vb = 5 / 3, 10.0  # sample variances
    ua, ub = va / 4, vb / 5
    se = math.sqrt(ua + ub)
    df = (ua + ub) ** 2 / (ua**2 / 3 + ub**2 / 4)
    t = (2.5 - 6.0) / se
    p = 2 * stats.t.sf(abs(t), df)
    half = stats.t.ppf(0.975, df) * se
    r = welch(a, b)
    assert df == pytest.approx(5.520788, rel=1e-6)
    assert (r.diff, r.df, r.n_a, r.n_b) == (pytest.approx(-3.5), pytest.approx(df), 4, 5)
    assert r.p == pytest.approx(p)
    assert (r.lo, r.hi) == (pytest.approx(-3.5 - half), pytest.approx(-3.5 + half))
    r90 = welch(a, b, confidence=0.9)
    assert r90.hi - r90.lo == pytest.approx(2 * stats.t.ppf(0.95, df) * se)


def test_welch_drops_non_finite():
    r = welch([1.0, 2.0, nan, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0, 10.0, float("inf")])
    ref = welch([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0, 10.0])
    assert r == ref


def test_welch_small_and_degenerate():
    r = welch([1.0, 2.0], [5.0])  # one value on a side: diff only
    assert r.diff == pytest.approx(-3.5) and (r.n_a, r.n_b) == (2, 1)
    assert all(isnan(v) for v in (r.p, r.lo, r.hi, r.df))
    e = welch([], [1.0, 2.0])
    assert isnan(e.diff) and isnan(e.p) and (e.n_a, e.n_b) == (0, 2)
    # both constant, means differ: no noise, the difference is certain (scipy: t = -inf, p = 0)
    d = welch([1.0, 1.0, 1.0], [2.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy: "precision loss ... nearly identical"
        assert stats.ttest_ind([1.0, 1.0, 1.0], [2.0, 2.0], equal_var=False).pvalue == 0.0
    assert (d.diff, d.lo, d.hi, d.p) == (-1.0, -1.0, -1.0, 0.0) and isnan(d.df)
    # both constant, equal means: 0/0
    s = welch([0.1, 0.1, 0.1], [0.1, 0.1])
    assert s.diff == 0.0 and isnan(s.p) and isnan(s.lo) and isnan(s.hi) and isnan(s.df)
    # one side constant only: ordinary Welch, df = n_other - 1
    o = welch([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    assert o.df == pytest.approx(2.0) and o.p == pytest.approx(2 * stats.t.sf(1.0 / math.sqrt(1 / 3), 2))


# ---------------------------------------------------------------------------------------------------------------------
# holm


def test_holm_by_hand():
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → max(0.06, 0.04) = 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_cap_nan_and_ties():
    assert holm([0.3, 0.5]) == pytest.approx([0.6, 0.6])  # 0.3·2 = 0.6, max(0.6, 0.5)
    assert holm([0.6, 0.2]) == pytest.approx([0.6, 0.4])  # 0.2·2 = 0.4, 0.6·1 = 0.6
    assert holm([0.7, 0.6, 0.9]) == pytest.approx([1.0, 1.0, 1.0])  # 0.6·3 = 1.8 → capped at 1
    out = holm([0.01, nan, 0.04])  # m = 2, NaN not counted
    assert out[0] == pytest.approx(0.02) and isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert holm([0.02, 0.02]) == pytest.approx([0.04, 0.04])
    assert holm([]) == []
    assert all(isnan(v) for v in holm([nan, nan]))
    with pytest.raises(ValueError):
        holm([0.1, 1.5])


# ---------------------------------------------------------------------------------------------------------------------
# delta_m

# task 0: accuracy (higher is better), task 1: loss (lower is better)
BASE = [[0.7, 0.9], [0.4, 0.5, 0.6]]  # means 0.8 and 0.5; variances 0.02 and 0.01
ARCH = [[0.8, 0.88, 0.96], [0.5, 0.45, 0.4]]  # seed-aligned: relative gains per seed (0, .1, .2) on both tasks
HIB = [True, False]


def _baseline_components(ma: list[float]) -> list[tuple[float, int]]:
    # (100/T)² M̄_a,k² s_b,k² / (n_b,k M̄_b,k⁴), df n_b,k − 1
    return [
        (50.0**2 * ma[0] ** 2 * 0.02 / (2 * 0.8**4), 1),
        (50.0**2 * ma[1] ** 2 * 0.01 / (3 * 0.5**4), 2),
    ]


def test_delta_m_aligned_by_hand():
    r = delta_m(ARCH, BASE, HIB)
    # Δm_s = 100/2 · [(a0 − 0.8)/0.8 − (a1 − 0.5)/0.5] = 50·(0+0), 50·(.1+.1), 50·(.2+.2)
    assert r.per_seed == pytest.approx((0.0, 10.0, 20.0))
    assert r.value == pytest.approx(10.0)
    arch_part = 100.0 / 3  # var(0, 10, 20) = 100, / n_a = 3
    base = _baseline_components([0.88, 0.45])
    assert base[0][0] == pytest.approx(47.265625) and base[1][0] == pytest.approx(27.0)
    total = arch_part + base[0][0] + base[1][0]
    df = total**2 / (arch_part**2 / 2 + base[0][0] ** 2 / 1 + base[1][0] ** 2 / 2)
    assert r.se == pytest.approx(math.sqrt(total))
    assert r.df == pytest.approx(df) and df == pytest.approx(3.6707, rel=1e-4)
    half = stats.t.ppf(0.975, df) * math.sqrt(total)
    assert (r.lo, r.hi) == (pytest.approx(10.0 - half), pytest.approx(10.0 + half))


def test_delta_m_aligned_keeps_task_correlation():
    # treating the two tasks as independent would give (100/2)² Σ s_a,k²/(n M̄_b,k²) = 8.33 + 8.33 = 16.67,
    # the per-seed Δm_s (positively correlated gains) gives 33.33
    independent = 2500 * (0.0064 / (3 * 0.64) + 0.0025 / (3 * 0.25))
    assert independent == pytest.approx(50.0 / 3)
    r = delta_m(ARCH, BASE, HIB)
    base = sum(v for v, _ in _baseline_components([0.88, 0.45]))
    assert r.se**2 == pytest.approx(100.0 / 3 + base)
    assert r.se**2 != pytest.approx(independent + base)


def test_delta_m_unaligned_falls_back_to_independent_tasks():
    arch = [[0.8, 0.88, 0.96], [0.5, 0.45]]  # different seed counts: no per-seed pairing
    r = delta_m(arch, BASE, HIB)
    assert r.per_seed == ()
    assert r.value == pytest.approx(50.0 * (0.1 + 0.05))  # M̄_a = 0.88, 0.475
    comps = [
        (2500 * 0.0064 / (3 * 0.64), 2),  # s_a,0² = 0.0064
        (2500 * 0.00125 / (2 * 0.25), 1),  # s_a,1² = 0.00125
        *_baseline_components([0.88, 0.475]),
    ]
    total = sum(v for v, _ in comps)
    df = total**2 / sum(v * v / d for v, d in comps)
    assert r.se == pytest.approx(math.sqrt(total)) and r.df == pytest.approx(df)
    half = stats.t.ppf(0.975, df) * math.sqrt(total)
    assert r.hi - r.lo == pytest.approx(2 * half)


def test_delta_m_drops_failed_seed_from_every_task():
    arch = [[0.8, 0.88, nan, 0.96], [0.5, 0.45, 0.3, 0.4]]  # seed 2 diverged on task 0
    assert delta_m(arch, BASE, HIB) == delta_m(ARCH, BASE, HIB)
    base = [[0.7, float("inf"), 0.9], BASE[1]]  # baseline: dropped per task
    assert delta_m(ARCH, base, HIB) == delta_m(ARCH, BASE, HIB)


def test_delta_m_nan_cases():
    def all_nan(r: DeltaM) -> bool:
        return all(isnan(v) for v in (r.value, r.lo, r.hi, r.se, r.df)) and r.per_seed == ()

    assert all_nan(delta_m(ARCH, [[0.7, 0.9], [-0.1, 0.0, 0.1]], HIB))  # baseline mean 0: relative change undefined
    assert all_nan(delta_m([[0.8, 0.9], [nan, nan]], BASE, HIB))  # a task without values (also drops every seed)
    assert all_nan(delta_m([[0.8], []], BASE, HIB))
    assert all_nan(delta_m(ARCH, [[0.7, 0.9], []], HIB))
    # one baseline seed: Δm is defined, its variance is not
    r = delta_m(ARCH, [[0.8], BASE[1]], HIB)
    assert r.value == pytest.approx(10.0) and isnan(r.se) and isnan(r.lo) and isnan(r.df)
    one = delta_m([[0.88], [0.45]], BASE, HIB)  # one architecture seed
    assert one.per_seed == pytest.approx((10.0,)) and isnan(one.se)
    with pytest.raises(ValueError):
        delta_m(ARCH, BASE, [True])


def test_delta_m_zero_variance_and_single_task():
    r = delta_m([[2.0, 2.0]], [[1.0, 1.0, 1.0]], [False])  # lower is better, doubled: −100 %
    assert r.value == pytest.approx(-100.0) and r.se == 0.0 and r.lo == r.hi == r.value and isnan(r.df)
    s = delta_m([[1.1, 1.3]], [[1.0, 1.0]], [True])  # baseline constant: the architecture's part alone
    assert s.value == pytest.approx(20.0) and s.per_seed == pytest.approx((10.0, 30.0))
    assert s.se == pytest.approx(math.sqrt(200.0 / 2)) and s.df == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------------------------------
# friedman, nemenyi_cd

# scores (higher is better) of 3 architectures on 4 datasets; dataset 2 has a tie between A and B
TABLE = {"A": [0.9, 0.8, 0.7, 0.6], "B": [0.8, 0.8, 0.6, 0.7], "C": [0.7, 0.6, 0.5, 0.5]}


def test_friedman_by_hand_and_scipy():
    r = friedman(TABLE)
    # ranks: d1 A1 B2 C3, d2 A1.5 B1.5 C3, d3 A1 B2 C3, d4 B1 A2 C3
    assert r.mean_ranks == pytest.approx({"A": 5.5 / 4, "B": 6.5 / 4, "C": 3.0})
    assert (r.n_datasets, r.k) == (4, 3)
    # χ² = [12/(Nk(k+1)) Σ R_j² − 3N(k+1)] / [1 − Σ(t³−t)/(Nk(k²−1))] = (54.125 − 48) / (1 − 6/96)
    chi2 = 6.125 / 0.9375
    assert r.statistic == pytest.approx(chi2)
    assert r.p == pytest.approx(math.exp(-chi2 / 2))  # χ²_2 survival function
    ref = stats.friedmanchisquare(TABLE["A"], TABLE["B"], TABLE["C"])
    assert (r.statistic, r.p) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))


def test_friedman_lower_is_better_and_edge_cases():
    low = friedman(TABLE, higher_is_better=False)
    assert low.mean_ranks == pytest.approx({"A": 4 - 5.5 / 4, "B": 4 - 6.5 / 4, "C": 1.0})
    assert low.statistic == pytest.approx(friedman(TABLE).statistic)
    two = friedman({"A": TABLE["A"], "B": TABLE["B"]})  # k = 2: no test, ranks still given
    assert two.mean_ranks == pytest.approx({"A": 5.5 / 4, "B": 6.5 / 4}) and isnan(two.statistic) and isnan(two.p)
    one = friedman({name: v[:1] for name, v in TABLE.items()})  # N = 1
    assert one.mean_ranks == pytest.approx({"A": 1.0, "B": 2.0, "C": 3.0}) and isnan(one.p)
    # a dataset with a missing score is dropped for every architecture
    holes = friedman({"A": [*TABLE["A"], 0.1], "B": [*TABLE["B"], nan], "C": [*TABLE["C"], 0.3]})
    assert holes.n_datasets == 4 and holes.statistic == pytest.approx(friedman(TABLE).statistic)
    tied = friedman({"A": [1.0, 2.0], "B": [1.0, 2.0], "C": [1.0, 2.0]})
    assert tied.mean_ranks == pytest.approx({"A": 2.0, "B": 2.0, "C": 2.0}) and isnan(tied.statistic)
    with pytest.raises(ValueError):
        friedman({"A": [1.0, 2.0], "B": [1.0]})


DEMSAR_Q05 = {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031, 9: 3.102, 10: 3.164}


@pytest.mark.parametrize("k", sorted(DEMSAR_Q05))
def test_nemenyi_q_matches_demsar_table(k):
    # with N = k(k+1)/6 the square root is 1 and CD = q_α. Demšar's 3 decimals are not all rounded the same way
    # (k=3: 2.3437 printed 2.343, k=7: 2.9483 printed 2.949), so: agreement within 1e-3
    n = k * (k + 1) / 6
    assert nemenyi_cd(k, n) == pytest.approx(DEMSAR_Q05[k], abs=1e-3)  # type: ignore[arg-type]


def test_nemenyi_cd_by_hand():
    assert nemenyi_cd(7, 5) == pytest.approx(2.949 * math.sqrt(7 * 8 / 30), abs=1e-3)
    assert nemenyi_cd(7, 20) == pytest.approx(nemenyi_cd(7, 5) / 2)  # CD ∝ 1/sqrt(N)
    assert nemenyi_cd(4, 10, alpha=0.10) < nemenyi_cd(4, 10)
    with pytest.raises(ValueError):
        nemenyi_cd(1, 5)
