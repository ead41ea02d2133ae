"""The ``Weighting`` interface and its registry."""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from bench.errors import UnknownChoice, UserError

_REGISTRY: dict[str, type[Weighting]] = {}

ALL = slice(None)


@dataclass
class Shared:
    """The shared part of a model: ``params`` (tensors holding any shared element) and ``mask (P,)`` over their
    flattened concatenation, True where an element is shared (task-specific rows of stacked tensors are False)."""

    params: list[nn.Parameter]
    mask: torch.Tensor

    def set_flat_grad(self, flat: torch.Tensor) -> None:
        """Set every parameter's gradient from ``flat (P,)``, laid out as the flattened concatenation."""
        offset = 0
        for p in self.params:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n


def task_gradients(losses: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """``(T, P)``: each task's gradient on ``params``, flattened (the graph is kept for the update)."""
    rows = []
    for loss in losses:
        g = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(x if x is not None else torch.zeros_like(p)).reshape(-1) for x, p in zip(g, params)]))
    return torch.stack(rows)


def shared_mask(grads: torch.Tensor) -> torch.Tensor:
    """``(..., P)`` bool from per-task gradients ``(..., T, P)``: True where more than one task's gradient is
    non-zero (an element is task-specific when every other task's gradient on it is exactly zero)."""
    if grads.shape[-2] == 1:
        return torch.ones(grads.shape[:-2] + grads.shape[-1:], dtype=torch.bool, device=grads.device)
    return (grads != 0).sum(-2) > 1


class Weighting(nn.Module):
    """Turns the per-task losses of a training step into gradients, for S members at once.

    Every state tensor of a method (parameters and buffers: learned weights, loss histories, fixed weights) has a
    leading member axis ``S``: a fit is a population of one (``S = 1``), and ``bench.training.population`` trains
    S members of one method as one module built by ``stack`` (each member's state in its row, ``keep`` drops the
    members that stopped). Hooks take ``rows``, the members of the call (a population computes members in
    groups), and tensors of those members: losses ``L (S, T)``.

    Loss-based methods only define ``combine(L) -> (S,)`` (what is backpropagated). Gradient-based methods
    (``grad_based = True``) define ``gradient``: from each task's gradient ``g (S, T, P)`` on the model's parameter
    elements and the mask of the shared ones, the update's gradient ``(S, P)``; computing the task gradients costs
    one backward pass per task through the model (see ``benchmarks/README.md`` for the measured cost).
    ``epoch_end`` sees each epoch's mean per-task losses; ``after_step`` runs after the optimiser's step. A
    method's learnable parameters (uncertainty's log-variances, GradNorm's weights) are trained by the system's
    optimiser (the population's ``StackedAdam``), without weight decay.
    """

    name = ""
    grad_based = False

    @dataclass
    class Options:
        pass

    def __init__(self, kinds: list[str]) -> None:
        super().__init__()
        self.kinds = list(kinds)
        self.n_tasks = len(kinds)
        self.register_buffer("unit", torch.ones(1, self.n_tasks), persistent=False)  # (S, T): equal weights

    @property
    def n_members(self) -> int:
        return self.unit.shape[0]

    def weights(self, rows: slice = ALL) -> torch.Tensor:
        """The current weight of each task ``(S, T)`` (what the training loss is reported with)."""
        return self.unit[rows]

    def combine(self, losses: torch.Tensor, rows: slice = ALL) -> torch.Tensor:
        """``(S,)``: the scalar each member backpropagates, ``sum_i w_i L_i`` unless the method says otherwise."""
        return (self.weights(rows).to(losses) * losses).sum(-1)

    def gradient(self, losses: torch.Tensor, grads: torch.Tensor, mask: torch.Tensor,
                 rows: slice = ALL) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Gradient-based methods: ``(update (S, P), own loss (S,) or None)`` from the losses ``(S, T)``, the
        per-task gradients ``grads (S, T, P)`` and ``mask (S, P)`` (True on shared elements). The own loss, if
        any, is what the method's learned parameters follow (its gradient reaches only them)."""
        return torch.einsum("st,stp->sp", self.weights(rows).to(grads), grads), None

    def epoch_end(self, mean_losses: torch.Tensor) -> None:
        """The epoch's mean loss of each task ``(S, T)``, unweighted, for every member."""

    @torch.no_grad()
    def after_step(self) -> None:
        """After the optimiser's step (e.g. renormalising learned weights)."""

    def seed(self, seeds: list[int]) -> None:
        """Each member's seed, for methods that draw random numbers."""

    @classmethod
    def stack(cls, members: list[Weighting]) -> Weighting:
        """One module of S members from S modules of one member each (the same method and options): every
        parameter and buffer concatenated along the member axis."""
        first = members[0]
        for m in members[1:]:
            if type(m) is not type(first) or m.options_key() != first.options_key():
                raise UserError(f"population members must share the weighting and its options; member 0 has "
                                f"{first.describe()} but another has {m.describe()}")
        out = copy.deepcopy(first)
        with torch.no_grad():
            for name, _ in first.named_parameters():
                out.get_parameter(name).data = torch.cat([m.get_parameter(name) for m in members])
            for name, _ in first.named_buffers():
                _set_buffer(out, name, torch.cat([m.get_buffer(name) for m in members]))
        return out

    def options_key(self) -> tuple:
        """What members must share (options that are not per-member tensors)."""
        return ()

    def describe(self) -> str:
        return f"{self.name}{self.options_key() or ''}"

    def keep(self, rows: torch.Tensor) -> None:
        """Keep the members ``rows`` only (indices into the current members)."""
        with torch.no_grad():
            for p in list(self.parameters()):
                p.data = p.data[rows.to(p.device)]
            for name, b in list(self.named_buffers()):
                _set_buffer(self, name, b[rows.to(b.device)])


def _set_buffer(module: nn.Module, name: str, value: torch.Tensor) -> None:
    """Replace buffer ``name`` (dotted) by ``value``, keeping it a buffer (and its persistence)."""
    owner, _, leaf = name.rpartition(".")
    setattr(module.get_submodule(owner), leaf, value)  # get_submodule("") is the module itself


def register(name: str):
    """Class decorator adding a loss-weighting method to the registry under ``name``."""

    def wrap(cls: type[Weighting]) -> type[Weighting]:
        if name in _REGISTRY:
            raise ValueError(f"weighting {name!r} is registered twice")
        for f in fields(cls.Options):
            if not f.name.startswith(f"{name}_"):
                raise ValueError(f"option {f.name!r} of weighting {name!r} must start with '{name}_'")
        _REGISTRY[name] = cls
        cls.name = name
        return cls

    return wrap


def available() -> list[str]:
    """Registered method names, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> type[Weighting]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownChoice("weighting", name, _REGISTRY) from None


def options(name: str) -> dict[str, Any]:
    """The options of method ``name`` with their defaults."""
    return {f.name: f.default for f in fields(get(name).Options)}


def all_options() -> dict[str, Any]:
    """Every method's options with their defaults (one flat configuration may hold any of them)."""
    return {k: v for name in available() for k, v in options(name).items()}


def check(name: str, opts: dict[str, Any]) -> None:
    """``name`` is registered and every key of ``opts`` is an option of some method (each method reads its own)."""
    get(name)
    known = all_options()
    for key in opts:
        if key not in known:
            raise UnknownChoice("weighting option", key, known)


def check_option(key: str, value: Any) -> None:
    """One option's value, judged by its method (``gradnorm_alpha = -1`` is an error); static weights, whose
    count depends on the data set's tasks, are judged when the method is built."""
    name = key.split("_")[0]
    if name == "static":
        return
    create(name, ["binary", "binary"], {key: value})


def create(name: str, kinds: list[str], opts: dict[str, Any] | None = None) -> Weighting:
    """Method ``name`` (one member) for tasks of ``kinds``; ``opts`` may hold other methods' options, which it
    ignores."""
    cls = get(name)
    check(name, opts or {})
    own = {k: v for k, v in (opts or {}).items() if k in options(name)}
    try:
        return cls(kinds, **own)
    except (TypeError, ValueError) as err:
        if isinstance(err, UserError):
            raise
        raise UserError(f"invalid options for weighting {name}: {err}") from None
