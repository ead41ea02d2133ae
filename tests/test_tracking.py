"""W&B tracking (bench.tracking): modes, one offline run per trial and final run with ids stored in the results,
``disabled`` writes nothing, and an unusable online server never breaks a study.

Every test runs without network and without an API key, with W&B's directories in tmp. Assertions are on the
harness's own records (the results store, ``Tracker.runs``) and on the offline run directories W&B writes
(``<WANDB_DIR>/wandb/offline-run-<time>-<id>/run-<id>.wandb``), not on W&B internals.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import polars as pl
import pytest

from bench.cli import main
from bench.errors import UserError
from bench.results import leaderboard, store
from bench.spec.study import parse_study
from bench.spec.tracking import MODES, parse_wandb
from bench.study.run import run_study
from bench.tracking.settings import resolve_mode
from bench.tracking.tracker import Tracker, offline_run_dirs

TINY = {
    "name": "tiny",
    "architectures": ["mmoe"],
    "seeds": 1,
    "budget": {"trials": 2, "max_epochs": 2, "patience": 1},
    "pruner": {"kind": "none"},
    "datasets": [{"name": "synthetic", "options": {"n_samples": 300, "d": 8}}],
    "search": {"all": {"batch_size": [128]}},
}


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """W&B's directories in tmp, offline, no credentials, nothing printed."""
    dirs = {}
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        d = tmp_path / var.lower()
        d.mkdir()
        monkeypatch.setenv(var, str(d))
        dirs[var] = d
    for var in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_APP_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    return dirs


def _run(tmp_path: Path, tracker: Tracker) -> Path:
    try:
        root = run_study(parse_study(dict(TINY)), tmp_path / "runs", accelerator="cpu", hooks=tracker.hooks(),
                         out=lambda line: None)
        rows, meta = store.read(root), store.read_meta(root)
        tracker.log_leaderboard(meta, leaderboard.tables(rows), tmp_path / "leaderboard" / meta["study"])
    finally:
        tracker.close()
    return root


def _wandb_children() -> list[str]:
    """Live child processes of this one that belong to W&B (its service)."""
    out = subprocess.run(["ps", "-o", "pid=,stat=,args=", "--ppid", str(os.getpid())], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if "wandb" in line and " Z" not in line]


# --- settings --------------------------------------------------------------------------------------------
def test_parse_wandb():
    assert parse_wandb(None).mode is None
    assert parse_wandb("disabled").mode == "disabled"
    spec = parse_wandb({"mode": "online", "project": "p", "entity": "me"})
    assert (spec.mode, spec.project, spec.entity) == ("online", "p", "me")
    with pytest.raises(UserError, match="valid choices: disabled, offline, online"):
        parse_wandb("cloud")
    with pytest.raises(UserError, match="valid choices: entity, mode, project"):
        parse_wandb({"modes": "offline"})
    with pytest.raises(UserError, match="wandb.project"):
        parse_wandb({"project": 3})


def test_resolve_mode_order(tmp_path):
    no_key = {"NETRC": str(tmp_path / "none")}
    assert resolve_mode(None, None, no_key) == ("offline", "default")
    assert resolve_mode(None, None, {**no_key, "WANDB_API_KEY": "k"}) == ("online", "logged in")
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai login user password secret\n")
    assert resolve_mode(None, None, {"NETRC": str(netrc)})[0] == "online"
    assert resolve_mode(None, None, {"NETRC": str(netrc), "WANDB_BASE_URL": "http://127.0.0.1:9"})[0] == "offline"
    assert resolve_mode(None, "disabled", {**no_key, "WANDB_API_KEY": "k"}) == ("disabled", "the study spec")
    assert resolve_mode(None, "online", {**no_key, "WANDB_MODE": "dryrun"}) == ("offline", "WANDB_MODE")
    assert resolve_mode("online", "disabled", {**no_key, "WANDB_MODE": "offline"}) == ("online", "--wandb")
    with pytest.raises(UserError, match="valid choices"):
        resolve_mode(None, None, {**no_key, "WANDB_MODE": "sometimes"})
    with pytest.raises(UserError, match="valid choices: " + ", ".join(sorted(MODES))):
        resolve_mode("loud", None, no_key)


def test_import_has_no_side_effects():
    code = "import sys, bench.tracking, bench.commands.run, bench.cli; print('wandb' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- studies ---------------------------------------------------------------------------------------------
def test_offline_runs_one_per_trial_and_final_with_stored_ids(tmp_path, wandb_env):
    tracker = Tracker("tiny", mode="offline")
    root = _run(tmp_path, tracker)

    rows = store.read(root)
    search = rows.filter(pl.col("stage") == "search")
    final = rows.filter(pl.col("stage") == "final")
    trial_ids = search.group_by("trial").agg(pl.col("wandb_run").unique()).sort("trial")
    assert trial_ids["wandb_run"].to_list() == [[r.id] for r in tracker.runs[:2]]  # one id per trial, every row
    assert final["wandb_run"].unique().to_list() == [tracker.runs[2].id]
    assert rows["wandb_url"].null_count() == rows.height  # offline: no URL

    assert [(r.name, r.job_type) for r in tracker.runs] == [
        ("mmoe-t1", "search"), ("mmoe-t2", "search"), ("mmoe-seed1", "final"), ("leaderboard", "leaderboard")]
    assert all(r.mode == "offline" and r.error is None for r in tracker.runs)
    dirs = offline_run_dirs(wandb_env["WANDB_DIR"])
    ids = [r.id for r in tracker.runs]
    assert len(set(ids)) == 4 and sorted(dirs) == sorted(ids)  # distinct runs, nothing merged or extra
    for run_id, d in dirs.items():
        data = d / f"run-{run_id}.wandb"
        assert data.is_file() and data.stat().st_size > 0
    # the leaderboard run got the leaderboard table
    assert list((dirs[tracker.runs[3].id] / "files" / "media" / "table").glob("leaderboard*.table.json"))
    assert not _wandb_children(), "W&B's service process outlived close()"

    # the leaderboard links final runs only when they were tracked online (have a URL)
    meta = store.read_meta(root)
    assert "W&B runs" not in leaderboard.render(rows, meta)
    online = rows.with_columns(wandb_url=pl.when(pl.col("stage") == "final")
                               .then(pl.format("https://wandb.example/e/p/runs/{}", pl.col("wandb_run"))))
    text = leaderboard.render(online, meta)
    assert "W&B runs" in text and f"[s1](https://wandb.example/e/p/runs/{tracker.runs[2].id})" in text


def _spec(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(
        'name = "tiny"\narchitectures = ["mmoe"]\nseeds = 1\n' + extra + "\n"
        "[budget]\ntrials = 2\nmax_epochs = 2\npatience = 1\n[pruner]\nkind = \"none\"\n"
        '[[datasets]]\nname = "synthetic"\noptions = { n_samples = 300, d = 8 }\n'
        "[search.all]\nbatch_size = [128]\n"
    )
    return path


def _cli(tmp_path: Path, spec: Path, *flags: str) -> int:
    return main(["run", "--study", str(spec), "--runs-dir", str(tmp_path / "runs"), "--output",
                 str(tmp_path / "leaderboard"), "--accelerator", "cpu", *flags])


def test_cli_offline_runs_beside_the_results(tmp_path, wandb_env, monkeypatch, capsys):
    """``bench run --wandb offline`` without WANDB_DIR: runs go to runs/<study>/wandb, ids as stored; the
    leaderboard run holds the leaderboard table and plots."""
    monkeypatch.delenv("WANDB_DIR")
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.chdir(tmp_path)
    assert _cli(tmp_path, _spec(tmp_path, 'wandb = { mode = "disabled", project = "p" }'), "--wandb", "offline") == 0
    root = tmp_path / "runs" / "tiny"
    rows = store.read(root)
    stored = set(rows["wandb_run"].unique().to_list())
    dirs = offline_run_dirs(root)
    assert len(stored) == 3 and None not in stored  # two trials, one final run
    assert len(dirs) == 4 and stored < set(dirs)  # and the leaderboard run
    (board,) = set(dirs) - stored
    media = dirs[board] / "files" / "media"
    assert list(media.glob("table/leaderboard*.table.json"))
    assert len(list(media.glob("images/**/*.png"))) == len(list((tmp_path / "leaderboard" / "tiny").glob("*.png"))) > 0
    assert not (tmp_path / "wandb").exists()
    assert "W&B: 4 runs offline in" in capsys.readouterr().err
    assert not _wandb_children()
    # a rerun with nothing missing: one line, and no new W&B run (nothing to upload twice with `wandb sync`)
    assert _cli(tmp_path, tmp_path / "tiny.toml", "--wandb", "offline") == 0
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "nothing is missing of study tiny" in err
    assert offline_run_dirs(root).keys() == dirs.keys()


def test_disabled_creates_nothing(tmp_path, wandb_env, monkeypatch):
    """The spec's ``wandb = "disabled"`` (no flag, no WANDB_MODE): no W&B directory, no ids."""
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_DIR")
    monkeypatch.chdir(tmp_path)
    assert _cli(tmp_path, _spec(tmp_path, 'wandb = "disabled"'), "--no-plots") == 0
    rows = store.read(tmp_path / "runs" / "tiny")
    assert rows.height and rows["wandb_run"].null_count() == rows.height
    written = [p for p in tmp_path.rglob("*") if p.name == "wandb" or p.name.startswith(("offline-run-", "run-"))]
    assert not written, f"disabled mode wrote {written}"
    assert not [p for d in wandb_env.values() for p in d.iterdir()]


def test_bad_wandb_spec_is_one_line(tmp_path, wandb_env, capsys):
    assert _cli(tmp_path, _spec(tmp_path, 'wandb = "cloud"'), "--no-plots") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "valid choices: disabled, offline, online" in err
    assert not (tmp_path / "runs").exists()


def test_unreachable_online_server_falls_back_to_offline(tmp_path, wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # closed port: connection refused
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    warnings: list[str] = []
    tracker = Tracker("tiny", mode="online", probe_timeout=2, init_timeout=2, warn=warnings.append)
    assert tracker.mode == "offline" and len(warnings) == 1 and "unreachable" in warnings[0]
    root = _run(tmp_path, tracker)
    assert len(warnings) == 1
    assert sorted(offline_run_dirs(wandb_env["WANDB_DIR"])) == sorted(r.id for r in tracker.runs)
    assert store.read(root).filter(pl.col("stage") == "final")["wandb_run"].unique().to_list() == [
        tracker.runs[2].id]


def test_online_without_login_is_offline_with_one_warning(wandb_env):
    warnings: list[str] = []
    tracker = Tracker("tiny", mode="online", warn=warnings.append)
    tracker.close()
    assert tracker.mode == "offline" and len(warnings) == 1 and "wandb login" in warnings[0]


class _NotWandb(http.server.BaseHTTPRequestHandler):
    """A server that answers every request with 404: reachable, but no W&B."""

    def _answer(self):
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_HEAD = _answer

    def log_message(self, *args):
        pass


def test_online_run_creation_failure_falls_back_mid_study(tmp_path, wandb_env, monkeypatch):
    """The server answers the probe, but W&B cannot create runs on it: the first run falls back to offline
    within init_timeout, with one warning, and the study completes with every run written offline."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotWandb)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
        warnings: list[str] = []
        tracker = Tracker("tiny", mode="online", entity="someone", probe_timeout=2, init_timeout=2,
                          warn=warnings.append)
        assert tracker.mode == "online"
        root = _run(tmp_path, tracker)
    finally:
        server.shutdown()
    assert len(warnings) == 1 and "offline" in warnings[0], warnings
    assert tracker.mode == "offline"
    assert all(r.mode == "offline" and r.error is None for r in tracker.runs)
    assert sorted(offline_run_dirs(wandb_env["WANDB_DIR"])) == sorted(r.id for r in tracker.runs)
    rows = store.read(root)
    # URLs were handed out while online; the run keeps its id offline, so `wandb sync` makes the URL valid
    assert rows["wandb_run"].null_count() == 0


def test_final_run_summary_carries_the_diagnostics():
    from bench.study.units import Unit

    tracker = Tracker("tiny", mode="disabled")
    jobs = []
    tracker._submit = jobs.append  # the job the background thread would send
    unit = Unit("synthetic", "mmoe", "mean")
    base = {"seed": 1, "n_params": 10, "seconds": 1.0, "epochs": 2, "config_hash": "h"}
    rows = [
        {**base, "split": "test", "task": "y1", "kind": "regression", "metric": "mse", "value": 1.5},
        {**base, "split": "test", "task": "y1", "kind": "diagnostic", "metric": "gate_weight", "value": 0.25,
         "level": 0, "expert": 3},
        {**base, "split": "test", "task": "y1", "kind": "diagnostic", "metric": "gate_entropy_norm", "value": 0.5,
         "level": 0, "expert": None},
        {**base, "split": "test", "task": "*", "kind": "diagnostic", "metric": "expert_dead_units", "value": 0.0,
         "level": 1, "expert": 2},
    ]
    tracker.final_start(unit, 1, {"seed": 1})
    tracker.final_end(unit, 1, {"seed": 1}, rows, {"history": [], "best_epoch": 1})
    summary = jobs[0].summary
    assert summary["test/y1/mse"] == 1.5
    assert summary["diagnostics/level0/y1/expert3/gate_weight"] == 0.25
    assert summary["diagnostics/level0/y1/gate_entropy_norm"] == 0.5
    assert summary["diagnostics/level1/expert2/expert_dead_units"] == 0.0
    assert not any(k.startswith("test/y1/gate") for k in summary)
