"""Loss weighting: how the per-task losses of a step become one update (equal, static, uncertainty, DWA,
GradNorm, PCGrad).

A registry like the architectures' (timm-style): one file and one ``@register("name")`` add a method. A method is
an ``nn.Module`` subclass of ``Weighting``, built as ``cls(kinds, **options)`` (``kinds``: each task's kind) with
the options of its ``Options`` dataclass, named with the method's prefix (``gradnorm_alpha``) so that one flat
configuration (``bench train --set weighting=gradnorm --set gradnorm_alpha=1.5``) and one search space can hold
them. ``bench.training.system.MTLSystem`` owns the method of a fit and calls it every step.

May import: torch, ``bench.errors``. Layer: beside ``bench.architectures`` and ``bench.datasets``.
"""

from . import dwa, equal, gradnorm, pcgrad, static, uncertainty  # noqa: F401  (registration)
from .base import (
                   Shared,
                   Weighting,
                   all_options,
                   available,
                   check,
                   create,
                   get,
                   options,
                   register,
                   shared_mask,
                   task_gradients,
)

__all__ = ["Shared", "Weighting", "all_options", "available", "check", "create", "get", "options", "register",
           "shared_mask", "task_gradients"]
