"""The rules of a training run (``bench.training.rules``), written once for the Lightning system and populations."""

from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping

from bench.training.rules import BestEpoch, EarlyStop, objective_value
from bench.training.system import StopEarly

SEQUENCES = [
    [0.5, 0.6, 0.6, 0.59, 0.7, 0.7, 0.7],  # ties never count as improvements
    [0.1, 0.1 + 1e-9, 0.1 + 2e-9],  # equal in float32: no improvement
    [0.3, -math.inf],  # a diverged epoch stops
    [0.3, math.nan],
    [-math.inf],
    [0.2, 0.1, 0.3, 0.2, 0.1, 0.05],
]


@pytest.mark.parametrize("values", SEQUENCES)
@pytest.mark.parametrize("patience", [1, 2, 3])
def test_early_stop_is_lightnings_early_stopping(values, patience):
    ref = EarlyStopping("val_objective", mode="max", patience=patience, check_finite=True)
    rule, ours = EarlyStop(patience), StopEarly(patience)
    for v in values:
        logged = torch.tensor(v)  # float32, as self.log stores it
        expected = ref._evaluate_stopping_criteria(logged)[0]
        assert rule(v) == expected
        assert ours._evaluate_stopping_criteria(logged)[0] == expected
        if expected:
            break


def test_best_epoch_keeps_the_first_strictly_best_epoch_and_its_weights():
    record, weights = BestEpoch(), iter(["w0", "w1", "w2", "w3"])
    for epoch, value in enumerate([0.5, 0.7, 0.7, -math.inf]):
        record.add(epoch, {"a": {"auc": value}}, value, lambda: next(weights), train_loss=1.0)
    assert (record.best_epoch, record.best_objective, record.state) == (1, 0.7, "w1")
    assert list(record.history[0]) == ["epoch", "val_objective", "val/a/auc", "train_loss"]
    assert len(record.history) == 4


def test_objective_value_of_a_diverged_epoch_is_minus_infinity():
    from bench.datasets import Task

    tasks = [Task("a", "binary")]
    assert objective_value(tasks, {"a": {"auc": math.nan, "logloss": 1.0}}, "mean") == -math.inf
    assert objective_value(tasks, {"a": {"auc": 0.75, "logloss": 1.0}}, "mean") == pytest.approx(0.75)
