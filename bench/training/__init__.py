"""One configuration on one device: the LightningModule system (``system``: losses, metrics, optimisers, early
stopping through Lightning), ``fit`` (train and evaluate one configuration), populations (``population``: many seeds
as one stacked model, with ``members`` and each member's own random draws, ``draws``), saved models (``models``: a
final run's weights with its feature encoding, loaded and used to predict), the gate and expert diagnostics of a
trained mixture, the device and the allocator setting that keeps small-model steps fast.

The rules of a training run are written once, each in one place, and followed both by ``MTLSystem`` (wrapped in
its Lightning hooks, callbacks and optimisers) and by every member of a population:

- loss assembly (``losses``): w_k L_k per task with missing-label masks and a funnel's joint view
  (``task_losses``), the fixed weights (``fixed_weights``), the weighting method's combination plus the gates'
  auxiliary loss (``total_loss``), the reported training loss (``reported_loss``);
- optimisers (``optim``): the decay / no-decay split (``param_groups``), the lazy sparse Adam rule of embedding
  tables (``moment_update``, ``adam_delta``; ``LazyAdam`` for the system, ``StackedAdam`` for S members, which
  also computes ``torch.optim``'s Adam / AdamW);
- epoch rules (``rules``): the validation objective of an epoch (``objective_value``), best-epoch keeping
  (``BestEpoch``: history, best epoch, its weights), early stopping (``EarlyStop``).

May import: ``bench.spec``, ``bench.architectures``, ``bench.datasets``, ``bench.weighting``, ``bench.errors``.
Knows nothing of studies, Optuna, the results store or W&B.
"""
