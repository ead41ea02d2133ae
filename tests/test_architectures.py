"""Contracts every registered architecture meets: parametrised over the registry, so a new architecture
is tested without new test code."""

import math

import pytest
import torch
from conftest import registry_params

from bench import architectures

ARCHS = registry_params()  # ESMM, AITM (a funnel) and STEM (embedded fields): tests/test_funnel_architectures.py
PLAIN = [a for a in architectures.available() if not architectures.requirements(a)]
MIXED_TASKS = {"click": 1, "price": 1, "genre": 3}  # binary, regression and a 3-class head side by side
D_IN = 12


def build(name, tasks=MIXED_TASKS, **opts):
    torch.manual_seed(0)
    return architectures.create(name, D_IN, tasks, **opts)


def test_all_seven_registered():
    assert set(architectures.available()) >= {"single_task", "shared_bottom", "cross_stitch", "omoe", "mmoe", "cgc",
                                              "ple", "esmm", "aitm", "stem"}


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("batch", [1, 7])
def test_keys_shapes_finite(name, batch):
    model = build(name)
    out = model(torch.randn(batch, D_IN))
    assert list(out) == list(MIXED_TASKS)
    for task, width in MIXED_TASKS.items():
        assert out[task].shape == (batch, width)
        assert torch.isfinite(out[task]).all()


@pytest.mark.parametrize("name", ARCHS)
def test_every_parameter_gets_a_gradient(name):
    model = build(name)
    out = model(torch.randn(32, D_IN))
    sum(o.square().mean() for o in out.values()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}.{pname} got no gradient"
        assert p.grad.abs().sum() > 0, f"{name}.{pname} got an all-zero gradient"


@pytest.mark.parametrize("name", ARCHS)
def test_uniform_heads_and_single_task_list(name):
    # all-binary tasks take the stacked-head path; one task alone must work too
    for tasks in ({"a": 1, "b": 1}, {"only": 1}):
        out = build(name, tasks)(torch.randn(5, D_IN))
        assert {k: v.shape for k, v in out.items()} == {k: (5, 1) for k in tasks}


@pytest.mark.parametrize("name", ARCHS)
def test_options_are_typed_scalars_with_defaults(name):
    opts = architectures.options(name)
    assert opts, f"{name} has no options"
    for key, default in opts.items():
        assert isinstance(default, (int, float, bool)), f"{name}.{key} default {default!r}"


@pytest.mark.parametrize("name", ARCHS)
def test_dropout_is_an_option_and_active_only_in_training(name):
    model = build(name, dropout=0.5)
    x = torch.randn(64, D_IN)
    model.eval()
    a, b = model(x), model(x)
    assert all(torch.equal(a[k], b[k]) for k in a)
    model.train()
    c = model(x)
    assert any(not torch.allclose(a[k], c[k]) for k in a)


@pytest.mark.parametrize("name", ARCHS)
def test_stacked_weights_initialised_with_fan_in_of_one_expert(name):
    from bench.architectures.layers import StackedLinear

    for module in build(name).modules():
        if isinstance(module, StackedLinear):
            bound = 1 / math.sqrt(module.d_in)
            assert module.weight.abs().max() <= bound
            # uniform on [-b, b] has std b/sqrt(3); a stack-wide fan-in would be sqrt(n) times smaller
            if module.weight.numel() >= 200:
                assert module.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.2)


def test_unknown_architecture_and_option_list_choices():
    with pytest.raises(ValueError, match="valid choices: aitm, cgc, cross_stitch"):
        architectures.get("moe")
    with pytest.raises(ValueError, match="n_experts"):
        architectures.create("mmoe", 4, {"a": 1}, n_expert=3)


# --- sparse top-k gating (Shazeer et al. 2017): every gated architecture ----------------------------------
GATED = [a for a in PLAIN if "gate_top_k" in architectures.options(a)]
FEW = {"mmoe": {"n_experts": 4}, "omoe": {"n_experts": 4}, "cgc": {"n_shared": 2, "n_specific": 2},
       "ple": {"n_shared": 2, "n_specific": 2, "n_levels": 2}}  # every task gate weighs 4 experts


def test_gated_architectures_are_the_four_mixtures():
    assert GATED == ["cgc", "mmoe", "omoe", "ple"]


def all_gates(model) -> list[torch.Tensor]:
    """The weights of every task gate of ``model`` on the forward passes after this call, as forward hooks see
    them (the PLE shared gates stay dense)."""
    seen = []
    for level in model.levels:
        level.task_gates.register_forward_hook(lambda mod, args, out: seen.append(out[0].detach()))
    return seen


@pytest.mark.parametrize("name", GATED)
@pytest.mark.parametrize("train", [True, False])
def test_top_k_shapes_and_exactly_k_experts_per_row(name, train):
    model = build(name, gate_top_k=2, **FEW[name])
    model.train(train)
    gates = all_gates(model)
    out = model(torch.randn(7, D_IN))
    assert {k: v.shape for k, v in out.items()} == {k: (7, w) for k, w in MIXED_TASKS.items()}
    assert gates
    for g in gates:  # (n, B, C): k nonzero weights per row, summing to 1
        assert ((g > 0).sum(-1) == 2).all()
        torch.testing.assert_close(g.sum(-1), torch.ones(g.shape[:2]))


@pytest.mark.parametrize("name", GATED)
def test_top_k_with_noise_and_aux_loss_trains_every_parameter(name):
    model = build(name, gate_top_k=2, **FEW[name])
    assert model.has_aux_loss and architectures.has_aux_loss(model)
    out, aux = model(torch.randn(32, D_IN), with_aux=True)
    assert aux.dim() == 0 and aux.item() > 0
    (sum(o.square().mean() for o in out.values()) + aux).backward()
    names = [n for n, _ in model.named_parameters()]
    assert any("noise_proj" in n for n in names)  # W_noise exists, and is learned
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}.{pname} got no gradient"
    model.eval()  # no noise and no auxiliary loss in evaluation
    _, aux = model(torch.randn(8, D_IN), with_aux=True)
    assert aux.item() == 0.0


@pytest.mark.parametrize("name", GATED)
def test_top_k_equal_to_the_number_of_choices_without_noise_is_dense_gating(name):
    n = {"mmoe": 4, "omoe": 4, "cgc": 4, "ple": 4}[name]  # every task gate of FEW weighs 4 experts
    dense = build(name, **FEW[name])
    sparse = build(name, gate_top_k=n, gate_noise=0.0, gate_aux_weight=0.0, **FEW[name])
    assert dense.state_dict().keys() == sparse.state_dict().keys()
    sparse.load_state_dict(dense.state_dict())
    x = torch.randn(16, D_IN)
    a, b = dense(x), sparse(x)
    assert all(torch.equal(a[k], b[k]) for k in a)  # exactly: nothing is masked, the same softmax


def test_top_k_gradients_reach_only_the_kept_experts():
    model = build("mmoe", {"a": 1, "b": 1}, n_experts=4, gate_top_k=2, gate_noise=0.0, gate_aux_weight=0.0)
    gates = all_gates(model)
    x = torch.randn(1, D_IN)  # one row: task a's gate keeps two experts
    model(x)["a"].sum().backward()
    kept = gates[0][0, 0] > 0  # (C,) task a's gate on the row
    assert kept.sum() == 2
    level = model.levels[0]
    per_expert = level.experts.layers[0].weight.grad.abs().flatten(1).sum(1)  # (N,)
    assert (per_expert[kept] > 0).all() and (per_expert[~kept] == 0).all()
    gate_grad = level.task_gates.proj.weight.grad[0].abs().sum(0)  # task a's gate, per choice
    assert (gate_grad[kept] > 0).all() and (gate_grad[~kept] == 0).all()
    assert level.task_gates.proj.weight.grad[1].abs().sum() == 0  # task b's gate: not in a's loss


def test_importance_loss_of_a_hand_set_gate():
    from bench.architectures.layers import Gating, StackedGate

    gate = StackedGate(1, 3, 4, Gating(top_k=2, noise=0.0, aux_weight=0.5))
    with torch.no_grad():
        gate.proj.weight.zero_()
        gate.proj.bias.copy_(torch.tensor([[3.0, 2.0, 0.0, -1.0]]))
    g, aux = gate(torch.randn(10, 3))
    e = math.exp(1.0)
    w = torch.tensor([e / (1 + e), 1 / (1 + e), 0.0, 0.0], dtype=torch.float64)  # softmax over the top 2
    torch.testing.assert_close(g[0], w.float().expand(10, 4))
    importance = 10 * w
    cv2 = importance.var(correction=0) / importance.mean() ** 2
    assert aux.item() == pytest.approx(0.5 * cv2.item(), rel=1e-5)


@pytest.mark.parametrize("name", GATED)
@pytest.mark.parametrize("bad", [-1, 5])
def test_bad_top_k_is_a_one_line_error_listing_valid_values(name, bad):
    from bench.datasets import Task
    from bench.errors import UserError
    from bench.training.system import make_system

    with pytest.raises(ValueError, match="gate_top_k must be 0 \\(dense\\)"):
        build(name, gate_top_k=bad, **FEW[name])
    with pytest.raises(UserError) as err:
        make_system(name, [Task("a", "binary", 1)], D_IN, {"gate_top_k": bad, **FEW[name]})
    assert len(str(err.value).splitlines()) == 1
    assert "1..4" in str(err.value) or ">= 1" in str(err.value)


@pytest.mark.parametrize("option", ["gate_noise", "gate_aux_weight"])
def test_negative_noise_or_aux_weight_is_refused(option):
    with pytest.raises(ValueError, match=f"{option} must be a finite number >= 0"):
        build("mmoe", gate_top_k=2, **{option: -0.1})


FIELDS = [5, 3]  # embedding rows of two categorical fields


@pytest.mark.parametrize("name", ARCHS)
def test_categorical_fields_go_through_one_encoder_in_front(name):
    from bench.architectures.layers import Encoded, FeatureEncoder

    torch.manual_seed(0)
    model = architectures.create(name, D_IN, MIXED_TASKS, fields=FIELDS, embedding_dim=4)
    assert isinstance(model, Encoded) and isinstance(model.encoder, FeatureEncoder)
    assert sum(isinstance(m, FeatureEncoder) for m in model.modules()) == 1
    assert model.encoder.d_out == D_IN + 2 * 4
    x, cat = torch.randn(32, D_IN), torch.stack([torch.randint(0, v, (32,)) for v in FIELDS], 1)
    out = model(x, cat)
    assert {k: v.shape for k, v in out.items()} == {k: (32, w) for k, w in MIXED_TASKS.items()}
    sum(o.square().mean() for o in out.values()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}.{pname} got no gradient"
    assert "embedding_dim" in architectures.options(name)
    with pytest.raises(ValueError, match="embedding_dim must be >= 1"):
        architectures.create(name, D_IN, MIXED_TASKS, fields=FIELDS, embedding_dim=0)
