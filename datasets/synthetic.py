"""The synthetic data of the MMoE paper (Ma et al., KDD 2018, section 3.2), with controlled task correlation.

    u_1, ..., u_T orthogonal unit vectors in R^d
    w_1 = c u_1,  w_2 = c (p u_1 + sqrt(1 - p^2) u_2)                  (two tasks, the paper's formula)
    x ~ N(0, I_d)
    y_k = w_k^T x + sum_{i=1..m} sin(alpha_i w_k^T x + beta_i) + eps_k,   eps_k ~ N(0, noise_std^2)

The paper draws eps_k ~ N(0, 0.01): variance 0.01, so ``noise_std`` (a standard deviation) defaults to 0.1.

alpha_i, beta_i ~ N(0, 1) are shared by the tasks (PLE paper's setting, c = 1, m = 10). For T > 2 tasks,
w_k = c sum_j L_kj u_j with L the Cholesky factor of the T x T matrix with 1 on the diagonal and p elsewhere,
so every pair of weight vectors has cosine p; for T = 2 this is exactly the paper's formula. With m = 0
and no noise the Pearson correlation of the labels is p.
"""

from __future__ import annotations

import math

import torch

from bench.errors import UserError

from .base import MTLData, Split, Task
from .feature_encoding import FeatureEncoding
from .registry import register_dataset


def correlated_factors(n_tasks: int, p: float) -> torch.Tensor:
    """Lower-triangular L (T, T) with L L^T = (1 - p) I + p 11^T, zero pivots allowed (p = 1)."""
    lo = -1.0 / (n_tasks - 1) if n_tasks > 1 else -1.0
    if not lo <= p <= 1.0:
        raise UserError(f"correlation p={p} is not valid for {n_tasks} tasks; it must lie in [{lo:g}, 1]")
    gram = torch.full((n_tasks, n_tasks), p, dtype=torch.float64).fill_diagonal_(1.0)
    L = torch.zeros_like(gram)
    for i in range(n_tasks):  # Cholesky-Banachiewicz, tolerant of a singular (p = 1) Gram matrix
        for j in range(i + 1):
            s = gram[i, j] - (L[i, :j] * L[j, :j]).sum()
            if i == j:
                L[i, i] = math.sqrt(max(s.item(), 0.0))
            else:
                L[i, j] = s / L[j, j] if L[j, j] > 1e-12 else 0.0
    return L


MAX_BYTES = 32 * 2**30  # a bound on the memory of one generated data set (hostile or mistyped sizes)


@register_dataset("synthetic")
def synthetic(
    *,
    n_samples: int = 10_000,
    d: int = 100,
    p: float = 0.5,
    n_tasks: int = 2,
    m: int = 10,
    c: float = 1.0,
    noise_std: float = 0.1,  # standard deviation of eps_k (the paper's variance 0.01)
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> MTLData:
    """MMoE synthetic regression tasks ``y1..yT`` whose weight vectors have pairwise cosine ``p``."""
    if n_tasks < 1 or d < n_tasks:
        raise UserError(f"need 1 <= n_tasks <= d, got n_tasks={n_tasks}, d={d}")
    if m < 0 or noise_std < 0:
        raise UserError("m and noise_std must be non-negative")
    if n_samples < 1:
        raise UserError(f"n_samples must be >= 1, got {n_samples}")
    need = n_samples * (d + n_tasks * (m + 2)) * 8  # float64 while generating: x, and y's (N, T, m) sines
    if need > MAX_BYTES:
        raise UserError(
            f"n_samples={n_samples} with d={d} needs about {need / 2**30:.3g} GiB to generate, more "
            f"than the {MAX_BYTES / 2**30:.0f} GiB this loader allows; use fewer samples or features"
        )
    n_val, n_test = round(n_samples * val_fraction), round(n_samples * test_fraction)
    if min(n_val, n_test, n_samples - n_val - n_test) < 1:
        raise UserError(f"n_samples={n_samples} with these fractions leaves an empty split")
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    # orthonormal u_1..u_T: QR of a Gaussian matrix
    u = torch.linalg.qr(torch.randn(d, n_tasks, generator=g, dtype=f64)).Q.T  # (T, d)
    w = c * correlated_factors(n_tasks, p) @ u  # (T, d)
    alpha = torch.randn(m, generator=g, dtype=f64)
    beta = torch.randn(m, generator=g, dtype=f64)
    x = torch.randn(n_samples, d, generator=g, dtype=f64)
    z = x @ w.T  # (N, T): w_k^T x
    y = z + torch.sin(z.unsqueeze(-1) * alpha + beta).sum(-1)  # (N, T, m) summed over m
    y = y + noise_std * torch.randn(n_samples, n_tasks, generator=g, dtype=f64)
    x, y = x.float(), y.float()
    perm = torch.randperm(n_samples, generator=g)
    cut_val, cut_test = n_samples - n_val - n_test, n_samples - n_test
    tr, va, te = perm[:cut_val], perm[cut_val:cut_test], perm[cut_test:]
    names = [f"x{i}" for i in range(d)]
    return MTLData(
        name="synthetic",
        tasks=[Task(f"y{k + 1}", "regression") for k in range(n_tasks)],
        train=Split(x[tr], y[tr]),
        val=Split(x[va], y[va]),
        test=Split(x[te], y[te]),
        feature_names=names,
        info={"p": p, "m": m, "c": c, "noise_std": noise_std, "seed": seed, "n_samples": n_samples, "d": d,
              "encoding": FeatureEncoding.identity(names).to_dict()},  # x0..x{d-1} as they are
    )
