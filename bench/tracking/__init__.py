"""Experiment tracking with Weights & Biases: an implementation of ``bench.spec.hooks.Hooks`` (one W&B run per
search trial and final run) and a leaderboard run. The only package that imports ``wandb``.

May import: ``bench.spec``, ``bench.errors``.
"""
