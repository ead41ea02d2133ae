"""The search stage: spaces and sampling, pruning, resuming to the budget, and no test split before the final stage."""

from __future__ import annotations

import optuna
import pytest

from bench.coordination.storage import open_storage
from bench.results import store
from bench.spec.hooks import Hooks
from bench.spec.space import Param, default_space
from bench.spec.study import parse_study
from bench.study.run import run_study
from bench.study.search import make_objective, open_unit_study, progress_state, suggest
from bench.study.units import units
from bench.training.system import MTLDataModule

TINY = {"n_samples": 300, "d": 8}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_study(**over) -> dict:
    raw = {
        "name": "tiny",
        "architectures": ["single_task", "mmoe"],
        "seeds": 2,
        "budget": {"trials": 2, "max_epochs": 2, "patience": 1},
        "pruner": {"kind": "none"},
        "datasets": [{"name": "synthetic", "options": TINY}],
        "search": {"all": {"batch_size": [64], "expert_units": [8], "tower_units": [8], "n_experts": 2}},
    }
    raw.update(over)
    return raw


def test_suggest_covers_every_kind():
    space = {
        "lr": Param(low=1e-4, high=1e-2, log=True),
        "n_experts": Param(low=2, high=4),
        "batch_size": Param(choices=(64, 128)),
        "dropout": Param(value=0.1),
    }
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    config = suggest(trial, space)
    assert 1e-4 <= config["lr"] <= 1e-2 and isinstance(config["n_experts"], int) and 2 <= config["n_experts"] <= 4
    assert config["batch_size"] in (64, 128) and config["dropout"] == 0.1
    assert set(trial.params) == {"lr", "n_experts", "batch_size"}  # fixed values are not sampled


def test_default_spaces_fit_their_architectures():
    from bench import architectures

    for arch in architectures.available():
        space = default_space(arch)
        assert {"lr", "batch_size", "weight_decay"} <= set(space)
        assert set(space) - {"lr", "batch_size", "weight_decay"} <= set(architectures.options(arch))
    assert "n_levels" in default_space("ple") and "n_experts" in default_space("mmoe")


def test_test_split_only_in_final_stage(tmp_path, monkeypatch):
    """During the search no test batch is ever drawn; each final run reads it exactly once."""
    phase = {"now": None}
    reads: list[str] = []
    original = MTLDataModule.test_dataloader

    def spy(self):
        reads.append(phase["now"])
        return original(self)

    monkeypatch.setattr(MTLDataModule, "test_dataloader", spy)
    import bench.training.population

    train_population = bench.training.population.train_population

    def population_spy(arch, data, configs, **kw):  # the final stage's default: all seeds as one population
        if kw.get("evaluate_test"):
            reads.extend([phase["now"]] * len(configs))  # the test split is read once per member
        return train_population(arch, data, configs, **kw)

    monkeypatch.setattr(bench.training.population, "train_population", population_spy)
    hooks = Hooks(trial_start=[lambda *a: phase.update(now="search")],
                  final_start=[lambda *a: phase.update(now="final")])
    study = parse_study(tiny_study())
    root = run_study(study, tmp_path / "runs", accelerator="cpu", hooks=hooks, out=lambda line: None)
    n_units = 3  # single_task per task (y1, y2) and mmoe
    assert reads == ["final"] * (n_units * 2)
    rows = store.read(root)
    search = rows.filter(rows["stage"] == "search")
    assert search.height > 0 and set(search["split"].unique().to_list()) == {"val"}
    final = rows.filter(rows["stage"] == "final")
    assert set(final["split"].unique().to_list()) == {"val", "test"}
    assert sorted(final["seed"].unique().to_list()) == [1, 2]


def test_pruned_trials_count_and_resume_tops_up(tmp_path):
    # a threshold pruner that prunes every trial after its first validation epoch
    raw = tiny_study(architectures=["mmoe"], pruner={"kind": "none"})
    study = parse_study(raw)
    study.pruner = {"kind": "none"}
    root = run_study(study, tmp_path / "runs", accelerator="cpu", out=lambda line: None)
    storage = open_storage(root, None)
    opt = optuna.load_study(study_name="synthetic/mmoe", storage=storage)
    assert progress_state(opt)[0] == 2
    # a larger budget runs only the missing trial
    bigger = parse_study({**raw, "budget": {"trials": 3, "max_epochs": 2, "patience": 1}})
    lines: list[str] = []
    run_study(bigger, tmp_path / "runs", accelerator="cpu", out=lines.append)
    opt = optuna.load_study(study_name="synthetic/mmoe", storage=open_storage(root, None))
    assert len(opt.trials) == 3
    assert any("running 1 " in line for line in lines)


def test_pruning_callback_prunes_and_keeps_the_curve():
    from bench import datasets
    from bench.study.units import Unit

    data = datasets.load("synthetic", **TINY)
    unit = Unit("synthetic", "mmoe", "mean")
    space = parse_study(tiny_study()).search["mmoe"]
    objective = make_objective(unit, data, space, {"max_epochs": 3, "patience": 3, "seed": 0, "objective": "mean"},
                               accelerator="cpu")
    # a threshold no objective reaches: every trial is pruned after its first validation epoch
    opt = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1e9))
    opt.optimize(objective, n_trials=1)
    trial = opt.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert len(trial.user_attrs["curve"]) == 1 and trial.user_attrs["n_params"] > 0
    assert trial.user_attrs["seconds"] > 0 and "val_metrics" not in trial.user_attrs
    assert progress_state(opt) == (1, pytest.approx(trial.user_attrs["seconds"]))


def test_open_unit_study_records_spec_hash(tmp_path):
    study = parse_study(tiny_study())
    unit = units(study, {"synthetic": type("D", (), {"task_names": ["y1", "y2"]})()})[0]
    opt = open_unit_study(study, unit, open_storage(tmp_path, None))
    assert opt.user_attrs["spec_hash"] == study.spec_hash
    assert unit.optuna_name == "synthetic/single_task/y1"


@pytest.mark.parametrize("bad", [{"lr": -1.0}])
def test_invalid_fixed_value_is_a_user_error(tmp_path, bad):
    from bench.errors import UserError

    # refused with the spec, before anything runs or is written (it used to surface at the first trial)
    with pytest.raises(UserError, match="search.mmoe.lr: lr must be a positive number"):
        parse_study(tiny_study(architectures=["mmoe"], search={"mmoe": bad}))
    assert not (tmp_path / "runs").exists()


def test_storage_url_shared_database(tmp_path):
    """--storage URL: the Optuna studies live in that database, the results in runs/<study>/ as usual."""
    raw = tiny_study(architectures=["mmoe"], seeds=1, budget={"trials": 1, "max_epochs": 2, "patience": 1})
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    root = run_study(parse_study(raw), tmp_path / "runs", storage=url, accelerator="cpu", out=lambda line: None)
    assert not (root / "optuna.journal").exists()
    assert len(optuna.load_study(study_name="synthetic/mmoe", storage=url).trials) == 1
    assert store.read(root).filter(store.read(root)["stage"] == "final").height > 0
