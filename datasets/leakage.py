"""A generic label-leakage check: does any single source column predict a label almost perfectly?

Each feature group (a numeric column with its missing indicator, a one-hot block or an embedded categorical field;
one column per group when the data set records no groups) is reduced to a code per row: the level of a one-hot
block, the code of an embedded field, or the quantile bin of a numeric value (missing values their own bin). A
task's scores use the rows where its label is observed. The best any model can do from that group alone is the
per-code label statistic (target encoding), fitted on one random half of the training rows and scored on the
other half, so a high-cardinality ID-like column does not pass for a leak:

    binary      AUC(per-code positive rate)                      (orientation-free: max(AUC, 1 - AUC))
    regression  |corr(per-code mean, y)|
    multiclass  accuracy of the per-code majority class          (only when the majority class is below threshold)

Numeric columns are also scored raw on all rows (AUC, or |Pearson correlation| for regression), which catches
monotone leaks exactly. A score above ``threshold`` (0.99) is a finding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import MTLData


@dataclass(frozen=True)
class Finding:
    dataset: str
    task: str
    feature: str
    measure: str
    value: float

    def __str__(self) -> str:
        return (
            f"{self.dataset}: feature {self.feature} alone predicts task {self.task} ({self.measure} {self.value:.4f})"
        )


def feature_groups(data: MTLData) -> list[dict]:
    groups = data.info.get("feature_groups")
    if groups:
        return groups
    names = data.feature_names or [f"x{i}" for i in range(data.d_in)]
    return [{"name": names[i], "kind": "numeric", "columns": [i]} for i in range(data.d_in)]


def group_codes(x: np.ndarray, group: dict, n_bins: int, cat: np.ndarray | None = None) -> np.ndarray:
    """One integer code per row ``(N,)`` for a feature group (``cat``: the categorical codes ``(N, F)``)."""
    if group["kind"] == "embedding":
        return cat[:, group["field"]]
    cols = group["columns"]
    if group["kind"] == "onehot":
        return x[:, cols].argmax(1)
    value = x[:, cols[0]].astype(np.float64)
    edges = np.unique(np.quantile(value, np.linspace(0, 1, n_bins + 1)[1:-1]))
    codes = np.searchsorted(edges, value, side="right")
    if len(cols) > 1:  # a missing indicator: missing rows get a code of their own
        codes = np.where(x[:, cols[1]] > 0.5, len(edges) + 1, codes)
    return codes


def encoded_prediction(codes: np.ndarray, y: np.ndarray, fit: np.ndarray, kind: str, n_classes: int | None):
    """Per-code label statistic fitted on rows ``fit`` (indices), read out for every row ``(N,)``."""
    n_codes = int(codes.max()) + 1
    cf, yf = codes[fit], y[fit]
    counts = np.bincount(cf, minlength=n_codes)
    if kind == "multiclass":
        table = np.zeros((n_codes, n_classes))
        np.add.at(table, (cf, yf.astype(np.int64)), 1.0)
        table[counts == 0] = np.bincount(yf.astype(np.int64), minlength=n_classes)  # unseen: overall majority
        return table.argmax(1)[codes]
    sums = np.bincount(cf, weights=yf, minlength=n_codes)
    mean = np.where(counts > 0, sums / np.maximum(counts, 1), yf.mean())
    return mean[codes]


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney U statistic, ties counted half."""
    pos = labels > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts).astype(np.float64)
    avg_rank = ends - (counts - 1) / 2  # average 1-based rank of each distinct value
    return (avg_rank[inverse][pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return abs(float(a @ b) / denom) if denom > 0 else 0.0


def check_leakage(data: MTLData, *, threshold: float = 0.99, max_rows: int = 50_000, seed: int = 0) -> list[Finding]:
    """Findings (feature group, task, score) where one source column alone predicts a label above ``threshold``,
    on (up to ``max_rows`` of) the training split."""
    rng = np.random.default_rng(seed)
    x = data.train.x.detach().cpu().numpy()
    y = data.train.y.detach().cpu().numpy().astype(np.float64)
    cat = data.train.cat.detach().cpu().numpy()
    if len(x) > max_rows:
        keep = np.sort(rng.permutation(len(x))[:max_rows])
        x, y, cat = x[keep], y[keep], cat[keep]
    n = len(x)
    perm = rng.permutation(n)
    n_bins = max(2, min(64, n // 50))
    findings: list[Finding] = []
    # per task: its observed rows, split in two halves (fit the per-code statistic on one, score on the other)
    rows = []
    for k in range(len(data.tasks)):
        obs = ~np.isnan(y[:, k])
        order = perm[obs[perm]]
        rows.append((obs, order[: len(order) // 2], order[len(order) // 2 :]))
    for group in feature_groups(data):
        all_codes = group_codes(x, group, n_bins, cat)
        all_raw = x[:, group["columns"][0]].astype(np.float64) if group["kind"] == "numeric" else None
        for k, task in enumerate(data.tasks):
            obs, fit, held = rows[k]
            if len(held) == 0:
                continue
            # indices into the observed rows: position of each row among them
            pos = np.cumsum(obs) - 1
            fit, held = pos[fit], pos[held]
            codes, yk = all_codes[obs], y[obs, k]
            raw = all_raw[obs] if all_raw is not None else None
            scores: list[tuple[str, float]] = []
            pred = encoded_prediction(codes, yk, fit, task.kind, task.n_classes)
            if task.kind == "binary":
                if yk[held].min() == yk[held].max():
                    continue
                a = auc(pred[held], yk[held])
                scores.append(("group AUC", max(a, 1 - a)))
                if raw is not None:
                    a = auc(raw, yk)
                    scores.append(("AUC", max(a, 1 - a)))
            elif task.kind == "regression":
                scores.append(("group |corr|", pearson(pred[held], yk[held])))
                if raw is not None:
                    scores.append(("|corr|", pearson(raw, yk)))
            else:
                majority = np.bincount(yk[held].astype(np.int64)).max() / len(held)
                if majority > threshold:
                    continue
                scores.append(("group accuracy", float((pred[held] == yk[held].astype(np.int64)).mean())))
            measure, value = max(scores, key=lambda s: s[1])
            if value > threshold:
                findings.append(Finding(data.name, task.name, group["name"], measure, float(value)))
    return findings
