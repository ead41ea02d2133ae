"""Many workers on one study: storage, locks, liveness, crash recovery and the search loop with an exact budget.

Every ``bench run`` process is a *worker*. Workers of one study share its Optuna storage: the embedded
journal file ``runs/<study>/optuna.journal`` (processes on one machine), or a database URL
(``--storage postgresql://...``: processes on many machines). What keeps them honest:

- **An exact budget.** Counting a unit's trials and creating the next one happen under one lock per unit
  (``Coordinator.lock``): a file lock next to the journal (``runs/<study>/locks/``), a PostgreSQL
  session-level advisory lock for a PostgreSQL URL, a file lock next to the database file for SQLite. A trial
  is created only while (counted + running + waiting) < budget, so N workers never overshoot.
- **Liveness.** Every trial carries its worker's id (user attribute ``worker``). The journal storage has no
  heartbeat in Optuna 5, so each worker holds an exclusive ``flock`` on its own lease file
  ``runs/<study>/workers/<id>.lease`` for its whole life: the kernel releases it when the process dies, by
  SIGKILL or the OOM killer included, so a RUNNING trial whose lease can be locked by someone else belongs to
  a dead worker, with no grace period. On a database, Optuna's heartbeat (``heartbeat_interval``,
  ``grace_period``) marks a trial stale once its worker stops beating.
- **Recovery.** A stale trial (and a trial interrupted by SIGTERM or Ctrl-C, which the worker fails itself
  before exiting) is marked FAIL with the reason in user attribute ``interrupted``; it does not count toward
  the budget. It is retried once with the same parameters: a WAITING trial with the system attributes of
  Optuna's ``RetryHeartbeatStaleTrialCallback`` (``failed_trial``, ``retry_history``), which the next
  ``ask()`` of any worker picks up. A retry that is interrupted again is not retried: the budget's slot goes
  to a newly sampled trial.
- **Failures** of a configuration (an exception in a model, out of memory, a non-finite loss) are FAIL trials
  with user attribute ``error``; they count toward the budget. More than ``max_failure_rate`` of a unit's
  counted trials failing (at least ``MIN_FAILURES`` of them) stops the worker with one clear line.
- **Claims.** The final run of one (unit, seed) is claimed with a non-blocking lock held for the run's
  length (``Coordinator.claim``), so two workers never train the same seed; a lock dies with its process.
- **Sampler seeds.** The sampler is re-created before every ``ask()`` with seed ``sampler.seed + n``, n the
  number of trials the unit had: every trial draws from its own stream whichever worker asks, and two workers
  started at the same moment never draw the same configurations.

Signals: SIGTERM sets a flag; inside training Lightning turns it into ``SIGTERMException`` (a ``SystemExit``,
which Optuna does not catch) at the next batch; between trials the loop checks the flag. Either way the
running trial is failed (``interrupted``), its retry queued, and the worker exits with status 143.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import UnknownChoice, UserError

DIALECTS = ("postgresql", "sqlite")
MIN_FAILURES = 3  # a failure rate is judged only once this many trials failed
DEFAULT_HEARTBEAT = 20  # seconds between heartbeats on a database storage; stale after GRACE_FACTOR times that
GRACE_FACTOR = 3
MAX_RETRY = 1
POLL_SECONDS = 0.5  # how often a worker with nothing to do looks again for work or for others' trials


class TooManyFailures(UserError):
    """Too many trials of a unit failed: the study stops (exit status 2, one line)."""


class Terminated(SystemExit):
    """SIGTERM (or SIGINT) reached a worker: it failed its running trial for a retry and exits."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(128 + int(signum))
        self.signum = int(signum)


# --- storage URLs ----------------------------------------------------------------------------------------
_PASSWORD_RE = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<tail>@)")


def mask_url(text: str | None) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` URL in it replaced by ``***``."""
    if not text:
        return ""
    return _PASSWORD_RE.sub(lambda m: f"{m['head']}***{m['tail']}", str(text))


def _clean_error(err: BaseException, url: str) -> str:
    """The first line of an error, with ``url``'s credentials masked wherever they appear."""
    line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    try:
        from sqlalchemy.engine import make_url

        password = make_url(url).password
    except Exception:  # noqa: BLE001 - an unparsable URL has no password to hide
        password = None
    if password:
        line = line.replace(str(password), "***")
    return mask_url(line)


def check_storage_url(url: str) -> str:
    """The dialect of a storage URL (``postgresql`` or ``sqlite``), or a one-line ``UserError``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise UserError(f"--storage {mask_url(url)!r} is not a database URL; expected e.g. "
                        "postgresql://user@host/db or sqlite:///path/to/optuna.db") from None
    dialect = parsed.get_backend_name()
    if dialect not in DIALECTS:
        raise UnknownChoice("--storage database", dialect, DIALECTS)
    if dialect == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise UserError("--storage sqlite needs a file (sqlite:///path/to/optuna.db), not an in-memory database")
        parent = Path(parsed.database).expanduser().resolve().parent
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise UserError(f"--storage {url!r}: directory {parent} does not exist or is not writable")
    return dialect


def open_storage(root: Path, url: str | None, *, heartbeat: int = DEFAULT_HEARTBEAT):
    """The study's own journal file, or an ``RDBStorage`` with heartbeats for a database URL."""
    if not url:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        root.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(root / "optuna.journal")))
    dialect = check_storage_url(url)
    import optuna
    from optuna.storages import RDBStorage

    # workers started at the same moment on a new database would race to create Optuna's tables
    init_lock = PostgresLocks(url) if dialect == "postgresql" else None
    try:
        with init_lock.hold("storage:init") if init_lock else contextlib.nullcontext(), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
            return RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, heartbeat_interval=heartbeat,
                              grace_period=GRACE_FACTOR * heartbeat)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - connection and driver errors all mean the same to the user
        raise UserError(f"cannot open storage {mask_url(url)}: {_clean_error(err, url)}") from None
    finally:
        if init_lock is not None:
            init_lock.close()


def storage_url(storage) -> str | None:
    return getattr(storage, "url", None) if type(storage).__name__ == "RDBStorage" else None


# --- locks -----------------------------------------------------------------------------------------------
def _slug(name: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9_.+-]+", "_", name)[:60]
    return f"{readable}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


class FileLocks:
    """Exclusive ``flock`` locks on files in ``directory`` (one machine; released when the process dies)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @contextlib.contextmanager
    def hold(self, name: str, *, blocking: bool = True) -> Iterator[bool]:
        import fcntl

        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / f"{_slug(name)}.lock", "a+") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def close(self) -> None:
        pass


class PostgresLocks:
    """PostgreSQL session-level advisory locks on one dedicated connection: held across machines, released
    by the server when the worker's connection dies."""

    def __init__(self, url: str) -> None:
        import sqlalchemy
        from sqlalchemy.pool import NullPool

        self._engine = sqlalchemy.create_engine(url, poolclass=NullPool)
        try:
            self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except Exception as err:  # noqa: BLE001
            raise UserError(f"cannot open storage {mask_url(url)}: {_clean_error(err, url)}") from None
        self._text = sqlalchemy.text

    @staticmethod
    def key(name: str) -> int:
        return int.from_bytes(hashlib.sha256(f"mtl-bench:{name}".encode()).digest()[:8], "big", signed=True)

    @contextlib.contextmanager
    def hold(self, name: str, *, blocking: bool = True) -> Iterator[bool]:
        k = self.key(name)
        if blocking:
            self._conn.execute(self._text("SELECT pg_advisory_lock(:k)"), {"k": k})
        elif not self._conn.execute(self._text("SELECT pg_try_advisory_lock(:k)"), {"k": k}).scalar():
            yield False
            return
        try:
            yield True
        finally:
            self._conn.execute(self._text("SELECT pg_advisory_unlock(:k)"), {"k": k})

    def close(self) -> None:
        self._conn.close()
        self._engine.dispose()


# --- the coordinator -------------------------------------------------------------------------------------
def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Coordinator:
    """Locks, claims and liveness of this worker's trials, for one study's storage."""

    def __init__(self, root: Path, storage) -> None:
        self.root = Path(root)
        self.storage = storage
        self.worker = new_worker_id()
        self.url = storage_url(storage)
        self._lease_fh = None
        if self.url is None:  # the journal: file locks, and a lease file held for this worker's life
            import fcntl

            self.locks: FileLocks | PostgresLocks = FileLocks(self.root / "locks")
            leases = self.root / "workers"
            leases.mkdir(parents=True, exist_ok=True)
            # locked under a temporary name, then renamed: a lease file is never seen unlocked while alive
            tmp = leases / f".{self.worker}.tmp"
            self._lease_fh = open(tmp, "a+")  # noqa: SIM115 - held until close()
            fcntl.flock(self._lease_fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.replace(tmp, leases / f"{self.worker}.lease")
            for other in leases.glob("*.lease"):  # leases of dead workers (SIGKILL leaves them behind)
                if other.stem != self.worker:
                    self._lease_free(other.stem)
        elif self.url.startswith("postgresql"):
            self.locks = PostgresLocks(self.url)
        else:  # sqlite: one machine; file locks next to the database file
            from sqlalchemy.engine import make_url

            db = Path(make_url(self.url).database).expanduser().resolve()
            self.locks = FileLocks(db.parent / f".{db.name}.locks")

    # locks
    def lock(self, name: str):
        """Blocking exclusive lock ``name`` (per unit: counting and creating its trials)."""
        return self.locks.hold(f"unit:{name}")

    def claim(self, name: str):
        """Non-blocking lock ``name``, held while in the ``with``: yields whether this worker got it."""
        return self.locks.hold(f"claim:{name}", blocking=False)

    def wait_claim(self, name: str):
        return self.locks.hold(f"claim:{name}")

    # liveness
    def begin(self, trial) -> None:
        """Mark a trial just created by ``ask()`` (still under the unit lock) as this worker's."""
        trial.set_user_attr("worker", self.worker)
        if self.url is not None:
            self.storage.record_heartbeat(trial._trial_id)

    @contextlib.contextmanager
    def beating(self, trial) -> Iterator[None]:
        """Keep a database trial's heartbeat fresh while it runs (the journal needs nothing: the lease is held)."""
        if self.url is None:
            yield
            return
        stop = threading.Event()
        interval = self.storage.get_heartbeat_interval()

        def beat() -> None:
            while not stop.wait(interval):
                with contextlib.suppress(Exception):  # a missed beat is retried; the grace period covers it
                    self.storage.record_heartbeat(trial._trial_id)

        thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def stale(self, opt) -> list[tuple[Any, str]]:
        """RUNNING trials of ``opt`` whose worker is gone, with the reason. Call under the unit's lock."""
        from optuna.trial import TrialState

        running = [t for t in opt.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
        if not running:
            return []
        out = []
        stale_ids: set[int] = set()
        if self.url is not None:
            stale_ids = set(self.storage._get_stale_trial_ids(opt._study_id))
        for t in running:
            owner = t.user_attrs.get("worker")
            if owner is None:
                # every worker marks its trial before releasing the lock: this one's creator died in between
                out.append((t, "orphaned: its worker died before it started"))
            elif self.url is not None:
                if t._trial_id in stale_ids:
                    grace = GRACE_FACTOR * self.storage.get_heartbeat_interval()
                    out.append((t, f"worker {owner} stopped beating (no heartbeat for {grace} s)"))
            elif owner != self.worker and self._lease_free(owner):
                out.append((t, f"worker {owner} is gone (killed or crashed)"))
        return out

    def _lease_free(self, owner: str) -> bool:
        """Whether ``owner``'s lease is not held (its worker is dead); a dead worker's lease file is removed."""
        import fcntl

        path = self.root / "workers" / f"{owner}.lease"
        if not path.exists():
            return True
        with open(path, "a+") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            with contextlib.suppress(OSError):
                path.unlink()
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return True

    def close(self) -> None:
        self.locks.close()
        if self._lease_fh is not None:
            with contextlib.suppress(OSError):
                (self.root / "workers" / f"{self.worker}.lease").unlink()  # unlinked while still locked
            self._lease_fh.close()
            self._lease_fh = None


# --- signals ---------------------------------------------------------------------------------------------
class StopFlag:
    """SIGTERM sets the flag instead of killing at an arbitrary point (e.g. in the middle of a journal write);
    Lightning, which chains this handler during a fit, raises at its next batch, the worker loop between trials."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous = None

    def install(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handler)
        return self

    def _handler(self, signum, frame) -> None:
        self.signum = signum

    def check(self) -> None:
        if self.signum is not None:
            raise Terminated(self.signum)

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


# --- trials ----------------------------------------------------------------------------------------------
def counted(trial) -> bool:
    """Trials that count toward the budget: finished ones, and failures of the configuration itself (user
    attribute ``error``); not an interruption, not a spec mistake."""
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and "error" in trial.user_attrs


def fail_and_retry(opt, trial, reason: str) -> bool:
    """Fail a RUNNING ``trial`` (``interrupted`` = reason) and queue one retry with the same parameters.
    Returns whether a retry was queued. Call under the unit's lock."""
    import optuna
    from optuna.trial import TrialState

    storage = opt._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, "interrupted", reason)
        storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False  # finished meanwhile
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if len(history) > MAX_RETRY:
        return False
    # the system attributes of optuna.storages.RetryHeartbeatStaleTrialCallback, without copying the failed
    # trial's user attributes (its partial curve and the interruption are not the retry's)
    opt.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs={"retry_of": trial.number},
        system_attrs={"failed_trial": trial.system_attrs.get("failed_trial", trial.number), "retry_history": history},
    ))
    return True


def failure_check(unit: str, trials: list, max_failure_rate: float) -> None:
    done = [t for t in trials if counted(t)]
    failed = [t for t in done if "error" in t.user_attrs]
    if len(failed) >= MIN_FAILURES and len(failed) > max_failure_rate * len(done):
        last = failed[-1].user_attrs["error"]
        raise TooManyFailures(f"{unit}: {len(failed)} of {len(done)} trials failed (more than "
                              f"{max_failure_rate:.0%}); stopping. Last error: {last}")


def search(
    opt,
    objective: Callable,
    *,
    unit: str,
    lock_name: str,
    trials: int,
    coordinator: Coordinator,
    new_sampler: Callable[[int], Any],
    timeout: float | None = None,
    max_failure_rate: float = 0.5,
    stop: StopFlag | None = None,
    report: Callable | None = None,
    out: Callable[[str], None] = print,
    wait: bool = False,
) -> int:
    """Run trials of ``opt`` until its budget of ``trials`` is taken (counted + running + waiting), with the
    other workers of the study. With ``wait``, return only once no trial of the unit is running anywhere (the
    final stage needs them all). Returns the number of trials this worker ran."""
    from optuna.trial import TrialState

    ran = 0
    stop = stop or StopFlag()
    while True:
        stop.check()
        trial = None
        with coordinator.lock(lock_name):
            for t, reason in coordinator.stale(opt):
                retried = fail_and_retry(opt, t, reason)
                out(f"[{unit}] trial {t.number} failed: {reason}; " + ("retrying it" if retried else "not retried"))
            all_trials = opt.get_trials(deepcopy=False)
            failure_check(unit, all_trials, max_failure_rate)
            done = [t for t in all_trials if counted(t)]
            running = [t for t in all_trials if t.state == TrialState.RUNNING]
            waiting = [t for t in all_trials if t.state == TrialState.WAITING]
            spent = sum(t.user_attrs.get("seconds", 0.0) for t in done)
            in_time = timeout is None or spent < timeout
            if waiting or (in_time and len(done) + len(running) + len(waiting) < trials):
                opt.sampler = new_sampler(len(all_trials))
                with warnings.catch_warnings():
                    # Optuna warns that heartbeats are meant for Study.optimize: this loop beats itself
                    warnings.filterwarnings("ignore", message="Heartbeat of storage")
                    trial = opt.ask()
                coordinator.begin(trial)
            elif not running or not wait:
                return ran
        if trial is None:
            time.sleep(POLL_SECONDS)  # others' trials still run: look again (they may fail and need a retry)
            continue
        run_trial(opt, trial, objective, coordinator=coordinator, lock_name=lock_name, unit=unit, stop=stop)
        ran += 1
        if report is not None:
            report(opt, opt._storage.get_trial(trial._trial_id))


def run_trial(opt, trial, objective: Callable, *, coordinator: Coordinator, lock_name: str, unit: str,
              stop: StopFlag) -> None:
    """One trial: the objective's value, PRUNED, or FAIL (its error kept by the objective); an interruption
    fails it for a retry and re-raises; a ``UserError`` fails it and re-raises."""
    import optuna
    from optuna.trial import TrialState

    with coordinator.beating(trial):
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            opt.tell(trial, state=TrialState.PRUNED)
            return
        except (SystemExit, KeyboardInterrupt) as err:
            # SIGTERM sets the flag (Lightning raises SIGTERMException); Ctrl-C ends a fit with sys.exit(1)
            signum = stop.signum or signal.SIGINT
            reason = f"interrupted by {signal.Signals(signum).name}" if stop.signum else f"interrupted ({err!r})"
            with coordinator.lock(lock_name):
                frozen = opt._storage.get_trial(trial._trial_id)
                if frozen.state == TrialState.RUNNING:
                    fail_and_retry(opt, frozen, reason)
            raise Terminated(signum) from None
        except UserError:
            opt.tell(trial, state=TrialState.FAIL)
            raise
        except Exception:
            opt.tell(trial, state=TrialState.FAIL)
            return
    opt.tell(trial, value)


# --- study identity --------------------------------------------------------------------------------------
ALLOWED_CHANGES = ("description", "budget.trials", "budget.timeout", "seeds (more)", "architectures or datasets added",
                   "wandb")


def unit_identity(study, unit) -> dict[str, Any]:
    """Everything of the spec that changes a unit's results: dataset and options, tasks, architecture, target,
    objective, search space (built-in defaults included), epochs, patience, sampler and pruner. Not the
    description, the number of trials, the timeout or the final seeds (a larger budget continues a study)."""
    import json
    from dataclasses import asdict

    ds = next(d for d in study.datasets if d.label == unit.dataset)
    ident = {
        "study": study.name,
        "dataset": {"name": ds.name, "options": ds.options, "tasks": list(ds.tasks or [])},
        "architecture": unit.arch, "target": unit.target, "objective": study.objective,
        "search": {k: asdict(p) for k, p in sorted(study.search[unit.arch].items())},
        "max_epochs": study.budget.max_epochs, "patience": study.budget.patience,
        "sampler": study.sampler, "pruner": study.pruner,
    }
    return json.loads(json.dumps(ident, sort_keys=True, default=str))  # the form it has after a storage round trip


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict) and key in ("search", "dataset"):
            out += [f"{key}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        else:
            out.append(key)
    return out


def check_identity(study, units, storage, root: Path, *, url: str | None) -> None:
    """Refuse (``UserError``, before anything is written) to continue a unit whose stored Optuna study was
    started by a spec that gives different results, or to lower the number of final seeds."""
    import optuna

    remedy = ("give the study a new name (name = ... in the spec)" if url else
              f"rerun with --fresh to move {root} aside and start afresh, or give the study a new name")
    allowed = f"allowed changes: {', '.join(ALLOWED_CHANGES)}"
    names = set(optuna.study.get_all_study_names(storage))
    for unit in units:
        if unit.optuna_name not in names:
            continue
        attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(unit.optuna_name))
        old = attrs.get("identity")
        if old is None:  # started before identities were stored: only the whole spec's hash is known
            if attrs.get("spec_hash") not in (None, study.spec_hash):
                raise UserError(f"{unit}: the stored search was started by a different version of study "
                                f"{study.name!r}; {remedy} ({allowed})")
            continue
        new = unit_identity(study, unit)
        if old.get("study") != new["study"]:
            raise UserError(f"{unit}: the storage already holds Optuna study {unit.optuna_name!r} of study "
                            f"{old.get('study')!r}; use one database (or dataset label) per study, or {remedy}")
        diff = _differences(old, new)
        if diff:
            raise UserError(f"{unit}: the spec of study {study.name!r} changed in a way that changes results "
                            f"({', '.join(diff)}); refusing to mix them: {remedy} ({allowed})")
    final = Path(root) / "results" / "final"
    extra = sorted({int(p.stem.split("-")[1]) for p in final.glob("*/*/seed-*.parquet")} - set(study.final_seeds))
    if extra:
        raise UserError(f"study {study.name!r} has stored final runs for seeds {extra} beyond seeds = {study.seeds}; "
                        f"they would stay in the leaderboard: {remedy}")


def move_aside(root: Path) -> Path | None:
    """``--fresh``: rename ``runs/<study>`` to ``runs/<study>.old-<UTC time>`` (nothing is deleted)."""
    root = Path(root)
    if not root.exists():
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = root.with_name(f"{root.name}.old-{stamp}")
    n = 1
    while target.exists():
        target = root.with_name(f"{root.name}.old-{stamp}-{n}")
        n += 1
    root.rename(target)
    return target


def ensure_writable(path: Path, what: str) -> None:
    """Check, without creating anything, that directory ``path`` exists or can be created, and can be written
    in (a temporary file in its nearest existing ancestor), or a ``UserError``."""
    import tempfile

    path = Path(path)
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{what} {str(path)!r} cannot be a directory: {str(existing)!r} is a file")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".bench-write-check-"):
            pass
    except OSError as err:
        raise UserError(f"{what} {str(path)!r} is not writable ({err.strerror or err})") from None
