"""Gate and expert diagnostics: known weights come back, a collapsed expert is reported, training is unchanged,
and both final-stage paths store the rows."""

from __future__ import annotations

import math

import polars as pl
import pytest
import torch

from bench import architectures, datasets
from bench.results import store
from bench.study.final import final_stage, population_final_stage
from bench.training.diagnostics import DIAGNOSTIC, UNUSED_WEIGHT, diagnose
from bench.training.fit import fit
from bench.training.population import seed_configs, train_population

TASKS = ["a", "b"]
D = 6


def build(name, **opts):
    torch.manual_seed(0)
    return architectures.create(name, D, dict.fromkeys(TASKS, 1), **opts)


def by_metric(rows, metric):
    return {(r["level"], r["task"], r.get("expert")): r["value"] for r in rows if r["metric"] == metric}


def set_gate(level, weights: torch.Tensor) -> None:
    """Constant gates: zero projection, biases the logs of ``weights`` ``(G, C)``, so softmax gives them back."""
    with torch.no_grad():
        level.task_gates.proj.weight.zero_()
        level.task_gates.proj.bias.copy_(weights.log())


def test_utilisation_of_a_hand_set_gate_equals_its_weights():
    model = build("mmoe", n_experts=4)
    w = torch.tensor([[0.5, 0.3, 0.195, 0.005], [0.25, 0.25, 0.25, 0.25]])  # task a, task b
    set_gate(model.levels[0], w)
    rows = diagnose(model, torch.randn(50, D), TASKS, chunk=16)  # several chunks
    weights = by_metric(rows, "gate_weight")
    for k, task in enumerate(TASKS):
        for e in range(4):
            assert weights[(0, task, e)] == pytest.approx(w[k, e].item(), rel=1e-5)
    entropy = by_metric(rows, "gate_entropy")
    norm = by_metric(rows, "gate_entropy_norm")
    h_a = -sum(p * math.log(p) for p in w[0].tolist())
    assert entropy[(0, "a", None)] == pytest.approx(h_a, rel=1e-5)
    assert norm[(0, "a", None)] == pytest.approx(h_a / math.log(4), rel=1e-5)
    assert norm[(0, "b", None)] == pytest.approx(1.0, rel=1e-6)  # uniform gate: maximal entropy
    unused = by_metric(rows, "gate_unused")
    assert unused == {(0, "a", None): 0.25, (0, "b", None): 0.0}  # 0.005 < UNUSED_WEIGHT
    assert 0.005 < UNUSED_WEIGHT < 0.195
    assert all(r["split"] == "test" and r["kind"] == DIAGNOSTIC and math.isfinite(r["value"]) for r in rows)


def test_cgc_gates_report_the_experts_each_task_sees():
    model = build("cgc", n_shared=1, n_specific=2)
    level = model.levels[0]
    # experts [shared0, a0, a1, b0, b1]; task a's choices are (a0, a1, shared0), task b's (b0, b1, shared0)
    assert level.choices.tolist() == [[1, 2, 0], [3, 4, 0]]
    set_gate(level, torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]]))
    weights = by_metric(diagnose(model, torch.randn(20, D), TASKS), "gate_weight")
    expected = {
        (0, "a", 1): 0.6,
        (0, "a", 2): 0.3,
        (0, "a", 0): 0.1,
        (0, "b", 3): 0.2,
        (0, "b", 4): 0.2,
        (0, "b", 0): 0.6,
    }
    assert weights.keys() == expected.keys()  # never a row for an expert the task's gate does not weigh
    assert all(weights[k] == pytest.approx(v, rel=1e-5) for k, v in expected.items())


def test_tied_gate_reports_the_same_weights_for_every_task():
    model = build("omoe", n_experts=3)
    set_gate(model.levels[0], torch.tensor([[0.7, 0.2, 0.1]]))
    weights = by_metric(diagnose(model, torch.randn(10, D), TASKS), "gate_weight")
    assert [weights[(0, "a", e)] for e in range(3)] == [weights[(0, "b", e)] for e in range(3)]
    assert weights[(0, "b", 0)] == pytest.approx(0.7, rel=1e-5)


def test_a_collapsed_expert_is_reported_collapsed():
    model = build("mmoe", n_experts=3, expert_layers=2)
    x = torch.rand(200, D)  # non-negative inputs
    with torch.no_grad():  # expert 1's first layer: negative weights and biases, so every unit is zero on every row
        first = model.levels[0].experts.layers[0]
        first.weight[1] = -first.weight[1].abs() - 0.1
        first.bias[1] = -first.bias[1].abs() - 0.1
    dead = by_metric(diagnose(model, x, TASKS), "expert_dead_units")
    # its second layer then reads zeros: only its biases remain, and those of its units with a negative bias die too
    second_bias = model.levels[0].experts.layers[1].bias[1]
    h = first.weight.shape[2]
    assert dead[(0, "*", 1)] == pytest.approx((h + (second_bias <= 0).sum().item()) / (2 * h))
    assert dead[(0, "*", 1)] >= 0.5 and dead[(0, "*", 0)] < 0.5 and dead[(0, "*", 2)] < 0.5
    with torch.no_grad():  # the same for both of its layers: fully collapsed
        model.levels[0].experts.layers[1].bias[1] = -1.0
    assert by_metric(diagnose(model, x, TASKS), "expert_dead_units")[(0, "*", 1)] == 1.0


def test_ple_reports_every_level_and_non_gated_models_nothing():
    rows = diagnose(build("ple", n_levels=2), torch.randn(8, D), TASKS)
    assert sorted({r["level"] for r in rows}) == [0, 1]
    assert {r["metric"] for r in rows} == {
        "gate_weight",
        "gate_entropy",
        "gate_entropy_norm",
        "gate_unused",
        "expert_dead_units",
    }
    for name in ("shared_bottom", "single_task", "cross_stitch"):
        assert diagnose(build(name), torch.randn(8, D), TASKS) == []


def test_diagnostics_leave_the_model_and_random_state_alone():
    model = build("mmoe", n_experts=3, gate_top_k=2, dropout=0.2)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(30, D)
    state = torch.random.get_rng_state()
    diagnose(model, x, TASKS)
    assert model.training and torch.equal(state, torch.random.get_rng_state())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks for m in model.modules())  # every hook removed


@pytest.fixture(scope="module")
def data():
    return datasets.load("synthetic", n_samples=300, d=D, seed=2)


CONFIG = {
    "batch_size": 48,
    "expert_units": 8,
    "tower_units": 8,
    "n_experts": 3,
    "max_epochs": 2,
    "patience": 2,
    "dropout": 0.1,
    "gate_top_k": 2,
}


def test_diagnostics_do_not_change_the_training_results(data):
    cfg = {**CONFIG, "seed": 3}
    plain = fit("mmoe", data, cfg, evaluate_test=True, accelerator="cpu")
    diagnosed = fit("mmoe", data, cfg, evaluate_test=True, accelerator="cpu", diagnose=True)
    assert plain.diagnostics is None and diagnosed.diagnostics
    assert diagnosed.history == plain.history and diagnosed.test_metrics == plain.test_metrics
    configs = seed_configs(CONFIG, [1, 2])
    pop_plain = train_population("mmoe", data, configs, evaluate_test=True, device="cpu")
    pop_diag = train_population("mmoe", data, configs, evaluate_test=True, device="cpu", diagnose=True)
    for a, b in zip(pop_plain, pop_diag):
        assert a.history == b.history and a.test_metrics == b.test_metrics and b.diagnostics


def test_population_member_diagnostics_equal_its_separate_fit(data):
    # no dropout and no gate noise: both paths train the same model, so they diagnose the same weights
    cfg = {**CONFIG, "dropout": 0.0, "gate_noise": 0.0}
    pop = train_population("mmoe", data, seed_configs(cfg, [4]), evaluate_test=True, device="cpu", diagnose=True)
    ref = fit("mmoe", data, {**cfg, "seed": 4}, evaluate_test=True, accelerator="cpu", diagnose=True)
    key = [(r["metric"], r["task"], r["level"], r.get("expert")) for r in ref.diagnostics]
    assert [(r["metric"], r["task"], r["level"], r.get("expert")) for r in pop[0].diagnostics] == key
    for p, r in zip(pop[0].diagnostics, ref.diagnostics):
        assert p["value"] == pytest.approx(r["value"], rel=1e-3, abs=1e-4)


@pytest.mark.parametrize("stage", [final_stage, population_final_stage])
def test_final_rows_carry_the_diagnostics_into_the_store(stage, data, tmp_path):
    config = {k: v for k, v in CONFIG.items() if k != "n_experts"} | {"n_shared": 1, "n_specific": 1}
    rows, errors = stage(data, "cgc", config, [1, 2], accelerator="cpu")
    assert errors == {}
    df = store.frame(rows)
    store.write_atomic(df, tmp_path / "results" / "final" / "d" / "cgc" / "seed-1.parquet")
    back = store.read(tmp_path)
    diag = back.filter(pl.col("kind") == DIAGNOSTIC)
    assert diag.height and diag["value"].is_finite().all()
    assert set(diag["seed"].unique().to_list()) == {1, 2}
    # per seed: 2 tasks x 2 experts weighed, 2 x 3 gate statistics, 3 experts' dead units
    assert diag.group_by("seed").len().sort("seed")["len"].to_list() == [4 + 6 + 3] * 2
    metrics = back.filter(pl.col("kind") != DIAGNOSTIC)
    assert metrics["level"].is_null().all() and metrics["expert"].is_null().all()
