"""The seven MTL architectures, as plain ``nn.Module``s returning ``{task: logits}``.

Importing this package registers them; ``create(name, d_in, tasks, **options)`` builds one.
"""

from . import cgc, cross_stitch, mmoe, omoe, ple, shared_bottom, single_task  # noqa: F401  (registration)
from .registry import UnknownChoice, available, check_options, create, get, has_aux_loss, options, register

__all__ = ["UnknownChoice", "available", "check_options", "create", "get", "has_aux_loss", "options", "register"]
