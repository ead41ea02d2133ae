"""Replicates: the whole pipeline of a study (search and final seeds) run R times (``replicates = R`` in a spec,
``bench run --replicates R``), so that which configuration the search happens to find, and where the data allow
it the data draw, vary between replicates as they would between two honest runs of the benchmark.

What varies in replicate r:

- the sampler streams of every unit (``bench.study.units.RunContext.new_sampler``: seeded from the study's
  sampler seed, the dataset, the unit and r);
- the data draw of a dataset with a ``seed`` option, unless it uses an official split
  (``replicate_options``): the synthetic generator's seed, a random split's seed, a validation carve-out's
  seed, and the seed that masks a scarce task's training labels (``data_seed``). Entries of one loader with
  the same spec seed share each replicate's draw (the correlations of the MMoE experiment stay paired: replicate
  r's p = 0.5 and p = 1.0 have the same x and y1). An official split (census
  income's "paper", adult's "official") stays fixed: every replicate trains and tests on the same rows.

Replicate 1 is the study without replicates: the spec's own options, its sampler streams, its paths and Optuna
study names (``bench.results.store``), so a store written before replicates resumes unchanged.
"""

from __future__ import annotations

from typing import Any

from bench.hashing import stream_seed


def data_seed(name: str, options: dict[str, Any], replicate: int) -> int | None:
    """The seed of replicate ``replicate``'s data draw of a dataset of loader ``name`` (spec ``options``): None for
    replicate 1 (the spec's own draw), else a stable hash of the loader, the spec's seed and the replicate. Not of
    the entry's label: entries that share one draw in the spec (the correlations p of one synthetic seed, the label
    fractions of one split: ``bench.results.tables.blocks``) share each replicate's draw too, so they stay paired."""
    if replicate == 1:
        return None
    return stream_seed("data", int(options.get("seed", 0)), name, replicate)


def draw_varies(name: str, options: dict[str, Any]) -> str | None:
    """Why dataset ``name``'s data draw stays fixed across replicates (its ``options``), or None when it varies:
    a loader without a ``seed`` option has nothing to draw; a ``split`` other than "random" is an official one."""
    from bench.datasets import options as loader_options

    valid = loader_options(name)
    if "seed" not in valid:
        return "no seeded draw"
    split = options.get("split", valid.get("split"))
    if "split" in valid and split != "random":
        return f"official split {split!r}"
    return None


def replicate_options(name: str, options: dict[str, Any], replicate: int) -> dict[str, Any]:
    """The loader options of replicate ``replicate`` of a dataset of loader ``name`` (spec ``options``): the spec's
    for replicate 1 and wherever the draw is fixed (``draw_varies``), else the spec's with the seed of that
    replicate's draw (``data_seed``)."""
    seed = data_seed(name, options, replicate)
    if seed is None or draw_varies(name, options) is not None:
        return dict(options)
    return {**options, "seed": seed}


def fixed_draws(datasets: dict[str, dict[str, Any]]) -> dict[str, str | None]:
    """``{label: draw_varies(...)}`` for a study's datasets (``{label: {"name", "options"}}`` as in its metadata):
    why each one's draw stays fixed across replicates, None where it is drawn anew. A dataset no longer registered
    is left out (nothing wrong is said of it, and it is never taken for a new draw)."""
    out = {}
    for label, info in datasets.items():
        try:
            out[label] = draw_varies(info.get("name", label), info.get("options", {}))
        except ValueError:
            continue
    return out


def describe_draws(datasets: dict[str, dict[str, Any]]) -> dict[str, str]:
    """``{label: what varies across replicates}`` for a study's datasets: what the leaderboard says of each."""
    return {label: (f"data fixed across replicates ({fixed})" if fixed else
                    "data drawn anew per replicate (seed of the generator or split)")
            for label, fixed in fixed_draws(datasets).items()}
