"""Each population member's own random draws: dropout masks and the noise of noisy top-k gates
(``layers.GateNoise``) from a generator seeded with the member's seed, in the order ``fit`` draws them.

A population runs one template model for every member (``vmap``), so its random layers cannot draw from torch's
generator: that stream would be shared by the members, and a member's result would depend on its neighbours.
``feed_draws`` replaces them with layers that take their draws from a ``DrawFeed``; ``probe`` runs one forward pass
to record the draws' shapes (checking that nothing else draws), and ``draw`` makes them, member s's from its own
generator exactly as ``torch.nn.functional.dropout`` and ``torch.randn_like`` draw them from the global one.
"""

from __future__ import annotations

import contextlib
import math

import torch

from bench.architectures.layers import GateNoise

Call = tuple[torch.Size, tuple[int, ...], float | None]  # (shape, stride, p): dropout of p, or noise where None


class DrawFeed:
    """Where the random layers of a population's template (dropout, gate noise) find their draws: ``probe``
    records the shapes of one forward pass's calls (in call order) without drawing anything; otherwise each call
    takes the next of ``masks`` (inside ``vmap``: one member's draw). A call is ``(shape, stride, p)``: a dropout
    mask of probability ``p``, or standard normal noise where ``p`` is None."""

    def __init__(self) -> None:
        self.probe: list[Call] | None = None
        self.masks: list[torch.Tensor] = []


class FedDropout(torch.nn.Module):
    """``nn.Dropout`` with its mask given (``DrawFeed``), so that each member's masks come from its own
    generator (``draw``) instead of one stream shared by the population."""

    def __init__(self, p: float, feed: DrawFeed) -> None:
        super().__init__()
        self.p, self.feed = p, feed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if self.feed.probe is not None:
            self.feed.probe.append((x.shape, torch.empty_like(x).stride(), self.p))  # dropout's noise layout
            return x
        return x * self.feed.masks.pop(0)


class FedNoise(torch.nn.Module):
    """``layers.GateNoise`` with its draws given (``DrawFeed``): each member's gate noise from its own generator."""

    def __init__(self, feed: DrawFeed) -> None:
        super().__init__()
        self.feed = feed

    def forward(self, like: torch.Tensor) -> torch.Tensor:
        if self.feed.probe is not None:
            self.feed.probe.append((like.shape, torch.empty_like(like).stride(), None))  # randn_like's layout
            return torch.zeros_like(like)
        return self.feed.masks.pop(0)


def feed_draws(model: torch.nn.Module) -> DrawFeed | None:
    """Replace ``model``'s random layers, active ``nn.Dropout`` and ``GateNoise``, by ``FedDropout`` and
    ``FedNoise`` sharing one feed (None: it has none)."""
    feed = DrawFeed()
    found = False
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Dropout) and child.p > 0:
                setattr(parent, name, FedDropout(child.p, feed))
                found = True
            elif isinstance(child, GateNoise):
                setattr(parent, name, FedNoise(feed))
                found = True
    return feed if found else None


def draw(calls: list[Call], generators: list[torch.Generator], device: torch.device) -> list[torch.Tensor]:
    """One ``(S, *shape)`` draw per call, member s's row drawn from its own generator exactly as ``fit`` draws
    from the global one: a dropout mask as ``torch.nn.functional.dropout`` (``bernoulli_(1 - p)`` into a tensor
    laid out as its input, divided by ``1 - p``), gate noise as ``torch.randn_like`` (``normal_`` into a tensor
    laid out as the logits). Members draw in the order of the calls, as ``fit`` does: on the CPU, member s's
    draws are those ``fit`` draws after seeding with s's seed."""
    masks = []
    for shape, stride, p in calls:
        n = math.prod(shape)
        mask = torch.empty_strided((len(generators), *shape), (n, *stride), device=device)  # row s: fit's layout
        for row, g in zip(mask, generators):
            if p is None:
                row.normal_(generator=g)
            else:
                row.bernoulli_(1 - p, generator=g)
        masks.append(mask if p is None else mask.div_(1 - p))
    return masks


@contextlib.contextmanager
def no_other_draws(arch: str, device: torch.device):
    """Around a training-mode forward pass of the template with its random layers fed: torch's generator must not
    move, or some layer draws what the population would take from one shared stream (a member's result would then
    depend on its neighbours). Only dropout and ``layers.GateNoise`` can be fed."""
    def states() -> list[torch.Tensor]:
        return [torch.get_rng_state(), *([torch.cuda.get_rng_state(device)] if device.type == "cuda" else [])]

    before = states()
    yield
    if not all(torch.equal(a, b) for a, b in zip(before, states())):
        raise RuntimeError(f"{arch} draws random numbers in its forward pass outside dropout and layers.GateNoise: a "
                           "population cannot give each member its own draws; train it with --no-population")


def probe(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], feed: DrawFeed | None, arch: str,
          device: torch.device) -> list[Call]:
    """The calls (shape, stride, p) of every random draw of one training-mode forward pass of ``model`` (its random
    layers fed by ``feed``, None: it has none) on ``inputs``; none may draw from torch's generator unfed
    (``no_other_draws``)."""
    if feed is not None:
        feed.probe = []
    with torch.no_grad(), no_other_draws(arch, device):
        model(*inputs)
    calls = feed.probe if feed is not None else []
    if feed is not None:
        feed.probe = None
    return calls
