import pytest
import torch
from conftest import registry_params

from bench import datasets
from bench.datasets.synthetic import correlated_factors
from bench.training.fit import fit


def pearson(a, b):
    a, b = a - a.mean(), b - b.mean()
    return ((a * b).sum() / (a.norm() * b.norm())).item()


@pytest.mark.parametrize("p", [-0.3, 0.0, 0.5, 0.9, 1.0])
def test_label_correlation_is_p_without_nonlinearity_or_noise(p):
    n = 40_000
    d = datasets.load("synthetic", n_samples=n, d=50, p=p, m=0, noise_std=0.0, seed=7)
    y = torch.cat([d.train.y, d.val.y, d.test.y]).double()
    # sampling error of a correlation coefficient is (1 - p^2)/sqrt(n)
    assert pearson(y[:, 0], y[:, 1]) == pytest.approx(p, abs=4 * (1 - p * p) / n**0.5 + 1e-9)


def test_many_tasks_every_pair_at_cosine_p():
    L = correlated_factors(4, 0.6)
    gram = L @ L.T
    torch.testing.assert_close(gram, torch.full((4, 4), 0.6, dtype=gram.dtype).fill_diagonal_(1.0))
    d = datasets.load("synthetic", n_samples=30_000, d=30, n_tasks=3, p=0.6, m=0, noise_std=0.0)
    y = d.train.y.double()
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        assert pearson(y[:, i], y[:, j]) == pytest.approx(0.6, abs=0.03)


def test_two_task_weights_follow_the_paper_formula():
    L = correlated_factors(2, 0.3)  # w1 = c u1, w2 = c (p u1 + sqrt(1 - p^2) u2)
    torch.testing.assert_close(L, torch.tensor([[1.0, 0.0], [0.3, (1 - 0.09) ** 0.5]], dtype=L.dtype))


def test_splits_fixed_by_seed_and_disjoint():
    a = datasets.load("synthetic", n_samples=1000, seed=1)
    b = datasets.load("synthetic", n_samples=1000, seed=1)
    c = datasets.load("synthetic", n_samples=1000, seed=2)
    assert torch.equal(a.test.x, b.test.x) and not torch.equal(a.test.x, c.test.x)
    assert (len(a.train), len(a.val), len(a.test)) == (800, 100, 100)
    rows = torch.cat([a.train.x, a.val.x, a.test.x])
    assert len(torch.unique(rows, dim=0)) == 1000


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="correlation"):
        datasets.load("synthetic", p=1.5)
    with pytest.raises(ValueError, match="unknown option of dataset synthetic 'rho'"):
        datasets.load("synthetic", rho=0.5)


@pytest.fixture(scope="module")
def data():
    return datasets.load("synthetic", n_samples=3000, d=16, p=0.8, seed=0)


@pytest.mark.parametrize("arch", registry_params())
def test_few_epochs_beat_a_constant_predictor_on_every_task(arch, data):
    res = fit(arch, data, {"max_epochs": 8, "lr": 0.01, "batch_size": 64}, evaluate_test=True)
    for k, task in enumerate(data.task_names):
        # the best constant predictor (the training mean) scores the label variance
        constant = (data.test.y[:, k] - data.train.y[:, k].mean()).square().mean().item()
        assert res.test_metrics[task]["mse"] < 0.5 * constant, (task, res.test_metrics[task], constant)
