"""Reliability in one process: non-finite losses, failing trials, study identity, bad input, masked credentials,
escaped markdown, and a leaderboard that survives all of it byte for byte."""

from __future__ import annotations

import math
import re
from pathlib import Path

import optuna
import polars as pl
import pytest
from optuna.trial import TrialState

from bench.cli import main
from bench.coordination.trials import TooManyFailures
from bench.coordination.urls import mask_url
from bench.errors import UserError
from bench.results import leaderboard, store
from bench.spec.hooks import Hooks
from bench.spec.study import parse_study
from bench.study.run import run_study
from bench.training.system import MTLSystem

SPEC = """
name = "ref"
description = "reference study"
architectures = ["single_task", "mmoe"]
seeds = 2

[budget]
trials = 2
max_epochs = 2
patience = 1

[pruner]
kind = "none"

[[datasets]]
name = "synthetic"
options = { n_samples = 300, d = 8 }

[search.all]
batch_size = [64]
expert_units = [8, 16]
tower_units = [8]
n_experts = 2
"""


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**over) -> dict:
    raw = {
        "name": "tiny",
        "architectures": ["mmoe"],
        "seeds": 1,
        "budget": {"trials": 3, "max_epochs": 3, "patience": 2},
        "pruner": {"kind": "none"},
        "datasets": [{"name": "synthetic", "options": {"n_samples": 300, "d": 8}}],
        "search": {"all": {"batch_size": [64], "expert_units": [8], "tower_units": [8], "n_experts": 2}},
    }
    raw.update(over)
    return raw


def journal_trials(root: Path, name: str = "synthetic/mmoe"):
    from bench.coordination.storage import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(root, None)).get_trials(deepcopy=False)


# --- non-finite training ---------------------------------------------------------------------------------
def test_nan_loss_fails_the_trial_with_its_reason_and_the_study_completes(tmp_path, monkeypatch):
    fault = {"mode": None}
    original = MTLSystem.task_losses

    def task_losses(self, out, y):
        value = original(self, out, y)
        if fault["mode"] == "first" or (fault["mode"] == "later" and self.current_epoch >= 1):
            return value * float("nan")
        return value

    monkeypatch.setattr(MTLSystem, "task_losses", task_losses)
    # trial 0: NaN at its first step; trial 1: NaN in epoch 1, after a finite epoch 0; then healthy runs
    modes = {0: "first", 1: "later"}
    hooks = Hooks(trial_start=[lambda unit, trial, config: fault.update(mode=modes.get(trial.number))],
                  final_start=[lambda *a: fault.update(mode=None)])
    lines: list[str] = []
    root = run_study(parse_study(tiny()), tmp_path / "runs", accelerator="cpu", hooks=hooks, out=lines.append)
    trials = {t.number: t for t in journal_trials(root)}
    assert len(trials) == 3  # failed configurations count toward the budget
    for number, epoch in ((0, 0), (1, 1)):
        t = trials[number]
        assert t.state == TrialState.FAIL
        assert t.user_attrs["error"].startswith("FloatingPointError: non-finite training loss (nan)")
        assert t.user_attrs["error"].endswith(f"in epoch {epoch}")
    assert len(trials[1].user_attrs["curve"]) == 1 and math.isfinite(trials[1].user_attrs["curve"][0])
    assert trials[2].state == TrialState.COMPLETE
    assert any("trial 1/3 failed" in line and "non-finite training loss" in line for line in lines)
    rows = store.read(root)
    assert rows.filter(rows["stage"] == "final").height > 0  # the study went on to its final stage
    _, text = leaderboard.build(root, tmp_path / "lb", with_plots=False)
    assert "| 1/0/2 " in text and not re.search(r"\b(nan|inf)\b", text, re.IGNORECASE)


def test_failure_rate_above_threshold_stops_the_study(tmp_path, monkeypatch):
    import bench.training.fit

    def oom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(bench.training.fit, "fit", oom)
    study = parse_study(tiny(budget={"trials": 6, "max_epochs": 2, "patience": 1}))
    with pytest.raises(TooManyFailures, match=r"3 of 3 trials failed \(more than 50%\); stopping. Last error: "
                                               r"RuntimeError: CUDA out of memory"):
        run_study(study, tmp_path / "runs", accelerator="cpu", out=lambda line: None)
    trials = journal_trials(tmp_path / "runs" / "tiny")
    assert [t.state for t in trials] == [TrialState.FAIL] * 3
    assert all(t.user_attrs["error"] == "RuntimeError: CUDA out of memory (simulated)" for t in trials)


def test_failure_check_threshold():
    from bench.coordination.trials import failure_check

    def trials(n_failed: int, n_ok: int):
        failed = [optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={"error": f"E{i}"})
                  for i in range(n_failed)]
        return failed + [optuna.trial.create_trial(value=1.0) for _ in range(n_ok)]

    failure_check("u", trials(2, 0), 0.5)  # fewer than MIN_FAILURES failures: not judged yet
    failure_check("u", trials(3, 4), 0.5)  # 3 of 7: below the rate
    interrupted = [optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={"interrupted": "SIGKILL"})] * 5
    failure_check("u", trials(3, 3) + interrupted, 0.5)  # interruptions are not failures of a configuration
    with pytest.raises(TooManyFailures, match="u: 4 of 7 trials failed"):
        failure_check("u", trials(4, 3), 0.5)


# --- identity, bad input, and a leaderboard that survives them ----------------------------------------------
def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.parent.name not in ("locks", "workers")}


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_identity_bad_input_and_byte_identical_leaderboard(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    spec = tmp_path / "studies" / "ref.toml"
    spec.write_text(SPEC)
    common = ["--accelerator", "cpu", "--no-plots", "--wandb", "disabled"]
    code, _, _ = run_cli(["run", "--study", "ref", *common], capsys)
    assert code == 0
    root = tmp_path / "runs" / "ref"
    before_md = (tmp_path / "results" / "ref.md").read_bytes()
    before = snapshot(root)

    def refused(argv: list[str], needle: str, spec_text: str | None = None) -> str:
        if spec_text is not None:
            spec.write_text(spec_text)
        code, out, err = run_cli(argv, capsys)
        assert code == 2, (out, err)
        assert err.startswith("bench ") and err.count("\n") == 1 and "Traceback" not in err, err
        assert needle in err, err
        assert snapshot(root) == before  # nothing stored changed
        return err

    # a changed spec that changes results, under the same name: refused, naming what changed and the way out
    err = refused(["run", "--study", "ref", *common], "search.expert_units",
                  SPEC.replace("expert_units = [8, 16]", "expert_units = [8, 32]"))
    assert "changes results" in err and "--fresh" in err
    refused(["run", "--study", "ref", *common], "max_epochs", SPEC.replace("max_epochs = 2", "max_epochs = 3"))
    refused(["run", "--study", "ref", *common], "dataset.options",
            SPEC.replace("n_samples = 300", "n_samples = 301"))
    refused(["run", "--study", "ref", *common], "seeds [2]", SPEC.replace("seeds = 2", "seeds = 1"))
    spec.write_text(SPEC)

    # bad input: one line, exit 2, nothing touched
    refused(["run", "--study", "ref", *common], "unknown key in study spec 'colour'",
            'colour = "red"\n' + SPEC)
    refused(["run", "--study", "ref", *common], "unknown dataset 'synthetc'",
            SPEC.replace('name = "synthetic"', 'name = "synthetc"'))
    spec.write_text(SPEC)
    refused(["run", "--study", "studies/nope.toml", *common], "does not exist")
    refused(["run", "--study", "ref", "--storage", "mysql://u@h/db", *common], "unknown --storage database 'mysql'")
    refused(["run", "--study", "ref", "--storage", "not a url", *common], "is not a database URL")
    err = refused(["run", "--study", "ref", "--storage", "postgresql://bench:hunter2@127.0.0.1:1/nope", *common],
                  "cannot open storage postgresql://bench:***@127.0.0.1:1/nope")
    assert "hunter2" not in err
    (tmp_path / "a-file").write_text("")
    refused(["run", "--study", "ref", "--output", "a-file/lb", *common], "--output 'a-file/lb' cannot be a directory")
    refused(["run", "--study", "ref", "--runs-dir", "a-file/runs", *common], "--runs-dir 'a-file/runs'")
    refused(["run", "--study", "ref", "--jobs", "0", *common], "--jobs must be >= 1")

    # the leaderboard regenerated from storage after all of the above: byte-identical
    code, _, _ = run_cli(["leaderboard", "--study", "ref", "--no-plots", "--quiet"], capsys)
    assert code == 0 and (tmp_path / "results" / "ref.md").read_bytes() == before_md

    # changes that do not change results are allowed: a new description, the same budget -> nothing new to run
    spec.write_text(SPEC.replace("reference study", "reference study, reworded"))
    code, out, _ = run_cli(["run", "--study", "ref", *common], capsys)
    assert code == 0 and " trial " not in out.split("# Leaderboard")[0] and "] final seed " not in out
    assert {k: v for k, v in snapshot(root).items() if k.startswith("results")} == \
        {k: v for k, v in before.items() if k.startswith("results")}

    # --fresh moves the old run aside (nothing deleted) and starts the changed spec afresh
    before = snapshot(root)
    spec.write_text(SPEC.replace("max_epochs = 2", "max_epochs = 1"))
    code, out, _ = run_cli(["run", "--study", "ref", "--fresh", *common], capsys)
    assert code == 0 and "--fresh: moved" in out
    old = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("ref.old-")]
    assert len(old) == 1 and snapshot(old[0]) == before
    assert snapshot(root)["optuna.journal"] != before["optuna.journal"]


def test_same_database_two_studies_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    run_study(parse_study(tiny(budget={"trials": 1, "max_epochs": 1, "patience": 1})), tmp_path / "runs",
              storage=url, accelerator="cpu", out=lambda line: None)
    other = parse_study(tiny(name="other", budget={"trials": 1, "max_epochs": 1, "patience": 1}))
    with pytest.raises(UserError, match="already holds Optuna study 'synthetic/mmoe' of study 'tiny'"):
        run_study(other, tmp_path / "runs", storage=url, accelerator="cpu", out=lambda line: None)
    assert not (tmp_path / "runs" / "other").exists()


# --- credentials and markdown ------------------------------------------------------------------------------
def test_mask_url():
    assert mask_url("postgresql://bench:s3cr3t@db.example:5432/optuna") == "postgresql://bench:***@db.example:5432/optuna"
    assert mask_url("postgresql+psycopg://u:p%40ss@h/db?sslmode=require") == "postgresql+psycopg://u:***@h/db?sslmode=require"
    assert mask_url("postgresql://bench@h/db") == "postgresql://bench@h/db"
    assert mask_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert mask_url("error at mysql://a:b@c/d; retrying") == "error at mysql://a:***@c/d; retrying"


def _reference_rows(tmp_path: Path) -> tuple[pl.DataFrame, dict]:
    root = run_study(parse_study(tiny(architectures=["single_task", "mmoe"], seeds=2,
                                      budget={"trials": 1, "max_epochs": 1, "patience": 1})),
                     tmp_path / "runs", accelerator="cpu", out=lambda line: None)
    return store.read(root), store.read_meta(root)


def test_markdown_escapes_spec_text_and_drops_non_finite_values(tmp_path):
    rows, meta = _reference_rows(tmp_path)
    meta = {**meta, "description": "evil | <img src=x onerror=alert(1)> [click](http://x) *bold*\n# heading"}
    meta["datasets"]["synthetic"]["options"] = {**meta["datasets"]["synthetic"]["options"], "note": "a|b<c>"}
    text = leaderboard.render(rows, meta)
    assert not re.search(r"(?<!\\)[<|\[]", text.split("\n\n")[1]) and "\n# heading" not in text
    assert r"evil \| \<img src=x onerror=alert(1)\> \[click\](http://x) \*bold\* # heading" in text
    assert r"note=a\|b\<c\>" in text

    # a NaN and an infinity among the final values: never shown; the mean is over the finite seeds
    test = (pl.col("stage") == "final") & (pl.col("split") == "test") & (pl.col("metric") == "mse") & \
        (pl.col("architecture") == "mmoe") & (pl.col("task") == "y1") & pl.col("draw").is_null()  # the runs' values
    kept = rows.filter(test & (pl.col("seed") == 2))["value"][0]
    bad = rows.with_columns(value=pl.when(test & (pl.col("seed") == 1)).then(float("nan")).otherwise("value"))
    text = leaderboard.render(bad, meta)
    assert not re.search(r"\b(nan|inf)\b", text, re.IGNORECASE)
    assert f" {kept:.4f} " in text  # the one finite seed's value, without a standard deviation
    bad = rows.with_columns(value=pl.when(test).then(float("inf")).otherwise("value"))
    text = leaderboard.render(bad, meta)
    assert not re.search(r"\b(nan|inf)\b", text, re.IGNORECASE)


def test_spec_is_data_and_checkpoints_are_weights_only():
    """Specs are parsed with tomllib (never executed); every torch.load passes weights_only=True."""
    repo = Path(__file__).resolve().parents[1]
    sources = [p for d in ("bench", "architectures", "datasets") for p in (repo / d).rglob("*.py")]
    for path in sources:
        text = path.read_text()
        assert not re.search(r"(?<![.\w])(exec|eval)\(", text), path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)
    assert "tomllib.loads" in (repo / "bench" / "spec" / "lookup.py").read_text()  # the spec reader (read_spec)


def test_sigterm_outside_a_fit_is_deferred_to_a_safe_point():
    import os
    import signal

    from bench.coordination.signals import StopFlag, Terminated

    flag = StopFlag().install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)  # would end the process without the flag
        with pytest.raises(Terminated) as info:
            flag.check()
        assert info.value.code == 143
    finally:
        flag.restore()


def test_move_aside_never_overwrites(tmp_path):
    """--fresh never deletes: moving aside twice in the same second keeps both copies."""
    from bench.results.store import move_aside

    for _ in range(2):
        (tmp_path / "s").mkdir()
        (tmp_path / "s" / "x").write_text("1")
        assert move_aside(tmp_path / "s") is not None
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("s.old-")]) == 2
