"""Paper protocols a study can state: a tuning objective per dataset (the MMoE paper tunes on the main task's
validation AUC: income for census group 1, education for group 2), and a grid search over a small space with
fixed architecture options (the MMoE paper's synthetic experiment: learning rate from {1e-4, 1e-3, 1e-2})."""

from __future__ import annotations

import polars as pl
import pytest

from bench.cli import main
from bench.errors import UserError
from bench.results import store
from bench.spec.study import parse_study

CENSUS_SHAPED = """
name = "two-groups"
architectures = ["single_task", "mmoe"]
objective = "mean"
seeds = 1

[budget]
trials = 2
max_epochs = 2
patience = 1

[pruner]
kind = "none"

[[datasets]]
name = "table"
label = "group1"
objective = "income"
options = {{ path = "{path}", labels = {{ income = "binary", married = "binary", educated = "binary" }} }}
tasks = ["income", "married"]

[[datasets]]
name = "table"
label = "group2"
objective = "educated"
options = {{ path = "{path}", labels = {{ income = "binary", married = "binary", educated = "binary" }} }}
tasks = ["educated", "married"]

[search.all]
batch_size = [64]
expert_units = [8]
tower_units = [8]
n_experts = 2
"""


def census_shaped_csv(path, n=400):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3))
    frame = pl.DataFrame({
        "a": x[:, 0], "b": x[:, 1], "c": x[:, 2],
        "income": (x[:, 0] + 0.5 * rng.normal(size=n) > 0.8).astype(int),
        "married": (x[:, 1] + rng.normal(size=n) > 0).astype(int),
        "educated": (x[:, 2] - x[:, 0] + rng.normal(size=n) > 0).astype(int),
    })
    frame.write_csv(path)
    return path


def test_objective_per_dataset_tunes_each_on_its_main_task(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "two-groups.toml"
    spec.write_text(CENSUS_SHAPED.format(path=census_shaped_csv(tmp_path / "census.csv")))
    assert main(["run", "--study", str(spec), "--accelerator", "cpu", "--wandb", "disabled", "--no-plots"]) == 0
    rows = store.read(tmp_path / "runs" / "two-groups")
    search = rows.filter((pl.col("stage") == "search") & (pl.col("architecture") == "mmoe"))
    for label, main_task in (("group1", "income"), ("group2", "educated")):
        d = search.filter(pl.col("dataset") == label)
        assert set(d["target"]) == {main_task}
        for trial in d["trial"].unique():
            t = d.filter(pl.col("trial") == trial)
            objective = t.filter(pl.col("metric") == "objective")["value"][0]
            main_auc = t.filter((pl.col("task") == main_task) & (pl.col("metric") == "auc"))["value"][0]
            other = t.filter((pl.col("task") == "married") & (pl.col("metric") == "auc"))["value"][0]
            assert objective == pytest.approx(main_auc)  # tuned on the main task's validation AUC ...
            assert objective != pytest.approx((main_auc + other) / 2)  # ... not on the mean of both
    meta = store.read_meta(tmp_path / "runs" / "two-groups")
    assert {k: v["objective"] for k, v in meta["datasets"].items()} == {"group1": "income", "group2": "educated"}
    # the embedded journal opens in plain Optuna (and optuna-dashboard) with the objectives named
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "runs" / "two-groups" / "optuna.journal")))
    names = {name: optuna.load_study(study_name=name, storage=storage).metric_names
             for name in optuna.get_all_study_names(storage)}
    assert names == {"group1/mmoe": ["val auc (income)"], "group2/mmoe": ["val auc (educated)"],
                     "group1/single_task/income": ["val auc (income)"],
                     "group1/single_task/married": ["val auc (married)"],
                     "group2/single_task/educated": ["val auc (educated)"],
                     "group2/single_task/married": ["val auc (married)"]}
    assert meta["data"]["group1"]["rows"] == {"train": 320, "val": 40, "test": 40}


def test_unknown_dataset_objective_is_one_line(tmp_path):
    raw = {"datasets": [{"name": "synthetic", "objective": "income"}], "architectures": ["mmoe"]}
    study = parse_study(raw)
    assert study.objective_for("synthetic") == "income"
    from bench.study.units import load_data

    with pytest.raises(UserError, match=r"unknown objective 'income' for dataset synthetic; valid choices: mean, y1"):
        load_data(study)


GRID = {
    "architectures": ["shared_bottom", "mmoe"],
    "budget": {"trials": 3, "max_epochs": 2, "patience": 1},
    "sampler": {"kind": "grid"},
    "pruner": {"kind": "none"},
    "datasets": [{"name": "synthetic", "options": {"n_samples": 300, "d": 8}}],
    "search": {
        "all": {"lr": [1e-4, 1e-3, 1e-2], "batch_size": 64, "weight_decay": 0.0, "dropout": 0.0,
                "tower_units": 8, "tower_layers": 1, "expert_units": 16, "expert_layers": 1},
        "mmoe": {"n_experts": 8, "gate_top_k": 0},  # a grid fixes every option it does not list
    },
}


def test_grid_search_visits_every_point_once_with_fixed_options(tmp_path):
    from bench.study.run import run_study

    study = parse_study(GRID)
    root = run_study(study, tmp_path / "runs", accelerator="cpu", out=lambda line: None)
    rows = store.read(root).filter((pl.col("stage") == "search") & (pl.col("metric") == "objective"))
    import json

    for arch in ("shared_bottom", "mmoe"):
        configs = [json.loads(c) for c in rows.filter(pl.col("architecture") == arch)["config"]]
        assert sorted(c["lr"] for c in configs) == [1e-4, 1e-3, 1e-2]
        assert {c["expert_units"] for c in configs} == {16} and {c["tower_units"] for c in configs} == {8}
        if arch == "mmoe":
            assert {c["n_experts"] for c in configs} == {8}


@pytest.mark.parametrize("change, message", [
    ({"budget": {"trials": 4}}, r"sampler grid: the grid of shared_bottom has 3 points but budget.trials = 4"),
    ({"search": {"all": {"lr": {"low": 1e-4, "high": 1e-2}}}}, r"search.shared_bottom.lr: sampler grid needs a list"),
    ({"search": {"mmoe": {"n_expertz": 8}}}, r"unknown search key for mmoe 'n_expertz'; valid choices: "),
])
def test_grid_spec_mistakes_are_one_line(change, message):
    raw = {**GRID, **{k: ({**GRID[k], **v} if isinstance(v, dict) and k != "search" else v) for k, v in change.items()}}
    if "search" in change:
        raw["search"] = {**GRID["search"], **{k: {**GRID["search"].get(k, {}), **v}
                                               for k, v in change["search"].items()}}
    with pytest.raises(UserError, match=message):
        parse_study(raw)


def test_an_interrupted_grid_trial_is_retried_at_its_own_point(tmp_path):
    """A retry keeps the grid point of the trial it retries, so the grid is still covered exactly once."""
    import optuna

    from bench.coordination.trials import fail_and_retry, grid_sampler

    space = {"lr": [1e-4, 1e-3, 1e-2]}
    opt = optuna.create_study(direction="maximize")

    def ask():
        opt.sampler = grid_sampler(space, seed=0)
        trial = opt.ask()
        return trial, trial.suggest_categorical("lr", space["lr"])

    trial, first = ask()
    assert fail_and_retry(opt, opt._storage.get_trial(trial._trial_id), "interrupted by SIGTERM")
    seen = []
    for _ in range(3):
        trial, lr = ask()
        opt.tell(trial, 0.0)
        seen.append(lr)
    assert seen[0] == first  # the retry runs its own point ...
    assert sorted(seen) == space["lr"]  # ... and every point is evaluated once,
    grid = grid_sampler(space, seed=0)._all_grids  # the order the sampler shuffled the grid into
    done = [t for t in opt.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    # each as the grid point the sampler recorded for it (none taken for another's point)
    assert [grid[t.system_attrs["grid_id"]] for t in done] == [(t.params["lr"],) for t in done]


PUBLISHED = {
    "source": "Ma et al., KDD 2018, Table 2", "dataset": "synthetic", "metric": "test AUC, mean over 400 runs",
    "values": {"MMoE": {"income": 0.9359, "never_married": 0.9927}, "Single-Task": {"income": 0.9337}},
    "notes": "their tuner, 400 reruns",
}


def test_published_numbers_are_shown_apart(tmp_path):
    from bench.results import leaderboard

    study = parse_study({"datasets": [{"name": "synthetic"}], "published": [PUBLISHED]})
    meta = study.meta()
    assert meta["published"][0]["values"]["MMoE"]["income"] == 0.9359
    assert study.spec_hash == parse_study({"datasets": [{"name": "synthetic"}]}).spec_hash  # not results
    lines = leaderboard.published(meta, "synthetic")
    assert lines[0].startswith("Published numbers, for comparison only (not produced by this harness): Ma et al.")
    table = [[c.strip() for c in row.strip("|").split("|")] for row in lines[2].splitlines()]
    assert table[0] == ["architecture", "income", "never_married"]
    assert table[2:] == [["MMoE", "0.9359", "0.9927"], ["Single-Task", "0.9337", "—"]]
    assert "Protocol differences: their tuner, 400 reruns" in lines
    # what the comparison can and cannot support, under every published table
    reading = next(ln for ln in lines if ln.startswith("How to read this:"))
    assert "not which model is better" in reading and "does not make the two equivalent" in reading
    assert leaderboard.published(meta, "other") == []


@pytest.mark.parametrize("change, message", [
    ({"dataset": "census"}, r"unknown dataset label in published\[0\] 'census'; valid choices: synthetic"),
    ({"values": {"MMoE": {"income": "high"}}}, r"published\[0\].values.MMoE must be a table of task = finite"),
    ({"colour": "red"}, r"unknown key in published\[0\] 'colour'"),
])
def test_published_mistakes_are_one_line(change, message):
    with pytest.raises(UserError, match=message):
        parse_study({"datasets": [{"name": "synthetic"}], "published": [{**PUBLISHED, **change}]})


def test_tiny_reproduction_spec_end_to_end(tmp_path, monkeypatch):
    """studies/mmoe-synthetic.toml made tiny (fewer rows, epochs, seeds, repeats and replicates; nothing else
    changed): fixed sizes, a learning-rate grid, no single-task baseline, three correlations, repeated runs, data
    draws; the leaderboard has the correlation plot, the trainability sections and the learning curves."""
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    text = (Path(__file__).resolve().parents[1] / "studies" / "mmoe-synthetic.toml").read_text()
    for old, new in (('name = "mmoe-synthetic"', 'name = "tiny-repro"'), ("seeds = 5", "seeds = 2"),
                     ("repeats = 10", "repeats = 3"), ("replicates = 10", "replicates = 2"),
                     ("max_epochs = 60", "max_epochs = 2"),
                     ("n_samples = 10000, d = 100", "n_samples = 300, d = 8")):
        assert old in text
        text = text.replace(old, new)
    spec = tmp_path / "tiny-repro.toml"
    spec.write_text(text)
    assert main(["run", "--study", str(spec), "--accelerator", "cpu", "--wandb", "disabled"]) == 0
    markdown = (tmp_path / "results" / "tiny-repro.md").read_text()
    assert "![performance against task correlation](tiny-repro/correlation.png)" in markdown
    assert all(f"### p{p}: repeated runs" in markdown for p in ("0.5", "0.9", "1.0"))
    assert "no final results" not in markdown  # single-task is not an architecture of this study
    rows = store.read(tmp_path / "runs" / "tiny-repro")
    assert rows.filter(pl.col("stage") == "repeat")["seed"].unique().sort().to_list() == [1001, 1002, 1003]
    search = rows.filter(pl.col("stage") == "search").with_columns(pl.col("replicate").fill_null(1))
    assert search.group_by("replicate").agg(pl.col("trial").unique().sort())["trial"].to_list() == [[0, 1, 2]] * 2
    # the grid, once per replicate; every run's learning curves stored
    assert store.read_curves(tmp_path / "runs" / "tiny-repro")["replicate"].unique().sort().to_list() == [1, 2]
    assert "## Learning curves" in markdown


def test_objective_names():
    from bench import datasets
    from bench.study.search import objective_name
    from bench.study.units import Unit

    data = datasets.load("synthetic", n_samples=100, d=4)
    assert objective_name(Unit("s", "mmoe", "mean"), data) == "val mean of -mse (y1), -mse (y2)"
    assert objective_name(Unit("s", "mmoe", "y2"), data) == "-val mse (y2)"
    assert objective_name(Unit("s", "single_task", "y1"), data.select_tasks(["y1"])) == "-val mse (y1)"


@pytest.mark.parametrize("search, message", [
    ({"batch_size": 0}, r"search.cgc.batch_size: batch_size must be >= 1, got 0"),
    ({"batch_size": [0, 64]}, r"search.cgc.batch_size: batch_size must be >= 1, got 0"),
    ({"lr": {"low": -1.0, "high": 1.0}}, r"search.cgc.lr: lr must be a positive number, got -1.0"),
    ({"optimizer": "sgd"}, r"search.cgc.optimizer: unknown optimizer 'sgd'; valid choices: adam, adamw"),
])
def test_training_settings_in_a_search_space_are_checked_with_the_spec(search, message):
    """A value the training would refuse is refused with the spec, before anything is written (not at the
    first trial, after which the corrected spec would be refused as a change)."""
    with pytest.raises(UserError, match=message):
        parse_study({"datasets": [{"name": "synthetic"}], "search": {"all": search}})


def test_the_stated_command_is_kept_across_rebuilds_and_reruns(tmp_path):
    from bench.results import leaderboard
    from bench.study.run import run_study

    study = parse_study({**GRID, "architectures": ["mmoe"]})
    root = run_study(study, tmp_path / "runs", accelerator="cpu", out=lambda line: None)
    _, text = leaderboard.build(root, tmp_path / "lb", with_plots=False)
    assert "- command: `bench run --study study`; wall time" in text
    command = "bench run --study study --jobs 2 --wandb offline"
    _, text = leaderboard.build(root, tmp_path / "lb", with_plots=False, command=command)
    assert f"- command: `{command}`; wall time" in text
    run_study(study, tmp_path / "runs", accelerator="cpu", out=lambda line: None)  # a rerun: nothing to train
    _, text = leaderboard.build(root, tmp_path / "lb", with_plots=False)
    assert f"- command: `{command}`; wall time" in text


def test_leaderboard_command_option_from_the_cli(tmp_path, monkeypatch, capsys):
    from bench.study.run import run_study

    monkeypatch.chdir(tmp_path)
    run_study(parse_study({**GRID, "architectures": ["mmoe"]}), tmp_path / "runs", accelerator="cpu",
              out=lambda line: None)
    assert main(["leaderboard", "--study", "study", "--quiet", "--no-plots", "--command", "bench run --study x"]) == 0
    assert "- command: `bench run --study x`; wall time" in (tmp_path / "results" / "study.md").read_text()


def embedded_table(path, n=240):
    """A small table with one embedded categorical field (30 levels, encoding="embedding") and one binary task."""
    import random

    rng = random.Random(0)
    rows = [(rng.gauss(0, 1), f"u{rng.randrange(30)}") for _ in range(n)]
    pl.DataFrame({"x": [r[0] for r in rows], "user": [r[1] for r in rows],
                  "y": [int(r[0] + (int(r[1][1:]) % 3) > 0.5) for r in rows]}).write_csv(path)
    return {"name": "table", "options": {"path": str(path), "labels": {"y": "binary"}, "encoding": "embedding",
                                         "min_count": 1}}


def test_grid_search_on_embedded_fields_searches_embedding_dim(tmp_path):
    import json

    from bench.study.run import run_study

    raw = {**GRID, "architectures": ["mmoe"], "datasets": [embedded_table(tmp_path / "t.csv")],
           "search": {"all": {**GRID["search"]["all"], "lr": 1e-3}, "mmoe": GRID["search"]["mmoe"]}}
    # the default embedding_dim choices {4, 8, 16} make the grid 3 points: a budget of 1 is refused before training
    with pytest.raises(UserError, match=r"sampler grid: the grid of mmoe on dataset table has 3 points \(embedding_dim "
                                        r"searched over its default choices .*\) but budget.trials = 1"):
        run_study(parse_study({**raw, "budget": {**GRID["budget"], "trials": 1}}), tmp_path / "runs",
                  accelerator="cpu", out=lambda line: None)
    root = run_study(parse_study(raw), tmp_path / "runs", accelerator="cpu", out=lambda line: None)
    rows = store.read(root).filter((pl.col("stage") == "search") & (pl.col("metric") == "objective"))
    assert sorted(json.loads(c)["embedding_dim"] for c in rows["config"]) == [4, 8, 16]
    # the spec's own choices replace the default ones
    raw["search"]["all"]["embedding_dim"] = [2, 3]
    raw["budget"] = {**GRID["budget"], "trials": 2}
    root = run_study(parse_study({**raw, "name": "two"}), tmp_path / "runs", accelerator="cpu", out=lambda line: None)
    rows = store.read(root).filter((pl.col("stage") == "search") & (pl.col("metric") == "objective"))
    assert sorted(json.loads(c)["embedding_dim"] for c in rows["config"]) == [2, 3]
