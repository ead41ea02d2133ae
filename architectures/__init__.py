"""The MTL architectures, as plain ``nn.Module``s returning ``{task: logits}``: the seven sharing patterns, the
funnel architectures ESMM and AITM, and STEM's shared and task-specific embeddings.

Importing this package registers them; ``create(name, d_in, tasks, **options)`` builds one.
"""

from . import aitm, cgc, cross_stitch, esmm, mmoe, omoe, ple, shared_bottom, single_task, stem  # noqa: F401
from .registry import (
    UnknownChoice,
    available,
    check_data,
    check_options,
    create,
    get,
    has_aux_loss,
    has_funnel_loss,
    options,
    register,
    requirements,
)

__all__ = ["UnknownChoice", "available", "check_data", "check_options", "create", "get", "has_aux_loss",
           "has_funnel_loss", "options", "register", "requirements"]
