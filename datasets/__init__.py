"""Multi-task data sets: a registry of loaders producing ``MTLData`` (tensors per split plus task descriptions)."""

from . import adult, aliexpress, census, funnel, synthetic, table  # noqa: F401  (registration)
from .base import TASK_KINDS, BatchLoader, Field, Funnel, MTLData, Split, Task, Truth, observed
from .registry import available, get, load, options, register_dataset

__all__ = [
    "TASK_KINDS", "BatchLoader", "Field", "Funnel", "MTLData", "Split", "Task", "Truth", "available", "get", "load",
    "observed",
    "options", "register_dataset",
]
