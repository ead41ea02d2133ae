"""Opening a study's Optuna storage: the embedded journal file ``runs/<study>/optuna.journal`` (processes on
one machine), or a database URL (``--storage postgresql://...``: processes on many machines) with Optuna's
heartbeats."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

from bench.errors import UserError
from bench.paths import aside

from .locks import JournalLock, PostgresLocks
from .urls import check_storage_url, clean_error, mask_url

DEFAULT_HEARTBEAT = 20  # seconds between heartbeats on a database storage; stale after GRACE_FACTOR times that
GRACE_FACTOR = 3
ENTRY = b'{"op_code":'  # how every line of Optuna's journal file starts


def open_storage(root: Path, url: str | None, *, heartbeat: int = DEFAULT_HEARTBEAT):
    """The study's own journal file, or an ``RDBStorage`` with heartbeats for a database URL."""
    if not url:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        class Backend(JournalFileBackend):
            def append_logs(self, logs) -> None:  # a full disk names the journal (bench.cli reports it)
                try:
                    super().append_logs(logs)
                except OSError as err:
                    raise OSError(err.errno, err.strerror or str(err), self._file_path) from None

        root.mkdir(parents=True, exist_ok=True)
        journal = root / "optuna.journal"
        return JournalStorage(Backend(str(journal), lock_obj=JournalLock(journal)))
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
        raise UserError(f"cannot open storage {mask_url(url)}: {clean_error(err, url)}") from None
    finally:
        if init_lock is not None:
            init_lock.close()


def repair_journal(path: Path, out: Callable[[str], None] = print) -> None:
    """Repair a journal damaged by a torn write (a crash or a full disk in the middle of a line), before anything
    appends to it, or refuse it in one line (``UserError``); a repaired file's old bytes are kept beside it
    (``optuna.journal.damaged-<time>``) and one line says so.

    - A partial last line (no newline: the write was cut) is dropped: Optuna never applied it, and the next
      append would otherwise be glued onto it, after which every read fails.
    - A line holding such a partial write followed by a complete one (what that append produced) keeps the
      complete entry, which is the one Optuna applied.
    - Any other line that is not a JSON object cannot be repaired: refused, naming the line. That includes a line
      cut short in the middle of the file with its newline kept (every line is parsed, not only its start): the
      operations after it may depend on the one it lost.

    Held under the lock every append to the journal takes (``JournalLock``), so that a line another worker is
    writing is never taken for a torn one."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    lock = JournalLock(path)
    lock.acquire()
    try:
        raw = path.read_bytes()
        n = raw.count(b"\n")
        if raw.endswith(b"\n") and raw.startswith(ENTRY) and raw.count(ENTRY) == raw.count(b"\n" + ENTRY) + 1 == n \
                and _all_entries(raw):
            return  # every line is one whole entry: sound
        lines = raw.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline
        fixed, notes = [], []
        for number, line in enumerate(lines, 1):
            good = _journal_entry(line)
            if good is None:
                raise UserError(f"{path}:{number}: damaged Optuna journal (not a JSON entry) that cannot be "
                                f"repaired; restore it from a backup, or move {path.parent} aside (--fresh)")
            if good is not line:
                notes.append(f"line {number} held a torn write before a complete entry")
            fixed.append(good)
        if tail:
            notes.append(f"dropped a partial last line of {len(tail)} bytes")
        if not notes:
            return
        backup = aside(path, "damaged")
        shutil.copy2(path, backup)
        tmp = path.with_name(f".{path.name}.repair")
        with open(tmp, "wb") as f:
            f.write(b"".join(line + b"\n" for line in fixed))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        out(f"{path}: repaired a torn write ({'; '.join(notes)}); the damaged file is kept as {backup.name}")
    finally:
        lock.release()


def _all_entries(raw: bytes) -> bool:
    """Whether every line of ``raw`` (lines that each start one entry) is a whole JSON object: a line cut short
    in the middle of the file, its newline kept, starts like an entry but is not one."""
    try:
        return all(isinstance(json.loads(line), dict) for line in raw.split(b"\n")[:-1])
    except ValueError:
        return False


def _journal_entry(line: bytes) -> bytes | None:
    """``line`` when it is a JSON object; the complete entry at its end when it starts with a torn write (an entry
    begins ``{"op_code":``, so an object nested in the torn part is never taken for one); else None."""
    start = 0
    while start >= 0:
        try:
            entry = json.loads(line[start:])
            if isinstance(entry, dict) and (start == 0 or "op_code" in entry):
                return line if start == 0 else line[start:]
        except ValueError:
            pass
        start = line.find(ENTRY, start + 1)
    return None


def storage_url(storage) -> str | None:
    return getattr(storage, "url", None) if type(storage).__name__ == "RDBStorage" else None
