"""Many workers on one study: Optuna storages (a journal file or a database), locks and claims, leases and
heartbeats, signals, the trial loop that keeps a unit's budget exact and retries interrupted trials, and the
study identity that refuses to mix results of different specs. See ``trials`` for the whole protocol.

May import: ``bench.spec``, ``bench.errors``. Knows nothing of models, training or the results store.
"""
