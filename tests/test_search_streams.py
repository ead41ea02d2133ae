"""A search that is what the page says (issue 25): each unit its own sampler stream (the same after a kill and
resume), ``common_draws`` restoring shared draws, TPE's start-up recorded per trial and named on the page
("random search" when TPE never guided), pruner and sampler options checked against Optuna's classes, and the
best-so-far convergence with its late-best flag."""

from __future__ import annotations

import json

import polars as pl
import pytest
from test_faults import SPEC, interrupt_second_fit, run, study_dir

from bench.errors import UserError
from bench.results import convergence, leaderboard, store
from bench.spec.study import parse_study, startup_trials
from bench.study.units import Unit, sampler_stream


def spec(sampler: str = "") -> str:
    """test_faults' tiny study (mmoe and shared_bottom, 3 trials each) with a ``[sampler]`` table."""
    return SPEC.replace("[pruner]", f"{sampler}\n\n[pruner]")


pytestmark = pytest.mark.usefixtures("one_thread")


def configs(cwd) -> dict[tuple[str, int], dict]:
    """(architecture, trial) -> the searched entries of its configuration (the fixed ones dropped)."""
    rows = store.read(cwd / "runs" / "f").filter((pl.col("stage") == "search") & (pl.col("metric") == "objective"))
    return {(a, t): {k: v for k, v in json.loads(c).items() if k in ("lr", "weight_decay", "dropout")}
            for a, t, c in rows.select("architecture", "trial", "config").iter_rows()}


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """An uninterrupted run with the default sampler (per-unit streams; 3 trials, so TPE's start-up of 4 covers
    every trial)."""
    cwd = study_dir(tmp_path_factory.mktemp("streams"), spec())
    assert run(cwd) == 0
    return cwd


def test_sampler_streams_differ_between_units_and_replicates():
    sampler = {"kind": "tpe", "seed": 0}
    mmoe, ple = Unit("d", "mmoe", "mean"), Unit("d", "ple", "mean")
    st_a, st_b = Unit("d", "single_task", "a"), Unit("d", "single_task", "b")
    seeds = {sampler_stream(sampler, u) for u in (mmoe, ple, st_a, st_b, Unit("e", "mmoe", "mean"))}
    assert len(seeds) == 5  # every unit (a single-task unit per task, a dataset per label) its own stream
    assert sampler_stream(sampler, mmoe) == sampler_stream(dict(sampler), Unit("d", "mmoe", "mean"))  # stable
    assert sampler_stream(sampler, Unit("d", "mmoe", "mean", replicate=2)) != sampler_stream(sampler, mmoe)
    assert sampler_stream({**sampler, "seed": 1}, mmoe) != sampler_stream(sampler, mmoe)
    common = {**sampler, "common_draws": True}
    assert sampler_stream(common, mmoe) == sampler_stream(common, ple) == 0  # today's seed + ordinal
    r2 = [sampler_stream(common, Unit("d", a, "mean", replicate=2)) for a in ("mmoe", "ple")]
    assert r2[0] == r2[1] != 0  # common draws within a replicate, a replicate's own stream


def test_units_draw_different_configurations_and_the_same_after_a_kill(default_run, tmp_path, capsys):
    reference = configs(default_run)
    assert len(reference) == 6
    for t in range(3):  # before per-unit streams, trial t drew the same configuration in every unit
        assert reference[("mmoe", t)] != reference[("shared_bottom", t)]
    cwd = study_dir(tmp_path, spec())
    interrupt_second_fit(cwd)  # Ctrl-C in the first unit's second trial: failed, retried on resume
    assert run(cwd) == 0
    capsys.readouterr()
    assert configs(cwd) == reference
    drawn = [store.read(d / "runs" / "f").filter(pl.col("metric") == "objective").sort("architecture", "trial")
             ["drawn_by"].to_list() for d in (cwd, default_run)]
    assert drawn[0] == drawn[1] == ["random"] * 6  # the same records after a kill (3 trials: all in the start-up)


def test_common_draws_restore_shared_draws_and_tpe_is_labelled(tmp_path, capsys, default_run):
    cwd = study_dir(tmp_path, spec("[sampler]\ncommon_draws = true\nn_startup_trials = 1"))
    assert run(cwd) == 0
    capsys.readouterr()
    drawn = configs(cwd)
    assert drawn[("mmoe", 0)] == drawn[("shared_bottom", 0)]  # trial 0: the start-up, the same seed in both
    rows = store.read(cwd / "runs" / "f")
    search = rows.filter((pl.col("stage") == "search") & (pl.col("metric") == "objective")).sort("trial")
    assert search.filter(pl.col("architecture") == "mmoe")["drawn_by"].to_list() == ["random", "tpe", "tpe"]
    _, text = leaderboard.build(cwd / "runs" / "f", cwd / "lb", with_plots=False)
    assert "sampler tpe after 1 random start-up trials per unit (seed 0, the same draws in every unit " \
           "(common_draws))" in text
    assert "random search" not in text
    # the default run: 3 trials, a start-up of startup_trials(3) = 4: every trial was random
    assert startup_trials(3) == 4
    _, text = leaderboard.build(default_run / "runs" / "f", default_run / "lb", with_plots=False)
    assert "sampler random search: every trial of every unit was drawn in TPE's random start-up of 4 trials" in text
    assert "each unit its own stream" in text


def test_old_search_rows_without_drawn_by_are_inferred():
    rows = store.frame([{"dataset": "d", "architecture": a, "target": "mean", "stage": "search", "trial": t,
                         "metric": "objective", "value": 0.5, "task": "*", "status": "complete"}
                        for a, n in (("mmoe", 12), ("ple", 10)) for t in range(n)])
    meta = {"sampler": {"kind": "tpe", "seed": 0}}  # an older study: Optuna's start-up of 10, shared draws
    text = convergence.sampler_text(rows, meta)
    assert text.startswith("tpe after 10 random start-up trials per unit (seed 0, trial k drew the same in every")
    assert "random search only (every trial in the start-up): d \\| ple" in text


def test_startup_default_is_sized_to_the_budget():
    assert [startup_trials(n) for n in (3, 10, 20, 30, 100)] == [4, 4, 7, 10, 10]


@pytest.mark.parametrize("table, expected", [
    ({"kind": "hyperband", "min_resourse": 1}, "unknown option of pruner hyperband 'min_resourse'; valid choices: "
                                                "bootstrap_count, max_resource, min_resource, reduction_factor"),
    ({"kind": "successive_halving", "eta": 3}, "unknown option of pruner successive_halving 'eta'; valid choices: "
                                                "bootstrap_count, min_early_stopping_rate, min_resource, "
                                                "reduction_factor"),
])
def test_pruner_options_are_checked_against_optuna(table, expected):
    raw = {"datasets": [{"name": "synthetic"}], "pruner": table}
    with pytest.raises(UserError) as err:
        parse_study(raw)
    assert str(err.value) == expected and "\n" not in str(err.value)


def test_sampler_options_are_checked_against_optuna():
    raw = {"datasets": [{"name": "synthetic"}]}
    with pytest.raises(UserError, match=r"unknown option of sampler tpe 'multivariat'; valid choices: .*common_draws"
                                        r".*multivariate.*n_startup_trials"):
        parse_study({**raw, "sampler": {"multivariat": True}})
    with pytest.raises(UserError, match="sampler.common_draws"):
        parse_study({**raw, "sampler": {"common_draws": 3}})
    study = parse_study({**raw, "sampler": {"multivariate": True, "constant_liar": True, "n_startup_trials": 3},
                         "pruner": {"kind": "hyperband", "min_resource": 1, "reduction_factor": 3}})
    assert study.sampler == {"kind": "tpe", "multivariate": True, "constant_liar": True, "n_startup_trials": 3,
                             "seed": 0}
    assert study.pruner == {"kind": "hyperband", "min_resource": 1, "reduction_factor": 3}


def test_best_so_far_and_late_best():
    values = {"mmoe": [0.1, 0.3, 0.2, 0.25, 0.5], "ple": [0.4, 0.3, None, 0.2, 0.1]}
    rows = store.frame(
        [{"dataset": "d", "architecture": a, "target": "mean", "stage": "search", "trial": t, "metric": "objective",
          "value": v, "task": "*", "status": "complete" if v is not None else "failed"}
         for a, vs in values.items() for t, v in enumerate(vs)]
        + [{"dataset": "d", "architecture": "mmoe", "target": "mean", "stage": "search", "trial": 0, "task": "y1",
            "kind": "regression", "metric": "mse", "value": 0.1}])
    curves = convergence.best_so_far(rows)
    mmoe = curves.filter(pl.col("architecture") == "mmoe")
    # every task is an MSE: the objective is -MSE, shown as the MSE (lower is better: the best goes down)
    assert mmoe["best"].to_list() == [-0.1, -0.3, -0.3, -0.3, -0.5] and mmoe["ylabel"][0] == "val mse"
    assert curves.filter(pl.col("architecture") == "ple")["best"].to_list() == [-0.4] * 5  # a failure keeps it
    assert convergence.late_best(rows) == [("d", "mmoe", "mean", 1, 5, 5)]  # trial 5 of 5; ple's best is its 1st
    lines = convergence.search_section(rows, "d", None)
    assert lines[0] == "- may not have levelled off: d \\| mmoe's best trial was trial 5 of 5 (in the last fifth of " \
                       "its search)"


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_drawn_by_agrees_with_tpe(pruner):
    """The record says "random" exactly when TPE fell back to its random sampler (also with Hyperband, whose
    brackets TPE's start-up does not see: it counts the whole study's finished trials)."""
    import optuna

    from bench.study.search import drawn_by

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(n_startup_trials=3, seed=0)
    fell_back = []
    random_draw = sampler._random_sampler.sample_independent
    sampler._random_sampler.sample_independent = lambda *a: fell_back.append(True) or random_draw(*a)
    pruners = {"median": optuna.pruners.MedianPruner(), "hyperband": optuna.pruners.HyperbandPruner(max_resource=9)}
    study = optuna.create_study(sampler=sampler, pruner=pruners[pruner])
    labels, truth = [], []
    for _ in range(12):
        trial = study.ask()
        labels.append(drawn_by(trial))
        fell_back.clear()
        x = trial.suggest_float("x", 0.0, 1.0)
        truth.append("random" if fell_back else "tpe")
        for epoch in range(3):  # reported and judged as a search trial is (Hyperband then sets up its brackets)
            trial.report(x * (epoch + 1), epoch)
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, x)
    assert labels == truth and "tpe" in labels and "random" in labels
