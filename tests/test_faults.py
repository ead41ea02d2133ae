"""Faults on a tiny study (issue 18): a torn journal, an interruption in the search, SIGTERM in the population
final stage, a truncated result file, a full disk, a data file edited in place, a lowered budget and a no-op
rerun. After each, the leaderboard rebuilt from the store is the one an uninterrupted run writes (dates and
wall times aside; a truncated result file on the embedded storage is retrained: its values to float rounding)."""

from __future__ import annotations

import errno
import io
import os
import re
import signal
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from bench.cli import main
from bench.results import leaderboard, store

SPEC = """
name = "f"
architectures = ["mmoe", "shared_bottom"]
seeds = 2

[budget]
trials = 3
max_epochs = 2
patience = 1

[pruner]
kind = "none"

[[datasets]]
name = "synthetic"
options = { n_samples = 240, d = 6 }

[search.all]
batch_size = [64]
expert_units = [4, 8]
tower_units = [4]
n_experts = 2
"""
COMMON = ["--accelerator", "cpu", "--no-plots", "--wandb", "disabled", "--quiet"]

pytestmark = pytest.mark.usefixtures("one_thread")


def normalized(text: str) -> str:
    """A leaderboard without what differs between runs of the same study: the command line (with the wall
    time), the date, and the seconds per trial (a table's ``s/trial`` column)."""
    out, drop = [], None
    for line in text.splitlines():
        if line.startswith(("- command:", "- date:")):
            continue
        if not line.startswith("|"):
            drop = None  # a table ended
            out.append(line)
            continue
        cells = line.split("|")
        if drop is None and not set(line) <= set("|-: "):  # a table's header: where is s/trial
            names = [c.strip() for c in cells]
            drop = names.index("s/trial") if "s/trial" in names else -1
        if drop is not None and drop >= 0:
            cells = cells[:drop] + cells[drop + 1 :]
        out.append("|".join(cells))
    return "\n".join(out)


def cli(cwd: Path, *argv: str) -> int:
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return main(list(argv))
    finally:
        os.chdir(old)


def study_dir(tmp_path: Path, spec: str = SPEC) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "f.toml").write_text(spec)
    return tmp_path


def run(cwd: Path, *extra: str) -> int:
    return cli(cwd, "run", "--study", "f.toml", *COMMON, *extra)


def page(cwd: Path) -> str:
    _, text = leaderboard.build(cwd / "runs" / "f", cwd / "rebuilt", with_plots=False)
    return normalized(text)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> str:
    """The leaderboard of an uninterrupted run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cwd = study_dir(tmp_path_factory.mktemp("reference"))
        assert run(cwd) == 0
        return page(cwd)
    finally:
        torch.set_num_threads(threads)


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def interrupt_second_fit(cwd) -> None:
    """Run the study in ``cwd`` with a Ctrl-C arriving as its 2nd fit starts: it exits 130."""
    import bench.training.fit

    original = bench.training.fit.fit
    calls = {"n": 0}

    def fit(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*a, **kw)

    bench.training.fit.fit = fit
    try:
        assert run(cwd) == 130
    finally:
        bench.training.fit.fit = original


# --- 2: a torn journal --------------------------------------------------------------------------------------
def test_torn_journal_tail_is_repaired_with_a_backup(tmp_path, capsys, reference):
    cwd = study_dir(tmp_path)
    journal = cwd / "runs" / "f" / "optuna.journal"

    # a first run cut short in the search of mmoe's 2nd trial, then the last bytes of its journal lost (a torn write)
    interrupt_second_fit(cwd)
    raw = journal.read_bytes()
    journal.write_bytes(raw[:-7])
    capsys.readouterr()
    assert run(cwd, "--quiet") == 0
    out = capsys.readouterr()
    notes = [line for line in out.out.splitlines() + out.err.splitlines() if "torn write" in line]
    assert notes == [] or len(notes) == 1  # --quiet prints no progress lines
    backups = list(journal.parent.glob("optuna.journal.damaged-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == raw[:-7]
    assert page(cwd) == reference


def test_torn_journal_line_repair_message_and_glued_append(tmp_path, capsys):
    """Without --quiet the repair is one line; a torn line with a complete entry appended onto it (what an older
    version left behind) keeps that entry; a line that is no entry at all is refused in one line."""
    from bench.coordination.storage import repair_journal

    journal = tmp_path / "optuna.journal"
    good = [
        b'{"op_code":0,"worker_id":"w","study_name":"s","directions":[1]}',
        b'{"op_code":5,"worker_id":"w","study_id":0,"datetime_start":"2026-01-01T00:00:00"}',
    ]
    journal.write_bytes(good[0] + b"\n" + good[1][:20] + good[1] + b"\n" + good[1][:9])
    lines: list[str] = []
    repair_journal(journal, lines.append)
    assert journal.read_bytes() == good[0] + b"\n" + good[1] + b"\n"
    assert len(lines) == 1 and "torn write" in lines[0] and "partial last line of 9 bytes" in lines[0]
    repair_journal(journal, lines.append)  # nothing more to repair: nothing said, nothing written
    assert len(lines) == 1 and len(list(tmp_path.glob("optuna.journal.damaged-*"))) == 1

    journal.write_bytes(good[0] + b"\nnot json at all\n" + good[1] + b"\n")
    (tmp_path / "f.toml").write_text(SPEC)
    (tmp_path / "runs" / "f").mkdir(parents=True)
    os.replace(journal, tmp_path / "runs" / "f" / "optuna.journal")
    before = (tmp_path / "runs" / "f" / "optuna.journal").read_bytes()
    capsys.readouterr()
    assert run(tmp_path) == 2
    err = one_line(capsys.readouterr().err)
    assert "optuna.journal:2: damaged Optuna journal" in err
    assert (tmp_path / "runs" / "f" / "optuna.journal").read_bytes() == before


# --- 6: an interruption in the search, then a resume ----------------------------------------------------------
def test_interrupted_and_resumed_study_gives_the_same_leaderboard(tmp_path, capsys, reference):
    """Trial 1 of the first unit is interrupted (Ctrl-C): failed for a retry, not counted. Resumed, the study
    draws the same configurations (the sampler seed is the configuration's ordinal, not the trial count) and
    the final seeds' dropout masks come from each seed alone."""
    cwd = study_dir(tmp_path)
    interrupt_second_fit(cwd)
    assert run(cwd) == 0
    capsys.readouterr()
    import optuna

    from bench.coordination.storage import open_storage

    trials = optuna.load_study(study_name="synthetic/mmoe", storage=open_storage(cwd / "runs" / "f", None)).get_trials()
    assert len(trials) == 4 and "failed_trial" in trials[2].system_attrs  # the interrupted one and its retry
    assert page(cwd) == reference


# --- 5: SIGTERM in the population final stage -------------------------------------------------------------
def test_sigterm_in_the_population_final_stage_stops_at_once(tmp_path, capsys, reference, monkeypatch):
    import bench.training.population as population

    cwd = study_dir(tmp_path)
    original = population.train_population
    seen = {"steps": 0}

    def train_population(*a, stop=None, **kw):
        def counting_stop():
            seen["steps"] += 1
            stop()

        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the population trains
        return original(*a, stop=counting_stop, **kw)

    monkeypatch.setattr(population, "train_population", train_population)
    assert run(cwd) == 143
    err = capsys.readouterr().err
    assert "terminated by SIGTERM" in err
    assert seen["steps"] == 1  # stopped before its first step
    assert not (cwd / "results" / "f.md").exists()
    assert not list((cwd / "runs" / "f" / "results").glob("final/**/*.parquet"))
    monkeypatch.setattr(population, "train_population", original)
    assert run(cwd) == 0
    assert page(cwd) == reference


# --- 9: a truncated result file, a full disk ----------------------------------------------------------------
@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_truncated_seed_file_is_set_aside_and_restored(tmp_path, capsys, reference, storage):
    """The embedded journal keeps no copy of a run's rows (they live in the results store only): the seed is
    retrained, alone, to the same rows. A database storage keeps each run's file (``bench_results``): restored
    from it without training."""
    cwd = study_dir(tmp_path)
    url = ["--storage", f"sqlite:///{tmp_path / 'optuna.db'}"] if storage == "sqlite" else []
    assert run(cwd, *url) == 0
    seed = cwd / "runs" / "f" / "results" / "final" / "synthetic" / "mmoe" / "seed-2.parquet"
    whole = seed.read_bytes()
    seed.write_bytes(whole[: len(whole) // 2])
    capsys.readouterr()
    # the leaderboard alone refuses, naming the file
    assert cli(cwd, "leaderboard", "--study", "f", "--no-plots", "--quiet") == 2
    err = one_line(capsys.readouterr().err)
    assert "seed-2.parquet is damaged" in err
    # a rerun sets it aside, then restores its rows from the database or retrains that seed alone
    assert cli(cwd, "run", "--study", "f.toml", *COMMON[:-1], *url) == 0
    out = capsys.readouterr().out
    assert "seed-2.parquet is damaged (cannot be read); set aside as seed-2.parquet.damaged-" in out
    retrained = [line.split("] ", 1)[1].split(" (")[0] for line in out.splitlines() if "] final seed " in line]
    assert retrained == ([] if storage == "sqlite" else ["final seed 2"]), retrained
    assert seed.read_bytes() != whole[: len(whole) // 2] and pl.read_parquet(seed).height > 0
    assert len(list(seed.parent.glob("seed-2.parquet.damaged-*"))) == 1
    if storage == "sqlite":
        assert page(cwd) == reference
        return
    # retrained alone instead of in a population of two: the same rows, their values to float rounding (metrics
    # within 1e-4 as in tests/test_final_population.py, gate weights within 1e-3 here; other seeds differ by
    # tens of percent), which the leaderboard's intervals over two seeds magnify
    keys = ["split", "task", "kind", "metric", "level", "expert"]
    before, after = (pl.read_parquet(f).sort(keys) for f in (io.BytesIO(whole), seed))
    same = [*keys, "study", "stage", "trial", "seed", "config_hash", "config", "epochs", "n_params", "status"]
    assert after.select(same).equals(before.select(same))
    assert np.allclose(after["value"].to_numpy(), before["value"].to_numpy(), rtol=1e-2, atol=1e-4, equal_nan=True)


def test_full_disk_is_one_line_naming_the_path_and_the_store_stays_whole(tmp_path, capsys, monkeypatch):
    cwd = study_dir(tmp_path, SPEC.replace("seeds = 2", "seeds = 1"))
    assert run(cwd) == 0
    root = cwd / "runs" / "f"
    before = store.read(root)
    (cwd / "f.toml").write_text(SPEC)  # one more seed: allowed

    def full(self, path, *a, **kw):
        with open(path, "wb") as f:
            f.write(b"PAR1")  # a partial temporary file
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", full)
    capsys.readouterr()
    assert run(cwd) == 1
    err = one_line(capsys.readouterr().err)
    assert re.search(r"No space left on device writing runs/f/results/[\w/-]+\.parquet$", err), err
    assert not list(root.rglob("*.tmp")) and store.read(root).equals(before)
    monkeypatch.undo()
    assert run(cwd) == 0  # space freed: the run resumes


# --- 3: a data file edited in place -------------------------------------------------------------------------
TABLE_SPEC = """
name = "f"
architectures = ["mmoe"]
seeds = 1
[budget]
trials = 1
max_epochs = 1
patience = 1
[pruner]
kind = "none"
[[datasets]]
name = "table"
options = { path = "t.csv", labels = { a = "binary", b = "regression" }, cache = false }
[search.all]
batch_size = [64]
expert_units = [4]
tower_units = [4]
n_experts = 2
"""


def table_frame(n: int = 120, flip: bool = False) -> pl.DataFrame:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    a = (x[:, 0] > 0).int().tolist()
    return pl.DataFrame(
        {
            "x0": x[:, 0].tolist(),
            "x1": x[:, 1].tolist(),
            "x2": x[:, 2].tolist(),
            "a": [1 - v for v in a] if flip else a,
            "b": (x[:, 1] * 2).tolist(),
        }
    )


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.parent.name not in ("locks", "workers")
    }


def test_a_data_file_edited_in_place_is_a_changed_study(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    cwd = study_dir(tmp_path, TABLE_SPEC)
    table_frame().write_csv(cwd / "t.csv")
    assert run(cwd) == 0
    journal = cwd / "runs" / "f" / "optuna.journal"
    size = journal.stat().st_size
    assert run(cwd) == 0 and journal.stat().st_size == size  # 10: a no-op rerun appends nothing
    before = snapshot(cwd / "runs")
    table_frame(flip=True).write_csv(cwd / "t.csv")  # the labels flipped, same file name and options
    (cwd / "f.toml").write_text(TABLE_SPEC.replace("seeds = 1", "seeds = 2"))
    capsys.readouterr()
    assert run(cwd) == 2
    err = one_line(capsys.readouterr().err)
    assert "changes results (dataset.sources: the content of file0 t.csv changed)" in err and "--fresh" in err
    assert snapshot(cwd / "runs") == before


# --- 10: a lowered budget, an incomplete study --------------------------------------------------------------
def test_header_states_trials_that_ran_and_an_incomplete_study(tmp_path, capsys):
    cwd = study_dir(tmp_path)
    assert run(cwd) == 0
    root = cwd / "runs" / "f"
    (cwd / "f.toml").write_text(SPEC.replace("trials = 3", "trials = 2"))
    journal = (root / "optuna.journal").read_bytes()
    assert run(cwd) == 0
    assert (root / "optuna.journal").read_bytes() == journal  # nothing to run: nothing appended
    text = (cwd / "results" / "f.md").read_text()
    assert (
        "- budget: 2 search trials per architecture and dataset (3 ran for some units: trials of an earlier, "
        "larger budget are kept)" in text
    )
    assert "| 3/0/0 " in text and "incomplete" not in text
    (root / "results" / "final" / "synthetic" / "mmoe" / "seed-2.parquet").unlink()
    for p in (root / "results" / "final" / "synthetic" / "shared_bottom").glob("*.parquet"):
        p.unlink()
    _, text = leaderboard.build(root, cwd / "lb", with_plots=False)
    assert (
        "- **incomplete study**: final runs missing (synthetic \\| mmoe: seed 2; synthetic \\| shared_bottom: "
        "no final run)" in text
    )


def test_a_full_disk_in_a_trial_is_retried_not_counted(tmp_path, capsys, monkeypatch, reference):
    """An error of the machine inside a trial (here ENOSPC) is not a failure of its configuration: the trial is
    failed for a retry, the run stops with one line, and the rerun gives the uninterrupted leaderboard."""
    import optuna

    import bench.training.fit
    from bench.coordination.storage import open_storage

    cwd = study_dir(tmp_path)
    original = bench.training.fit.fit
    calls = {"n": 0}

    def fit(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", "/scratch/lightning.tmp")
        return original(*a, **kw)

    monkeypatch.setattr(bench.training.fit, "fit", fit)
    capsys.readouterr()
    assert run(cwd) == 1
    err = one_line(capsys.readouterr().err)
    assert err == "bench run: error: No space left on device writing /scratch/lightning.tmp\n"
    trial = optuna.load_study(study_name="synthetic/mmoe", storage=open_storage(cwd / "runs" / "f", None)).trials[1]
    assert "error" not in trial.user_attrs and trial.user_attrs["interrupted"].startswith("interrupted by OSError")
    monkeypatch.setattr(bench.training.fit, "fit", original)
    assert run(cwd) == 0
    assert page(cwd) == reference
