"""mtl-bench: tuned, multi-seed benchmarks of multi-task learning architectures.

Layers, each importing only from the layers below it (checked by import-linter, ``pyproject.toml``)::

    bench.cli, bench.commands     argument parsing and printing
    bench.study                   a study run top-down: units, search stage, final stage
    bench.training | bench.results | bench.tracking | bench.coordination
                                  one configuration on one device | the tidy store, statistics, leaderboard |
                                  W&B | storages, locks, leases, the budgeted trial loop (independent of each other)
    bench.spec                    study specs and configurations as typed dataclasses, search spaces, hooks
    bench.architectures | bench.datasets
                                  models (plain nn.Modules) | data (tensors, loaders, registries)
    bench.errors                  the user-error types everything may raise

Importing ``bench`` is cheap and has no side effects.
"""

__version__ = "0.1.0"
