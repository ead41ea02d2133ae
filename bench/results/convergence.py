"""What the search did, from its stored rows: the best validation objective so far against trial number per unit
(did the search level off?), what drew each unit's configurations (TPE, or only its random start-up), and the
protocol lines the leaderboard states about the sampler and the replicates.

Definitions (search rows: ``stage`` "search", ``metric`` "objective", one per counted trial; ``trial`` its
configuration's ordinal 0..n-1 in the unit; a unit is (dataset, architecture, target, replicate)):

- best so far after trial k = max over the unit's trials 0..k of the objective (higher is better: it is the
  negated metric where every task of the objective is lower-is-better), shown in the metric's own orientation
  (``sign`` * value: an MSE goes down);
- *late best*: the unit's best trial is in the last fifth of its n trials, position (1-based) > 0.8 n: the
  search may not have levelled off;
- a unit was searched at *random* when every trial's configuration was drawn at random (``drawn_by``
  "random": a random sampler, or TPE's start-up of ``n_startup_trials``); rows stored without ``drawn_by``
  are inferred: TPE drew trial k (0-based) only when k >= the start-up then in force (the spec's
  ``n_startup_trials``, else Optuna's default 10: the harness set no other before).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from bench.spec.metrics import HIGHER_IS_BETTER, PRIMARY
from bench.spec.study import unit_text

from .markdown import escape, image

UNIT = ["dataset", "architecture", "target", "replicate"]
LATE = 0.8  # a best trial after this share of the unit's trials is "late"
OLD_STARTUP = 10  # Optuna's n_startup_trials default, in force before the spec set one


def search_trials(rows: pl.DataFrame, meta: dict[str, Any] | None = None) -> pl.DataFrame:
    """One row per counted trial of every unit: its ``trial`` ordinal, ``value`` (the objective; null for a
    failure), and ``drawn_by`` (inferred for rows stored without it)."""
    sampler = (meta or {}).get("sampler", {})
    kind, startup = sampler.get("kind", "tpe"), sampler.get("n_startup_trials", OLD_STARTUP)
    guessed = pl.when(pl.lit(kind) == "tpe").then(
        pl.when(pl.col("trial") >= startup).then(pl.lit("tpe")).otherwise(pl.lit("random"))
    ).otherwise(pl.lit(kind))
    missing = [pl.lit(None, dtype=t).alias(c) for c, t in (("replicate", pl.Int64), ("drawn_by", pl.String))
               if c not in rows.columns]  # rows read from elsewhere than bench.results.store.read
    return (
        rows.with_columns(missing)
        .filter((pl.col("stage") == "search") & (pl.col("metric") == "objective"))
        .with_columns(pl.col("replicate").fill_null(1), pl.col("drawn_by").fill_null(guessed))
        .select(*UNIT, "trial", "status", "value", "drawn_by")
        .sort(*UNIT, "trial")
    )


def orientation(rows: pl.DataFrame, dataset: str, target: str, architecture: str) -> tuple[str, float]:
    """(label, sign) of a unit's objective in its metric's own orientation: the primary metric of its tasks
    (a single-task unit's own, a main task's, or every task's for "mean") with sign -1 when every one of them is
    lower-is-better (the objective is then their negated mean); "objective" and +1 for a mix of metrics."""
    tasks = rows.filter((pl.col("dataset") == dataset) & pl.col("stage").is_in(["search", "final"])
                        & (pl.col("task") != "*") & pl.col("kind").is_in(list(PRIMARY)))
    if architecture == "single_task" or target != "mean":
        tasks = tasks.filter(pl.col("task") == target)
    metrics = {PRIMARY[k] for k in tasks["kind"].unique().to_list()}
    if len(metrics) != 1:
        return "val objective (higher is better)", 1.0
    metric = metrics.pop()
    return f"val {metric}", 1.0 if HIGHER_IS_BETTER[metric] else -1.0


def _numbered(rows: pl.DataFrame) -> pl.DataFrame:
    """``search_trials`` with each trial's ``position`` 1..n in its unit and the unit's ``n``."""
    return search_trials(rows).with_columns(position=pl.int_range(1, pl.len() + 1).over(UNIT).cast(pl.Int64),
                                            n=pl.len().over(UNIT).cast(pl.Int64))


def best_so_far(rows: pl.DataFrame) -> pl.DataFrame:
    """Per unit and trial (``position`` 1..n): ``best``, the best objective of its trials so far in the metric's
    own orientation, and ``ylabel`` (``orientation``). A failed trial (no value) keeps the best before it."""
    trials = _numbered(rows).with_columns(
        best=pl.col("value").fill_nan(None).cum_max().forward_fill().over(UNIT))
    out = []
    for key, part in trials.group_by(UNIT, maintain_order=True):
        label, sign = orientation(rows, key[0], key[2], key[1])
        out.append(part.with_columns(best=pl.col("best") * sign, ylabel=pl.lit(label)))
    return pl.concat(out) if out else trials.with_columns(ylabel=pl.lit("", dtype=pl.String)).clear()


def late_best(rows: pl.DataFrame) -> list[tuple[str, str, str, int, int, int]]:
    """Units whose best trial (the first of ties) is in the last fifth of their n >= 2 trials: (dataset,
    architecture, target, replicate, its position, n)."""
    valid = _numbered(rows).filter(pl.col("value").is_finite())  # a failure (null) is never the best
    out = []
    for key, part in valid.group_by(UNIT, maintain_order=True):
        best = part.row(int(part["value"].arg_max()), named=True)
        if best["n"] >= 2 and best["position"] > LATE * best["n"]:
            out.append((*key, best["position"], best["n"]))
    return out


def dataset_unit_text(dataset: str, architecture: str, target: str, replicate: int) -> str:
    """``<dataset> | <unit>`` as markdown (``markdown.unit_text``, escaped)."""
    return escape(f"{dataset} | {unit_text(architecture, target, replicate)}")


def sampler_text(rows: pl.DataFrame, meta: dict[str, Any]) -> str:
    """The sampler as the page states it: "tpe" only for units TPE drew some configuration of; "random search"
    where every trial was drawn at random (TPE's start-up included), with the start-up and the seeding."""
    sampler = meta.get("sampler", {})
    kind = sampler.get("kind", "tpe")
    streams = ("the same draws in every unit (common_draws)" if sampler.get("common_draws") else
               "each unit its own stream" if "startup_trials" in meta else "trial k drew the same in every unit")
    seeding = f"seed {sampler.get('seed', 0)}, {streams}"
    if kind == "grid":  # one shuffle seed for all units: each visits every point of its grid once
        return f"grid (seed {sampler.get('seed', 0)}, every point of each unit's grid once)"
    if kind != "tpe":
        return f"random search ({seeding})"
    startup = sampler.get("n_startup_trials", meta.get("startup_trials", OLD_STARTUP))
    trials = search_trials(rows, meta)
    if not trials.height:
        return f"tpe after {startup} random start-up trials ({seeding})"
    guided = trials.group_by(UNIT).agg(tpe=(pl.col("drawn_by") == "tpe").any()).sort(UNIT)
    random = [dataset_unit_text(*r[:4]) for r in guided.filter(~pl.col("tpe")).iter_rows()]
    if len(random) == guided.height:
        return (f"random search: every trial of every unit was drawn in TPE's random start-up of {startup} trials, "
                f"so TPE never guided the search ({seeding})")
    text = f"tpe after {startup} random start-up trials per unit ({seeding})"
    return text + (f"; random search only (every trial in the start-up): {', '.join(random)}" if random else "")


def replicates_text(meta: dict[str, Any]) -> str:
    """What the page says of the replicates: R, and what varies across them per dataset."""
    r = int(meta.get("replicates", 1) or 1)
    if r == 1:
        return ("one replicate of the whole pipeline (replicates = 1): the intervals cover the final seeds' "
                "variance, not which configuration the search happened to find")
    draws = "; ".join(f"{escape(label)}: {text}" for label, text in meta.get("replicate_draws", {}).items())
    return (f"{r} replicates of the whole pipeline (search and final seeds), each with its own sampler streams"
            + (f"; {draws}" if draws else ""))


def search_section(rows: pl.DataFrame, label: str, plots: list[tuple[str, str]] | None) -> list[str]:
    """A dataset's search: its convergence plot, and the units whose best trial came late."""
    late = [u for u in late_best(rows) if u[0] == label]
    lines = [f"- may not have levelled off: {dataset_unit_text(*u[:4])}'s best trial was trial {u[4]} of {u[5]} "
             "(in the last fifth of its search)" for u in late]
    lines += [image(caption, path) for caption, path in plots or []]
    return [*lines, ""] if lines else []
