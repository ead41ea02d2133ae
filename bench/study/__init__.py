"""A study run, readable top-down from ``run.run_study``: load and check the data, plan the units
(``units``), the search stage (``search``: the Optuna objective, the only place that calls
``trial.suggest_*``), the final stage (``final``: best configurations retrained with the final seeds, test
read once per run, their models kept), the study's progress display (``progress``), and prediction with the kept
models (``predict``, for ``bench predict``).

May import every layer below: ``bench.training``, ``bench.results``, ``bench.tracking``'s protocol (through
``bench.spec.hooks``), ``bench.coordination``, ``bench.spec``, ``bench.architectures``, ``bench.datasets``.
"""
