"""The final stage trained as one population gives the rows of the per-seed path, with the per-seed hooks, and
resumes per seed; ``--no-population`` / ``[final] population = false`` falls back to one fit per seed."""

from __future__ import annotations

import math

import polars as pl
import pytest

from bench import datasets
from bench.cli import main
from bench.results import store
from bench.spec.hooks import Hooks
from bench.spec.study import load_study
from bench.study.final import final_stage, population_final_stage
from bench.study.run import run_study
from bench.training.bootstrap import DRAWS

RTOL = 1e-4

SPEC = """
name = "finalpop"
architectures = ["single_task", "mmoe"]
seeds = {seeds}

[budget]
trials = 1
max_epochs = 2
patience = 2

[[datasets]]
name = "synthetic"
label = "syn"
options = {{ n_samples = 240, d = 6, p = 0.5 }}

[search.all]
batch_size = [48]
expert_units = [8]
tower_units = [8]
n_experts = 2
dropout = 0.2   # each seed's masks and top-k gate noise (gate_top_k is searched) come from that seed alone: the
                # two paths draw the same ones on a CPU
"""

CONFIG = {"batch_size": 48, "expert_units": 8, "tower_units": 8, "n_experts": 2, "max_epochs": 2, "patience": 2,
          "lr": 3e-3, "seed": 0, "objective": "mean"}


def close(a: float, b: float) -> bool:
    return (math.isinf(a) and a == b) or math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-6)


def recorder() -> tuple[Hooks, list[tuple]]:
    calls: list[tuple] = []

    def start(unit, seed, config):
        calls.append(("start", seed, config["seed"]))

    def end(unit, seed, config, rows, record):
        assert {r["seed"] for r in rows} == {seed} and record["history"] and record["best_epoch"] is not None
        calls.append(("end", seed, len(rows)))
        for r in rows:  # as the W&B tracker does: the rows it is given are the ones stored
            r["wandb_run"] = f"run-{seed}"

    return Hooks(final_start=[start], final_end=[end]), calls


@pytest.mark.parametrize("dropout", [0.0, 0.25])
def test_population_rows_equal_per_seed_rows(dropout):
    data = datasets.load("synthetic", n_samples=240, d=6, p=0.5)
    hooks, calls = recorder()
    config = {**CONFIG, "dropout": dropout}
    pop, pop_errors = population_final_stage(data, "mmoe", config, [1, 2, 3], accelerator="cpu", hooks=hooks)
    seq, seq_errors = final_stage(data, "mmoe", config, [1, 2, 3], accelerator="cpu")
    # the test-set resamples (store column draw): per seed and task, the primary metric on DRAWS resamples of the
    # test rows, the same rows for both paths (their predictions agree, so do the resampled metrics)
    pop_draws, seq_draws = ([r for r in rows if r.get("draw") is not None] for rows in (pop, seq))
    assert len(pop_draws) == len(seq_draws) == 3 * 2 * DRAWS
    assert {(r["split"], r["metric"]) for r in pop_draws} == {("test", "mse")}
    by_draw = {(r["seed"], r["task"], r["draw"]): r["value"] for r in seq_draws}
    assert all(close(r["value"], by_draw[(r["seed"], r["task"], r["draw"])]) for r in pop_draws)
    # the learning curves (store kind "curve", after the hooks too): per seed and epoch the training loss, the
    # validation objective and metrics, equal on both paths
    pop_curves, seq_curves = ({(r["seed"], r["split"], r["task"], r["metric"], r["epoch"]): r["value"]
                               for r in rows if r.get("kind") == store.CURVE} for rows in (pop, seq))
    assert pop_curves.keys() == seq_curves.keys() and len(pop_curves) >= 3 * 2
    assert all(close(v, seq_curves[k]) for k, v in pop_curves.items())
    pop, seq = ([r for r in rows if r.get("draw") is None and r.get("kind") != store.CURVE] for rows in (pop, seq))
    # every seed started before training, every seed ended after it with its own rows (the hooks never see draws)
    n = len(pop) // 3
    assert calls == [("start", s, s) for s in (1, 2, 3)] + [("end", s, n) for s in (1, 2, 3)]
    assert pop_errors == seq_errors == {}
    # seeds x splits x tasks x metrics, and per seed MMoE's diagnostics (2 experts): 2 tasks x 2 gate weights,
    # 2 tasks x 3 gate statistics, 2 experts' dead units
    assert sum(r["kind"] != "diagnostic" for r in pop) == 3 * 2 * 2 * 2
    assert len(pop) == len(seq) == 3 * 2 * 2 * 2 + 3 * (4 + 6 + 2)
    key = lambda r: (r["seed"], r["split"], r["task"], r["metric"], *(  # noqa: E731
        -1 if r.get(c) is None else r[c] for c in ("level", "expert")))
    for p, s in zip(sorted(pop, key=key), sorted(seq, key=key), strict=True):
        assert p.keys() - {"wandb_run"} == s.keys()
        for col in ("seed", "split", "task", "kind", "metric", "n_params", "epochs", "config_hash", "config",
                    "status"):
            assert p[col] == s[col], col
        assert close(p["value"], s["value"]), (key(p), p["value"], s["value"])
        assert p["wandb_run"] == f"run-{p['seed']}"


@pytest.mark.parametrize("gates", [{}, {"n_experts": 3, "gate_top_k": 2, "gate_noise": 1.0}], ids=["dense", "top-k"])
def test_a_seed_does_not_depend_on_the_seeds_sharing_its_population(gates):
    """With dropout and with noisy top-k gates, seed 3's rows are the same trained alone, with seeds 1 and 2, or
    after a resume that adds seeds 4 and 5: its masks and its gate noise come from its own seed (issue 18, case 6;
    issue 27, case 3)."""
    data = datasets.load("synthetic", n_samples=240, d=6, p=0.5)
    config = {**CONFIG, "dropout": 0.3, **gates}

    def seed3(seeds):
        rows, errors = population_final_stage(data, "mmoe", config, seeds, accelerator="cpu")
        assert errors == {}
        return sorted((r["split"], r["task"], r["metric"], r["value"], r["epochs"]) for r in rows if r["seed"] == 3)

    alone = seed3([3])
    assert seed3([1, 2, 3]) == alone and seed3([3, 4, 5]) == alone


def write_spec(tmp_path, seeds: int, population: bool = True) -> str:
    path = tmp_path / "finalpop.toml"
    path.write_text(SPEC.format(seeds=seeds) + ("" if population else "\n[final]\npopulation = false\n"))
    return str(path)


def final_rows(root) -> pl.DataFrame:
    return store.read(root).filter(pl.col("stage") == "final")


def test_study_population_and_sequential_store_the_same_values(tmp_path, capsys):
    spec = write_spec(tmp_path, seeds=2)
    pop_root = run_study(load_study(spec), tmp_path / "pop", accelerator="cpu", out=lambda _: None)
    # the sequential path from the command line
    assert main(["run", "--study", spec, "--runs-dir", str(tmp_path / "seq"), "--output", str(tmp_path / "lb"),
                 "--accelerator", "cpu", "--no-population", "--no-plots", "--wandb", "disabled"]) == 0
    capsys.readouterr()
    seq_root = tmp_path / "seq" / "finalpop"
    a, b = final_rows(pop_root), final_rows(seq_root)
    # single_task: one unit per task (y1, y2), mmoe: one unit; 2 seeds; val and test; 2 tasks or 1 task x 2 metrics;
    # and MMoE's diagnostics per seed (2 tasks x 2 gate weights, 2 tasks x 3 gate statistics, 2 experts);
    # and per seed and task (mmoe 2, each single-task unit 1) the test MSE on DRAWS test-set resamples
    assert a.height == b.height == 2 * 2 * (2 * 2 + 2 * 2) + 2 * (4 + 6 + 2) + 2 * (2 + 1 + 1) * DRAWS
    assert a.columns == b.columns == list(store.SCHEMA)
    # one file per (unit, seed)
    files = sorted(p.relative_to(pop_root) for p in (pop_root / "results" / "final").glob("**/*.parquet"))
    assert [str(f) for f in files] == [f"results/final/syn/{u}/seed-{s}.parquet"
                                       for u in ("mmoe", "single_task@y1", "single_task@y2") for s in (1, 2)]
    same = ["study", "dataset", "architecture", "target", "stage", "trial", "seed", "status", "split", "task",
            "kind", "metric", "n_params", "epochs", "config_hash", "config", "hardware", "git_commit"]
    assert a.select(same).equals(b.select(same))
    for x, y in zip(a["value"].to_list(), b["value"].to_list(), strict=True):
        assert close(x, y), (x, y)


def test_population_final_resumes_per_seed_with_per_seed_hooks(tmp_path):
    runs = tmp_path / "runs"
    run_study(load_study(write_spec(tmp_path, seeds=1)), runs, accelerator="cpu", out=lambda _: None)
    root = runs / "finalpop"
    before = {p: p.stat().st_mtime_ns for p in (root / "results" / "final").glob("**/*.parquet")}
    assert len(before) == 3  # 3 units x seed 1

    hooks, calls = recorder()
    lines: list[str] = []
    run_study(load_study(write_spec(tmp_path, seeds=3)), runs, accelerator="cpu", hooks=hooks, out=lines.append)
    # only the missing seeds 2 and 3 of each unit were trained, per unit as one population of two
    starts = [c for c in calls if c[0] == "start"]
    assert starts == [("start", 2, 2), ("start", 3, 3)] * 3
    assert [c[0] for c in calls] == ["start", "start", "end", "end"] * 3
    assert {p: p.stat().st_mtime_ns for p in before} == before  # seed 1 untouched
    assert sum("final seed" in line for line in lines) == 6
    rows = final_rows(root)
    assert sorted(rows["seed"].unique().to_list()) == [1, 2, 3]
    assert set(rows.filter(pl.col("seed") > 1)["wandb_run"].to_list()) == {"run-2", "run-3"}
    assert rows.filter(pl.col("seed") == 1)["wandb_run"].null_count() == rows.filter(pl.col("seed") == 1).height

    calls.clear()
    run_study(load_study(write_spec(tmp_path, seeds=3)), runs, accelerator="cpu", hooks=hooks, out=lambda _: None)
    assert calls == []  # nothing missing: nothing trained


def test_a_diverging_member_fails_alone_in_both_paths():
    """A seed whose training loss turns non-finite is a failure with a reason and no rows, in the population as
    in the sequential path, and the other seeds are stored as usual. lr 1e4 diverges with seed 2 only here:
    the members differ in their learning rate, which a population allows."""
    from bench.training.fit import fit
    from bench.training.population import train_population

    data = datasets.load("synthetic", n_samples=240, d=6, p=0.5)
    configs = [{**CONFIG, "seed": 1}, {**CONFIG, "seed": 2, "lr": 1e30}, {**CONFIG, "seed": 3}]
    results = train_population("mmoe", data, configs, evaluate_test=True, device="cpu")
    assert results[0].error is None and results[2].error is None
    assert "non-finite training loss" in results[1].error and results[1].test_metrics is None
    assert all(math.isfinite(v) for r in (results[0], results[2]) for m in r.test_metrics.values() for v in m.values())
    with pytest.raises(FloatingPointError, match="non-finite training loss"):
        fit("mmoe", data, configs[1], evaluate_test=True, accelerator="cpu")
    # the final stage: seed 2's configuration diverges, so seed 2 is reported and not stored
    bad = {**CONFIG, "lr": 1e30}
    for train in (population_final_stage, final_stage):
        rows, errors = train(data, "mmoe", bad, [2], accelerator="cpu")
        assert rows == [] and list(errors) == [2] and "non-finite training loss" in errors[2]
