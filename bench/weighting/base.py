"""The ``Weighting`` interface and its registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from bench.errors import UnknownChoice, UserError

_REGISTRY: dict[str, type[Weighting]] = {}


@dataclass
class Shared:
    """The shared part of a model: ``params`` (tensors holding any shared element) and ``mask (P,)`` over their
    flattened concatenation, True where an element is shared (task-specific rows of stacked tensors are False)."""

    params: list[nn.Parameter]
    mask: torch.Tensor

    def flat_grad(self) -> torch.Tensor:
        """``(P,)``: the parameters' current gradients, flattened (zeros where none)."""
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in self.params])

    def set_flat_grad(self, flat: torch.Tensor) -> None:
        offset = 0
        for p in self.params:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n


def task_gradients(losses: torch.Tensor, params: list[nn.Parameter]) -> torch.Tensor:
    """``(T, P)``: each task's gradient on ``params``, flattened (the graph is kept for the update)."""
    rows = []
    for loss in losses:
        g = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(x if x is not None else torch.zeros_like(p)).reshape(-1) for x, p in zip(g, params)]))
    return torch.stack(rows)


class Weighting(nn.Module):
    """Turns the per-task losses ``L (T,)`` of a training step into gradients.

    Loss-based methods only define ``combine(L) -> scalar`` (what is backpropagated). Gradient-based methods
    (``grad_based = True``) override ``backward``: they need each task's gradient on the shared parameters,
    which costs one extra backward pass per task through the shared part of the model (see
    ``benchmarks/README.md`` for the measured cost). ``epoch_end`` sees each epoch's mean per-task losses;
    ``after_step`` runs after the optimiser's step. A method's learnable parameters (uncertainty's
    log-variances, GradNorm's weights) are trained by the system's optimiser, without weight decay.
    ``population``: whether a stacked population (``bench.training.population``) can train it; the others are
    trained one fit per seed.
    """

    name = ""
    grad_based = False
    population = False

    @dataclass
    class Options:
        pass

    def __init__(self, kinds: list[str]) -> None:
        super().__init__()
        self.kinds = list(kinds)
        self.n_tasks = len(kinds)

    def weights(self) -> torch.Tensor:
        """The current weight of each task ``(T,)`` (for logging and tests)."""
        return torch.ones(self.n_tasks)

    def combine(self, losses: torch.Tensor) -> torch.Tensor:
        """The scalar to backpropagate: ``sum_i w_i L_i`` unless the method says otherwise."""
        return (self.weights().to(losses) * losses).sum()

    def backward(self, losses: torch.Tensor, shared: Shared, backward: Callable[[torch.Tensor], None]) -> None:
        """Set the gradients of one step; ``backward(scalar)`` is the system's backward (Lightning's
        ``manual_backward``); ``shared``: the parameter elements that more than one task's loss depends on."""
        backward(self.combine(losses))

    def epoch_end(self, mean_losses: torch.Tensor) -> None:
        """The epoch's mean loss of each task ``(T,)``, unweighted."""

    def after_step(self) -> None:
        """After the optimiser's step (e.g. renormalising learned weights)."""

    def seed(self, seed: int) -> None:
        """The fit's seed, for methods that draw random numbers."""


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
    """Method ``name`` for tasks of ``kinds``; ``opts`` may hold other methods' options, which it ignores."""
    cls = get(name)
    check(name, opts or {})
    own = {k: v for k, v in (opts or {}).items() if k in options(name)}
    try:
        return cls(kinds, **own)
    except (TypeError, ValueError) as err:
        if isinstance(err, UserError):
            raise
        raise UserError(f"invalid options for weighting {name}: {err}") from None
