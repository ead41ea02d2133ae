"""Exclusive named locks shared by a study's workers: ``flock`` on files (one machine) or PostgreSQL
session-level advisory locks (many machines). Both are released when their process dies."""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path

from bench.errors import UserError

from .urls import clean_error, mask_url


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


class JournalLock:
    """The lock Optuna's ``JournalFileBackend`` takes around each append to the study's journal file (it calls
    ``acquire()`` and ``release()``): a ``FileLocks`` lock in ``locks/`` beside the journal, where the study's
    other file locks are.

    Optuna's default, ``JournalFileSymlinkLock``, is a symbolic link that outlives a holder killed in the middle
    of an append (SIGKILL, the OOM killer): every other worker then waits its 30 s grace period before taking the
    lock over, and a worker told to stop (SIGTERM) meanwhile cannot, since it is inside that wait. The kernel
    releases a ``flock`` when its holder dies. Every process that appends to a study's journal goes through
    ``open_storage`` (and ``repair_journal``), so all of them take this lock; reading the journal takes none.
    One machine, a local file system (as the journal itself). Each thread holds its own, so threads of one
    process exclude each other as processes do.
    """

    def __init__(self, journal: str | Path) -> None:
        journal = Path(journal)
        self._locks, self._name = FileLocks(journal.parent / "locks"), f"journal:{journal.name}"
        self._held = threading.local()

    def acquire(self) -> bool:
        held = contextlib.ExitStack()
        held.enter_context(self._locks.hold(self._name))  # blocks; a signal's handler runs and the wait resumes
        self._held.stack = held
        return True

    def release(self) -> None:
        held = getattr(self._held, "stack", None)
        if held is not None:
            self._held.stack = None
            held.close()


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
            raise UserError(f"cannot open storage {mask_url(url)}: {clean_error(err, url)}") from None
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
