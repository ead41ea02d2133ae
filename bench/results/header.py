"""The top of the leaderboard page (``bench.results.leaderboard``): its title, what it is, the protocol the
study followed (provenance, wall time, budget, seeds, data, search spaces, the final runs still missing) and the
legend of its tables. Everything is read from the rows and the study's metadata, so the same inputs always give
the same lines.
"""

from __future__ import annotations

from typing import Any

import polars as pl
from tabulate import tabulate

from bench.spec.study import architectures_on, unit_text

from . import verdicts
from .comparisons import BASELINE
from .convergence import replicates_text, sampler_text
from .markdown import escape, options_text


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
    lines = [f"# Leaderboard: {meta['study']}", "",
             *([escape(meta["description"]), ""] if meta.get("description") else []),
             *explained(rows), *_protocol(rows, meta)]
    if meta.get("weightings"):  # a study comparing loss weightings: each (architecture, weighting) is a unit
        lines.append(f"- loss weightings compared: {', '.join(meta['weightings'])}; each multi-task architecture "
                     "with each is tuned with the full budget and ranked as `architecture+weighting` (equal weighting "
                     "keeps the plain name; the single-task baseline has one loss and runs once)")
    missing = missing_final_runs(rows, meta)
    if missing:
        lines.append(f"- **incomplete study**: final runs missing ({'; '.join(escape(m) for m in missing)}); the "
                     "results below are over the runs stored so far (`bench run` trains the rest)")
    lines += [_dataset_line(label, info, meta) for label, info in meta.get("datasets", {}).items()]
    return [*lines, *_search_spaces(meta.get("search", {})), ""]


def _protocol(rows: pl.DataFrame, meta: dict[str, Any]) -> list[str]:
    """The bullets of how the study ran: command and wall time, date, commit, hardware, budget, seeds and
    replicates."""
    name, b = meta["study"], meta["budget"]
    prov = provenance(rows)
    seeds = meta.get("seeds", [])
    pruner = meta.get("pruner", {})
    timeout = f", at most {b['timeout']:g} s of trials per unit" if b.get("timeout") else ""
    n_tasks = {d: rows.filter((pl.col("dataset") == d) & (pl.col("architecture") == BASELINE))["target"].n_unique()
               for d in meta.get("datasets", {})}
    baseline = "; ".join(f"{escape(d)}: {n} tasks, {n * b['trials']} trials" for d, n in n_tasks.items() if n)
    return [
        # inside a code span nothing is markup but a backquote
        f"- command: `{(meta.get('command') or f'bench run --study {name}').replace('`', chr(39))}`; wall time "
        f"{_duration(wall_time(rows))} (first run started to last "
        "ended)",
        f"- date: {prov['date']}; git commit: {prov['commit']}",
        f"- hardware: {prov['hardware']}",
        f"- budget: {b['trials']} search trials per architecture and dataset{_trials_ran(rows, b['trials'])}{timeout}; "
        + (f"the single-task baseline is tuned per task, {b['trials']} trials for each task ({baseline})" if baseline
           else "no single-task baseline") + "; at "
        f"most {b['max_epochs']} epochs, early-stopping patience {b['patience']}; sampler "
        f"{sampler_text(rows, meta)}, pruner {pruner.get('kind', 'median')}",
        "- selection on the validation split only; the best configuration of each architecture is retrained with "
        f"{len(seeds)} final seeds ({_seed_range(seeds)}), the test split read once per seed. Across seeds vary the "
        "weight initialisation, the data order and the dropout masks; the data split is fixed",
        f"- {replicates_text(meta)}",
    ]


def _dataset_line(label: str, info: dict[str, Any], meta: dict[str, Any]) -> str:
    """One dataset entry's bullet: its data set and options, split sizes, features, the labels kept of a scarce
    task and the tuning objective."""
    data = meta.get("data", {}).get(label, {})
    rows_text = ", ".join(f"{k} {v:,}" for k, v in data.get("rows", {}).items())
    return (
        f"- {escape(label)}: {escape(info.get('name', label))}"
        + (f" ({escape(options_text(info['options']))})" if info.get("options") else "")
        + (f"; splits {rows_text}" if rows_text else "")
        + (f"; {data['d_in']} input features" if data.get("d_in") else "")
        + (f", feature protocol {escape(data['features'])}" if data.get("features") else "")
        + "".join(f"; {escape(t)}: {k['kept']:,} of {k['of']:,} training labels kept ({k['fraction']:.0%}), the "
                  "rest masked" for t, k in data.get("label_fraction", {}).items())
        + f"; tuning objective: {escape(_objective_text(info.get('objective', meta.get('objective', 'mean'))))}"
    )


def _search_spaces(search: dict[str, dict[str, Any]]) -> list[str]:
    """The collapsible table of every architecture's search space (nothing without one)."""
    if not search:
        return []
    keys = sorted({k for space in search.values() for k in space})
    table = [[a, *[escape(search[a].get(k, "")) for k in keys]] for a in search]
    return ["", "<details><summary>Search space per architecture</summary>", "",
            tabulate(table, headers=["architecture", *keys], tablefmt="github", disable_numparse=True),
            "", "</details>"]


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
            for arch in architectures_on(meta, label):
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


def legend(decision) -> list[str]:
    """What the tables' cells and columns mean (a paragraph under the protocol, before the tables and plots)."""
    return [
        "Cells: test split, primary metric per task kind (binary: AUC, regression: MSE, multi-class: accuracy); "
        "the mean over the runs whose score is finite (with replicates: the mean of the replicates' means) [95% "
        "percentile bootstrap interval: replicates, then seeds within each, crossed with the test-set resamples "
        "where stored] and their number n. gain: the PLE paper's MTL gain against the tuned single-task baseline, "
        "oriented so that positive is better. Δm: mean relative improvement over single-task across tasks, same "
        "orientation; the baseline's own Δm is 0 by definition. The intervals of gain and Δm are the 95% t intervals "
        "of the tests that decide them (before the Holm adjustment; replicate by replicate where replicates are "
        "paired data draws). Decisions (docs/statistics.md), against the baseline (gain, Δm) "
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
