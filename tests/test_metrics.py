import math

import pytest
import torch

from bench.datasets import Task
from bench.spec.metrics import oriented
from bench.training.metrics import auc, objective, task_loss, task_metrics


def test_auc_hand_computed_with_ties():
    # positives score 0.9, 0.5; negatives 0.5, 0.1: pairs (0.9>0.5),(0.9>0.1),(0.5=0.5 -> 1/2),(0.5>0.1) = 3.5/4
    scores = torch.tensor([0.9, 0.5, 0.5, 0.1])
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert auc(scores, labels) == pytest.approx(3.5 / 4)
    assert auc(-scores, labels) == pytest.approx(0.5 / 4)
    assert math.isnan(auc(scores, torch.ones(4)))


def test_auc_matches_pairwise_definition_on_random_data():
    g = torch.Generator().manual_seed(0)
    s = torch.randint(0, 20, (300,), generator=g).double()  # many ties
    y = (torch.rand(300, generator=g) < 0.3).float()
    pos, neg = s[y == 1], s[y == 0]
    pairwise = ((pos[:, None] > neg[None]).double() + 0.5 * (pos[:, None] == neg[None]).double()).mean().item()
    assert auc(s, y) == pytest.approx(pairwise, abs=1e-12)


def test_regression_and_multiclass_metrics():
    m = task_metrics("regression", torch.tensor([[1.0], [3.0]]), torch.tensor([2.0, 2.0]))
    assert m == {"mse": 1.0, "mae": 1.0}
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]])
    m = task_metrics("multiclass", logits, torch.tensor([0.0, 1.0, 1.0]))
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["logloss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 1])).item())


def test_losses_by_kind():
    logits = torch.tensor([[0.0], [2.0]])
    y = torch.tensor([1.0, 0.0])
    expected = (math.log(2) + math.log(1 + math.e**2)) / 2
    assert task_loss("binary", logits, y).item() == pytest.approx(expected)
    assert task_loss("regression", logits, y).item() == pytest.approx((1 + 4) / 2)


def test_objective_orientation_and_main_task():
    tasks = [Task("ctr", "binary"), Task("price", "regression")]
    metrics = {"ctr": {"auc": 0.8, "logloss": 0.4}, "price": {"mse": 2.0, "mae": 1.0}}
    assert oriented("mse", 2.0) == -2.0 and oriented("auc", 0.8) == 0.8
    assert objective(tasks, metrics) == pytest.approx((0.8 - 2.0) / 2)
    assert objective(tasks, metrics, "ctr") == pytest.approx(0.8)


@pytest.mark.parametrize("kind", ["binary", "regression", "multiclass"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_predictions_score_nan(kind, bad):
    """A diverged model gets no score: all-NaN logits would otherwise rank as ties (AUC 0.5 or so)."""
    out_dim = 3 if kind == "multiclass" else 1
    logits = torch.zeros(50, out_dim)
    logits[7, 0] = bad
    y = (torch.arange(50) % 2).float()
    metrics = task_metrics(kind, logits, y)
    assert metrics and all(math.isnan(v) for v in metrics.values())
    assert all(math.isnan(v) for v in task_metrics(kind, torch.full((50, out_dim), float("nan")), y).values())
