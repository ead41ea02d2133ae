"""End to end through the CLI: a tiny study, its leaderboard checked against the stored rows, and a rerun that
adds nothing."""

from __future__ import annotations

import re
import statistics

import optuna
import polars as pl

from bench.cli import main
from bench.results import store
from bench.spec.metrics import PRIMARY
from bench.training.bootstrap import DRAWS

SPEC = """
name = "e2e"
architectures = ["single_task", "shared_bottom", "mmoe"]
seeds = 2

[budget]
trials = 2
max_epochs = 3
patience = 1

[pruner]
kind = "median"
n_startup_trials = 1

[[datasets]]
name = "synthetic"
label = "syn"
options = { n_samples = 300, d = 8, p = 0.5 }

[search.all]
batch_size = [64]
expert_units = [8, 16]
tower_units = [8]
n_experts = 2
"""


def table_rows(markdown: str, heading: str) -> tuple[list[str], list[list[str]]]:
    """Header and body cells of the first table under ``## heading``."""
    section = markdown.split(f"## {heading}\n", 1)[1].lstrip("\n")
    tables = [p for p in section.split("\n\n") if p.startswith("|")]  # after the verdict paragraph
    lines = tables[0].splitlines()  # the first table only (the gates table follows)
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    return cells[0], [c for c in cells[2:]]


def test_cli_study_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "e2e.toml").write_text(SPEC)
    assert main(["run", "--study", "e2e", "--accelerator", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "[syn | mmoe] trial 2/2" in out and "final seed 2 (2/2)" in out and "# Leaderboard: e2e" in out

    md_path = tmp_path / "results" / "e2e.md"
    markdown = md_path.read_text()
    root = tmp_path / "runs" / "e2e"
    rows = store.read(root)

    # columns and rows of the dataset's table
    header, body = table_rows(markdown, "syn")
    assert header == ["rank", "architecture", "y1 mse", "y2 mse", "gain y1", "gain y2", "Δm", "vs best", "seesaw",
                      "params", "trials c/p/f", "s/trial", "on front"]
    assert sorted(r[1] for r in body) == ["mmoe", "shared_bottom", "single_task"]
    by_arch = {r[1]: dict(zip(header, r, strict=True)) for r in body}

    # values recomputed from the stored rows with plain Python
    test = [r for r in rows.iter_rows(named=True)
            if r["stage"] == "final" and r["split"] == "test" and r["metric"] == PRIMARY.get(r["kind"])
            and r["draw"] is None]  # the runs' own metrics; the test-set resamples are rows with a draw
    draws = rows.filter(pl.col("draw").is_not_null())
    assert draws.group_by("architecture", "target", "seed", "task").len()["len"].unique().to_list() == [DRAWS]

    def values(arch, task):
        vals = [r["value"] for r in test if r["architecture"] == arch and r["task"] == task]
        assert len(vals) == 2  # two final seeds
        return vals

    deltas = {}
    for arch in by_arch:
        rel = []
        for task in ("y1", "y2"):
            vals = values(arch, task)
            m = statistics.mean(vals)
            # the mean, and a percentile bootstrap interval (seeds and test resamples) around it, inside [0, inf)
            cell = re.fullmatch(r"(\S+) \[(\S+), (\S+)\] n=2", by_arch[arch][f"{task} mse"])
            assert cell and cell[1] == f"{m:.4f}" and 0 <= float(cell[2]) <= m <= float(cell[3])
            base = statistics.mean(values("single_task", task))
            gain = -(m - base)  # MSE: lower is better, the sign is flipped
            rel.append(gain / base)
            if arch != "single_task":  # the gain, its paired bootstrap interval and its decision
                assert re.fullmatch(re.escape(f"{gain:+.4f} [") + r"\S+, \S+\] (better|worse|equivalent|inconclusive)",
                                    by_arch[arch][f"gain {task}"])
        deltas[arch] = 100 * sum(rel) / 2
        if arch == "single_task":
            assert by_arch[arch]["Δm"] == "0 (baseline)"  # 0 by definition, no interval
        else:
            assert by_arch[arch]["Δm"].startswith(f"{deltas[arch]:+.3f}% [")
    # ranked by Δm, 1 = best
    assert [r[1] for r in body] == sorted(deltas, key=lambda a: -deltas[a])
    assert [r[0] for r in body] == ["1", "2", "3"]
    assert by_arch["single_task"]["gain y1"] == "—"
    # trials: 2 per unit; single-task has one unit per task
    counts = {a: sum(int(x) for x in by_arch[a]["trials c/p/f"].split("/")) for a in by_arch}
    assert counts == {"single_task": 4, "shared_bottom": 2, "mmoe": 2}
    assert re.search(r"!\[syn: test metric .*\]\(e2e/syn-metrics\.png\)", markdown)
    assert (tmp_path / "results" / "e2e" / "syn-gain.png").stat().st_size > 0

    # the Pareto front of the mean test MSEs (lower is better on both tasks), recomputed
    means = {a: [statistics.mean(values(a, t)) for t in ("y1", "y2")] for a in by_arch}
    for a, m in means.items():
        dominated = any(all(o <= x for o, x in zip(other, m)) and other != m for b, other in means.items() if b != a)
        assert by_arch[a]["on front"] == ("" if dominated else "yes")
    assert "yes" in [by_arch[a]["on front"] for a in by_arch]
    # gates and experts: MMoE only (the one gated architecture), from its stored diagnostics
    gates = markdown.split("Gates and experts", 1)[1]
    gate_rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in gates.split("\n\n")[1].splitlines()[2:]]
    assert [r[0] for r in gate_rows] == ["mmoe"] and gate_rows[0][-1] == "2"
    diag = rows.filter((pl.col("kind") == "diagnostic") & (pl.col("metric") == "gate_entropy_norm"))
    per_seed = [statistics.mean(diag.filter(pl.col("seed") == s)["value"].to_list()) for s in (1, 2)]
    assert gate_rows[0][2].startswith(f"{statistics.mean(per_seed):.3f} [")
    for name in ("syn-pareto.png", "syn-gates.png"):
        assert (tmp_path / "results" / "e2e" / name).stat().st_size > 0
        assert f"(e2e/{name})" in markdown

    # a rerun adds no trial and no final run, and rebuilds byte-identical markdown
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(root / "optuna.journal")))
    n_trials = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(journal)}
    finals = {p: p.stat().st_mtime_ns for p in (root / "results" / "final").glob("**/*.parquet")}
    assert sum(n_trials.values()) == 8 and len(finals) == 4 * 2
    assert main(["run", "--study", "e2e", "--accelerator", "cpu"]) == 0
    out, err = capsys.readouterr()
    # nothing missing: one line says so, and neither progress nor the whole page is printed
    assert out == "" and err.strip().splitlines() == [
        "bench run: nothing is missing of study e2e: every search trial and final run is stored; its page is "
        f"{md_path.relative_to(tmp_path)} (publish it with `bench publish --study e2e`)"]
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(root / "optuna.journal")))
    assert {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(journal)} == n_trials
    assert {p: p.stat().st_mtime_ns for p in (root / "results" / "final").glob("**/*.parquet")} == finals
    assert md_path.read_text() == markdown
    assert main(["leaderboard", "--study", "e2e", "--quiet"]) == 0
    assert md_path.read_text() == markdown


def test_progress_lines_in_the_metric_orientation(tmp_path, monkeypatch, capsys):
    """Output that is not a terminal gets plain lines: each trial with its unit's count, the objective in the
    metric's own name and orientation (an MSE is printed as an MSE, not negated), and the study-wide count."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "e2e.toml").write_text(SPEC)
    assert main(["run", "--study", "e2e.toml", "--accelerator", "cpu", "--wandb", "disabled", "--no-plots"]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if "] trial " in ln]
    assert len(lines) == 8  # 2 trials x (mmoe, shared_bottom, single_task[y1], single_task[y2])
    pattern = re.compile(r"^\[syn \| (\S+)\] trial (\d)/2 (complete|pruned) +(val mean mse|val mse \(y[12]\)) "
                         r"(\d+\.\d+)  best (\d+\.\d+)  \d+\.\d s  \[(\d)/8 trials, 0/8 final runs, \d+ s elapsed"
                         r"(, about \d+ s left)?\]$")
    counts = []
    for line in lines:
        m = pattern.match(line)
        assert m, line
        arch, status, label, value, best, done = m.group(1, 3, 4, 5, 6, 7)
        assert label == ("val mean mse" if not arch.startswith("single_task") else f"val mse ({arch[-3:-1]})")
        if status == "complete":
            assert float(best) <= float(value)  # best: the lowest MSE so far (the value itself at worst)
        counts.append(int(done))
    assert counts == sorted(counts) and counts[-1] == 8
    # the final runs continue the same count: 4 units x 2 seeds, after all 8 trials
    finals = [ln for ln in out.splitlines() if "] final seed " in ln]
    runs = [int(re.search(r"\[8/8 trials, (\d)/8 final runs, ", ln).group(1)) for ln in finals]
    assert runs == list(range(1, 9)), finals
    assert finals[-1].endswith("elapsed]")  # nothing left: no estimate
    rows = store.read(tmp_path / "runs" / "e2e")
    objective = rows.filter((rows["stage"] == "search") & (rows["metric"] == "objective"))["value"]
    assert (objective < 0).all()  # stored as Optuna maximised it: -MSE; printed as the MSE itself
    # --quiet: nothing but where the leaderboard went
    assert main(["run", "--study", "e2e.toml", "--accelerator", "cpu", "--wandb", "disabled", "--no-plots",
                 "--quiet", "--output", "lb2"]) == 0
    assert capsys.readouterr().out == ""


def test_stored_work_changes_only_with_new_trials_or_runs(tmp_path):
    """A rerun is idle (one line, no W&B run) when the store's work is unchanged, whichever worker did any: the
    search files' rows and the final and repeated runs' files."""
    import os

    from bench.commands.run import stored_work

    root = tmp_path / "s"
    search = store.search_path(root, "syn", "mmoe", "mean")
    seed = store.stage_path(root, "final", "syn", "mmoe", "mean", 1)
    trial = {"study": "s", "dataset": "syn", "architecture": "mmoe", "target": "mean", "stage": "search", "task": "*"}
    store.write_atomic(store.frame([{**trial, "trial": 0}]), search)
    store.write_atomic(store.frame([{**trial, "stage": "final", "seed": 1}]), seed)
    before = stored_work(root)
    store.write_atomic(store.frame([{**trial, "trial": 0}]), search)  # the search re-exported: the same rows
    assert stored_work(root) == before
    store.write_atomic(store.frame([{**trial, "trial": 0}, {**trial, "trial": 1}]), search)  # one more trial
    assert stored_work(root) != before
    before = stored_work(root)
    os.utime(seed, ns=(0, 0))  # a final run retrained (its file rewritten)
    assert stored_work(root) != before
    before = stored_work(root)
    store.write_atomic(store.frame([{**trial, "stage": "final", "seed": 1, "replicate": 2}]),
                       store.stage_path(root, "final", "syn", "mmoe", "mean", 1, replicate=2))  # replicate 2's run
    assert stored_work(root) != before
