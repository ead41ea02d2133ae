"""Results: the tidy parquet store of a study (``runs/<study>/``), statistics over seeds (scipy), and the
leaderboard (a polars pipeline of tables, markdown pages and plots): its tables (``tables``, ``gates``,
``statistics``, ``bootstrap``, ``decisions``, ``verdicts``), the page's parts (``header``, ``sections``,
``repeats``, ``curves``, ``convergence``, ``funnel``) and its figures (``plots``, ``figures``), publishing
(``publish``).

May import: ``bench.spec``, ``bench.errors``. Reads and writes files only; no torch, no Optuna, no W&B.
"""
