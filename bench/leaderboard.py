"""The leaderboard: a short polars pipeline over the tidy rows of ``bench.store``, rendered with tabulate.

Definitions (per dataset, on the final stage's test split, primary metric of each task's kind):

- metric: mean ± standard deviation over the final seeds.
- MTL gain of architecture a on task k (PLE paper, Tang et al. 2020):
      gain_k = s_k (M_a,k - M_single,k),   s_k = +1 if higher is better, -1 otherwise
  with the standard error of a difference of independent means as its uncertainty:
      se_k = sqrt(sd_a,k^2 / n_a,k + sd_single,k^2 / n_single,k)
- Delta_m (Maninis et al. 2019; Vandenhende et al. 2021), in percent:
      Delta_m = 100/T sum_k s_k (M_a,k - M_single,k) / M_single,k
- seesaw: some gains are positive and others negative (the PLE paper's seesaw phenomenon).

Architectures are ranked by Delta_m within a dataset (single-task: 0 by definition); the overall ranking is
the mean of those ranks over datasets. The same rows and metadata always give byte-identical markdown.
Repeated runs (stage "repeat", ``bench.repeats``) add a distribution table and histogram per dataset; without
them the markdown is exactly what it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
from tabulate import tabulate

from . import repeats
from .metrics import HIGHER_IS_BETTER, PRIMARY

BASELINE = "single_task"


# --- the pipeline ----------------------------------------------------------------------------------------
def task_summary(rows: pl.DataFrame) -> pl.DataFrame:
    """Per (dataset, architecture, task): mean, std and count over seeds of the test primary metric."""
    return (
        rows.filter((pl.col("stage") == "final") & (pl.col("split") == "test"))
        # keep each task's primary metric (auc, mse or accuracy by task kind)
        .filter(pl.col("metric") == pl.col("kind").replace_strict(PRIMARY, default=None))
        .filter(pl.col("value").is_finite())  # a NaN or infinity never reaches the leaderboard
        .group_by("dataset", "architecture", "task", "kind", "metric")
        .agg(mean=pl.col("value").mean(), std=pl.col("value").std(), n=pl.len().cast(pl.Int64))
        .sort("dataset", "architecture", "task")
    )


def with_gains(tasks: pl.DataFrame) -> pl.DataFrame:
    """Adds gain, gain_se and rel (the relative improvement of Delta_m) against the single-task baseline."""
    base = tasks.filter(pl.col("architecture") == BASELINE).select(
        "dataset", "task", base_mean="mean", base_std="std", base_n="n"
    )
    # s_k: +1 when higher is better, -1 when lower is better
    sign = pl.col("metric").replace_strict({m: 1.0 if h else -1.0 for m, h in HIGHER_IS_BETTER.items()})
    is_base = pl.col("architecture") == BASELINE
    return (
        tasks.join(base, on=["dataset", "task"], how="left")
        .with_columns(
            gain=pl.when(is_base).then(None).otherwise(sign * (pl.col("mean") - pl.col("base_mean"))),
            gain_se=pl.when(is_base).then(None).otherwise(
                (pl.col("std") ** 2 / pl.col("n") + pl.col("base_std") ** 2 / pl.col("base_n")).sqrt()
            ),
            rel=pl.when(is_base).then(0.0).otherwise(
                sign * (pl.col("mean") - pl.col("base_mean")) / pl.col("base_mean")
            ),
        )
        .drop("base_mean", "base_std", "base_n")
    )


def trial_summary(rows: pl.DataFrame) -> pl.DataFrame:
    """Per (dataset, architecture): search trials complete / pruned / failed and mean seconds per trial
    (single-task sums its per-task units)."""
    trials = rows.filter((pl.col("stage") == "search") & (pl.col("metric") == "objective"))
    return (
        trials.group_by("dataset", "architecture")
        .agg(
            complete=(pl.col("status") == "complete").sum().cast(pl.Int64),
            pruned=(pl.col("status") == "pruned").sum().cast(pl.Int64),
            failed=(pl.col("status") == "failed").sum().cast(pl.Int64),
            seconds_per_trial=pl.col("seconds").mean(),
        )
        .sort("dataset", "architecture")
    )


def params_summary(rows: pl.DataFrame) -> pl.DataFrame:
    """Parameter count of the final models (single-task: the sum of its per-task models)."""
    return (
        rows.filter(pl.col("stage") == "final")
        .group_by("dataset", "architecture", "target")
        .agg(pl.col("n_params").first())
        .group_by("dataset", "architecture")
        .agg(n_params=pl.col("n_params").sum())
    )


def arch_summary(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per (dataset, architecture): Delta_m, seesaw, parameters, trials and time; ranked by Delta_m."""
    gains = with_gains(task_summary(rows))
    per_arch = gains.group_by("dataset", "architecture").agg(
        delta_m=pl.col("rel").mean() * 100.0,  # Delta_m in percent
        seesaw=(pl.col("gain") > 0).any() & (pl.col("gain") < 0).any(),
        n_tasks=pl.len().cast(pl.Int64),
    )
    return (
        per_arch.join(params_summary(rows), on=["dataset", "architecture"], how="left")
        .join(trial_summary(rows), on=["dataset", "architecture"], how="left")
        # rank 1 = highest Delta_m; ties share the best rank; no baseline -> no rank
        .with_columns(rank=pl.col("delta_m").rank("min", descending=True).over("dataset").cast(pl.Int64))
        .sort("dataset", "rank", "architecture", nulls_last=True)
    )


def overall_ranking(archs: pl.DataFrame) -> pl.DataFrame:
    """Mean rank over datasets (and mean Delta_m), best first."""
    return (
        archs.group_by("architecture")
        .agg(mean_rank=pl.col("rank").mean(), mean_delta_m=pl.col("delta_m").mean(), datasets=pl.len())
        .sort("mean_rank", pl.col("mean_delta_m"), "architecture", descending=[False, True, False], nulls_last=True)
    )


def correlation_summary(rows: pl.DataFrame, meta: dict[str, Any]) -> pl.DataFrame:
    """Performance against task correlation (MMoE paper, figure 4): for datasets with a correlation option
    ``p``, the test primary metric averaged over tasks per seed, then mean and std over seeds."""
    ps = {label: d["options"]["p"] for label, d in meta.get("datasets", {}).items() if "p" in d.get("options", {})}
    if len(set(ps.values())) < 2:
        return pl.DataFrame(schema={"architecture": pl.String, "p": pl.Float64, "mean": pl.Float64,
                                    "std": pl.Float64, "metric": pl.String})
    return (
        rows.filter((pl.col("stage") == "final") & (pl.col("split") == "test") & pl.col("dataset").is_in(list(ps)))
        .filter(pl.col("metric") == pl.col("kind").replace_strict(PRIMARY, default=None))
        .filter(pl.col("value").is_finite())
        .with_columns(p=pl.col("dataset").replace_strict(ps, return_dtype=pl.Float64))
        .group_by("architecture", "p", "seed", "metric")
        .agg(pl.col("value").mean())  # mean over tasks, per seed
        .group_by("architecture", "p", "metric")
        .agg(mean=pl.col("value").mean(), std=pl.col("value").std())
        .select("architecture", "p", "mean", "std", "metric")
        .sort("architecture", "p")
    )


# --- rendering -------------------------------------------------------------------------------------------
def _pm(mean: float | None, std: float | None, fmt: str = ".4f", signed: bool = False) -> str:
    if mean is None:
        return "—"
    text = f"{mean:+{fmt}}" if signed else f"{mean:{fmt}}"
    return f"{text} ± {std:{fmt}}" if std is not None else text


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*[]<>|"} | {"\n": " ", "\r": " "})


def _md(text: Any) -> str:
    """Text from a spec or a dataset (description, options, task names) as inert markdown: no links, HTML,
    emphasis or table cells can be injected."""
    return str(text).translate(_MD_SPECIAL)


def _opts(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items()))


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
        .select("architecture", "target", "seed", "wandb_url")
        .unique()
        .sort("architecture", "target", "seed")
    )
    links: dict[str, list[str]] = {}
    for r in runs.iter_rows(named=True):
        label = f"{r['target']} s{r['seed']}" if r["architecture"] == BASELINE else f"s{r['seed']}"
        links.setdefault(r["architecture"], []).append(f"[{label}]({r['wandb_url']})")
    return {a: " ".join(v) for a, v in links.items()}


def render(rows: pl.DataFrame, meta: dict[str, Any], plots: dict[str, list[tuple[str, str]]] | None = None) -> str:
    """The markdown leaderboard. ``plots`` maps a dataset label (or "" for study-wide plots) to
    (caption, relative path) pairs to link."""
    plots = plots or {}
    name = meta["study"]
    b = meta["budget"]
    prov = provenance(rows)
    archs = arch_summary(rows)
    tasks = with_gains(task_summary(rows))
    seeds = meta.get("seeds", [])
    sampler = meta.get("sampler", {})
    pruner = meta.get("pruner", {})
    timeout = f", at most {b['timeout']:g} s per architecture" if b.get("timeout") else ""
    lines = [
        f"# Leaderboard: {name}",
        "",
        *([_md(meta["description"]), ""] if meta.get("description") else []),
        f"- command: `bench run --study {name}`",
        f"- date: {prov['date']}; git commit: {prov['commit']}",
        f"- hardware: {prov['hardware']}",
        f"- budget: {b['trials']} trials per architecture (single-task: per task){timeout}; at most "
        f"{b['max_epochs']} epochs, early-stopping patience {b['patience']}; sampler {sampler.get('kind', 'tpe')} "
        f"(seed {sampler.get('seed', 0)}), pruner {pruner.get('kind', 'median')}",
        f"- tuning objective: {meta.get('objective', 'mean')} (validation); final: best configuration retrained "
        f"with {len(seeds)} seeds, test split evaluated once per seed",
        "",
    ]

    overall = overall_ranking(archs)
    labels = list(meta.get("datasets", {})) or sorted(archs["dataset"].unique().to_list())
    if len(labels) > 1 and overall.height:
        ranks = {(r["dataset"], r["architecture"]): r["rank"] for r in archs.iter_rows(named=True)}
        table = [
            [r["architecture"], "—" if r["mean_rank"] is None else f"{r['mean_rank']:.2f}",
             _pm(r["mean_delta_m"], None, ".2f", signed=True) + ("%" if r["mean_delta_m"] is not None else ""),
             *[ranks.get((d, r["architecture"])) or "—" for d in labels]]
            for r in overall.iter_rows(named=True)
        ]
        lines += ["## Overall ranking", "", tabulate(table, headers=["architecture", "mean rank", "mean Δm",
                                                                    *labels], tablefmt="github",
                                                            disable_numparse=True), ""]

    for label in labels:
        info = meta.get("datasets", {}).get(label, {})
        d_archs = archs.filter(pl.col("dataset") == label)
        d_tasks = tasks.filter(pl.col("dataset") == label)
        desc = _md(info.get("name", label) + (f" ({_opts(info['options'])})" if info.get("options") else ""))
        lines += [f"## {label}", "", f"Dataset: {desc}.", ""]
        if not d_archs.height:
            lines += ["No final results yet.", ""]
            continue
        task_meta = d_tasks.select("task", "metric").unique().sort("task").rows()
        by = {(r["architecture"], r["task"]): r for r in d_tasks.iter_rows(named=True)}
        headers = ["rank", "architecture", *[_md(f"{t} {m}") for t, m in task_meta],
                   *[_md(f"gain {t}") for t, _ in task_meta],
                   "Δm", "seesaw", "params", "trials c/p/f", "s/trial"]
        table = []
        for r in d_archs.iter_rows(named=True):
            a = r["architecture"]
            cells = [_pm(by[(a, t)]["mean"], by[(a, t)]["std"]) if (a, t) in by else "—" for t, _ in task_meta]
            gains = [_pm(by[(a, t)]["gain"], by[(a, t)]["gain_se"], signed=True)
                     if (a, t) in by and by[(a, t)]["gain"] is not None else "—" for t, _ in task_meta]
            trials = "—" if r["complete"] is None else f"{r['complete']}/{r['pruned']}/{r['failed']}"
            table.append([
                r["rank"] or "—", a, *cells, *gains,
                "—" if r["delta_m"] is None else f"{r['delta_m']:+.2f}%",
                "yes" if r["seesaw"] else "", "—" if r["n_params"] is None else f"{r['n_params']:,}",
                trials, "—" if r["seconds_per_trial"] is None else f"{r['seconds_per_trial']:.1f}",
            ])
        links = wandb_links(rows, label)
        if links:  # runs tracked online: link each architecture's final runs
            headers.append("W&B runs")
            for row, r in zip(table, d_archs.iter_rows(named=True)):
                row.append(links.get(r["architecture"], "—"))
        lines += [tabulate(table, headers=headers, tablefmt="github", disable_numparse=True), ""]
        for caption, path in plots.get(label, []):
            lines.append(f"![{caption}]({path})")
        if plots.get(label):
            lines.append("")
        lines += repeats.section(rows, label, plots.get(f"repeats:{label}"))  # nothing without repeat runs
    for caption, path in plots.get("", []):
        lines += [f"![{caption}]({path})", ""]
    lines += [
        "Metrics: test split, primary metric per task kind (binary: AUC, regression: MSE, multi-class: accuracy), "
        "mean ± std over seeds. gain: PLE paper's MTL gain against the single-task baseline (sign flipped for "
        "lower-is-better metrics, so positive is better) ± its standard error. Δm: mean relative improvement over "
        "single-task across tasks, same orientation. seesaw: gains of mixed signs. trials c/p/f: search trials "
        "complete/pruned/failed. s/trial: mean seconds per search trial.",
        "",
    ]
    return "\n".join(lines)


def plot(rows: pl.DataFrame, meta: dict[str, Any], out_dir: Path, prefix: str) -> dict[str, list[tuple[str, str]]]:
    """PNG plots next to the markdown: per-task metric with error bars, MTL gain per task, and (several
    correlations) performance against task correlation. Returns captions and paths relative to ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = with_gains(task_summary(rows))
    plot_dir = out_dir / prefix
    plot_dir.mkdir(parents=True, exist_ok=True)
    links: dict[str, list[tuple[str, str]]] = {}
    meta_png = {"Software": None}  # no version string: the files change only when the results do
    for label in sorted(tasks["dataset"].unique().to_list()):
        d = tasks.filter(pl.col("dataset") == label)
        archs = sorted(d["architecture"].unique().to_list())
        task_names = sorted(d["task"].unique().to_list())
        width = 0.8 / max(len(task_names), 1)
        for kind, value_col, err_col, title in (("metrics", "mean", "std", "test metric (mean ± std over seeds)"),
                                                ("gain", "gain", "gain_se", "MTL gain vs single-task (± s.e.)")):
            fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(archs)), 3.6))
            for j, task in enumerate(task_names):
                sub = {r["architecture"]: r for r in d.filter(pl.col("task") == task).iter_rows(named=True)}
                xs = [i + (j - (len(task_names) - 1) / 2) * width for i in range(len(archs))]
                ys = [(sub.get(a) or {}).get(value_col) for a in archs]
                es = [(sub.get(a) or {}).get(err_col) or 0.0 for a in archs]
                metric = next(iter(sub.values()))["metric"] if sub else ""
                ax.bar(xs, [y if y is not None else 0.0 for y in ys], width, yerr=es, capsize=3,
                       label=f"{task} ({metric})")
            if kind == "gain":
                ax.axhline(0.0, color="black", linewidth=0.8)
            ax.set_xticks(range(len(archs)), archs, rotation=20)
            ax.set_title(f"{label}: {title}")
            ax.legend(fontsize=8)
            fig.tight_layout()
            fname = f"{label}-{kind}.png"
            fig.savefig(plot_dir / fname, dpi=100, metadata=meta_png)
            plt.close(fig)
            links.setdefault(label, []).append((f"{label}: {title}", f"{prefix}/{fname}"))
    corr = correlation_summary(rows, meta)
    if corr.height:
        corr = corr.filter(pl.col("metric") == corr["metric"].mode().sort()[0])  # one metric on the y axis
        fig, ax = plt.subplots(figsize=(6, 4))
        for arch in sorted(corr["architecture"].unique().to_list()):
            sub = corr.filter(pl.col("architecture") == arch)
            ax.errorbar(sub["p"].to_list(), sub["mean"].to_list(), yerr=[s or 0.0 for s in sub["std"].to_list()],
                        marker="o", capsize=3, label=arch)
        ax.set_xlabel("task correlation p")
        ax.set_ylabel(f"test {corr['metric'][0]} (mean over tasks)")
        ax.set_title("performance against task correlation")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(plot_dir / "correlation.png", dpi=100, metadata=meta_png)
        plt.close(fig)
        links[""] = [("performance against task correlation", f"{prefix}/correlation.png")]
    links.update(repeats.plot(rows, plot_dir, prefix))  # histograms of repeated runs (key "repeats:<label>")
    return links


def build(root: Path, out_dir: Path, *, with_plots: bool = True) -> tuple[Path, str]:
    """Rebuild ``out_dir/<study>.md`` (and plots in ``out_dir/<study>/``) from the store at ``root``."""
    from . import store

    rows = store.read(root)
    meta = store.read_meta(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    links = plot(rows, meta, out_dir, meta["study"]) if with_plots and rows.height else {}
    text = render(rows, meta, links)
    path = out_dir / f"{meta['study']}.md"
    path.write_text(text)
    return path, text

