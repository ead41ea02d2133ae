"""``synthetic-funnel``: impressions -> clicks -> conversions whose truth is known (selection bias made measurable).

Each impression has ``d`` numeric features, a user and an item (two embedded categorical fields). Two signals of
unit variance are drawn per impression from the same recipe with independent parameters (k = 1, 2):

    z_k = sqrt(0.4) w_k^T x + sqrt(0.2) b_k[user] + sqrt(0.2) c_k[item] + sqrt(0.2) <U_k[user], V_k[item]> / sqrt(r)

    x ~ N(0, I_d),  w_1 _|_ w_2 random unit vectors,  b_k, c_k per user / item and U_k, V_k (r per user / item)
    random, centred, of mean square 1, z_2's orthogonal to z_1's over the users / items

The click and the conversion share a controlled part of their signal, ``rho`` (the correlation knob, as ``p`` is
for the MMoE generator; z_1 and z_2 are uncorrelated, so corr(s_ctr, s_cvr) = rho over the impressions):

    s_ctr = z_1,                       pCTR = sigmoid(a_ctr + scale s_ctr)
    s_cvr = rho z_1 + sqrt(1 - rho^2) z_2,   pCVR = sigmoid(a_cvr + scale s_cvr)

    click ~ Bernoulli(pCTR),   conversion* ~ Bernoulli(pCVR)     (independent given the impression)

with the intercepts a solved (bisection) so that the mean pCTR over the drawn impressions is ``click_rate`` and the
mean pCVR is ``conversion_rate``. The log records the conversion only where there was a click: task ``cvr`` is
``conversion*`` on clicked rows and missing (NaN) elsewhere; task ``ctr`` is the click. The funnel ctr -> cvr is
declared (cvr conditional on the click). With rho > 0 the clicked impressions are those of higher s_cvr too, so a
CVR model trained on clicked rows alone sees a biased sample of the space it will be used on (sample selection
bias, Ma et al., SIGIR 2018).

The truth of the test impressions is kept (``MTLData.truth``): pCTR and pCVR, and the click and conversion*
drawn for every impression, also the counterfactual conversion of an unclicked one. Final runs score the CVR over
the entire impression space against them (``auc_entire``, ``calib_entire``; ``bench.training.metrics``).

Defaults: 20,000 impressions, 8 numeric features, 200 users and 100 items (rank 4), rho 0.5, click rate 0.2,
conversion rate 0.2 (of every impression; the rate among clicks is higher when rho > 0), scale 1.5: small enough
for a CPU (about 4,000 clicked training rows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from bench.errors import UserError

from .base import Field, Funnel, MTLData, Split, Task, Truth
from .feature_encoding import FeatureEncoding
from .registry import register_dataset

SHARES = (0.4, 0.2, 0.2, 0.2)  # variance of z_k from the numeric features, the user, the item, their interaction
MAX_ROWS = 50_000_000  # a bound on mistyped sizes (about 4 GB of float64 while generating at d = 8)


def orthonormal(g: torch.Generator, n: int, k: int) -> torch.Tensor:
    """``(n, k)`` columns of mean 0 and mean square 1 over the n rows, orthogonal to each other: a centred Gaussian
    matrix's QR factor, scaled by sqrt(n)."""
    a = torch.randn(n, k, generator=g, dtype=torch.float64)
    return torch.linalg.qr(a - a.mean(0)).Q * math.sqrt(n)


def signals(g: torch.Generator, x: torch.Tensor, user: torch.Tensor, item: torch.Tensor, n_users: int, n_items: int,
            rank: int) -> torch.Tensor:
    """The two unit-variance signals z_1, z_2 ``(2, N)`` of the impressions (x (N, d), user and item indices (N,)),
    parameters drawn from ``g``: each part of z_2 orthogonal to z_1's (w_1 and w_2, the user effects b_1 and b_2
    over the users, ...), so that z_1 and z_2 are uncorrelated over the impressions whatever the draw, and the
    correlation of s_ctr and s_cvr is rho itself."""
    d = x.shape[1]
    w = torch.linalg.qr(torch.randn(d, 2, generator=g, dtype=torch.float64)).Q  # (d, 2) orthonormal: w_k^T x ~ N(0, 1)
    b, c = orthonormal(g, n_users, 2), orthonormal(g, n_items, 2)  # (n_users, 2), (n_items, 2)
    u, v = orthonormal(g, n_users, 2 * rank), orthonormal(g, n_items, 2 * rank)  # U_1 | U_2, V_1 | V_2
    inter = (u[user].unflatten(1, (2, rank)) * v[item].unflatten(1, (2, rank))).sum(-1) / math.sqrt(rank)  # (N, 2)
    parts = (x @ w, b[user], c[item], inter)  # each (N, 2) of variance 1
    return sum(math.sqrt(s) * p for s, p in zip(SHARES, parts)).T


def intercept(score: torch.Tensor, rate: float) -> float:
    """a with mean(sigmoid(a + score)) = rate, by bisection (the mean is increasing in a)."""
    lo, hi = -30.0, 30.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if torch.sigmoid(mid + score).mean().item() < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def check_options(n_samples: int, d: int, n_users: int, n_items: int, rank: int, rho: float, click_rate: float,
                  conversion_rate: float, scale: float, val_fraction: float, test_fraction: float) -> None:
    """One-line errors for options the generator cannot honour."""
    if not 1 <= n_samples <= MAX_ROWS:
        raise UserError(f"synthetic-funnel: n_samples must be in 1..{MAX_ROWS:,}, got {n_samples}")
    if rank < 1 or d < 2 or min(n_users, n_items) < 2 * rank + 1:
        raise UserError(f"synthetic-funnel: needs rank >= 1, d >= 2 and n_users, n_items >= 2 rank + 1 (two "
                        f"uncorrelated signals), got rank={rank}, d={d}, n_users={n_users}, n_items={n_items}")
    if not -1.0 <= rho <= 1.0:
        raise UserError(f"synthetic-funnel: rho (the correlation of the click and conversion signals) must be in "
                        f"[-1, 1], got {rho}")
    for name, rate in (("click_rate", click_rate), ("conversion_rate", conversion_rate)):
        if not 0.0 < rate < 1.0:
            raise UserError(f"synthetic-funnel: {name} must be in (0, 1), got {rate}")
    if not (scale >= 0 and math.isfinite(scale)):
        raise UserError(f"synthetic-funnel: scale must be a finite number >= 0, got {scale}")
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise UserError(f"synthetic-funnel: val_fraction and test_fraction must be in (0, 1) with a sum below 1, "
                        f"got {val_fraction} and {test_fraction}")


@dataclass(frozen=True)
class Impressions:
    """The drawn impressions: features ``x (N, d)``, user and item indices ``(N,)``, the true pCTR and pCVR, the
    click and every impression's conversion* (the counterfactual ones of unclicked impressions too), all ``(N,)``,
    and the intercepts solved for the rates."""

    x: torch.Tensor
    user: torch.Tensor
    item: torch.Tensor
    p_ctr: torch.Tensor
    p_cvr: torch.Tensor
    click: torch.Tensor
    conversion: torch.Tensor
    a_ctr: float
    a_cvr: float

    def labels(self) -> torch.Tensor:
        """``y (N, 2)`` float32: ctr the click; cvr the conversion where there was a click, NaN (unobserved)
        elsewhere: the log sees a conversion only after a click."""
        logged = torch.where(self.click == 1, self.conversion, torch.full_like(self.conversion, math.nan))
        return torch.stack([self.click, logged], dim=1).float()

    def codes(self) -> torch.Tensor:
        """``cat (N, 2)``: the user's and the item's codes 1..V; 0 is the (unused) out-of-vocabulary row."""
        return torch.stack([self.user, self.item], dim=1) + 1


def draw_impressions(g: torch.Generator, n_samples: int, d: int, n_users: int, n_items: int, rank: int, rho: float,
                     click_rate: float, conversion_rate: float, scale: float) -> Impressions:
    """Impressions drawn from ``g`` by the recipe of the module docstring: features, user and item, the two
    signals, pCTR and pCVR (intercepts solved for the rates), the click and the conversion*."""
    f64 = torch.float64
    x = torch.randn(n_samples, d, generator=g, dtype=f64)
    user = torch.randint(n_users, (n_samples,), generator=g)
    item = torch.randint(n_items, (n_samples,), generator=g)
    z1, z2 = signals(g, x, user, item, n_users, n_items, rank)
    s_ctr, s_cvr = z1, rho * z1 + math.sqrt(1 - rho**2) * z2  # corr(s_ctr, s_cvr) = rho
    a_ctr, a_cvr = intercept(scale * s_ctr, click_rate), intercept(scale * s_cvr, conversion_rate)
    p_ctr, p_cvr = torch.sigmoid(a_ctr + scale * s_ctr), torch.sigmoid(a_cvr + scale * s_cvr)  # (N,)
    click = torch.bernoulli(p_ctr, generator=g)
    conversion = torch.bernoulli(p_cvr, generator=g)  # every impression's, the counterfactual ones included
    return Impressions(x, user, item, p_ctr, p_cvr, click, conversion, a_ctr, a_cvr)


def split_impressions(g: torch.Generator, n_samples: int, val_fraction: float,
                      test_fraction: float) -> dict[str, torch.Tensor]:
    """Row indices of a random train/val/test split drawn from ``g``; an empty split is a one-line error."""
    n_val, n_test = round(n_samples * val_fraction), round(n_samples * test_fraction)
    if min(n_val, n_test, n_samples - n_val - n_test) < 1:
        raise UserError(f"synthetic-funnel: n_samples={n_samples} with these fractions leaves an empty split")
    perm = torch.randperm(n_samples, generator=g)
    cut_val, cut_test = n_samples - n_val - n_test, n_samples - n_test
    return {"train": perm[:cut_val], "val": perm[cut_val:cut_test], "test": perm[cut_test:]}


def embedded_fields(d: int, n_users: int, n_items: int) -> tuple[list[str], dict[str, list[str]], FeatureEncoding]:
    """The numeric feature names, the levels of the user and item fields, and the encoding a saved model
    records (numeric columns as they are, the two fields embedded)."""
    names = [f"x{i}" for i in range(d)]
    levels = {"user": [f"u{i:06d}" for i in range(n_users)], "item": [f"i{i:06d}" for i in range(n_items)]}
    encoding = FeatureEncoding(FeatureEncoding.identity(names).numeric,
                               [{"name": n, "kind": "embedding", "levels": lv, "size": len(lv) + 1,
                                 "n_levels": len(lv), "hashed": False} for n, lv in levels.items()])
    return names, levels, encoding


@register_dataset("synthetic-funnel")
def synthetic_funnel(
    *,
    n_samples: int = 20_000,
    d: int = 8,
    n_users: int = 200,
    n_items: int = 100,
    rank: int = 4,
    rho: float = 0.5,  # correlation of the click and conversion signals
    click_rate: float = 0.2,  # mean pCTR over the impressions
    conversion_rate: float = 0.2,  # mean pCVR over every impression (clicked or not)
    scale: float = 1.5,  # strength of the signals in the logits
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> MTLData:
    """Impressions with a click (``ctr``) and a conversion observed only after a click (``cvr``), and the truth."""
    check_options(n_samples, d, n_users, n_items, rank, rho, click_rate, conversion_rate, scale, val_fraction,
                  test_fraction)
    g = torch.Generator().manual_seed(seed)
    imp = draw_impressions(g, n_samples, d, n_users, n_items, rank, rho, click_rate, conversion_rate, scale)
    y, cat = imp.labels(), imp.codes()
    rows = split_impressions(g, n_samples, val_fraction, test_fraction)
    xf = imp.x.float()
    splits = {s: Split(xf[i], y[i], cat[i]) for s, i in rows.items()}
    te = rows["test"]
    truth = Truth(xf[te], cat[te], prob={"ctr": imp.p_ctr[te], "cvr": imp.p_cvr[te]},
                  outcome={"ctr": imp.click[te], "cvr": imp.conversion[te]})
    names, levels, encoding = embedded_fields(d, n_users, n_items)
    options = {"n_samples": n_samples, "d": d, "n_users": n_users, "n_items": n_items, "rank": rank, "rho": rho,
               "click_rate": click_rate, "conversion_rate": conversion_rate, "scale": scale, "seed": seed}
    click, conversion = imp.click, imp.conversion
    realised = {"click_rate": click.mean().item(), "conversion_rate": conversion.mean().item(),
                "cvr_among_clicks": conversion[click == 1].mean().item() if bool((click == 1).any()) else None}
    return MTLData(
        name="synthetic-funnel",
        tasks=[Task("ctr", "binary"), Task("cvr", "binary")],
        **splits,
        feature_names=names,
        info={**options, "realised": realised, "intercepts": {"ctr": imp.a_ctr, "cvr": imp.a_cvr},
              "encoding": encoding.to_dict()},
        fields=[Field(n, len(lv) + 1, len(lv)) for n, lv in levels.items()],
        funnel=Funnel(("ctr", "cvr"), (False, True)),
        truth=truth,
    )
