"""Equal weighting: ``L = sum_i L_i`` (every w_i = 1), the default and the usual baseline."""

from __future__ import annotations

from .base import Weighting, register


@register("equal")
class Equal(Weighting):
    """Every task weighs 1: L = sum_i L_i (the default)."""
