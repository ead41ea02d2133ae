"""Population training: every member is the model ``bench.training.fit.fit`` trains alone, and stops on its own."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import registry_params

from bench import architectures, datasets
from bench.datasets import Split
from bench.errors import UserError
from bench.training.fit import fit
from bench.training.population import StackedAdam, seed_configs, train_population
from bench.training.system import make_system, param_groups

RTOL = 1e-4


@pytest.fixture(scope="module")
def data():
    # 264 training rows: batches of 48 end on a partial batch of 24
    return datasets.load("synthetic", n_samples=330, d=8, seed=3)


def close(a: float, b: float, rtol: float = RTOL) -> bool:
    return (math.isinf(a) and a == b) or math.isclose(a, b, rel_tol=rtol, abs_tol=1e-6)


def assert_same_fit(pop, ref) -> None:
    """A population member's result against the separately trained model's."""
    assert pop.epochs == ref.epochs
    assert pop.best_epoch == ref.best_epoch
    assert pop.n_params == ref.n_params
    assert pop.config == ref.config
    assert close(pop.val_objective, ref.val_objective)
    assert len(pop.history) == len(ref.history)
    for hp, hr in zip(pop.history, ref.history):
        assert hp.keys() == hr.keys()
        for key, value in hr.items():
            assert close(hp[key], value), (key, hp[key], value)
    for split in ("val_metrics", "test_metrics"):
        p, r = getattr(pop, split), getattr(ref, split)
        assert (p is None) == (r is None)
        for task in r or {}:
            for metric, value in r[task].items():
                assert close(p[task][metric], value), (split, task, metric, p[task][metric], value)


@pytest.mark.parametrize("arch", registry_params())
def test_population_of_two_reproduces_separate_fits(arch, data):
    # members differ in seed (init and data order), lr, weight decay and its kind; both must see the final
    # partial batch exactly as they would alone
    assert len(data.train) % 48 != 0
    small = {k: 16 for k in ("expert_units", "column_units", "tower_units") if k in architectures.options(arch)}
    base = {"max_epochs": 3, "batch_size": 48, "patience": 10, **small}
    configs = [
        {**base, "seed": 1, "lr": 3e-3, "weight_decay": 0.05},
        {**base, "seed": 7, "lr": 1e-2, "weight_decay": 0.1, "optimizer": "adamw"},
    ]
    pop = train_population(arch, data, configs, evaluate_test=True, device="cpu")
    refs = [fit(arch, data, c, evaluate_test=True, accelerator="cpu") for c in configs]
    assert len(pop) == 2
    for p, r in zip(pop, refs):
        assert_same_fit(p, r)
    assert pop[0].history[-1]["train_loss"] != pop[1].history[-1]["train_loss"]  # members really differ


GATES = {"dense": {}, "top-k-noisy": {"gate_top_k": 2, "gate_noise": 1.0}}
RANDOM_FORWARD = [  # every architecture draws dropout masks; the gated ones also draw the noise of top-k gates
    pytest.param(arch, gate, id=f"{arch}-{gate}")
    for arch in architectures.available() if not architectures.requirements(arch)
    for gate in GATES if gate == "dense" or "gate_top_k" in architectures.options(arch)]


@pytest.mark.parametrize(("arch", "gate"), RANDOM_FORWARD)
def test_population_with_random_draws_reproduces_separate_fits(arch, gate, data):
    """Every random draw of a member's forward pass (dropout masks, the noise of noisy top-k gates) comes from its
    own seed, drawn as ``fit`` draws them: on a CPU a member is the separately trained model (so whichever members
    share its population: ``tests/test_final_population.py`` checks that directly). Issue 27, case 3: the gate
    noise came from the generator the population seeded once from its first member. ESMM, AITM and STEM need
    funnel data: ``tests/test_funnel_architectures.py`` checks their populations."""
    small = {k: 8 for k in ("expert_units", "column_units", "tower_units") if k in architectures.options(arch)}
    experts = {"n_experts": 4} if "n_experts" in architectures.options(arch) else {}
    base = {"max_epochs": 2, "batch_size": 48, "patience": 10, "dropout": 0.3, **small, **experts, **GATES[gate]}
    configs = [{**base, "seed": 1}, {**base, "seed": 7, "lr": 1e-2}]
    pop = train_population(arch, data, configs, evaluate_test=True, device="cpu")
    for p, c in zip(pop, configs):
        assert_same_fit(p, fit(arch, data, c, evaluate_test=True, accelerator="cpu"))


def test_a_forward_pass_drawing_outside_dropout_and_gate_noise_is_refused(data, monkeypatch):
    """A layer that draws from torch's generator unfed would give members one shared stream: refused, naming the
    way out, before the first step."""
    from bench.architectures import layers

    original = layers.Towers.forward

    def noisy(self, x):
        return {k: v + 1e-3 * torch.randn_like(v) for k, v in original(self, x).items()}

    monkeypatch.setattr(layers.Towers, "forward", noisy)
    with pytest.raises(RuntimeError, match="outside dropout and layers.GateNoise.*--no-population"):
        train_population("mmoe", data, seed_configs({"max_epochs": 1, "expert_units": 4}, [1, 2]), device="cpu")


def test_members_stop_independently(data):
    # member 0 overshoots with a large learning rate and stops on patience 1 (after epoch 4 on this data);
    # member 1 runs to its max_epochs; member 2 has a smaller max_epochs. Each must stop when it would alone.
    base = {"batch_size": 48, "seed": 0, "expert_units": 16, "tower_units": 8}
    configs = [
        {**base, "lr": 0.3, "patience": 1, "max_epochs": 8},
        {**base, "seed": 1, "lr": 3e-3, "patience": 20, "max_epochs": 8},
        {**base, "seed": 2, "lr": 3e-3, "patience": 20, "max_epochs": 3},
    ]
    # two members per vmap call: groups of 2 + 1, regrouped as members leave the stack
    pop = train_population("mmoe", data, configs, evaluate_test=True, device="cpu", members_per_call=2)
    epochs = [r.epochs for r in pop]
    assert epochs[0] < 8 and epochs[1] == 8 and epochs[2] == 3
    # the early-stopped member is left at its best epoch: its test metrics are those fit reports after
    # restoring its best weights
    for p, cfg in zip(pop, configs):
        assert_same_fit(p, fit("mmoe", data, cfg, evaluate_test=True, accelerator="cpu"))
    assert pop[0].best_epoch < pop[0].epochs - 1


def test_stacked_adam_matches_torch_optim():
    """Adam and AdamW with the decay/no-decay split of param_groups, per-member lr and weight decay."""
    tasks = datasets.load("synthetic", n_samples=50, d=6).tasks
    settings = [(1e-2, 0.1, False), (3e-3, 0.0, False), (5e-2, 0.2, True)]  # (lr, weight decay, decoupled)
    models = [make_system("cross_stitch", tasks, 6, {"seed": s}).model for s in range(len(settings))]
    names = [n for n, _ in models[0].named_parameters()]
    stacked = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]) for n in names}
    decayed_ids = {id(p) for p in param_groups(models[0], 1.0)[0]["params"]}
    decayed = {n for n, p in models[0].named_parameters() if id(p) in decayed_ids}
    assert "stitch" not in decayed and any(n.endswith("bias") for n in names)
    opt = StackedAdam(stacked, decayed, *map(list, zip(*settings)))
    assert list(opt.params) == names
    refs = []
    for m, (lr, wd, decoupled) in zip(models, settings):
        cls = torch.optim.AdamW if decoupled else torch.optim.Adam
        refs.append(cls(param_groups(m, wd), lr=lr))
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        grads = {n: torch.randn(v.shape, generator=g) for n, v in stacked.items()}
        opt.step(opt.flatten([grads[n] for n in names], len(settings)))
        for s, (m, ref) in enumerate(zip(models, refs)):
            for n, p in m.named_parameters():
                p.grad = grads[n][s].clone()
            ref.step()
    for s, m in enumerate(models):
        for n, p in m.named_parameters():
            torch.testing.assert_close(opt.params[n][s], p.detach(), rtol=1e-6, atol=1e-7)
    # dropping a member keeps the others' parameters and state
    opt.keep(torch.tensor([0, 2]))
    for n, p in models[2].named_parameters():
        torch.testing.assert_close(opt.params[n][1], p.detach(), rtol=1e-6, atol=1e-7)


def test_test_split_read_only_when_asked(data):
    class Sealed(Split):
        def to(self, device):
            raise AssertionError("the test split was read")

    sealed = datasets.MTLData(data.name, data.tasks, data.train, data.val, Sealed(data.test.x, data.test.y))
    results = train_population("shared_bottom", sealed, seed_configs({"max_epochs": 1}, [0, 1]), device="cpu")
    assert all(r.test_metrics is None for r in results)
    with pytest.raises(AssertionError, match="test split was read"):
        train_population("shared_bottom", sealed, [{"max_epochs": 1}], evaluate_test=True, device="cpu")


def test_dropout_population_is_reproducible(data):
    configs = seed_configs({"max_epochs": 2, "dropout": 0.3, "batch_size": 64, "expert_units": 16}, [0, 1, 2])
    a = train_population("mmoe", data, configs, device="cpu")
    b = train_population("mmoe", data, configs, device="cpu")
    assert [r.history for r in a] == [r.history for r in b]
    assert len({r.history[-1]["train_loss"] for r in a}) == 3


@pytest.mark.parametrize(
    ("configs", "message"),
    [
        ([], "at least one config"),
        ([{"n_experts": 4}, {"n_experts": 8}], "n_experts is 4 in config 0 but 8 in config 1"),
        ([{"batch_size": 32}, {"batch_size": 64}], "must share batch_size"),
        ([{"seed": 0}, {"lr": -1.0}], "lr must be a positive number"),
        ([{"seed": 0}, {"n_expert": 4}], "unknown config key for mmoe 'n_expert'"),
    ],
)
def test_bad_population_is_a_user_error(data, configs, message):
    with pytest.raises(UserError, match=message):
        train_population("mmoe", data, configs, device="cpu")


def test_members_per_call_must_be_positive(data):
    with pytest.raises(UserError, match="members_per_call must be >= 1"):
        train_population("mmoe", data, [{}], device="cpu", members_per_call=0)


def test_unknown_device_is_a_user_error(data):
    with pytest.raises(UserError, match="valid choices: auto, cpu"):
        train_population("mmoe", data, [{}], device="tpu")


@pytest.mark.parametrize("arch", ["mmoe", "ple"])
def test_top_k_gating_population_reproduces_separate_fits(arch, data):
    # sparse gates without noise are deterministic: the load-balancing loss is added per member as MTLSystem adds it
    base = {"max_epochs": 2, "batch_size": 48, "patience": 10, "expert_units": 16, "tower_units": 16,
            "gate_top_k": 2, "gate_noise": 0.0, "gate_aux_weight": 0.5}
    configs = [{**base, "seed": 1}, {**base, "seed": 5, "lr": 3e-3}]
    pop = train_population(arch, data, configs, evaluate_test=True, device="cpu")
    refs = [fit(arch, data, c, evaluate_test=True, accelerator="cpu") for c in configs]
    for p, r in zip(pop, refs):
        assert_same_fit(p, r)


def test_noisy_top_k_population_trains_and_is_reproducible(data):
    # noise is drawn per member from its own generator; the same population twice is the same
    configs = seed_configs({"max_epochs": 2, "batch_size": 48, "expert_units": 16, "tower_units": 16,
                            "n_experts": 4, "gate_top_k": 2}, [1, 2])
    a = train_population("mmoe", data, configs, device="cpu")
    b = train_population("mmoe", data, configs, device="cpu")
    assert [r.history for r in a] == [r.history for r in b]
    assert all(r.error is None and math.isfinite(r.val_objective) for r in a)
