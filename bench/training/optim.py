"""The optimisers of a training run, written once for the Lightning system and for populations.

- ``param_groups``: the decayed / never-decayed split of a model's parameters (biases and ``no_weight_decay()``).
- The lazy sparse Adam rule (SparseAdam's, as TensorFlow's LazyAdam): only the rows of an embedding table that a
  batch looked up move, with their moments. Its two steps are ``moment_update`` and ``adam_delta``; ``LazyAdam``
  applies them to the looked-up rows of one table (``MTLSystem``), ``StackedAdam`` to the looked-up rows of S
  members' tables at once (populations).
- ``StackedAdam``: Adam / AdamW as ``torch.optim`` computes them, for S members with their own coefficients.

``BETAS`` and ``EPS`` are torch's defaults, used by every optimiser here and by the system's ``torch.optim`` one.
"""

from __future__ import annotations

import math

import torch
from torch import nn

BETAS = (0.9, 0.999)  # torch.optim.Adam / AdamW / SparseAdam defaults
EPS = 1e-8


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimiser groups: decayed weights, and biases plus what a module lists in ``no_weight_decay()``
    (named by prefix), which are never decayed."""
    exempt: set[str] = set()
    for prefix, module in model.named_modules():
        if hasattr(module, "no_weight_decay"):
            exempt |= {f"{prefix}.{n}" if prefix else n for n in module.no_weight_decay()}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.endswith("bias") or any(name == e or name.startswith(e + ".") for e in exempt):
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


# --- the lazy sparse Adam rule, on the looked-up rows R of a table (SparseAdam's order of operations):
#
#     m_R <- m_R + (1 - beta1)(g_R - m_R),   v_R <- v_R + (1 - beta2)(g_R^2 - v_R)          (moment_update)
#     theta_R <- theta_R - (lr sqrt(1 - beta2^t) / (1 - beta1^t)) m_R / (sqrt(v_R) + eps)    (adam_delta)
#
# the rows of m, v and theta that no lookup touched keep their values.


def moment_update(avg: torch.Tensor, target: torch.Tensor, rate: float | torch.Tensor) -> torch.Tensor:
    """``avg + rate (target - avg)``: a moment moved towards ``target`` (g for m, g^2 for v) at ``rate`` (1 - beta),
    computed in ``target``'s memory (overwritten: pass a temporary) and returned; ``avg`` is left as it is."""
    return target.sub_(avg).mul_(rate).add_(avg)


def adam_delta(m: torch.Tensor, v: torch.Tensor, neg_step: float | torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """``neg_step m / (sqrt(v) + eps)``, the change of the rows' parameters, with ``neg_step`` =
    -lr sqrt(1 - beta2^t) / (1 - beta1^t); ``v`` is overwritten (pass a temporary, contiguous: sqrt over a strided
    view runs elementwise, not vectorised)."""
    return m.div(v.sqrt_().add_(eps)).mul_(neg_step)


def distinct_rows(grad: torch.Tensor, scratch: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A sparse COO gradient of an ``(R, ...)`` table as ``(rows (U,), values (U, ...))``: the U distinct rows it
    touches, duplicates summed, in no particular order (what ``coalesce()`` gives, unsorted).

    ``coalesce`` sorts the n lookups of a batch (n = B F: 20,480 at batch 2048 and 10 fields, 2.4-2.9 ms on one
    CPU thread, the largest single cost of a lazy step). This is O(n) and about 1 ms: every lookup i writes its
    position i into a scratch ``(R,)`` index at its row and reads back the position that stayed there (which of
    a row's duplicates stays does not matter: they all read the same one). The lookups that read their own
    position are the first of their row; a running count numbers those rows 0..U-1, and each lookup's values are
    summed into its row's slot. ``scratch``: an ``(R,)`` int32 (or int64) tensor on the gradient's device to write
    into, whatever it holds (only entries written here are read back); kept by the caller, as ``LazyAdam`` does, a
    table of millions of rows does not page-fault a fresh one in at every step.
    """
    if grad.is_coalesced():
        return grad.indices()[0], grad.values()
    index, values = grad._indices()[0], grad._values()  # (n,), (n, ...): one entry per lookup, rows repeat
    if scratch is None:
        scratch = torch.empty(grad.shape[0], dtype=torch.int64, device=index.device)
    position = torch.arange(index.numel(), dtype=scratch.dtype, device=index.device)
    scratch.index_copy_(0, index, position)
    owner = scratch.index_select(0, index)  # (n,): the position that stands for lookup i's row
    first = owner == position  # (n,): the one lookup per distinct row that stands for it
    slot = first.cumsum(0).sub_(1).index_select(0, owner)  # (n,): lookup i's row numbered among the U
    rows = index[first]  # (U,)
    # accumulate=True: a sum over duplicates (index_add_ gives the same, about 1.5x slower on a CPU)
    summed = values.new_zeros(rows.numel(), *values.shape[1:]).index_put_((slot,), values, accumulate=True)
    return rows, summed


class LazyAdam(torch.optim.Optimizer):
    """The lazy sparse Adam rule (``moment_update``, ``adam_delta``) for tables with sparse gradients: only the
    looked-up rows R and their moments move (``m`` and ``v`` of the other rows keep their values), in
    ``torch.optim.SparseAdam``'s order of operations, computed on the rows with ``index_select`` and ``index_copy_``
    rather than SparseAdam's sparse-into-dense additions, which cost several times more on a CPU, and with the
    gradient's rows made distinct in O(lookups) (``distinct_rows``) rather than sorted by ``coalesce``. A row's two
    moments sit side by side in one ``(R, 2e)`` state (``moments``: ``[m | v]``), so the U looked-up rows' moments
    are one gather and one scatter. The step alone on the ``benchmarks/embeddings.py`` table (batch 2048, 10
    fields, about 12,000 distinct rows of width 8 out of 820,000; one CPU thread, ``--part lazy``,
    ``benchmarks/README.md``): 3.3-5.7 ms (best of 6 rounds) against 3.9-5.9 ms with separate ``m`` and ``v``
    tensors, run alternately on a machine whose speed drifted by half.
    """

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})
        # per table: distinct_rows' (R,) scratch index, 4 bytes a row (int32: a batch has fewer than 2^31 lookups);
        # not optimiser state (nothing to save or restore: its content is never read before it is written)
        self._scratch: dict[torch.Tensor, torch.Tensor] = {}
        self._coeff: dict[tuple, torch.Tensor] = {}  # (beta1, beta2, e, dtype, device) -> [1 - beta1 | 1 - beta2]

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._step_table(p, group)
        return None

    def _step_table(self, p: torch.Tensor, group: dict) -> None:
        """One table ``p (R, ...)`` with a sparse gradient: its looked-up rows and their moments move."""
        beta1, beta2 = group["betas"]
        if not p.grad.is_sparse:
            raise ValueError("LazyAdam updates tables with sparse gradients (nn.Embedding(sparse=True))")
        if p not in self._scratch:
            self._scratch[p] = torch.empty(p.shape[0], dtype=torch.int32, device=p.device)
        big = p.grad._nnz() >= 2**31  # positions past int32: a fresh int64 index
        rows, g = distinct_rows(p.grad, None if big else self._scratch[p])  # (U,), (U, e)
        state = self.state[p]
        width = p[0].numel()  # e: a row's entries
        if not state:  # m and v of a row side by side: one gather and one scatter for both
            state.update(step=0, moments=p.new_zeros(p.shape[0], 2 * width))  # (R, 2e): [m | v]
        state["step"] += 1
        g = g.reshape(-1, width)  # (U, e)
        # [m | v] + [1 - beta1 | 1 - beta2] ([g | g^2] - [m | v]): both moments in one pass each; the coefficients a
        # (2e,) row, since a broadcast over runs of only e entries would not be vectorised
        key = (beta1, beta2, width, p.dtype, p.device)
        if key not in self._coeff:  # made once, not copied to the device at every step
            self._coeff[key] = torch.tensor([1 - beta1, 1 - beta2], dtype=p.dtype,
                                            device=p.device).repeat_interleave(width)  # (2e,)
        moments = state["moments"].index_select(0, rows)  # (U, 2e), contiguous
        moments = moment_update(moments, torch.cat([g, g * g], 1), self._coeff[key])
        state["moments"].index_copy_(0, rows, moments)
        m, v = moments.split(width, 1)  # (U, e) views with a row stride of 2e
        t = state["step"]
        step_size = group["lr"] * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        delta = adam_delta(m, v.contiguous(), -step_size, group["eps"])  # (U, e)
        # rows are distinct: a gather, add and scatter (index_add_ takes several times longer)
        p.index_copy_(0, rows, p.index_select(0, rows).add_(delta.view(-1, *p.shape[1:])))


class StackedAdam:
    """Adam / AdamW as ``torch.optim`` computes them, for S members at once, each with its own learning rate,
    weight decay and kind of decay.

        g  <- g + lambda_s theta                   (adam, decayed parameters only: L2 in the gradient)
        theta <- (1 - lr_s lambda_s) theta          (adamw, decayed parameters only: decoupled decay)
        m  <- beta1 m + (1 - beta1) g,   v <- beta2 v + (1 - beta2) g^2
        theta <- theta - (lr_s / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    All parameters live in one ``(S, P)`` buffer, member s in row s; ``params`` are ``(S, ...)`` views of it
    (leaves that require grad), so one step is a handful of ops on that buffer whatever the number of
    parameter tensors. ``decayed`` names the parameters of ``param_groups``' decayed group; the others are
    never decayed. All members step together, so the step count t is shared.

    ``lazy`` names the embedding table, which ``MTLSystem`` trains with ``LazyAdam``: the lazy sparse Adam rule
    (``moment_update``, ``adam_delta``), only the rows member s's batch looked up (``touched``) move, with their
    moments (computed densely over the table here, since vmap has no sparse gradients). A parameter that gets no
    gradient counts as a zero gradient (``torch.optim`` would skip it; every registered architecture uses all
    of its parameters in every step).
    """

    def __init__(
        self,
        params: dict[str, torch.Tensor],
        decayed: set[str],
        lr: list[float],
        weight_decay: list[float],
        decoupled: list[bool],
        lazy: str | None = None,
    ) -> None:
        first = next(iter(params.values()))
        n, device = first.shape[0], first.device
        self.shapes = {k: v.shape[1:] for k, v in params.items()}
        self.flat = torch.cat([v.detach().reshape(n, -1) for v in params.values()], dim=1).contiguous()  # (S, P)
        decay = torch.cat(
            [torch.full((v[0].numel(),), float(k in decayed), device=device) for k, v in params.items()]
        )  # (P,) 1 where decayed
        # per-member coefficients; those torch.optim computes from Python floats are computed in double here
        self.lr = torch.tensor(lr, dtype=torch.float64, device=device)  # (S,)
        l2 = torch.tensor([0.0 if d else w for w, d in zip(weight_decay, decoupled)], device=device)
        shrink = torch.tensor(
            [1.0 - r * w if d else 1.0 for r, w, d in zip(lr, weight_decay, decoupled)], device=device
        )
        self.l2 = l2[:, None] * decay  # (S, P): lambda_s on decayed entries, else 0
        self.shrink = torch.where(decay > 0, shrink[:, None], torch.ones_like(shrink)[:, None])  # (S, P)
        self.any_l2 = any(w > 0 and not d for w, d in zip(weight_decay, decoupled))
        self.any_shrink = any(w > 0 and d for w, d in zip(weight_decay, decoupled))
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        self.t = 0
        self.params = self.unflatten(self.flat, requires_grad=True)
        self.lazy: tuple[int, int, int] | None = None  # (start, stop, row width) of the table in the buffer
        start = 0
        for name, shape in self.shapes.items():
            size = math.prod(shape)
            if name == lazy:
                self.lazy = (start, start + size, shape[-1])
            start += size

    def unflatten(self, flat: torch.Tensor, requires_grad: bool = False) -> dict[str, torch.Tensor]:
        """``{name: (S, ...) view}`` of an ``(S, P)`` buffer laid out as this optimiser's."""
        out, start = {}, 0
        for name, shape in self.shapes.items():
            size = math.prod(shape)
            view = flat[:, start : start + size].view(flat.shape[0], *shape)
            out[name] = view.requires_grad_() if requires_grad else view
            start += size
        return out

    def flatten(self, grads: list[torch.Tensor | None], n: int) -> torch.Tensor:
        """The ``(n, P)`` gradient buffer of ``n`` members from gradients of ``unflatten``'s views (in order)."""
        return torch.cat(
            [
                gr.reshape(n, -1) if gr is not None else self.flat.new_zeros(n, math.prod(shape))
                for gr, shape in zip(grads, self.shapes.values())
            ],
            dim=1,
        )

    @torch.no_grad()
    def step(self, g: torch.Tensor, touched: torch.Tensor | None = None) -> None:
        """One step from the ``(S, P)`` gradient of every member (``flatten``); ``touched (S, R)``: the table rows
        each member's batch looked up (with ``lazy``)."""
        self.t += 1
        if self.lazy is None:
            self._dense(slice(None), g)
            return
        start, stop, width = self.lazy
        for part in (slice(0, start), slice(stop, None)):
            self._dense(part, g[:, part])
        self._lazy(g[:, start:stop], touched, width)

    def _dense(self, part: slice, g: torch.Tensor) -> None:
        """Adam / AdamW on the columns ``part`` of the buffer (views: updated in place)."""
        theta, m, v = self.flat[:, part], self.exp_avg[:, part], self.exp_avg_sq[:, part]
        if theta.shape[1] == 0:
            return
        beta1, beta2 = BETAS
        bc1 = 1 - beta1**self.t
        bc2_sqrt = math.sqrt(1 - beta2**self.t)
        neg_step = (-(self.lr / bc1)).float()[:, None]  # (S, 1): -lr_s / (1 - beta1^t)
        if self.any_l2:
            g = g.addcmul_(self.l2[:, part], theta)
        if self.any_shrink:
            theta.mul_(self.shrink[:, part])
        m.lerp_(g, 1 - beta1)  # g may be modified above: it is the caller's temporary
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        denom = (v.sqrt() / bc2_sqrt).add_(EPS)
        theta.add_(m.mul(neg_step).div_(denom))

    def _lazy(self, g: torch.Tensor, touched: torch.Tensor, width: int) -> None:
        """The lazy sparse Adam rule (``moment_update``, ``adam_delta``) on the table's touched rows, computed densely
        over the table and selected by ``where`` (vmap has no sparse gradients); ``g`` is overwritten."""
        start, stop, _ = self.lazy
        theta, m, v = self.flat[:, start:stop], self.exp_avg[:, start:stop], self.exp_avg_sq[:, start:stop]
        beta1, beta2 = BETAS
        bc1, bc2 = 1 - beta1**self.t, 1 - beta2**self.t
        mask = touched.repeat_interleave(width, dim=1)  # (S, R e): the (R, e) table is stored row-major
        v_new = moment_update(v, g * g, 1 - beta2)
        m_new = moment_update(m, g, 1 - beta1)  # in g's memory, g^2 taken above
        # lr_s (sqrt(bc2) / bc1) in double, as this optimiser always computed it (LazyAdam: lr sqrt(bc2) / bc1)
        step_size = (self.lr * (math.sqrt(bc2) / bc1)).float()[:, None]  # (S, 1)
        delta = adam_delta(m_new, v_new.clone(), -step_size)
        m.copy_(torch.where(mask, m_new, m))
        v.copy_(torch.where(mask, v_new, v))
        theta.add_(torch.where(mask, delta, torch.zeros_like(delta)))

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only the members ``rows`` (indices into the current stack); ``params`` are new views."""
        self.flat, self.exp_avg, self.exp_avg_sq = self.flat[rows], self.exp_avg[rows], self.exp_avg_sq[rows]
        self.lr, self.l2, self.shrink = self.lr[rows], self.l2[rows], self.shrink[rows]
        self.params = self.unflatten(self.flat, requires_grad=True)
