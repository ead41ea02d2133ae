"""Many workers on one study: Optuna storages (a journal file or a database), locks and claims, leases and
heartbeats, signals, the trial loop that keeps a unit's budget exact and retries interrupted trials, the
study identity that refuses to mix results of different specs, and the stored runs shared between machines
through a database storage (``shared``: the ``bench_results`` table; Optuna's study attributes stay small). See
``trials`` for the whole protocol.

May import: ``bench.spec``, ``bench.errors``. Knows nothing of models, training or the results store (a shared
run is bytes it keeps, never opens).
"""
