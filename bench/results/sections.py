"""The body of the leaderboard page (``bench.results.leaderboard``): the overall ranking across datasets, one
section per dataset (its table, what is incomplete, observed labels, published numbers, gates and experts, the
selected configurations, plots, the search's convergence and repeated runs) and the label-scarcity section.
Each function returns markdown lines; the tables they render are ``bench.results.tables``'.
"""

from __future__ import annotations

import json
import math
from typing import Any

import polars as pl
from tabulate import tabulate

from bench.spec.decision import decision_from_meta
from bench.spec.metrics import DEAD_ROWS, DIAGNOSTIC, UNUSED_WEIGHT, objective_label
from bench.spec.study import architectures_on, unit_text

from . import repeats, verdicts
from .convergence import search_section
from .gates import DIAGNOSTIC_MEASURES, diagnostic_summary
from .markdown import DASH, escape, html, image, interval, number, pvalue
from .tables import (
    ALPHA,
    BASELINE,
    MIN_INDEPENDENT,
    overall_ranking,
    pareto_front,
    scarcity_summary,
)


def wandb_links(rows: pl.DataFrame, dataset: str) -> dict[str, str]:
    """Markdown links to the W&B final runs of each architecture on ``dataset`` (only runs tracked online have a
    URL): ``[s1](url) [s2](url)``, single-task ``[y1 s1](url)``."""
    if "wandb_url" not in rows.columns:
        return {}
    runs = (
        rows.filter((pl.col("stage") == "final") & (pl.col("dataset") == dataset) & pl.col("wandb_url").is_not_null())
        .with_columns(pl.col("replicate").fill_null(1))
        .select("architecture", "target", "replicate", "seed", "wandb_url")
        .unique()
        .sort("architecture", "target", "replicate", "seed")
    )
    links: dict[str, list[str]] = {}
    for r in runs.iter_rows(named=True):
        run = (f"r{r['replicate']} " if r["replicate"] != 1 else "") + f"s{r['seed']}"  # a run: (replicate, seed)
        label = f"{r['target']} {run}" if r["architecture"] == BASELINE else run
        links.setdefault(r["architecture"], []).append(f"[{label}]({r['wandb_url']})")
    return {a: " ".join(v) for a, v in links.items()}


def overall_section(archs: pl.DataFrame, meta: dict[str, Any], labels: list[str],
                    plots: list[tuple[str, str]]) -> list[str]:
    """Mean rank over datasets (the ranks of the dataset tables), the median Δm, and the Friedman test with the
    Nemenyi critical difference only over enough independent datasets."""
    overall, tests = overall_ranking(archs, meta.get("architectures"), meta)
    if not overall.height:
        return []
    ranks = {(r["dataset"], r["architecture"]): r["rank"] for r in archs.iter_rows(named=True)}
    table = [
        [r["architecture"], f"{r['mean_rank']:.2f}", number(r["median_delta_m"], ".3f", signed=True) + "%",
         *[DASH if ranks.get((d, r["architecture"])) is None else f"{ranks[(d, r['architecture'])]:g}"
           for d in labels]]
        for r in overall.iter_rows(named=True)
    ]
    fr, cd = tests["friedman"], tests["cd"]
    lines = ["## Overall ranking", "",
             tabulate(table, headers=["architecture", "mean rank", "median Δm", *map(escape, labels)],
                      tablefmt="github", disable_numparse=True), "",
             "Rank: by Δm within each dataset (1 = best, ties averaged), as in the dataset tables; mean rank: their "
             "mean. median Δm: the median over datasets (robust to the outlying Δm of a single dataset).", ""]
    shared = [f"{', '.join(map(escape, ds))} share {escape(b)}" for b, ds in tests["blocks"].items() if len(ds) > 1]
    n = tests["independent"]
    if fr is not None and fr.statistic is not None and not math.isnan(fr.statistic):
        lines.append(f"Friedman test over {fr.n_datasets} independent datasets and {fr.k} architectures (ranks of "
                     f"Δm, 1 = best): χ²({fr.k - 1}) = {fr.statistic:.2f}, {pvalue(fr.p)}. Nemenyi critical "
                     f"difference (α = {ALPHA}): {cd:.2f}; architectures whose mean ranks differ by less than that "
                     "are not significantly different.")
    else:
        lines.append(f"No Friedman test or critical difference: they need at least {MIN_INDEPENDENT} independent "
                     f"datasets and 3 architectures ranked on all of them; this page has {n} independent "
                     f"dataset{'s' if n != 1 else ''}" + (f" ({'; '.join(shared)}: entries sharing data count once)"
                                                          if shared else "") + ".")
    for a, reason in tests["excluded"].items():
        lines.append(f"- not ranked overall: {a} ({escape(reason)})")
    lines.append("")
    for caption, path in plots:
        lines += [image(caption, path), ""]
    return lines


def dataset_section(rows: pl.DataFrame, meta: dict[str, Any], label: str, archs: pl.DataFrame,
                    cells: pl.DataFrame, plots: dict[str, list[tuple[str, str]]]) -> list[str]:
    """One dataset: the table (cells with n and intervals, gains with tests, Δm, top group, on the Pareto front),
    what is incomplete, the gates and experts of the gated architectures, the selected configurations, the plots
    and the repeated runs."""
    lines = [f"## {escape(label)}", ""]
    d_archs = archs.filter(pl.col("dataset") == label)
    d_cells = cells.filter(pl.col("dataset") == label)
    expected = len(meta.get("seeds", []))
    if not d_archs.height:
        return [*lines, "No final results yet.", ""]
    task_meta = d_cells.select("task", "metric").unique().sort("task").rows()
    by = {(r["architecture"], r["task"]): r for r in d_cells.iter_rows(named=True)}
    # a study without the single-task baseline (e.g. the MMoE paper's synthetic experiment) has no gain, Δm or rank
    baseline = BASELINE in d_archs["architecture"].to_list()
    headers = ["rank", "architecture", *[escape(f"{t} {m}") for t, m in task_meta],
               *[escape(f"gain {t}") for t, _ in task_meta], "Δm", "vs best", "seesaw", "params", "trials c/p/f",
               "s/trial"]
    table = [_arch_row(r, [by.get((r["architecture"], t)) for t, _ in task_meta], [t for t, _ in task_meta],
                       expected) for r in d_archs.iter_rows(named=True)]
    if not baseline:  # drop the gain, Δm and seesaw columns, and the rank; vs best stays (per task)
        keep = [i for i, h in enumerate(headers)
                if i > 0 and not h.startswith("gain ") and h not in ("Δm", "seesaw")]
        headers, table = [headers[i] for i in keep], [[row[i] for i in keep] for row in table]
    if len(task_meta) >= 2:  # the per-task Pareto front; a dash for an architecture without a score on every task
        front = {r["architecture"]: r["on_front"] for r in pareto_front(d_cells).iter_rows(named=True)}
        headers.append("on front")
        for row, r in zip(table, d_archs.iter_rows(named=True)):
            on = front.get(r["architecture"])
            row.append(DASH if on is None else "yes" if on else "")
    links = wandb_links(rows, label)
    if links:  # runs tracked online: link each architecture's final runs
        headers.append("W&B runs")
        for row, r in zip(table, d_archs.iter_rows(named=True)):
            row.append(links.get(r["architecture"], DASH))
    decision = decision_from_meta(meta)
    lines += verdicts.dataset_verdict(label, d_archs, d_cells, decision)
    lines += [tabulate(table, headers=headers, tablefmt="github", disable_numparse=True), ""]
    lines += verdicts.variance_note(d_archs, label in decision.paired)
    if not baseline:
        lines += ["No single-task baseline in this study: no MTL gain, Δm or rank.", ""]
    incomplete = d_archs.filter(~pl.col("complete"))
    for r in incomplete.iter_rows(named=True):
        lines.append(f"- incomplete, so no Δm and no rank: {r['architecture']} (no finite test score on "
                     f"{escape(r['missing'])})")
    absent = [a for a in architectures_on(meta, label) if a not in d_archs["architecture"].to_list()]
    if absent:
        lines.append(f"- no final results: {', '.join(absent)}")
    if incomplete.height or absent:
        lines.append("")
    lines += observed_labels(rows, meta, label)
    lines += published(meta, label, d_cells)
    lines += gates_section(rows, label, d_archs["architecture"].to_list())
    lines += configurations(rows, label)
    for caption, path in plots.get(label, []):
        lines.append(image(caption, path))
    if plots.get(label):
        lines.append("")
    lines += search_section(rows, label, plots.get(f"search:{label}"))  # the search's convergence
    return lines + repeats.section(rows, label, plots.get(f"repeats:{label}"), decision.paired)  # [] if none


def observed_labels(rows: pl.DataFrame, meta: dict[str, Any], label: str) -> list[str]:
    """For a dataset with missing labels, the rows each task's validation and test metrics are computed on
    (store column ``observed`` of the final and repeated runs), against the split's size (``study.json``
    ``data``). Nothing when every task is observed on every row (without the sizes: when no task has fewer
    observed rows than another), or for rows stored before the column existed."""
    counts = (
        rows.filter((pl.col("dataset") == label) & pl.col("stage").is_in(["final", "repeat"])
                    & pl.col("observed").is_not_null())
        .group_by("split", "task")
        .agg(lo=pl.col("observed").min(), hi=pl.col("observed").max())
        .sort("split", "task")
    )
    sizes = meta.get("data", {}).get(label, {}).get("rows", {})
    parts = []
    for split, name in (("val", "validation"), ("test", "test")):
        c = counts.filter(pl.col("split") == split)
        if not c.height:
            continue
        total = sizes.get(split)
        partial = bool((c["hi"] < total).any()) if total is not None else c["hi"].min() < c["hi"].max()
        if not partial:  # every label of this split observed
            continue
        # lo < hi only if runs of the dataset saw different splits (the data changed between them): both shown
        cells = [f"{t} {lo:,}" + ("" if lo == hi else f"-{hi:,}") for t, lo, hi in c.select("task", "lo", "hi").rows()]
        parts.append(f"{name} {', '.join(escape(x) for x in cells)}" + (f" of {total:,}" if total is not None else ""))
    if not parts:
        return []
    return [f"Missing labels: each task's metrics are over the rows where its label is observed: {'; '.join(parts)} "
            "rows.", ""]


def scarcity_section(cells: pl.DataFrame, meta: dict[str, Any], plots: list[tuple[str, str]]) -> list[str]:
    """The label-scarcity experiment: per group of dataset entries differing only in the fraction of one task's
    training labels, that task's MTL gain (over the single-task baseline trained on the same labels) per
    architecture and fraction."""
    scarce = scarcity_summary(cells, meta)
    if not scarce.height:
        return []
    lines = ["## Label scarcity: MTL gain of the scarce task against its fraction of training labels", "",
             "Each column is a dataset entry above whose task keeps only that fraction of its training labels (the "
             "rest masked, seeded; validation and test labels complete); the single-task baseline trains on the same "
             "reduced labels. Cells: the gain of that task with its decision's 95% t interval and its decision "
             "against the baseline, as in the entry's table. The fractions of one source share their data: they "
             "are one experiment, not independent datasets.", ""]
    for (group, task), part in scarce.group_by("group", "task", maintain_order=True):
        fractions = sorted(part["fraction"].unique().to_list())
        by = {(r["architecture"], r["fraction"]): r for r in part.iter_rows(named=True)}
        table = []
        for arch in part["architecture"].unique(maintain_order=True).to_list():
            row = [arch]
            for f in fractions:
                c = by.get((arch, f))
                row.append(DASH if c is None or c["gain"] is None else
                           f"{interval(c['gain'], c['gain_lo'], c['gain_hi'], signed=True)} "
                           f"{c['decision']} n={c['n']}")
            table.append(row)
        metric = part["metric"][0]
        lines += [f"### {escape(group)}: {escape(task)} ({escape(metric)} gain)", "",
                  tabulate(table, headers=["architecture", *[f"{f:.0%}" if f >= 0.01 else f"{f:.1%}"
                                                             for f in fractions]],
                           tablefmt="github", disable_numparse=True), ""]
    for caption, path in plots:
        lines += [image(caption, path), ""]
    return lines


def gates_section(rows: pl.DataFrame, label: str, order: list[str]) -> list[str]:
    """The gates and experts of the gated architectures on this dataset (``diagnostic_summary``), in rank order:
    nothing when no final run has diagnostics."""
    summary = diagnostic_summary(rows).filter(pl.col("dataset") == label)
    if not summary.height:
        return []
    by = {(r["architecture"], r["metric"]): r for r in summary.iter_rows(named=True)}
    archs = [a for a in order if any((a, m) in by for m in DIAGNOSTIC_MEASURES)]
    table = []
    for a in archs:
        cells = [by.get((a, m)) for m in DIAGNOSTIC_MEASURES]
        n = max(c["n"] for c in cells if c is not None)
        table.append([a, *[DASH if c is None else interval(c["mean"], c["lo"], c["hi"], ".3f") for c in cells], n])
    return ["Gates and experts (test split, final runs; mean over seeds [95% t interval, clipped to [0, 1]], n "
            "seeds):", "",
            tabulate(table, headers=["architecture", *DIAGNOSTIC_MEASURES.values(), "n"], tablefmt="github",
                     disable_numparse=True), "",
            f"dead units: share of the experts' ReLU units that are zero on at least {DEAD_ROWS:.0%} of the rows (1: "
            "a collapsed expert). normalised gate entropy: mean over rows of the entropy of a task's gate divided by "
            f"log of its number of experts (1: uniform weights, 0: one expert). unused experts: share of a gate's "
            f"experts whose mean weight is below {UNUSED_WEIGHT}. Each is a mean over levels and tasks (experts) per "
            "run; the gate-utilisation heatmap shows each task's mean weight on each expert.", ""]


def published(meta: dict[str, Any], label: str, cells: pl.DataFrame | None = None) -> list[str]:
    """The spec's published numbers for this dataset, apart from ours and labelled as such; beside each, ours for
    the same architecture and task with the page's interval (every source of variance the runs stored)."""
    lines = []
    ours = {} if cells is None else {(r["architecture"], r["task"]): r for r in cells.iter_rows(named=True)}
    for entry in meta.get("published", []):
        if entry["dataset"] != label:
            continue
        tasks = sorted({t for per_task in entry["values"].values() for t in per_task})

        def cell(a: str, t: str, v: dict[str, float]) -> str:
            c = ours.get((a, t))
            mine = "" if c is None or c["mean"] is None else f" (ours {interval(c['mean'], c['lo'], c['hi'])})"
            return number(v.get(t)) + mine

        table = [[escape(a), *[cell(a, t, v) for t in tasks]] for a, v in entry["values"].items()]
        lines += [f"Published numbers, for comparison only (not produced by this harness): {escape(entry['source'])}; "
                  f"{escape(entry['metric'])}.", "",
                  tabulate(table, headers=["architecture", *map(escape, tasks)], tablefmt="github",
                           disable_numparse=True), ""]
        if entry.get("notes"):
            lines += [f"Protocol differences: {escape(entry['notes'])}", ""]
        lines += [PUBLISHED_READING, ""]
    return lines


# what a comparison of our cells with a paper's number can and cannot support (under every published table)
PUBLISHED_READING = (
    "How to read this: our interval holds our seeds, replicates and the test-set resampling of our test half; a "
    "published number comes without its own spread, from another protocol, budget and test split. A published value "
    "outside our interval says that our mean differs from theirs by more than our own variance explains, not which "
    "model is better or why; a value inside it does not make the two equivalent. Differences between architectures "
    "are decided only within our table, never against these numbers.")


def configurations(rows: pl.DataFrame, label: str) -> list[str]:
    """Per architecture (BARS-style), a collapsible block with the selected configuration, its validation
    score (the search trial's objective) and its config hash."""
    unit_keys = ["architecture", "target", "replicate"]  # each replicate selected its own configuration
    final = (rows.filter((pl.col("stage") == "final") & (pl.col("dataset") == label))
             .with_columns(pl.col("replicate").fill_null(1))
             .select(*unit_keys, "trial", "config_hash", "config").unique(unit_keys).sort(unit_keys))
    objective = (rows.filter((pl.col("stage") == "search") & (pl.col("dataset") == label)
                             & (pl.col("metric") == "objective"))
                 .with_columns(pl.col("replicate").fill_null(1)).select(*unit_keys, "trial", "value"))
    kinds = dict(rows.filter((pl.col("dataset") == label) & (pl.col("stage") == "final") & (pl.col("kind") != "")
                             & (pl.col("kind") != DIAGNOSTIC)).select("task", "kind").unique().iter_rows())
    lines = []
    for r in final.join(objective, on=[*unit_keys, "trial"], how="left").sort(unit_keys).iter_rows(named=True):
        config = json.loads(r["config"] or "{}")
        config.pop("seed", None)  # the final runs' own seeds
        # the objective in its metrics' own orientation (an MSE as an MSE, not the -MSE that was maximised)
        tasks = {t: k for t, k in kinds.items() if r["target"] in ("mean", t)} or kinds
        shown, sign = objective_label(tasks) if tasks else ("validation objective (higher is better)", 1.0)
        value = None if r["value"] is None else sign * r["value"]
        # trials numbered from 1, as `bench run` logs them (the store's ``trial`` counts from 0)
        unit = unit_text(r["architecture"], r["target"], r["replicate"])
        lines += [f"<details><summary>{html(unit)}: trial {r['trial'] + 1}, "
                  f"{html(shown)} {number(value)}, config {r['config_hash']}</summary>", "",
                  escape(", ".join(f"{k}={v}" for k, v in sorted(config.items()))), "", "</details>"]
    return [*lines, ""] if lines else []


def _arch_row(r: dict[str, Any], cells: list[dict[str, Any] | None], tasks: list[str], expected: int) -> list[Any]:
    """One architecture's row of a dataset table: rank, cells with n, gains with decisions, Δm, vs best, ..."""
    values, gains = [], []
    for c in cells:
        if c is None or c["n"] == 0:
            values.append(f"n = 0 of {expected}" + (" (failed)" if c is not None and c["n_failed"] else ""))
            gains.append(DASH)
            continue
        values.append(f"{interval(c['mean'], c['lo'], c['hi'])} n={c['n']}")
        gains.append(DASH if c["gain"] is None else
                     f"{interval(c['gain'], c['gain_lo'], c['gain_hi'], signed=True)} {c['decision']}")
    trials = DASH if r["trials_complete"] is None else \
        f"{r['trials_complete']}/{r['trials_pruned']}/{r['trials_failed']}"
    return [DASH if r["rank"] is None else f"{r['rank']:g}", r["architecture"], *values, *gains,
            verdicts.delta_m_cell(r), verdicts.versus_best(r, cells, tasks), "yes" if r["seesaw"] else "",
            DASH if r["n_params"] is None else f"{r['n_params']:,}", trials,
            DASH if r["seconds_per_trial"] is None else f"{r['seconds_per_trial']:.1f}"]
