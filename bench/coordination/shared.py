"""Stored runs shared between machines: the result file of each final (or repeated) run, kept in a small table
of the study's database, so that a worker on another machine copies it into its own ``runs/<study>/`` instead of
training that seed again, and every machine's leaderboard is complete.

Only a database storage (``--storage URL``) needs it: workers of the embedded journal share ``runs/<study>/``
itself (the journal lives there), where the results store already holds every run. The rows never go into
Optuna's study user attributes, which every ``load_study`` and optuna-dashboard read whole.

The table, ``bench_results``, has one row per (study, unit, stage, seed): the Optuna study's name of the unit, the
configuration hash the run was trained with, the worker that trained it, when, and the run's file (bytes this
layer never opens: ``bench.results.store`` writes and reads them). It is created on first use, under the
storage's lock, beside Optuna's own tables (PostgreSQL, or SQLite on one machine).
"""

from __future__ import annotations

from datetime import UTC, datetime

from bench.errors import UserError

from .urls import clean_error, mask_url

TABLE = "bench_results"


class SharedRuns:
    """The ``bench_results`` table of one database URL; ``locks`` (the coordinator's) serialise its creation."""

    def __init__(self, url: str, locks) -> None:
        import sqlalchemy as sa

        self.url = url
        self._locks = locks
        self._engine = None
        self._sa = sa
        meta = sa.MetaData()
        self.table = sa.Table(
            TABLE, meta,
            sa.Column("study", sa.String(256), primary_key=True),  # the bench study's name
            sa.Column("unit", sa.String(512), primary_key=True),  # the unit's Optuna study name
            sa.Column("stage", sa.String(16), primary_key=True),  # final or repeat
            sa.Column("seed", sa.Integer, primary_key=True),
            sa.Column("config_hash", sa.String(64), nullable=False),
            sa.Column("worker", sa.String(256), nullable=False),
            sa.Column("stored_at", sa.String(32), nullable=False),  # ISO 8601, UTC
            sa.Column("content", sa.LargeBinary, nullable=False),  # the run's result file
        )
        self._meta = meta

    def _connect(self):
        if self._engine is None:
            engine = self._sa.create_engine(self.url, pool_pre_ping=True)
            try:
                with self._locks.hold(f"table:{TABLE}"):  # workers started together on a new database
                    self._meta.create_all(engine, checkfirst=True)
            except Exception as err:  # noqa: BLE001 - connection and driver errors all mean the same to the user
                engine.dispose()
                raise UserError(f"cannot open storage {mask_url(self.url)}: {clean_error(err, self.url)}") from None
            self._engine = engine
        return self._engine

    def _where(self, study: str, unit: str, stage: str, seed: int):
        t = self.table
        return (t.c.study == study) & (t.c.unit == unit) & (t.c.stage == stage) & (t.c.seed == seed)

    def put(self, study: str, unit: str, stage: str, seed: int, *, config_hash: str, worker: str,
            content: bytes) -> None:
        """Keep (or replace: a seed retrained for a new best configuration) one run's file."""
        now = datetime.now(UTC).replace(microsecond=0).isoformat()
        with self._connect().begin() as conn:  # one transaction: readers see the old row or the new one
            conn.execute(self.table.delete().where(self._where(study, unit, stage, seed)))
            conn.execute(self.table.insert().values(study=study, unit=unit, stage=stage, seed=seed,
                                                    config_hash=config_hash, worker=worker, stored_at=now,
                                                    content=content))

    def get(self, study: str, unit: str, stage: str, seed: int, *, config_hash: str) -> bytes | None:
        """One run's file when it was stored for ``config_hash``; None otherwise."""
        t = self.table
        query = self._sa.select(t.c.content).where(self._where(study, unit, stage, seed) &
                                                   (t.c.config_hash == config_hash))
        with self._connect().connect() as conn:
            content = conn.execute(query).scalar()
        return None if content is None else bytes(content)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
