"""The shared vocabulary proved: each architecture is a setting of the same pieces."""

import pytest
import torch
from torch import nn

from bench import architectures
from bench.architectures.layers import ExpertBank, StackedLinear

TASKS = {"a": 1, "b": 1}
D = 10


def make(name, **opts):
    torch.manual_seed(1)
    return architectures.create(name, D, TASKS, **opts)


def test_expert_bank_equals_a_loop_of_linear_mlps():
    torch.manual_seed(0)
    n, widths = 5, [16, 8]
    mlps = [
        nn.Sequential(nn.Linear(D, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU()) for _ in range(n)
    ]
    bank = ExpertBank(n, D, widths)
    with torch.no_grad():
        for i, mlp in enumerate(mlps):
            for layer, lin in zip(bank.layers, (mlp[0], mlp[2])):
                layer.weight[i] = lin.weight.T
                layer.bias[i] = lin.bias
    x = torch.randn(9, D)
    expected = torch.stack([mlp(x) for mlp in mlps])  # (n, B, 8)
    torch.testing.assert_close(bank(x), expected)
    # per-member inputs: member i reads xs[i]
    xs = torch.randn(n, 9, D)
    torch.testing.assert_close(bank(xs), torch.stack([mlp(xs[i]) for i, mlp in enumerate(mlps)]))


def test_stacked_linear_matches_nn_linear_init_distribution():
    torch.manual_seed(0)
    ref = nn.Linear(300, 400).weight
    stacked = StackedLinear(8, 300, 400).weight
    assert stacked.abs().max() <= 1 / 300**0.5
    assert stacked.std().item() == pytest.approx(ref.std().item(), rel=0.02)


def test_omoe_is_mmoe_with_tied_gates():
    omoe, mmoe = make("omoe", n_experts=4), make("mmoe", n_experts=4)
    state = omoe.state_dict()
    tied = state["levels.0.task_gates.proj.weight"]  # (1, d, E): one gate for all tasks
    state["levels.0.task_gates.proj.weight"] = tied.expand(len(TASKS), -1, -1).clone()
    state["levels.0.task_gates.proj.bias"] = state["levels.0.task_gates.proj.bias"].expand(len(TASKS), -1).clone()
    mmoe.load_state_dict(state)
    x = torch.randn(20, D)
    a, b = omoe(x), mmoe(x)
    for k in TASKS:
        torch.testing.assert_close(a[k], b[k])
    # and untied MMoE gates differ from OMoE in general
    assert make("mmoe", n_experts=4).levels[0].task_gates.proj.weight.shape[0] == len(TASKS)


def test_shared_bottom_is_the_single_shared_expert_gate_free_case():
    sb = make("shared_bottom", expert_units=16)
    one_expert = make("mmoe", n_experts=1, expert_units=16)
    assert sb.levels[0].task_gates.proj is None  # a softmax over one choice is constant: no gate parameters
    assert one_expert.state_dict().keys() == sb.state_dict().keys()
    one_expert.load_state_dict(sb.state_dict())
    x = torch.randn(20, D)
    for k in TASKS:
        torch.testing.assert_close(sb(x)[k], one_expert(x)[k])
    # both towers read the same bottom: y_k = h^k(f(x))
    f = sb.levels[0].experts(x)[0]
    torch.testing.assert_close(sb(x)["b"], sb.towers(f.expand(2, -1, -1))["b"])


def test_one_level_ple_is_cgc():
    ple, cgc = make("ple", n_levels=1), make("cgc")
    assert ple.state_dict().keys() == cgc.state_dict().keys()
    cgc.load_state_dict(ple.state_dict())
    x = torch.randn(20, D)
    for k in TASKS:
        torch.testing.assert_close(ple(x)[k], cgc(x)[k])


def test_ple_lower_levels_feed_upper_levels_through_gates():
    ple = make("ple", n_levels=3)
    assert [lvl.shared_gate is not None for lvl in ple.levels] == [True, True, False]
    out = ple(torch.randn(4, D))
    assert out["a"].shape == (4, 1)


def test_cgc_task_gate_sees_own_and_shared_experts_only():
    cgc = make("cgc", n_shared=2, n_specific=3)
    level = cgc.levels[0]
    # experts ordered [shared0, shared1, a0, a1, a2, b0, b1, b2]; task a chooses a0..a2 and the shared ones
    assert level.choices.tolist() == [[2, 3, 4, 0, 1], [5, 6, 7, 0, 1]]
    x = torch.randn(6, D)
    out = cgc(x)
    out["a"].sum().backward()
    grad = level.experts.layers[0].weight.grad  # (N, d, h)
    per_expert = grad.abs().flatten(1).sum(1)
    assert (per_expert[5:] == 0).all() and (per_expert[:5] > 0).all()


def test_single_task_has_exactly_zero_gradient_across_tasks():
    st = make("single_task", expert_layers=2, tower_layers=2)
    x = torch.randn(16, D)
    st(x)["a"].pow(2).sum().backward()
    for name, p in st.named_parameters():
        if p.grad is None:
            continue
        # every stacked parameter has one row per task: row 1 belongs to task b
        assert p.grad[1].abs().max().item() == 0.0, name
        assert p.grad[0].abs().max().item() > 0.0, name


def test_cross_stitch_starts_near_identity_and_mixes():
    cs = make("cross_stitch")
    torch.testing.assert_close(cs.stitch[0], torch.tensor([[0.9, 0.1], [0.1, 0.9]]))
    three = architectures.create("cross_stitch", D, {"a": 1, "b": 1, "c": 1})
    torch.testing.assert_close(three.stitch[0].sum(1), torch.ones(3))
    # with identity stitches, task a's output ignores task b's column
    with torch.no_grad():
        cs.stitch.copy_(torch.eye(2).expand_as(cs.stitch))
    x = torch.randn(8, D)
    cs(x)["a"].sum().backward()
    assert cs.columns.layers[0].weight.grad[1].abs().max() == 0
