"""Results: the tidy parquet store of a study (``runs/<study>/``), statistics over seeds (scipy), and the
leaderboard (a polars pipeline of tables, markdown pages and plots).

May import: ``bench.spec``, ``bench.errors``. Reads and writes files only; no torch, no Optuna, no W&B.
"""
