"""Workers killed mid-trial (SIGKILL, SIGTERM), two workers (--jobs 2) and ten started at the same moment, on the
embedded journal storage and on PostgreSQL (127.0.0.1:5432, one fresh database per test; skipped when the server
is unreachable). Real processes only where a real kill or a real race is needed."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from bench.cli import main
from bench.results import store

PG = "postgresql://root@127.0.0.1:5432"

# one unit; trials long enough (20 epochs of ~1,000 rows, about a second) to be caught running and killed before
# they end, short enough to rerun quickly
KILL_SPEC = """
name = "crash"
architectures = ["mmoe"]
seeds = 1

[budget]
trials = 3
max_epochs = 20
patience = 20

[pruner]
kind = "none"

[[datasets]]
name = "synthetic"
options = { n_samples = 1500, d = 8 }

[search.all]
batch_size = [32]
expert_units = [8]
tower_units = [8]
n_experts = 2
"""

JOBS_SPEC = """
name = "jobs"
architectures = ["single_task", "mmoe"]
seeds = 2

[budget]
trials = 3
max_epochs = 2
patience = 1

[pruner]
kind = "none"

[[datasets]]
name = "synthetic"
options = { n_samples = 300, d = 8 }

[search.all]
batch_size = [64]
expert_units = [8]
tower_units = [8]
n_experts = 2
"""


def _pg_available() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgres]')"
    try:
        psycopg.connect(f"{PG}/test", connect_timeout=3).close()
    except Exception as err:  # noqa: BLE001
        return f"PostgreSQL at 127.0.0.1:5432 is unreachable: {str(err).strip().splitlines()[0]}"
    return None


@pytest.fixture
def pg_url():
    """A new, uniquely named database, dropped after the test."""
    reason = _pg_available()
    if reason:
        pytest.skip(reason)
    import psycopg

    name = f"bench_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{PG}/test", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG}/{name}"
    with psycopg.connect(f"{PG}/test", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _env() -> dict[str, str]:
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONUNBUFFERED="1")
    env.pop("BENCH_STORAGE", None)
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _storage(root: Path, url: str | None):
    if url:
        return url
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(root / "optuna.journal")))


def _trials(root: Path, url: str | None, name: str = "synthetic/mmoe"):
    storage = _storage(root, url)
    if name not in optuna.study.get_all_study_names(storage):
        return []
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def _wait_running(proc, root: Path, url: str | None, *, fresh_only: bool, exclude=(), timeout: float = 90.0):
    """The first RUNNING trial that reported an epoch (training is under way), not in ``exclude``; a fresh one
    (not a retry) when ``fresh_only``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if url or (root / "optuna.journal").exists():
            for t in _trials(root, url):
                if t.state == TrialState.RUNNING and t.intermediate_values and "worker" in t.user_attrs and \
                        t.number not in exclude and not (fresh_only and "failed_trial" in t.system_attrs):
                    return t
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("no trial started in time")


def _crash_and_recover(tmp_path: Path, url: str | None, capsys) -> None:
    spec = tmp_path / "crash.toml"
    spec.write_text(KILL_SPEC)
    runs, out_dir = tmp_path / "runs", tmp_path / "lb"
    root = runs / "crash"
    args = ["run", "--study", str(spec), "--runs-dir", str(runs), "--output", str(out_dir), "--accelerator", "cpu",
            "--no-plots", "--wandb", "disabled"] + (["--storage", url, "--heartbeat", "1"] if url else [])
    cmd = [sys.executable, "-m", "bench.cli", *args]

    # 1. SIGKILL during a trial: no chance to clean up
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = _wait_running(proc, root, url, fresh_only=True)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    assert [t.state for t in _trials(root, url) if t.number == killed.number] == [TrialState.RUNNING]

    # 2. a new worker fails the dead worker's trial and retries it; SIGTERM during its next fresh trial
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    termed = _wait_running(proc, root, url, fresh_only=True, exclude=(killed.number,))
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "terminated by SIGTERM" in stderr and "Traceback" not in stderr
    # numbered as the log lines number trials: its configuration's ordinal + 1 (= its number + 1 before any retry)
    assert f"trial {killed.number + 1} failed: worker" in stdout and "retrying it" in stdout

    # 3. rerun: the budget completes
    assert main(args) == 0
    capsys.readouterr()
    trials = {t.number: t for t in _trials(root, url)}
    states = collections.Counter(t.state for t in trials.values())
    assert states[TrialState.RUNNING] == 0 and states[TrialState.WAITING] == 0
    counted = [t for t in trials.values() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == 3  # exactly the budget
    interrupted = {n: t for n, t in trials.items() if t.state == TrialState.FAIL}
    assert set(interrupted) == {killed.number, termed.number}
    assert "is gone" in interrupted[killed.number].user_attrs["interrupted"] or \
        "stopped beating" in interrupted[killed.number].user_attrs["interrupted"]
    assert interrupted[termed.number].user_attrs["interrupted"] == "interrupted by SIGTERM"
    for n, failed in interrupted.items():
        retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == n]
        assert len(retries) == 1, n  # retried once
        assert retries[0].params == failed.params and retries[0].state == TrialState.COMPLETE
    # no trial duplicated: every counted trial is its own, and only the retries repeat a failed one's parameters
    fresh = [t for t in counted if "failed_trial" not in t.system_attrs]
    assert len({tuple(sorted(t.params.items())) for t in fresh}) == len(fresh)
    assert len(counted) == len(fresh) + 2

    # the stored rows: the search rows hold only counted trials, the final seed once
    rows = store.read(root)
    search = rows.filter((rows["stage"] == "search") & (rows["metric"] == "objective"))
    # numbered by configuration ordinal (a retry keeps its trial's), as an uninterrupted run numbers them
    assert sorted(search["trial"].to_list()) == sorted(t.user_attrs["ordinal"] for t in counted) == [0, 1, 2]
    assert rows.filter(rows["stage"] == "final")["seed"].unique().to_list() == [1]

    # the leaderboard regenerated from storage is byte-identical to the one the run wrote
    written = (out_dir / "crash.md").read_bytes()
    assert main(["leaderboard", "--study", "crash", "--runs-dir", str(runs), "--output", str(tmp_path / "again"),
                 "--no-plots", "--quiet"]) == 0
    assert (tmp_path / "again" / "crash.md").read_bytes() == written


def test_kill_and_sigterm_recovery_journal(tmp_path, capsys):
    _crash_and_recover(tmp_path, None, capsys)
    assert not list((tmp_path / "runs" / "crash" / "workers").glob("*.lease"))  # leases of live workers only


def test_kill_and_sigterm_recovery_postgres(tmp_path, pg_url, capsys):
    _crash_and_recover(tmp_path, pg_url, capsys)


def test_two_jobs_exact_budget_and_each_final_seed_once(tmp_path, capfd):
    spec = tmp_path / "jobs.toml"
    spec.write_text(JOBS_SPEC)
    runs = tmp_path / "runs"
    assert main(["run", "--study", str(spec), "--runs-dir", str(runs), "--output", str(tmp_path / "lb"),
                 "--accelerator", "cpu", "--no-plots", "--wandb", "disabled", "--jobs", "2"]) == 0
    out = capfd.readouterr().out
    root = runs / "jobs"
    storage = _storage(root, None)
    names = sorted(optuna.study.get_all_study_names(storage))
    assert names == ["synthetic/mmoe", "synthetic/single_task/y1", "synthetic/single_task/y2"]
    for name in names:
        trials = _trials(root, None, name)
        assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials)  # exact, not overshot
        assert sorted(t.number for t in trials) == [0, 1, 2]
    # each (unit, seed) trained by exactly one worker
    finals = [line.split("] ", 1)[1] for line in out.splitlines() if "] final seed " in line]
    keys = collections.Counter(line.split(":")[0] for line in finals)
    assert len(keys) == 3 * 2 and set(keys.values()) == {1}, finals
    assert {line[:6] for line in out.splitlines() if "] trial " in line} <= {"[w1/2]", "[w2/2]"}
    rows = store.read(root)
    assert rows.filter(rows["stage"] == "final").select("architecture", "target", "seed").unique().height == 6


STUB = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import optuna
    from bench.coordination.coordinator import Coordinator
    from bench.coordination.storage import open_storage
    from bench.coordination.trials import search

    root, url, start, budget = Path(sys.argv[1]), sys.argv[2] or None, float(sys.argv[3]), int(sys.argv[4])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(root, url, heartbeat=5)
    coordinator = Coordinator(root, storage)
    while time.time() < start:  # every worker starts at the same moment
        time.sleep(0.002)
    opt = optuna.create_study(storage=storage, study_name="race", direction="maximize", load_if_exists=True)

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        time.sleep(0.02)
        return x

    ran = search(opt, objective, unit="race", lock_name="stub:race", trials=budget, coordinator=coordinator,
                 new_sampler=lambda n: optuna.samplers.RandomSampler(seed=n), out=print, wait=True)
    coordinator.close()
    print("ran", ran)
""")


@pytest.mark.parametrize("backend", ["journal", "postgres"])
def test_ten_workers_started_at_once(tmp_path, backend, request):
    url = request.getfixturevalue("pg_url") if backend == "postgres" else ""
    root = tmp_path / "runs" / "race"
    root.mkdir(parents=True)
    budget, n = 12, 10
    start = time.time() + 6.0  # after every process has imported optuna
    procs = [subprocess.Popen([sys.executable, "-c", STUB, str(root), url, str(start), str(budget)], env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * n, [e for _, e in outs]
    assert time.time() > start + 0.02  # the race did happen after the start line
    storage = _storage(root, url or None)
    assert optuna.study.get_all_study_names(storage) == ["race"]  # exactly one study
    trials = optuna.load_study(study_name="race", storage=storage).get_trials(deepcopy=False)
    assert len(trials) == budget and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(budget))
    assert len({t.params["x"] for t in trials}) == budget  # one sampler seed per trial: no repeated draws
    assert sum(int(o.split("ran ")[-1]) for o, _ in outs) == budget


HOLDER = textwrap.dedent("""
    import contextlib, sys, time
    from pathlib import Path
    from bench.coordination.locks import FileLocks

    root, claims = Path(sys.argv[1]), sys.argv[2:]
    others = root / "results" / "final" / "synthetic"
    with contextlib.ExitStack() as stack:
        locks = FileLocks(root / "locks")
        assert all(stack.enter_context(locks.hold(f"claim:{c}", blocking=False)) for c in claims)
        print("held", flush=True)
        deadline = time.time() + 90
        while time.time() < deadline and len([*others.glob("mmoe/seed-*"), *others.glob("single_task@y2/seed-*")]) < 4:
            time.sleep(0.05)
        print("others stored" if time.time() < deadline else "timed out", flush=True)
""")


def test_final_stage_trains_other_units_while_one_is_claimed_elsewhere(tmp_path, capsys):
    """A worker finding a unit's final seeds held by another worker trains the other units' final seeds first
    and waits for that unit last (with --jobs N, workers run different units' final stages side by side)."""
    spec = tmp_path / "jobs.toml"
    spec.write_text(JOBS_SPEC)
    root = tmp_path / "runs" / "jobs"
    claims = ["jobs:synthetic/single_task/y1:final:1", "jobs:synthetic/single_task/y1:final:2"]  # the first unit
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), *claims], env=_env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["run", "--study", str(spec), "--runs-dir", str(tmp_path / "runs"), "--output",
                     str(tmp_path / "lb"), "--accelerator", "cpu", "--no-plots", "--wandb", "disabled"]) == 0
        assert holder.stdout.readline().strip() == "others stored"  # released once the other units' were stored
    finally:
        holder.kill()
        holder.wait()
    # single_task[y1]'s seeds were trained by this worker after the holder let go (a holder stores nothing)
    rows = store.read(root)
    finals = rows.filter(rows["stage"] == "final").select("architecture", "target", "seed").unique()
    assert finals.height == 6
    out = capsys.readouterr().out
    order = [line.split("]")[0] for line in out.splitlines() if "] final seed " in line]
    assert order[-2:] == ["[synthetic | single_task[y1"] * 2, order


def test_jobs_bad_input_one_error_and_workers_leave_quietly(tmp_path, capfd):
    """--jobs N starts workers 2..N before its own checks (their imports overlap); a user mistake found by those
    checks is reported once, the workers leave without a word, and nothing is written."""
    spec = tmp_path / "jobs.toml"
    spec.write_text(JOBS_SPEC)
    runs = tmp_path / "runs"
    assert main(["run", "--study", str(spec), "--runs-dir", str(runs), "--output", str(tmp_path / "lb"),
                 "--accelerator", "cpu", "--no-plots", "--wandb", "disabled", "--jobs", "3", "--oversubscribe",
                 "--threads", "0"]) == 2
    captured = capfd.readouterr()
    assert captured.err.strip().splitlines() == ["bench run: error: --threads must be >= 1, got 0"]
    assert captured.out == ""
    assert not runs.exists()


def test_jobs_bounded_before_any_worker_starts(tmp_path, capfd):
    """--jobs above the CPU count is one line before anything is spawned or written (--oversubscribe allows it)."""
    spec = tmp_path / "jobs.toml"
    spec.write_text(JOBS_SPEC)
    start = time.perf_counter()
    assert main(["run", "--study", str(spec), "--runs-dir", str(tmp_path / "runs"), "--jobs", "100000"]) == 2
    assert time.perf_counter() - start < 5
    err = capfd.readouterr().err.strip().splitlines()
    assert err == [f"bench run: error: --jobs 100000 is more than this machine's {os.cpu_count()} CPU cores; each "
                   "worker is a process of its own: use at most that many, or add --oversubscribe"]
    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(os.getpid())], capture_output=True, text=True)
    assert len(children.stdout.split()) <= 1  # ps itself at most: no worker was started
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_their_parent(tmp_path):
    """A worker started by --jobs 2 ends when the process that started it is killed by SIGKILL (the kernel sends
    it SIGTERM), instead of running on unsupervised."""
    spec = tmp_path / "jobs.toml"
    spec.write_text(JOBS_SPEC.replace("trials = 3", "trials = 50").replace("max_epochs = 2", "max_epochs = 50"))
    parent = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", "--study", str(spec), "--runs-dir",
                               str(tmp_path / "runs"), "--output", str(tmp_path / "lb"), "--jobs", "2",
                               "--accelerator", "cpu", "--wandb", "disabled"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        worker = None
        deadline = time.time() + 60
        while worker is None and time.time() < deadline:
            out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent.pid)], capture_output=True, text=True)
            pids = [int(p) for p in out.stdout.split()]
            worker = pids[0] if pids else None
            time.sleep(0.2)
        assert worker is not None, "no worker started"
        leases = tmp_path / "runs" / "jobs" / "workers"
        while time.time() < deadline and len(list(leases.glob("*.lease"))) < 2:
            time.sleep(0.2)  # both workers train (each holds its lease): past the start-up handshake
        assert len(list(leases.glob("*.lease"))) == 2
        parent.kill()
        parent.wait()
        deadline = time.time() + 30
        while time.time() < deadline and os.path.exists(f"/proc/{worker}"):
            if open(f"/proc/{worker}/stat").read().split()[2] == "Z":  # a zombie: dead, not yet reaped
                break
            time.sleep(0.2)
        alive = os.path.exists(f"/proc/{worker}") and open(f"/proc/{worker}/stat").read().split()[2] != "Z"
        assert not alive, "the worker outlived its parent"
    finally:
        for pid in (parent.pid,):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(sys.platform != "linux", reason="flock and SIGKILL as on Linux")
def test_journal_appends_wait_for_a_live_holder_and_not_for_a_killed_one(tmp_path):
    """Every append to the study's journal takes ``JournalLock``: a process holding it makes the append wait, and
    once that process is killed by SIGKILL in the middle of it (as a worker whose parent died mid-append), the
    append goes through at once, where Optuna's own symlink lock would have stayed behind for its 30 s grace period
    (and a worker told to stop meanwhile could not, being inside that wait)."""
    import threading

    from bench.coordination.storage import open_storage

    root = tmp_path / "runs"
    storage = open_storage(root, None)  # creates the journal
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from bench.coordination.locks import JournalLock; "
         "lock = JournalLock(sys.argv[1]); lock.acquire(); print('held', flush=True); time.sleep(600)",
         str(root / "optuna.journal")], stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        done = threading.Event()
        appender = threading.Thread(target=lambda: (optuna.create_study(study_name="s", storage=storage),
                                                    done.set()), daemon=True)
        appender.start()
        assert not done.wait(1.5), "the append did not wait for the lock's holder"
        holder.kill()
        holder.wait()
        assert done.wait(10), "the append still waits after its holder was killed"
        assert optuna.study.get_all_study_names(open_storage(root, None)) == ["s"]
    finally:
        holder.kill()
        holder.wait()


# --- final rows: in the results store, shared through a database, never in Optuna's study attributes ----------
SHARED_SPEC = """
name = "shared"
architectures = ["mmoe"]
seeds = {seeds}

[budget]
trials = 2
max_epochs = 2
patience = 1

[pruner]
kind = "none"

[[datasets]]
name = "synthetic"
options = {{ n_samples = 240, d = 6 }}

[search.all]
batch_size = [64]
expert_units = [4]
tower_units = [4]
n_experts = 2
"""
SHARED_ARGS = ["--accelerator", "cpu", "--no-plots", "--wandb", "disabled"]


def _study_attrs(storage) -> dict[str, dict]:
    """Every Optuna study's user attributes in ``storage``, by study name."""
    return {s.study_name: optuna.load_study(study_name=s.study_name, storage=storage).user_attrs
            for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}


def _assert_small_attrs(storage) -> None:
    import json

    attrs = _study_attrs(storage)
    assert attrs
    for name, a in attrs.items():
        assert sorted(a) == ["identity", "spec_hash"], (name, sorted(a))  # no final:seed-<k>, no rows
        assert len(json.dumps(a)) < 4000, (name, len(json.dumps(a)))


def _final_files(root: Path) -> dict[str, Path]:
    return {f"{p.parent.name}/{p.name}": p for p in sorted((root / "results" / "final").glob("*/*/seed-*.parquet"))}


def _page(path: Path) -> str:
    """A leaderboard without what differs between the runs that write it (the command with its wall time, date)."""
    return "\n".join(line for line in path.read_text().splitlines() if not line.startswith(("- command:", "- date:")))


def test_study_user_attributes_hold_no_result_rows(tmp_path, capsys, one_thread):
    """On the embedded journal the final rows (gate diagnostics included) live only in the results store: each
    unit's Optuna study keeps its spec hash and identity, a few hundred bytes, whatever the number of seeds."""
    spec = tmp_path / "shared.toml"
    spec.write_text(SHARED_SPEC.format(seeds=3))
    assert main(["run", "--study", str(spec), "--runs-dir", str(tmp_path / "runs"), "--output", str(tmp_path / "lb"),
                 *SHARED_ARGS, "--quiet"]) == 0
    root = tmp_path / "runs" / "shared"
    assert sorted(_final_files(root)) == ["mmoe/seed-1.parquet", "mmoe/seed-2.parquet", "mmoe/seed-3.parquet"]
    assert store.read(root).filter(store.read(root)["kind"] == "diagnostic").height > 0  # the bulky rows exist...
    _assert_small_attrs(_storage(root, None))  # ...but not in Optuna


def test_old_study_with_rows_in_attributes_still_reads(tmp_path, capsys, one_thread):
    """A study stored by an older version kept each final seed's rows in a study user attribute
    ``final:seed-<k>`` ({config_hash, rows}); its result files are still restored from them without training,
    and nothing is added to the attributes."""
    spec = tmp_path / "shared.toml"
    spec.write_text(SHARED_SPEC.format(seeds=2))
    args = ["run", "--study", str(spec), "--runs-dir", str(tmp_path / "runs"), "--output", str(tmp_path / "lb"),
            *SHARED_ARGS]
    assert main(args) == 0
    root = tmp_path / "runs" / "shared"
    page = _page(tmp_path / "lb" / "shared.md")
    # the old layout: the rows in the Optuna study (as the old final stage wrote them), the files lost
    opt = optuna.load_study(study_name="synthetic/mmoe", storage=_storage(root, None))
    before = {}
    for name, path in _final_files(root).items():
        rows = store.read_file(path)
        before[name] = rows
        seed = int(path.stem.split("-")[1])
        opt.set_user_attr(f"final:seed-{seed}", {"config_hash": rows["config_hash"][0], "rows": rows.to_dicts()})
        path.unlink()
    legacy = dict(opt.user_attrs)
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "] final seed " not in out  # restored, not retrained
    restored = _final_files(root)
    assert sorted(restored) == sorted(before)
    for name, rows in before.items():
        assert store.read_file(restored[name]).equals(rows), name
    assert _page(tmp_path / "lb" / "shared.md") == page
    assert optuna.load_study(study_name="synthetic/mmoe", storage=_storage(root, None)).user_attrs == legacy


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_final_rows_shared_between_machines(tmp_path, backend, request, capsys, one_thread):
    """Two machines (two runs directories) share one database storage. Machine A trains final seed 1; machine B,
    given one more seed, trains seed 2 only and takes seed 1's rows from the database (A's rows, unchanged); A's
    rerun takes seed 2 from B without training. Both leaderboards are complete and the same, and the rows are
    in the database's ``bench_results`` table, never in Optuna's study attributes."""
    url = request.getfixturevalue("pg_url") if backend == "postgres" else f"sqlite:///{tmp_path / 'optuna.db'}"
    one, two = tmp_path / "one.toml", tmp_path / "two.toml"
    one.write_text(SHARED_SPEC.format(seeds=1))
    two.write_text(SHARED_SPEC.format(seeds=2))

    def machine(name: str, spec: Path) -> str:
        capsys.readouterr()
        assert main(["run", "--study", str(spec), "--runs-dir", str(tmp_path / name), "--output",
                     str(tmp_path / f"lb-{name}"), "--storage", url, *SHARED_ARGS]) == 0
        return capsys.readouterr().out

    out_a = machine("a", one)
    assert "final seed 1 " in out_a
    a, b = tmp_path / "a" / "shared", tmp_path / "b" / "shared"
    out_b = machine("b", two)
    assert "final seed 1 " not in out_b and "final seed 2 " in out_b  # seed 1 came from machine A
    assert sorted(_final_files(b)) == ["mmoe/seed-1.parquet", "mmoe/seed-2.parquet"]
    assert store.read_file(_final_files(b)["mmoe/seed-1.parquet"]).equals(
        store.read_file(_final_files(a)["mmoe/seed-1.parquet"]))
    out_a = machine("a", two)
    assert "] final seed " not in out_a  # seed 2 came from machine B
    for name, path in _final_files(b).items():
        assert store.read_file(_final_files(a)[name]).equals(store.read_file(path)), name
    leaderboard = _page(tmp_path / "lb-b" / "shared.md")
    assert "n=2 " in leaderboard and "n=1 " not in leaderboard  # each machine's cells hold both seeds
    assert _page(tmp_path / "lb-a" / "shared.md") == leaderboard
    _assert_small_attrs(url)
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            shared = conn.execute(sqlalchemy.text("SELECT unit, stage, seed FROM bench_results ORDER BY seed")).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in shared] == [("synthetic/mmoe", "final", 1), ("synthetic/mmoe", "final", 2)]
