"""Test-set sampling error: a final run's primary test metric on each of ``DRAWS`` resamples of the test split.

Common random numbers: the resamples of a task depend only on that task's test labels (the generator is seeded
from their bytes), so every architecture and the single-task baseline are scored on the *same* resampled rows
(draw b is the same multiset of rows for all of them), which is what pairs the bootstrap of a gain in
``bench.results.bootstrap``. Resampling is over the rows where the task's label is observed; binary tasks are
stratified by class (n_pos positives drawn among the positives, n_neg negatives among the negatives, so every
draw has the class balance of the split and an AUC).

A draw is a vector of counts c_i (how often row i was drawn). Per draw b, with w = c_b:

    auc_b      = sum_{i pos} w_i [ W_neg(s < s_i) + W_neg(s = s_i) / 2 ] / (n_pos n_neg)   (ties counted half)
    mse_b      = sum_i w_i (z_i - y_i)^2 / n
    accuracy_b = sum_i w_i [argmax z_i = y_i] / n

The scores are sorted once; per draw the negatives' weights are summed per tie group (``np.add.reduceat``), so
``DRAWS`` AUCs on 100k rows cost a few matrix passes (``benchmarks`` / the issue report give the timing).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

DRAWS = 200  # test-set resamples per task and run
CHUNK = 20  # draws formed at a time: CHUNK x rows counts in memory


def generator(labels: np.ndarray) -> np.random.Generator:
    """The generator of a task's resamples, seeded from its test labels' bytes: the same for every model."""
    digest = hashlib.blake2b(np.ascontiguousarray(labels, dtype=np.float32).tobytes(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def _counts(rng: np.random.Generator, strata: list[np.ndarray], n: int, draws: int) -> np.ndarray:
    """(draws, n) counts: per stratum (positions into the n rows), as many rows drawn with replacement as it has."""
    out = np.zeros((draws, n), dtype=np.float64)
    for rows in strata:
        m = rows.size
        picks = rng.integers(0, m, size=(draws, m))
        offset = picks + m * np.arange(draws)[:, None]  # row b's picks land in block b of one bincount
        out[:, rows] += np.bincount(offset.ravel(), minlength=draws * m).reshape(draws, m)
    return out


def auc_draws(scores: np.ndarray, labels: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(draws,) weighted AUC of ``scores`` against 0/1 ``labels`` with the rows weighted by ``counts`` (draws, n)."""
    order = np.argsort(scores, kind="stable")
    s, pos = scores[order], labels[order] > 0.5
    w = counts[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # first row of each tie group (sorted scores)
    neg_in = np.add.reduceat(w * ~pos, starts, axis=1)  # (draws, groups): W_neg(s = s_g)
    neg_below = np.cumsum(neg_in, axis=1) - neg_in  # W_neg(s < s_g)
    pos_in = np.add.reduceat(w * pos, starts, axis=1)
    n_pos, n_neg = pos_in.sum(1), neg_in.sum(1)
    return (pos_in * (neg_below + 0.5 * neg_in)).sum(1) / (n_pos * n_neg)


def metric_draws(kind: str, logits: torch.Tensor, y: torch.Tensor, draws: int = DRAWS) -> list[float]:
    """The primary metric of one task on ``draws`` resamples of its observed test rows; [] when a prediction is
    not finite or there is nothing to resample (the run then stores no draws: never a NaN)."""
    y_all = y.detach().double().cpu().numpy()
    rng = generator(y_all)
    obs = ~np.isnan(y_all)
    z, yv = logits.detach().double().cpu().numpy()[obs], y_all[obs]
    if yv.size == 0 or not np.isfinite(z).all():
        return []
    n = yv.size
    if kind == "binary":
        strata = [np.flatnonzero(yv > 0.5), np.flatnonzero(yv <= 0.5)]
        if min(s.size for s in strata) == 0:  # one class only: no AUC
            return []
        scores = z.reshape(n)
    else:
        strata = [np.arange(n)]
    if kind == "regression":
        per_row = (z.reshape(n) - yv) ** 2
    elif kind == "multiclass":
        per_row = (z.argmax(-1) == yv.astype(np.int64)).astype(np.float64)
    out = []
    for start in range(0, draws, CHUNK):
        c = _counts(rng, strata, n, min(CHUNK, draws - start))
        out += (auc_draws(scores, yv, c) if kind == "binary" else c @ per_row / n).tolist()
    return out


def resampled_metrics(tasks, logits: dict[str, torch.Tensor], y: torch.Tensor,
                      draws: int = DRAWS) -> dict[str, list[float]]:
    """Per task (``tasks``: the data's, column k of ``y`` is task k's label): its primary metric
    (``bench.spec.metrics.PRIMARY``) on each draw."""
    return {t.name: metric_draws(t.kind, logits[t.name], y[:, k], draws) for k, t in enumerate(tasks)}

