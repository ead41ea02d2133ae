"""Opening a study's Optuna storage: the embedded journal file ``runs/<study>/optuna.journal`` (processes on
one machine), or a database URL (``--storage postgresql://...``: processes on many machines) with Optuna's
heartbeats."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

from bench.errors import UserError

from .locks import PostgresLocks
from .urls import check_storage_url, clean_error, mask_url

DEFAULT_HEARTBEAT = 20  # seconds between heartbeats on a database storage; stale after GRACE_FACTOR times that
GRACE_FACTOR = 3


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
        raise UserError(f"cannot open storage {mask_url(url)}: {clean_error(err, url)}") from None
    finally:
        if init_lock is not None:
            init_lock.close()


def storage_url(storage) -> str | None:
    return getattr(storage, "url", None) if type(storage).__name__ == "RDBStorage" else None
