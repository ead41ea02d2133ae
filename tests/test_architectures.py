"""Contracts every registered architecture meets: parametrised over the registry, so a new architecture
is tested without new test code."""

import math

import pytest
import torch

from bench import architectures

ARCHS = architectures.available()
MIXED_TASKS = {"click": 1, "price": 1, "genre": 3}  # binary, regression and a 3-class head side by side
D_IN = 12


def build(name, tasks=MIXED_TASKS, **opts):
    torch.manual_seed(0)
    return architectures.create(name, D_IN, tasks, **opts)


def test_all_seven_registered():
    assert set(ARCHS) >= {"single_task", "shared_bottom", "cross_stitch", "omoe", "mmoe", "cgc", "ple"}


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
    with pytest.raises(ValueError, match="valid choices: cgc, cross_stitch"):
        architectures.get("moe")
    with pytest.raises(ValueError, match="n_experts"):
        architectures.create("mmoe", 4, {"a": 1}, n_expert=3)


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
