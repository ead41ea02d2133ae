"""The shared vocabulary every architecture is built from.

- ``StackedLinear``: ``n`` independent linear maps held as one ``(n, d_in, d_out)`` weight and run as one
  batched matmul (one ``gemm.addmm`` when every member reads the same rows). Initialised like ``nn.Linear`` with
  the fan-in of *one* member.
- ``ExpertBank``: ``n`` MLP experts (or task columns, or towers) made of ``StackedLinear`` layers.
- ``StackedGate``: several softmax gates over the same number of choices, one batched matmul; dense, or noisy
  top-k with the load-balancing loss (Shazeer et al., ICLR 2017).
- ``ExtractionLevel``: one CGC-style extraction level (Tang et al., RecSys 2020, eq. 1-4). Single-task,
  Shared-Bottom, OMoE, MMoE and CGC are settings of one level; PLE stacks levels.
- ``Towers``: one MLP tower per task on top, returning ``{task: logits}``.
- ``FeatureEncoder``: numeric columns plus one embedding per categorical field -> the ``(B, d)`` input of any
  architecture; ``Encoded`` puts it in front of one (``registry.create`` does, when there are fields). Both live
  in ``encoder`` (the input side, read by ``bench.training`` apart) and are re-exported here, so that the whole
  vocabulary is still imported from this one module.

Shape letters used in comments: B batch, d features, n members of a stack, N experts of a level,
T tasks, C choices of a gate, h hidden units, F categorical fields, e embedding width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from . import gemm
from .encoder import Encoded, FeatureEncoder  # noqa: F401  (re-exported: part of the vocabulary)


class StackedLinear(nn.Module):
    """``n`` independent ``nn.Linear(d_in, d_out)`` run as one batched matmul.

    Input ``(B, d_in)`` is shared by all members; input ``(n, B, d_in)`` gives each member its own rows.
    Output is always ``(n, B, d_out)``.
    """

    def __init__(self, n: int, d_in: int, d_out: int, bias: bool = True) -> None:
        super().__init__()
        self.n, self.d_in, self.d_out = n, d_in, d_out
        self.weight = nn.Parameter(torch.empty(n, d_in, d_out))
        self.bias = nn.Parameter(torch.empty(n, d_out)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's default (kaiming_uniform with a=sqrt(5)) reduces to U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
        # with fan_in the input width of one member, not of the whole stack.
        bound = 1.0 / math.sqrt(self.d_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            # Every member reads the same rows: one GEMM (B, d_in) @ (d_in, n * d_out) for the whole stack, which
            # beats a broadcast bmm over n copies of x; the (B, n, d_out) result is returned as an (n, B, d_out) view.
            batch = x.shape[0]
            w = self.weight.transpose(0, 1).reshape(self.d_in, self.n * self.d_out)
            if self.bias is None:
                out = x @ w
            else:
                out = gemm.addmm(self.bias.reshape(-1), x, w)  # torch.addmm, on oneDNN where faster (gemm.py)
            return out.view(batch, self.n, self.d_out).transpose(0, 1)
        if self.bias is None:
            return torch.bmm(x, self.weight)
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)  # (n, B, d_out)

    def extra_repr(self) -> str:
        return f"n={self.n}, d_in={self.d_in}, d_out={self.d_out}, bias={self.bias is not None}"


class ExpertBank(nn.Module):
    """``n`` MLPs of identical shape (ReLU, dropout after every layer) as stacked weights.

    ``forward`` maps ``(B, d_in)`` or ``(n, B, d_in)`` to ``(n, B, widths[-1])``. ``layer(i, x)`` runs one
    layer, for architectures that act between layers (Cross-Stitch).
    """

    def __init__(self, n: int, d_in: int, widths: list[int], dropout: float = 0.0) -> None:
        super().__init__()
        if not widths:
            raise ValueError("an expert needs at least one layer")
        dims = [d_in, *widths]
        self.layers = nn.ModuleList(StackedLinear(n, a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.n, self.d_out = n, widths[-1]

    def layer(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(torch.relu(self.layers[i](x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(len(self.layers)):
            x = self.layer(i, x)
        return x


NOISE_EPS = 1e-2  # floor of the noise std, as the paper's reference code (tensor2tensor noisy_top_k_gating)


@dataclass(frozen=True)
class Gating:
    """How the gates of a level choose: dense softmax (``top_k`` 0) or noisy top-k.

    ``noise``: scale of the learned noise std (0: no noise); ``aux_weight``: weight of the load-balancing loss
    w_importance = w_load (0: none). Both matter only with ``top_k`` > 0."""

    top_k: int = 0
    noise: float = 1.0
    aux_weight: float = 0.0

    @property
    def sparse(self) -> bool:
        return self.top_k > 0


class GateNoise(nn.Module):
    """The standard normal draws of a noisy top-k gate: ``torch.randn_like(like)``, from torch's generator. A
    module of its own so that every random draw of a forward pass is a module's (as dropout's): a population
    (``bench.training.population``) gives each member the draws of its own generator in its place, exactly those
    its alone fit draws, so a member's noise never depends on which members share its population."""

    def forward(self, like: torch.Tensor) -> torch.Tensor:
        return torch.randn_like(like)


def cv_squared(x: torch.Tensor) -> torch.Tensor:
    """CV(x)^2 = Var(x) / Mean(x)^2 over the last dimension (population variance, as the paper's code); ``(..., C)``
    -> ``(...)``."""
    return x.var(dim=-1, correction=0) / (x.mean(dim=-1).square() + 1e-10)


class StackedGate(nn.Module):
    """``n`` gates over ``n_choices``, batched: dense softmax g(x) = softmax(W_g x) (MMoE eq. 5), or noisy top-k
    gating (Shazeer et al., ICLR 2017, eq. 3-5):

        H(x)_i = (x W_g)_i + StandardNormal() * sigma_i(x),   sigma_i(x) = s (Softplus((x W_noise)_i) + NOISE_EPS)
        KeepTopK(v, k)_i = v_i if v_i is among the k largest of v, else -inf
        G(x) = softmax(KeepTopK(H(x), k))

    with s = ``gating.noise`` (0: no noise, no W_noise); noise is drawn in training only, by ``GateNoise``.

    With a single choice the gate is the constant 1 and has no parameters (a gate-free level).
    Input ``(B, d)`` (every gate sees the same rows) or ``(n, B, d)``. ``forward`` returns the gate weights
    ``(n, B, n_choices)`` (exact zeros outside the top k) and, in training with ``aux_weight`` > 0, the
    load-balancing loss (paper eq. 6-10), summed over the n gates and weighted, as a scalar tensor (else None):

        Importance(X) = sum_x G(x),   L_importance = CV(Importance(X))^2
        P(x, i) = Phi( ((x W_g)_i - kth_excluding(H(x), k, i)) / sigma_i(x) )
        Load(X)_i = sum_x P(x, i),   L_load = CV(Load(X))^2        (with noise and k < n_choices only)

    kth_excluding(v, k, i) is the k-th largest component of v not counting v_i. With k = n_choices and no noise
    the gate is the dense softmax exactly: nothing is masked. ``W_noise`` is zero-initialised (the paper's choice),
    so the noise starts at std ``s * (softplus(0) + NOISE_EPS)``.
    """

    def __init__(self, n: int, d_in: int, n_choices: int, gating: Gating | None = None) -> None:
        super().__init__()
        gating = gating or Gating()
        if gating.top_k < 0 or gating.top_k > n_choices:
            raise ValueError(f"top_k must be 0 (dense) or 1..{n_choices}, got {gating.top_k}")
        self.n, self.n_choices = n, n_choices
        self.proj = StackedLinear(n, d_in, n_choices) if n_choices > 1 else None
        # a gate over one choice is the constant 1: nothing to sparsify
        self.gating = gating if n_choices > 1 else Gating()
        self.noise_proj = self.draw_noise = None
        if self.gating.sparse and self.gating.noise > 0:
            self.noise_proj = StackedLinear(n, d_in, n_choices, bias=False)
            nn.init.zeros_(self.noise_proj.weight)
            self.draw_noise = GateNoise()  # no parameters: state dicts are unchanged

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.proj is None:
            batch = x.shape[-2]
            return x.new_ones(self.n, batch, 1), None
        clean = self.proj(x)  # (n, B, C)
        k = self.gating.top_k
        if not k:
            return torch.softmax(clean, dim=-1), None
        noisy, std = clean, None
        if self.noise_proj is not None and self.training:
            std = self.gating.noise * (nn.functional.softplus(self.noise_proj(x)) + NOISE_EPS)  # (n, B, C)
            noisy = clean + self.draw_noise(clean) * std
        # KeepTopK: the k largest logits scattered back over -inf, then one softmax; (n, B, C) throughout
        top, index = noisy.topk(min(k + 1, self.n_choices), dim=-1)  # (n, B, k or k+1), descending
        kept = torch.full_like(noisy, -math.inf).scatter(-1, index[..., :k], top[..., :k])
        gates = torch.softmax(kept, dim=-1)
        aux = None
        if self.training and self.gating.aux_weight > 0:
            loss = cv_squared(gates.sum(dim=-2))  # (n,): importance of each gate's choices over the batch
            if std is not None and k < self.n_choices:
                # P(x, i): the probability that expert i stays in the top k when only its own noise is redrawn;
                # its threshold is the k-th largest of the others: the (k+1)-th largest overall if i is in the
                # top k, the k-th largest otherwise (the paper's code, _prob_in_top_k)
                if_in, if_out = top[..., k : k + 1], top[..., k - 1 : k]  # (n, B, 1)
                threshold = torch.where(noisy > if_in, if_in, if_out)
                load = torch.special.ndtr((clean - threshold) / std).sum(dim=-2)  # (n, C)
                loss = loss + cv_squared(load)
            aux = self.gating.aux_weight * loss.sum()
        return gates, aux


class ExtractionLevel(nn.Module):
    """One Customized Gate Control level (PLE paper, eq. 1-4).

    Experts are held in one bank, ordered ``[shared_0..shared_{S-1}, task0_0..task0_{K-1}, task1_0, ...]``.
    Task k's gate mixes its own K experts and the S shared experts:

        g^k(x) = softmax(W_g^k x),   E^k(x) = [E_k,1..E_k,K, E_s,1..E_s,S],   f^k(x) = g^k(x)^T E^k(x)

    ``shared_gate`` adds the PLE gate over all N experts that feeds the next level's shared experts.
    ``tied_gates`` uses one gate for every task (OMoE). With one choice per task the gates vanish
    (Shared-Bottom with S=1, K=0; single-task with S=0, K=1).

    ``gating`` makes the task gates of the level dense or noisy top-k (``StackedGate``); the shared gate is
    always dense.

    ``all_forward`` (STEM's All Forward Task-specific Backward gating, Su et al., AAAI 2024): task k's gate weighs
    all N experts, the other tasks' own experts through a stop-gradient,

        f^k(x) = sum_{n in own(k) + shared} g^k_n E_n + sum_{n of other tasks} g^k_n sg(E_n)

    so their outputs reach task k forward while task k's loss trains only its own and the shared experts (and the
    inputs they read).

    ``forward(x)`` takes ``(B, d)`` (first level: every expert and gate reads the input) or a pair
    ``(task_inputs (T, B, d), shared_input (B, d))`` (upper PLE levels: task k's experts and gate read
    task k's output of the level below, shared experts and the shared gate read the shared output).
    A triple ``(task_inputs, shared_input, gate_inputs (T, B, d))`` gives the task gates inputs of their own (STEM).
    It returns ``(task_outputs (T, B, h), shared_output (B, h) or None, aux_loss)``: ``aux_loss`` is the gates'
    weighted load-balancing loss (a scalar tensor, training with sparse gates only) or None.
    """

    def __init__(
        self,
        d_in: int,
        n_tasks: int,
        n_shared: int,
        n_specific: int,
        widths: list[int],
        dropout: float = 0.0,
        *,
        tied_gates: bool = False,
        shared_gate: bool = False,
        gating: Gating | None = None,
        all_forward: bool = False,
    ) -> None:
        super().__init__()
        if n_shared + n_specific < 1:
            raise ValueError("an extraction level needs at least one expert per task")
        if n_shared < 0 or n_specific < 0:
            raise ValueError("expert counts must be non-negative")
        if tied_gates and n_specific:
            raise ValueError("tied gates need every task to see the same experts (no task-specific experts)")
        self.n_tasks, self.n_shared, self.n_specific = n_tasks, n_shared, n_specific
        self.n_experts = n_shared + n_tasks * n_specific
        self.experts = ExpertBank(self.n_experts, d_in, widths, dropout)
        self.d_out = self.experts.d_out
        n_choices = self.n_experts if all_forward else n_shared + n_specific
        gating = gating or Gating()
        if gating.top_k > n_choices:
            raise ValueError(f"gate_top_k must be 0 (dense) or 1..{n_choices} (the experts one task's gate weighs: "
                             f"{n_shared} shared + {n_specific} own), got {gating.top_k}")
        self.task_gates = StackedGate(1 if tied_gates else n_tasks, d_in, n_choices, gating)
        # the PLE shared gate (over all N experts, feeding the next level's shared experts) stays dense: top-k is
        # a choice of each task's gate, so that k = C gives back the dense level exactly
        self.shared_gate = StackedGate(1, d_in, self.n_experts) if shared_gate else None
        # Which experts task k's gate weighs: (T, C), own experts first, then the shared ones. On the CPU whatever
        # the default device (architectures.check_options builds models on the meta device, where they are unread)
        own = (
            torch.arange(n_tasks, device="cpu").unsqueeze(1) * n_specific
            + n_shared
            + torch.arange(n_specific, device="cpu")
        )
        shared = torch.arange(n_shared, device="cpu").expand(n_tasks, n_shared)
        choices = torch.cat([own, shared], dim=1)
        if all_forward:  # every task weighs every expert, in bank order
            choices = torch.arange(self.n_experts, device="cpu").expand(n_tasks, self.n_experts)
        self.register_buffer("choices", choices, persistent=False)
        # all_forward: (T, N) True where expert n is shared or task k's own (its gradient flows to task k)
        mine = torch.zeros(n_tasks, self.n_experts, dtype=torch.bool, device="cpu")
        mine[:, :n_shared] = True
        mine.scatter_(1, own, True)
        self.register_buffer("own", mine if all_forward else None, persistent=False)
        self.all_choices = n_choices == self.n_experts and bool(
            (choices == torch.arange(self.n_experts, device="cpu")).all()
        )

    def _expert_inputs(self, task_in: torch.Tensor, shared_in: torch.Tensor) -> torch.Tensor:
        # (N, B, d): shared experts read the shared input, task k's experts read task k's input
        parts = []
        if self.n_shared:
            parts.append(shared_in.expand(self.n_shared, *shared_in.shape))
        if self.n_specific:
            parts.append(task_in.repeat_interleave(self.n_specific, dim=0))
        return torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]

    def forward(self, x):
        if isinstance(x, torch.Tensor):
            expert_in, gate_in, shared_in = x, x, x
        else:
            task_in, shared_in = x[0], x[1]
            expert_in, gate_in = self._expert_inputs(task_in, shared_in), x[2] if len(x) > 2 else task_in
        experts = self.experts(expert_in).transpose(0, 1)  # (B, N, h); contiguous on the first level
        gates, aux = self.task_gates(gate_in)
        gates = gates.transpose(0, 1)  # (B, T or 1, C)
        batch = experts.shape[0]
        if self.all_choices:
            # every task weighs every expert (MMoE, OMoE); copied when tied (OMoE): a bmm over a stride-0
            # operand is several times slower than over this small (B, T, N) copy
            mix = gates.expand(batch, self.n_tasks, self.n_experts).contiguous()
        else:
            # Scatter each task's C gate weights into a dense (B, T, N) mixing tensor, zero for experts the
            # task does not see.
            index = self.choices.expand(batch, *self.choices.shape)
            mix = gates.new_zeros(batch, self.n_tasks, self.n_experts).scatter(2, index, gates)
        # f^k = sum_n mix[k, n] * E_n for all tasks at once, as one bmm over B of tiny (T, N) @ (N, h) matrices
        # on the batch-major layout the expert GEMM produces. Forward plus backward at B=1024, N=8, h=64, T=2
        # on one CPU thread: 0.9 ms, against 2.9 ms for a broadcast product (T, N, B, h) summed over N, whose
        # backward materialises two (T, N, B, h) tensors.
        if self.own is None:
            task_out = torch.bmm(mix, experts).transpose(0, 1)  # (B, T, N) @ (B, N, h) -> (T, B, h) view
        else:  # AFTB: the other tasks' experts forward, without their gradient
            mine = self.own.to(mix.dtype)  # (T, N)
            task_out = (torch.bmm(mix * mine, experts) + torch.bmm(mix * (1 - mine), experts.detach())).transpose(0, 1)
        shared_out = None
        if self.shared_gate is not None:
            # one gate: a product summed over N (a bmm of (1, N) rows is 4x slower, forward plus backward)
            g = self.shared_gate(shared_in)[0][0]  # (B, N)
            shared_out = (g.unsqueeze(-1) * experts).sum(1)  # (B, N, 1) * (B, N, h) -> (B, h)
        return task_out, shared_out, aux


class Towers(nn.Module):
    """One MLP tower per task, h^k in y_k = h^k(f^k(x)), hidden layers stacked across tasks.

    Input ``(T, B, d)`` (task k's tower reads row k) or ``(B, d)`` (every tower reads the same rows).
    The output layers are stacked when every task has the same output width, one ``nn.Linear`` per task
    otherwise (multi-class beside binary tasks). Returns ``{task: (B, out_dim) logits}``.
    """

    def __init__(
        self, d_in: int, task_names: list[str], out_dims: list[int], widths: list[int], dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.task_names = list(task_names)
        n = len(task_names)
        self.hidden = ExpertBank(n, d_in, widths, dropout) if widths else None
        d_last = widths[-1] if widths else d_in
        self.uniform = len(set(out_dims)) == 1
        if self.uniform:
            self.head = StackedLinear(n, d_last, out_dims[0])
        else:
            self.head = nn.ModuleList(nn.Linear(d_last, o) for o in out_dims)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.hidden is not None:
            x = self.hidden(x)  # (T, B, h)
        if self.uniform:
            out = self.head(x)  # (T, B, o)
            return {name: out[k] for k, name in enumerate(self.task_names)}
        return {
            name: head(x[k] if x.dim() == 3 else x)
            for k, (name, head) in enumerate(zip(self.task_names, self.head))
        }
