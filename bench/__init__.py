"""mtl-bench: tuned, multi-seed benchmarks of multi-task learning architectures.

Importing ``bench`` is cheap and has no side effects; the heavy parts live in submodules:
``bench.architectures`` (models), ``bench.datasets`` (data), ``bench.system`` (the LightningModule),
``bench.train`` (fit and evaluate one configuration).
"""

__version__ = "0.1.0"
