"""One worker's coordinator for a study's storage: its locks and claims, the lease that proves it is alive
(journal storage), the heartbeats of its running trials (database storage), the detection of trials
whose worker is gone, and the stored runs it shares with workers on other machines (database storage)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .locks import FileLocks, PostgresLocks
from .shared import SharedRuns
from .storage import GRACE_FACTOR, storage_url


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
        # a database's workers may each have their own runs/<study>/: stored runs are shared through it too
        self.shared = SharedRuns(self.url, self.locks) if self.url is not None else None

    # locks
    def lock(self, name: str):
        """Blocking exclusive lock ``name`` (per unit: counting and creating its trials)."""
        return self.locks.hold(f"unit:{name}")

    def claim(self, name: str):
        """Non-blocking lock ``name``, held while in the ``with``: yields whether this worker got it."""
        return self.locks.hold(f"claim:{name}", blocking=False)

    def wait_claim(self, name: str):
        return self.locks.hold(f"claim:{name}")

    # stored runs
    def publish(self, study: str, unit: str, stage: str, seed: int, *, config_hash: str, content: bytes) -> None:
        """Share one stored run's result file (``content``) with the study's other workers: kept in the
        database's ``bench_results`` table (``bench.coordination.shared``). Nothing to do on the embedded journal,
        whose workers share ``runs/<study>/`` itself."""
        if self.shared is not None:
            self.shared.put(study, unit, stage, seed, config_hash=config_hash, worker=self.worker, content=content)

    def published(self, study: str, unit: str, stage: str, seed: int, *, config_hash: str) -> bytes | None:
        """The result file another worker shared for (unit, stage, seed) trained with ``config_hash``, or None."""
        if self.shared is None:
            return None
        return self.shared.get(study, unit, stage, seed, config_hash=config_hash)

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
        if self.shared is not None:
            self.shared.close()
        self.locks.close()
        if self._lease_fh is not None:
            with contextlib.suppress(OSError):
                (self.root / "workers" / f"{self.worker}.lease").unlink()  # unlinked while still locked
            self._lease_fh.close()
            self._lease_fh = None
