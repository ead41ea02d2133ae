"""The leaderboard page: ``results/<study>.md`` (``leaderboard/<study>.md`` once published:
``bench.results.publish``) rendered with tabulate from the tables of ``bench.results.tables`` (definitions there)
and ``bench.results.repeats``, with the plots of ``bench.results.plots``. The same rows and metadata always give
byte-identical markdown; a study without repeated runs renders without their section.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl
from tabulate import tabulate

from bench.paths import component
from bench.spec.decision import decision_from_meta
from bench.spec.metrics import DEAD_ROWS, DIAGNOSTIC, UNUSED_WEIGHT, objective_label
from bench.spec.study import unit_text

from . import curves, repeats, store, verdicts
from .convergence import replicates_text, sampler_text, search_section
from .funnel import entire_space_section
from .markdown import DASH, escape, html, image, interval, number, options_text, pvalue
from .plots import leaderboard_plots
from .tables import (
    ALPHA,
    BASELINE,
    DIAGNOSTIC_MEASURES,
    MIN_INDEPENDENT,
    arch_summary,
    diagnostic_summary,
    gate_utilisation,
    overall_ranking,
    pareto_front,
    scarcity_summary,
    task_summary,
    with_gains,
)


def provenance(rows: pl.DataFrame) -> dict[str, str]:
    """Date, commit and hardware of the final runs, read from the rows (so regeneration is byte-identical)."""
    final = rows.filter(pl.col("stage") == "final")
    src = final if final.height else rows

    def joined(col: str) -> str:
        vals = sorted(v for v in src[col].unique().to_list() if v)
        return ", ".join(vals) if vals else "unknown"

    dates = [v for v in src["finished_at"].to_list() if v]
    return {"date": max(dates)[:10] if dates else "unknown", "commit": joined("git_commit"),
            "hardware": joined("hardware")}


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


def wall_time(rows: pl.DataFrame) -> float | None:
    """Seconds from the start of the first stored run (its end minus its own seconds) to the end of the last:
    the study's wall time, resumes and idle gaps included."""
    done = rows.filter(pl.col("finished_at").is_not_null() & pl.col("seconds").is_not_null())
    if not done.height:
        return None
    span = done.select(
        # "YYYY-MM-DDTHH:MM:SS" and any offset after it (always +00:00 here: rows are stamped in UTC)
        end=pl.col("finished_at").str.slice(0, 19).str.to_datetime("%Y-%m-%dT%H:%M:%S"),
        seconds=pl.col("seconds"),
    ).select(
        first=(pl.col("end") - pl.duration(milliseconds=(pl.col("seconds") * 1000).cast(pl.Int64))).min(),
        last=pl.col("end").max(),
    )
    return (span["last"][0] - span["first"][0]).total_seconds()


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 90:  # a short run in seconds, not rounded up to "1 min"
        return f"{max(round(seconds), 1)} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{max(minutes, 1)} min"


def explained(rows: pl.DataFrame) -> list[str]:
    """What the page is, in two sentences under its title (a study without the single-task baseline has no gain)."""
    gains = BASELINE in rows["architecture"].to_list()
    return [
        "Which multi-task architecture should you use on each dataset below"
        + (", and what does sharing buy over a tuned single-task model per task? " if gains else "? ")
        + "Every architecture was tuned with the same budget on the validation split, its best configuration "
        "retrained with several seeds and scored once on the test split; each table gives the test metric per task"
        + (" and the gain over single-task" if gains else "") + ", defined in the legend under the protocol.",
        "",
    ]


def header(rows: pl.DataFrame, meta: dict[str, Any]) -> list[str]:
    """The protocol the page states: provenance, budget (the baseline's too), objectives, data, seeds and the
    search space of every architecture."""
    name, b = meta["study"], meta["budget"]
    prov = provenance(rows)
    seeds = meta.get("seeds", [])
    pruner = meta.get("pruner", {})
    timeout = f", at most {b['timeout']:g} s of trials per unit" if b.get("timeout") else ""
    n_tasks = {d: rows.filter((pl.col("dataset") == d) & (pl.col("architecture") == BASELINE))["target"].n_unique()
               for d in meta.get("datasets", {})}
    baseline = "; ".join(f"{escape(d)}: {n} tasks, {n * b['trials']} trials" for d, n in n_tasks.items() if n)
    lines = [
        f"# Leaderboard: {name}",
        "",
        *([escape(meta["description"]), ""] if meta.get("description") else []),
        *explained(rows),
        # inside a code span nothing is markup but a backquote
        f"- command: `{(meta.get('command') or f'bench run --study {name}').replace('`', chr(39))}`; wall time "
        f"{_duration(wall_time(rows))} (first run started to last "
        "ended)",
        f"- date: {prov['date']}; git commit: {prov['commit']}",
        f"- hardware: {prov['hardware']}",
        f"- budget: {b['trials']} search trials per architecture and dataset{_trials_ran(rows, b['trials'])}{timeout}; "
        "the single-task baseline is "
        f"tuned per task, {b['trials']} trials for each task" + (f" ({baseline})" if baseline else "") + "; at "
        f"most {b['max_epochs']} epochs, early-stopping patience {b['patience']}; sampler "
        f"{sampler_text(rows, meta)}, pruner {pruner.get('kind', 'median')}",
        "- selection on the validation split only; the best configuration of each architecture is retrained with "
        f"{len(seeds)} final seeds ({_seed_range(seeds)}), the test split read once per seed. Across seeds vary the "
        "weight initialisation, the data order and the dropout masks; the data split is fixed",
        f"- {replicates_text(meta)}",
    ]
    if meta.get("weightings"):  # a study comparing loss weightings: each (architecture, weighting) is a unit
        lines.append(f"- loss weightings compared: {', '.join(meta['weightings'])}; each multi-task architecture "
                     "with each is tuned with the full budget and ranked as `architecture+weighting` (equal weighting "
                     "keeps the plain name; the single-task baseline has one loss and runs once)")
    missing = missing_final_runs(rows, meta)
    if missing:
        lines.append(f"- **incomplete study**: final runs missing ({'; '.join(escape(m) for m in missing)}); the "
                     "results below are over the runs stored so far (`bench run` trains the rest)")
    for label, info in meta.get("datasets", {}).items():
        data = meta.get("data", {}).get(label, {})
        rows_text = ", ".join(f"{k} {v:,}" for k, v in data.get("rows", {}).items())
        lines.append(
            f"- {escape(label)}: {escape(info.get('name', label))}"
            + (f" ({escape(options_text(info['options']))})" if info.get("options") else "")
            + (f"; splits {rows_text}" if rows_text else "")
            + (f"; {data['d_in']} input features" if data.get("d_in") else "")
            + (f", feature protocol {escape(data['features'])}" if data.get("features") else "")
            + "".join(f"; {escape(t)}: {k['kept']:,} of {k['of']:,} training labels kept ({k['fraction']:.0%}), the "
                      "rest masked" for t, k in data.get("label_fraction", {}).items())
            + f"; tuning objective: {escape(_objective_text(info.get('objective', meta.get('objective', 'mean'))))}"
        )
    search = meta.get("search", {})
    if search:
        keys = sorted({k for space in search.values() for k in space})
        table = [[a, *[escape(search[a].get(k, "")) for k in keys]] for a in search]
        lines += ["", "<details><summary>Search space per architecture</summary>", "",
                  tabulate(table, headers=["architecture", *keys], tablefmt="github", disable_numparse=True),
                  "", "</details>"]
    return [*lines, ""]


def _trials_ran(rows: pl.DataFrame, budget: int) -> str:
    """Said when some unit ran more search trials than the budget now states (the budget was lowered after
    they ran: they are kept and the best configuration is chosen among all of them)."""
    search = rows.filter((pl.col("stage") == "search") & (pl.col("metric") == "objective"))
    if not search.height:
        return ""
    ran = search.group_by("dataset", "architecture", "target", pl.col("replicate").fill_null(1)).len()["len"].max()
    return f" ({ran} ran for some units: trials of an earlier, larger budget are kept)" if ran > budget else ""


def missing_final_runs(rows: pl.DataFrame, meta: dict[str, Any]) -> list[str]:
    """``"<dataset> | <arch>: seeds 3, 4"`` for every unit (and replicate: ``"... r2: ..."``) whose final seeds
    are not all stored (``"no final run"`` when none is), in the study's order; empty for a complete study."""
    seeds = set(meta.get("seeds", []))
    final = (rows.filter(pl.col("stage") == "final").with_columns(pl.col("replicate").fill_null(1))
             .select("dataset", "architecture", "target", "replicate", "seed").unique())
    stored: dict[tuple[str, str, str, int], set[int]] = {}
    for d, a, t, r, s in final.iter_rows():
        stored.setdefault((d, a, t, r), set()).add(s)
    out = []
    for replicate in range(1, int(meta.get("replicates", 1) or 1) + 1):
        for label, info in meta.get("datasets", {}).items():
            for arch in meta.get("architectures", []):
                if arch == BASELINE:  # one unit per task: the tasks any of its rows name
                    targets = sorted(rows.filter((pl.col("dataset") == label) & (pl.col("architecture") == arch))
                                     ["target"].unique().to_list())
                else:
                    targets = [info.get("objective", meta.get("objective", "mean"))]
                for target in targets or [None]:
                    have = stored.get((label, arch, target, replicate), set()) if target else set()
                    lost = sorted(seeds - have)
                    if not lost:
                        continue
                    unit = f"{label} | {unit_text(arch, target, replicate)}"
                    out.append(f"{unit}: " + ("no final run" if not have else
                                              "seed" + ("s " if len(lost) > 1 else " ") + ", ".join(map(str, lost))))
    return out


def _seed_range(seeds: list[int]) -> str:
    return f"seeds {seeds[0]}..{seeds[-1]}" if seeds else "no seeds"


def _objective_text(objective: str) -> str:
    if objective == "mean":
        return "mean over tasks of each task's primary validation metric"
    return f"{objective}'s validation primary metric (main task)"


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
    if not baseline:  # drop the gain, Δm and seesaw columns, and the rank
        keep = [i for i, h in enumerate(headers)
                if i > 0 and not h.startswith("gain ") and h not in ("Δm", "vs best", "seesaw")]
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
    lines += verdicts.dataset_verdict(label, d_archs, d_cells, decision_from_meta(meta))
    lines += [tabulate(table, headers=headers, tablefmt="github", disable_numparse=True), ""]
    lines += verdicts.variance_note(d_archs)
    if not baseline:
        lines += ["No single-task baseline in this study: no MTL gain, Δm or rank.", ""]
    incomplete = d_archs.filter(~pl.col("complete"))
    for r in incomplete.iter_rows(named=True):
        lines.append(f"- incomplete, so no Δm and no rank: {r['architecture']} (no finite test score on "
                     f"{escape(r['missing'])})")
    absent = [a for a in meta.get("architectures", []) if a not in d_archs["architecture"].to_list()]
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
    return lines + repeats.section(rows, label, plots.get(f"repeats:{label}"))  # nothing without repeat runs


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
             "reduced labels. Cells: the gain of that task with its 95% percentile bootstrap interval and its decision "
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
    return lines


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


def legend(decision) -> list[str]:
    """What the tables' cells and columns mean (a paragraph under the protocol, before the tables and plots)."""
    return [
        "Cells: test split, primary metric per task kind (binary: AUC, regression: MSE, multi-class: accuracy); "
        "the mean over the runs whose score is finite (with replicates: the mean of the replicates' means) [95% "
        "percentile bootstrap interval: replicates, then seeds within each, crossed with the test-set resamples "
        "where stored] and their number n. gain: the PLE paper's MTL gain against the tuned single-task baseline, "
        "oriented so that positive is better, with the same bootstrap, paired (both scored on the same resampled "
        "test rows). Δm: mean relative improvement over single-task across tasks, same orientation and bootstrap; "
        "the baseline's own Δm is 0 by definition. Decisions (docs/statistics.md), against the baseline (gain, Δm) "
        "and the best architecture (vs best): better or worse by more than δ "
        f"({verdicts.delta_text(decision)}; for Δm the Δm that δ on every task gives), equivalent within ±δ (two "
        "one-sided tests), or inconclusive; t tests over seeds (replicates), with the test-set variance, "
        "Holm-corrected over each family of a dataset at "
        f"α = {decision.alpha}. rank: by Δm, 1 = best, ties averaged. seesaw: one task better and another worse. "
        "Architectures without a finite score on every task get no Δm and no rank. on front: not dominated by another "
        "architecture in the mean test metrics of every task (at least as good on all, better on one; datasets with "
        "two or more tasks). trials c/p/f: search trials "
        "complete/pruned/failed. s/trial: mean seconds per search trial.",
        "",
    ]


def render(rows: pl.DataFrame, meta: dict[str, Any], plots: dict[str, list[tuple[str, str]]] | None = None,
           curve_rows: pl.DataFrame | None = None, findings: str | None = None) -> str:
    """The markdown leaderboard. ``plots`` maps a dataset label (or "" for study-wide plots, "overall" for the
    critical-difference diagram, "repeats:<label>", "curves") to (caption, relative path) pairs to link.
    ``curve_rows``: the runs' learning curves (``store.read_curves``), when stored; ``findings``: the maintainers'
    analysis published beside the rows (``bench.results.publish``), shown last as inert text."""
    plots = plots or {}
    decision = decision_from_meta(meta)
    archs = arch_summary(rows, decision)
    cells = with_gains(task_summary(rows), decision)
    labels = list(meta.get("datasets", {})) or sorted(archs["dataset"].unique().to_list())
    lines = header(rows, meta)
    lines += verdicts.page_verdict(archs, labels)
    lines += legend(decision)  # before the tables and plots it explains
    if len(labels) > 1:
        lines += overall_section(archs, meta, labels, plots.get("overall", []))
    for label in labels:
        lines += dataset_section(rows, meta, label, archs, cells, plots)
        lines += entire_space_section(rows, label)  # data whose truth is known (synthetic-funnel)
        lines += curves.section(rows, curve_rows, label)  # replicates' selections, epochs trained and kept
    lines += scarcity_section(cells, meta, plots.get("scarcity", []))
    for caption, path in plots.get("", []):
        lines += [image(caption, path), ""]
    lines += curves.figure_lines(plots.get("curves"))
    lines += findings_section(findings)
    return "\n".join(lines)


def findings_section(findings: str | None) -> list[str]:
    """The maintainers' findings (``leaderboard/<study>/findings.md``), written from the rows after the study ran:
    each line as inert text (``escape``: no link, HTML or table can be injected by a published folder), blank lines
    kept as paragraph breaks and a leading ``- `` as a list item."""
    if not findings or not findings.strip():
        return []
    lines = ["## Findings", "", "Written by the maintainers from the rows and tables above (findings.md beside the raw "
             "rows); every number in it appears above.", ""]
    for line in findings.strip().splitlines():
        item = line.startswith("- ")
        lines.append(("- " + escape(line[2:])) if item else escape(line))
    return [*lines, ""]


def tables(rows: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The leaderboard's tables by name (what experiment tracking logs beside the page); list columns of
    per-seed values are left out."""
    archs = arch_summary(rows)
    cells = with_gains(task_summary(rows)).drop("values", "seeds", "replicates", "draws")
    return {"leaderboard": archs, "overall": overall_ranking(archs)[0], "tasks": cells, "pareto": pareto_front(cells),
            "gates": diagnostic_summary(rows), "gate_utilisation": gate_utilisation(rows)}


def build(root: Path, out_dir: Path, *, with_plots: bool = True, command: str | None = None) -> tuple[Path, str]:
    """Rebuild ``out_dir/<study>.md`` (and plots in ``out_dir/<study>/``) from the store at ``root``. ``command``:
    the exact command that produced the results, for the header (kept in the study's metadata for later
    rebuilds; default ``bench run --study NAME``)."""
    rows, curve_rows = store.read(root), store.read_curves(root)
    meta = store.read_meta(root)
    if command:
        meta["command"] = command
        store.write_meta(root, meta)
    return write_page(rows, meta, out_dir, with_plots=with_plots, curve_rows=curve_rows)


def write_page(rows: pl.DataFrame, meta: dict[str, Any], out_dir: Path, *, with_plots: bool = True,
               curve_rows: pl.DataFrame | None = None, findings: str | None = None) -> tuple[Path, str]:
    """``out_dir/<study>.md`` and its plots in ``out_dir/<study>/`` from ``rows`` and ``meta`` alone (a store's, or
    a published folder's raw rows: ``bench.results.publish``), with the learning curves and findings when there
    are. Returns the page's path and text."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = component(meta["study"], "study name")  # study.json is data too: its name never leaves out_dir
    for stale in (out_dir / name).glob("*.png"):  # plots of an earlier build that may not be made again
        stale.unlink()
    links = leaderboard_plots(rows, meta, out_dir, name) if with_plots and rows.height else {}
    if with_plots and curve_rows is not None and curve_rows.height:
        links.update(curves.curve_plots(curve_rows, out_dir / name, name))
    text = render(rows, meta, links, curve_rows, findings)
    path = out_dir / f"{name}.md"
    path.write_text(text)
    return path, text


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
