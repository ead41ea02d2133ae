"""Replicates (issue 25): the whole pipeline run R times, each with its own sampler streams and, where the data
allow it, its own data draw; every row tagged with its replicate; replicate 1 keeps the paths and Optuna study
names of a study without replicates, so older stores (null replicate) read and resume unchanged."""

from __future__ import annotations

import tomllib

import polars as pl
import pytest
import torch
from test_faults import SPEC, run, study_dir

from bench.results import leaderboard, store
from bench.spec.replicates import describe_draws, replicate_options
from bench.spec.study import parse_study
from bench.study.units import load_data


def spec(replicates: int | None = None) -> str:
    """test_faults' tiny study (mmoe and shared_bottom, 3 trials, 2 seeds), with ``replicates``."""
    return SPEC.replace("seeds = 2", "seeds = 2" + (f"\nreplicates = {replicates}" if replicates else ""))


pytestmark = pytest.mark.usefixtures("one_thread")


class Fits:
    """Counts ``fit`` calls (search trials and one-by-one final runs) and population trainings; raises
    ``KeyboardInterrupt`` (Ctrl-C) at fit number ``stop_at``."""

    def __init__(self, monkeypatch, stop_at: int | None = None):
        import bench.training.fit
        import bench.training.population

        self.n, self.populations = 0, 0
        fit, population = bench.training.fit.fit, bench.training.population.train_population

        def counted_fit(*a, **kw):
            self.n += 1
            if self.n == stop_at:
                raise KeyboardInterrupt
            return fit(*a, **kw)

        def counted_population(*a, **kw):
            self.populations += 1
            return population(*a, **kw)

        monkeypatch.setattr(bench.training.fit, "fit", counted_fit)
        monkeypatch.setattr(bench.training.population, "train_population", counted_population)


def search_configs(cwd) -> dict[tuple[int, str, int], str]:
    """(replicate, architecture, trial) -> its configuration."""
    rows = store.read(cwd / "runs" / "f").filter((pl.col("stage") == "search") & (pl.col("metric") == "objective"))
    return {(r, a, t): c for r, a, t, c in
            rows.select(pl.col("replicate").fill_null(1), "architecture", "trial", "config").iter_rows()}


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """An uninterrupted run of the tiny study with replicates = 2."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cwd = study_dir(tmp_path_factory.mktemp("two"), spec(2))
        assert run(cwd) == 0
        return cwd
    finally:
        torch.set_num_threads(threads)


def test_two_replicates_store_both_with_their_own_draws(two, monkeypatch, capsys):
    root = two / "runs" / "f"
    rows = store.read(root)
    for stage in ("search", "final"):
        assert sorted(rows.filter(pl.col("stage") == stage)["replicate"].unique().to_list()) == [1, 2]
    assert (root / "results" / "final" / "synthetic" / "mmoe" / "seed-1.parquet").is_file()  # replicate 1: as ever
    assert (root / "results" / "final" / "synthetic" / "mmoe" / "r2-seed-1.parquet").is_file()
    assert (root / "results" / "search" / "synthetic" / "r2-mmoe.parquet").is_file()
    assert (root / "models" / "synthetic" / "mmoe" / "r2-seed-1.ckpt").is_file()  # its own model
    configs = search_configs(two)
    assert len(configs) == 12 and configs[(1, "mmoe", 0)] != configs[(2, "mmoe", 0)]  # independent streams
    study = parse_study(tomllib.loads(spec(2)))
    data = load_data(study)
    assert not torch.equal(data["synthetic"].train.x, data["synthetic@r2"].train.x)  # its own synthetic draw
    _, text = leaderboard.build(root, two / "lb", with_plots=False)
    assert "- 2 replicates of the whole pipeline (search and final seeds), each with its own sampler streams; " \
           "synthetic: data drawn anew per replicate" in text
    assert "incomplete study" not in text  # both replicates' final seeds counted
    Fits(monkeypatch)
    import bench.training.fit

    def no_training(*a, **kw):
        raise AssertionError("a complete study retrained something")

    monkeypatch.setattr(bench.training.fit, "fit", no_training)
    assert run(two) == 0  # complete: nothing retrained
    capsys.readouterr()
    assert run(two, "--replicates", "1") == 2  # fewer replicates than stored: refused in one line
    err = capsys.readouterr().err
    assert "stored results of replicates [2] beyond replicates = 1" in err and err.count("\n") == 1


def test_a_killed_replicate_resumes_with_the_same_draws(two, tmp_path, monkeypatch, capsys):
    cwd = study_dir(tmp_path, spec())
    # fits 1-6: replicate 1's trials (mmoe, then shared_bottom), 7-9: replicate 2's mmoe; Ctrl-C in its 2nd
    killed = Fits(monkeypatch, stop_at=8)
    assert run(cwd, "--replicates", "2") == 130
    assert killed.populations == 0
    resumed = Fits(monkeypatch)
    assert run(cwd, "--replicates", "2") == 0
    capsys.readouterr()
    assert resumed.n == 5  # replicate 2: the interrupted trial again, mmoe's 3rd, shared_bottom's 3; not replicate 1
    assert search_configs(cwd) == search_configs(two)


def test_an_old_store_without_replicates_reads_and_resumes(tmp_path, monkeypatch, capsys):
    cwd = study_dir(tmp_path, spec())
    assert run(cwd) == 0
    root = cwd / "runs" / "f"
    for f in (root / "results").glob("**/*.parquet"):  # as written before the replicate column existed
        store.write_atomic(pl.read_parquet(f).drop("replicate", "drawn_by"), f)
    rows = store.read(root)
    assert rows["replicate"].null_count() == rows.height
    fits = Fits(monkeypatch)
    assert run(cwd, "--replicates", "2") == 0
    capsys.readouterr()
    assert fits.n == 6  # replicate 2's trials only: replicate 1 (the old store) is complete
    rows = store.read(root).filter(pl.col("stage") == "final")
    assert rows["replicate"].fill_null(1).value_counts().sort("replicate")["replicate"].to_list() == [1, 2]
    _, text = leaderboard.build(root, cwd / "lb", with_plots=False)
    assert "incomplete study" not in text and "2 replicates" in text


def test_official_splits_stay_fixed_and_random_draws_vary():
    paper = {"split": "paper", "group": 1}
    assert replicate_options("census-income", paper, 2) == paper
    assert replicate_options("adult", {}, 3) == {}  # its default split is the official one
    drawn = replicate_options("census-income", {"split": "random"}, 2)
    assert drawn["split"] == "random" and drawn["seed"] != 0
    assert drawn == replicate_options("census-income", {"split": "random"}, 2)  # stable
    assert drawn != replicate_options("census-income", {"split": "random"}, 3)  # per replicate
    assert replicate_options("synthetic", {"seed": 5}, 1) == {"seed": 5}  # replicate 1: the spec's own
    # entries of one draw (the correlations p of one generator seed) share each replicate's draw: still paired;
    # another generator seed is another data set, with draws of its own
    at = lambda p, seed=0: replicate_options("synthetic", {"p": p, "seed": seed}, 2)  # noqa: E731
    assert at(0.5)["seed"] == at(1.0)["seed"] != at(0.5, seed=1)["seed"]
    draws = describe_draws({"c": {"name": "census-income", "options": paper}, "s": {"name": "synthetic"}})
    assert draws == {"c": "data fixed across replicates (official split 'paper')",
                     "s": "data drawn anew per replicate (seed of the generator or split)"}


def test_jobs_workers_get_the_replicates(monkeypatch, tmp_path):
    """``--jobs N --replicates R``: workers 2..N run the same R replicates (the budget, claims and progress of
    each replicate are shared through the study's storage like those of any unit)."""
    import argparse

    from bench.commands import run as run_command

    started = []
    monkeypatch.setattr(run_command.subprocess, "Popen", lambda cmd, **kw: started.append(cmd))
    args = argparse.Namespace(study="f.toml", runs_dir=tmp_path, accelerator="cpu", threads=1, max_failure_rate=0.5,
                              heartbeat=20, keep_models="all", wandb=None, wandb_project=None, repeats=None,
                              replicates=3, no_population=False, quiet=True, storage=None, jobs=2)
    run_command._start_workers(args)
    assert len(started) == 1 and started[0][started[0].index("--replicates") + 1] == "3"


def test_missing_final_runs_count_every_replicate():
    final = [{"dataset": "d", "architecture": "mmoe", "target": "mean", "stage": "final", "seed": s, "replicate": r,
              "split": "test", "task": "y1", "kind": "regression", "metric": "mse", "value": 1.0}
             for r, s in ((None, 1), (None, 2), (2, 1))]  # replicate 1 from an older store (null), r2 seed 1
    meta = {"seeds": [1, 2], "replicates": 2, "architectures": ["mmoe"], "datasets": {"d": {"objective": "mean"}}}
    assert leaderboard.missing_final_runs(store.frame(final), meta) == ["d | mmoe r2: seed 2"]
    assert leaderboard.missing_final_runs(store.frame(final), {**meta, "replicates": 3}) == [
        "d | mmoe r2: seed 2", "d | mmoe r3: no final run"]
