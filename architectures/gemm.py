"""The dense layers' matrix product, ``bias + x @ w``, with the fastest exact fp32 kernel this torch build has.

``addmm(bias, x, w)`` is ``torch.addmm`` in value and gradient. On x86-64 CPUs it runs the forward product and
both gradients through oneDNN's fp32 inner product (``torch.ops.mkldnn._linear_pointwise``: the kernel
``torch.compile``'s CPU backend emits for ``nn.Linear``) instead of torch's BLAS (MKL in the x86 wheels). Why:
MKL runs its generic code path on non-Intel CPUs (``MKL_VERBOSE=1`` names "Intel(R) Architecture processors"
rather than an AVX2 or AVX-512 path). On this project's 2-core AMD EPYC machine (Zen 5), ``(2048 x 100) @ (100 x
528)`` took 2.06 ms with MKL against 0.91 ms with oneDNN, the input gradient 2.25 against 1.03 ms, the weight
gradient 2.24 against 1.00 ms, in full fp32 and bit for bit the same forward product on the arrays measured
(``benchmarks/embeddings.py --part steps``, ``benchmarks/README.md``).

Where oneDNN is not used, ``addmm`` is ``torch.addmm``: other devices and dtypes, a torch without the kernel, other
machines (arm64: oneDNN there runs on the Arm Compute Library, not measured), inside ``torch.func.vmap``
(populations: the batched product is torch's), or with ``BENCH_GEMM=blas`` in the environment (``auto``, the
default, chooses as above). Whether it is used is decided once per process (``onednn_active()``), after checking
the kernel against ``torch.addmm`` on a small problem; a kernel that disagrees or fails is not used.
"""

from __future__ import annotations

import os
import platform

import torch

from bench.errors import UnknownChoice

CHOICES = ("auto", "blas")  # BENCH_GEMM
_state: bool | None = None


def _kernel():
    return torch.ops.mkldnn._linear_pointwise


def onednn_active() -> bool:
    """Whether ``addmm`` runs on oneDNN in this process (decided at the first call, then fixed). An unknown
    ``BENCH_GEMM`` value is a ``UnknownChoice`` error naming the valid ones."""
    global _state
    if _state is None:
        choice = os.environ.get("BENCH_GEMM", "auto").lower() or "auto"
        if choice not in CHOICES:
            raise UnknownChoice("BENCH_GEMM setting", choice, CHOICES)
        x86 = platform.machine().lower() in ("x86_64", "amd64")
        _state = choice == "auto" and x86 and torch.backends.mkldnn.is_available() and _kernel_agrees()
    return _state


def _kernel_agrees() -> bool:
    """The oneDNN kernel exists in this torch and computes ``torch.addmm``'s product, and the weight gradient's
    product of transposed views, on a small problem."""
    try:
        g = torch.Generator().manual_seed(0)
        x, w, b = torch.randn(33, 17, generator=g), torch.randn(17, 9, generator=g), torch.randn(9, generator=g)
        out = _kernel()(x, w.t().contiguous(), b, "none", [], "")
        dw = _kernel()(x.t(), out.t(), None, "none", [], "")  # x^T out: (17, 9)
        return bool(torch.allclose(out, torch.addmm(b, x, w), rtol=1e-5, atol=1e-5)
                    and torch.allclose(dw, x.t() @ out, rtol=1e-5, atol=1e-4))
    except (AttributeError, RuntimeError):
        return False


class _OneDnnAddmm(torch.autograd.Function):
    """``bias + x @ w`` for ``x (B, d)``, ``w (d, N)``, ``bias (N,)``: the product and both gradients on oneDNN."""

    @staticmethod
    def forward(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        # the inner product computes input @ weight^T with an (out, in) weight: (N, d) here
        return _kernel()(x, w.t().contiguous(), bias, "none", [], "")  # (B, N)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, w, _ = inputs
        ctx.save_for_backward(x, w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, w = ctx.saved_tensors
        grad = grad.contiguous()  # (B, N)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:  # dL/dx = g @ w^T: an inner product with w (d, N) as its (out, in) weight
            dx = _kernel()(grad, w.contiguous(), None, "none", [], "")  # (B, d)
        if ctx.needs_input_grad[1]:  # dL/dw = x^T g: the inner product over B of the transposed views, no copies
            empty = x.shape[0] == 0  # oneDNN refuses a product over nothing
            dw = torch.mm(x.t(), grad) if empty else _kernel()(x.t(), grad.t(), None, "none", [], "")  # (d, N)
        if ctx.needs_input_grad[2]:
            db = grad.sum(0)  # (N,)
        return dx, dw, db

    @staticmethod
    def vmap(info, in_dims, x, w, bias):
        # inside torch.func.vmap (populations): torch's batched product, (S, B, d) @ (S, d, N) + (S, 1, N)
        x, w, bias = (t if d is None else t.movedim(d, 0) for t, d in zip((x, w, bias), in_dims))
        out = torch.matmul(x, w) + (bias if in_dims[2] is None else bias.unsqueeze(-2))
        batched = any(d is not None for d in in_dims)
        return out, 0 if batched else None


def addmm(bias: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``torch.addmm(bias, x, w)``: ``(N,) + (B, d) @ (d, N) -> (B, N)``, on oneDNN where ``onednn_active()`` and
    the operands are float32 CPU tensors."""
    if (
        x.dtype == torch.float32
        and x.device.type == "cpu"
        and w.dtype == torch.float32
        and bias.dtype == torch.float32
        and onednn_active()
    ):
        return _OneDnnAddmm.apply(x, w, bias)
    return torch.addmm(bias, x, w)
