"""The metrics of each task kind, which one is primary, and their orientation: the names the training code
computes (``bench.training.metrics``) and the results pipeline ranks by (``bench.results``).

binary: AUC and log loss.  regression: MSE and MAE.  multiclass: accuracy and log loss.

And the gate and expert diagnostics of gated architectures (computed by ``bench.training.diagnostics``, read by
``bench.results``): their ``kind`` in the store and their thresholds.
"""

from __future__ import annotations

METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("auc", "logloss"),
    "regression": ("mse", "mae"),
    "multiclass": ("accuracy", "logloss"),
}
PRIMARY: dict[str, str] = {"binary": "auc", "regression": "mse", "multiclass": "accuracy"}
HIGHER_IS_BETTER: dict[str, bool] = {"auc": True, "accuracy": True, "logloss": False, "mse": False, "mae": False,
                                     "auc_entire": True, "calib_entire": False}
# a binary task's metrics over the entire test impression space, on data whose truth is known (synthetic-funnel):
# AUC against every impression's drawn outcome, mean |p^ - p| against the true probability
ENTIRE: tuple[str, ...] = ("auc_entire", "calib_entire")


def oriented(metric: str, value: float) -> float:
    """The value with "higher is better" orientation (lower-is-better metrics negated)."""
    return value if HIGHER_IS_BETTER[metric] else -value


def objective_label(kinds: dict[str, str]) -> tuple[str, float]:
    """(label, sign) to show a tuning objective over the tasks ``kinds`` ({task: kind}, the tasks it averages) in
    its metrics' own orientation: the objective is maximised, so a lower-is-better metric is stored negated and
    shown as ``sign * objective``: ``val mse (y1)`` with sign -1, ``val mean auc`` with +1; ``val objective
    (higher is better)`` with +1 when the tasks' metrics differ."""
    metrics = {PRIMARY[k] for k in kinds.values()}
    sign = 1.0 if any(HIGHER_IS_BETTER[m] for m in metrics) else -1.0
    if len(kinds) == 1:
        (task, kind), = kinds.items()
        return f"val {PRIMARY[kind]} ({task})", sign
    return (f"val mean {metrics.pop()}" if len(metrics) == 1 else "val objective (higher is better)"), sign


DIAGNOSTIC = "diagnostic"  # the store's ``kind`` of diagnostics rows: no task kind, so no task metric reads them
UNUSED_WEIGHT = 0.01  # an expert whose mean gate weight is below this is counted unused by that gate
DEAD_ROWS = 0.99  # a ReLU unit zero on at least this share of the rows is dead
