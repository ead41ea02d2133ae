"""``architectures.gemm.addmm``: ``torch.addmm`` in value and gradient whichever kernel runs it, inside
``torch.func.vmap`` too, and a ``BENCH_GEMM`` setting that chooses or names the valid choices."""

from __future__ import annotations

import pytest
import torch
from torch.func import vmap

from bench.architectures import create, gemm
from bench.errors import UnknownChoice


@pytest.fixture
def kernel(request, monkeypatch):
    """The oneDNN kernel (skipped where this torch lacks it) or torch's BLAS, as ``onednn_active()`` decides."""
    if request.param == "onednn":
        monkeypatch.delenv("BENCH_GEMM", raising=False)
        monkeypatch.setattr(gemm, "_state", None)
        if not gemm.onednn_active():
            pytest.skip("this machine or torch build has no oneDNN inner product (x86-64 with mkldnn)")
    else:
        monkeypatch.setattr(gemm, "_state", False)
    return request.param


def operands(batch=37, d=23, n=19, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, generator=g), torch.randn(batch, d, generator=g), torch.randn(d, n, generator=g))


@pytest.mark.parametrize("kernel", ["onednn", "blas"], indirect=True)
@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "column slice"])
def test_value_and_gradients_are_addmms(kernel, input_grad, layout):
    bias, x, w = operands()
    if layout == "transposed":  # the same values, strides (1, B)
        x = x.t().contiguous().t()
    elif layout == "column slice":  # the same values inside wider rows
        x = torch.cat([torch.ones(37, 3), x, torch.ones(37, 2)], 1)[:, 3:-2]
    upstream = torch.randn(37, 19, generator=torch.Generator().manual_seed(1))
    grads = []
    for f in (gemm.addmm, torch.addmm):
        x_leaf = x.detach().requires_grad_(input_grad)  # keeps the layout (a clone would not)
        leaves = [bias.clone().requires_grad_(), x_leaf, w.clone().requires_grad_()]
        out = f(*leaves)
        out.backward(upstream)
        grads.append((out.detach(), *(t.grad for t in leaves)))
    (out, *ours), (ref, *theirs) = grads
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert (ours[1] is None) == (not input_grad)
    for a, b in zip(ours, theirs):
        if b is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kernel", ["onednn"], indirect=True)
def test_oneDNN_runs_where_active_and_torch_elsewhere(kernel, monkeypatch):
    calls = []
    real = gemm._kernel
    monkeypatch.setattr(gemm, "_kernel", lambda: calls.append(1) or real())
    bias, x, w = operands()
    gemm.addmm(bias, x, w)
    assert calls  # float32 on the CPU: oneDNN
    empty = x[:0].clone().requires_grad_()  # an empty batch: an empty product, zero gradients
    wl = w.clone().requires_grad_()
    out = gemm.addmm(bias, empty, wl)
    out.sum().backward()
    assert out.shape == (0, 19) and not wl.grad.any() and empty.grad.shape == (0, 23)
    calls.clear()
    gemm.addmm(bias.double(), x.double(), w.double())  # another dtype: torch.addmm
    assert not calls


@pytest.mark.parametrize("kernel", ["onednn", "blas"], indirect=True)
def test_under_vmap_batched_input_or_weights_and_their_gradients(kernel):
    # populations: a stack of S members, each with its own rows (training) or its own weights on shared rows (eval)
    s = 3
    bias, x, w = operands()
    xs = torch.stack([x + k for k in range(s)])  # (S, B, d)
    ws = torch.stack([w * (k + 1) for k in range(s)]).requires_grad_()  # (S, d, N)
    bs = torch.stack([bias - k for k in range(s)]).requires_grad_()  # (S, N)
    out = vmap(gemm.addmm)(bs, xs, ws)  # every operand batched
    ref = torch.stack([torch.addmm(bs[k], xs[k], ws[k]) for k in range(s)])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-4)
    shared = vmap(gemm.addmm, in_dims=(0, None, 0))(bs, x, ws)  # one input for every member's weights
    torch.testing.assert_close(shared, torch.stack([torch.addmm(bs[k], x, ws[k]) for k in range(s)]),
                               rtol=1e-5, atol=1e-4)
    (gw, gb) = torch.autograd.grad(out.square().sum(), (ws, bs))
    (rw, rb) = torch.autograd.grad(ref.square().sum(), (ws, bs))
    torch.testing.assert_close(gw, rw, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(gb, rb, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("kernel", ["onednn"], indirect=True)
def test_a_model_trains_to_the_same_numbers_on_either_kernel(kernel, monkeypatch, one_thread):
    # MMoE: its first level and gates read the input through StackedLinear's 2-D product, i.e. gemm.addmm
    def losses(active: bool) -> list[float]:
        monkeypatch.setattr(gemm, "_state", active)
        torch.manual_seed(0)
        model = create("mmoe", 13, {"a": 1, "b": 1}, n_experts=4, expert_units=16, tower_units=8)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        g = torch.Generator().manual_seed(2)
        x, y = torch.randn(64, 13, generator=g), torch.randint(0, 2, (64, 2), generator=g).float()
        seen = []
        for _ in range(20):
            out = model(x)
            loss = sum(torch.nn.functional.binary_cross_entropy_with_logits(out[t][:, 0], y[:, k])
                       for k, t in enumerate("ab"))
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen.append(loss.item())
        return seen

    assert losses(True) == pytest.approx(losses(False), rel=1e-4)


def test_BENCH_GEMM_blas_keeps_torch_and_an_unknown_value_names_the_choices(monkeypatch):
    monkeypatch.setattr(gemm, "_state", None)
    monkeypatch.setenv("BENCH_GEMM", "blas")
    assert gemm.onednn_active() is False
    monkeypatch.setattr(gemm, "_state", None)
    monkeypatch.setenv("BENCH_GEMM", "mkl")
    with pytest.raises(UnknownChoice, match="BENCH_GEMM.*'mkl'.*auto, blas"):
        gemm.onednn_active()


def test_the_hardware_stored_with_results_names_the_kernel(monkeypatch):
    from bench.training.devices import hardware

    for active, name in ((True, "oneDNN"), (False, "torch's BLAS")):
        monkeypatch.setattr(gemm, "_state", active)
        assert hardware("cpu").endswith(f", 2-D GEMMs on {name}")
