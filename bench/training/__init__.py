"""One configuration on one device: the LightningModule system (losses, metrics, optimisers, early stopping),
``fit`` (train and evaluate one configuration), populations (many seeds as one stacked model), saved models
(``models``: a final run's weights with its feature encoding, loaded and used to predict), the gate and expert
diagnostics of a trained mixture, the device and the allocator setting that keeps small-model steps fast.

May import: ``bench.spec``, ``bench.architectures``, ``bench.datasets``, ``bench.errors``. Knows nothing of
studies, Optuna, the results store or W&B.
"""
