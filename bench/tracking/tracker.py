"""Weights & Biases tracking of studies: one W&B run per search trial and per final run, and a leaderboard run.

Plugs into ``bench.spec.hooks.Hooks`` (``Tracker.hooks()``); nothing else in the harness knows about W&B, and
``wandb`` is imported only inside this module's functions. What each run receives (ids, names, configuration,
summaries) is built by ``bench.tracking.runs``.

Modes (``--wandb``, the study spec's ``[wandb]`` table, ``WANDB_MODE``; see ``resolve_mode``):

- ``offline`` (the default unless logged in): runs are written under ``<dir>/wandb/offline-run-*`` and uploaded
  later with ``wandb sync``; needs no API key and no network.
- ``online``: needs ``wandb login`` (or ``WANDB_API_KEY``). The server is probed once with a bounded timeout;
  when it cannot be reached, or a run cannot be created later on, tracking falls back to offline with one
  warning. W&B never stops a study.
- ``disabled``: nothing is created.

Each run: project (default ``mtl-bench``), group ``<study>/<dataset>``, job_type ``search`` or ``final``, name
``<architecture>-t<trial>`` (the trial numbered from 1, as logs and pages number it) or
``<architecture>-seed<seed>`` (``single_task[<task>]`` for the per-task baselines), tags with dataset and
architecture; config = the fully resolved configuration (training defaults and architecture defaults filled in)
and its ``config_hash`` (the same hash as in the results store);
history = per-epoch ``train_loss``, ``val/<task>/<metric>`` and ``val_objective`` (step = epoch); summary =
final per-task metrics, parameter count and wall time, and for a gated architecture the diagnostics stored with
the run, ``diagnostics/level<l>[/<task>][/expert<n>]/<metric>`` (``bench.training.diagnostics``).

Run ids are drawn here, before W&B is touched, so they are stored with the trial's and the final run's rows
(columns ``wandb_run`` and, online, ``wandb_url``) even though the W&B work itself happens on a background
thread: creating and finishing a run costs ~0.2-1 s even offline, which the training of the next trial
hides. W&B runs are created when a trial or final run ends (its whole history is logged then), not live.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.errors import UnknownChoice
from bench.hashing import config_hash
from bench.spec.hooks import Hooks
from bench.spec.tracking import MODES

from .runs import (
    RunJob,
    TrackedRun,
    final_summary,
    finite,
    new_run_id,
    resolved_config,
    trial_label,
    trial_summary,
    unit_label,
)
from .settings import base_url, logged_in

DEFAULT_PROJECT = "mtl-bench"


class Tracker:
    """W&B tracking of one ``bench run``: ``hooks()`` for ``run_study``, ``log_leaderboard`` at the end, then
    ``close()`` (or use it as a context manager), which waits for the background thread and stops W&B's
    service process."""

    def __init__(
        self,
        study: str,
        *,
        mode: str = "offline",
        project: str | None = None,
        entity: str | None = None,
        directory: Path | str | None = None,
        probe_timeout: float = 5.0,
        init_timeout: float = 30.0,
        background: bool = True,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        if mode not in MODES:
            raise UnknownChoice("wandb mode", mode, MODES)
        self.study, self.mode = study, mode
        self.project = project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT
        self.entity = entity or os.environ.get("WANDB_ENTITY") or None
        # WANDB_DIR wins; otherwise runs go beside the study's results (runs/<study>/wandb/...)
        self.directory = None if os.environ.get("WANDB_DIR") else (Path(directory) if directory else None)
        self.probe_timeout, self.init_timeout = probe_timeout, init_timeout
        self.warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr, flush=True))
        self.runs: list[TrackedRun] = []
        self.busy_seconds = 0.0  # wall time of the W&B work itself (init, log, finish), off the training thread
        self._warned: set[str] = set()
        self._app_url: str | None = None
        self._starts: dict[tuple, tuple[str, float]] = {}
        self._queue: queue.Queue[RunJob | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._background = background
        self._closed = False
        if self.mode == "online":
            self._go_online()

    # --- mode handling ---------------------------------------------------------------------------------
    def _warn_once(self, key: str, msg: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.warn(msg)

    def _fall_back(self, why: str) -> None:
        self.mode = "offline"
        self._app_url = None
        self._warn_once("offline", f"W&B: {why}; logging offline instead (upload later with `wandb sync`)")

    def _go_online(self) -> None:
        """Bounded checks before the first online run: API key, server reachable, default entity."""
        url = base_url()
        if not logged_in():
            return self._fall_back("online mode asked for, but not logged in (run `wandb login`)")
        try:  # any HTTP answer, even an error status, means the server is there
            urllib.request.urlopen(url, timeout=self.probe_timeout).close()
        except urllib.error.HTTPError:
            pass
        except (OSError, ValueError) as err:
            return self._fall_back(f"server {url} unreachable ({getattr(err, 'reason', err)})")
        if self.entity is None:
            found: dict[str, Any] = {}

            def ask() -> None:
                try:
                    import wandb

                    found["entity"] = wandb.Api(timeout=max(1, int(self.probe_timeout))).default_entity
                except Exception as err:  # any failure means: not usable online
                    found["error"] = f"{type(err).__name__}: {err}"

            t = threading.Thread(target=ask, daemon=True, name="wandb-probe")
            t.start()
            t.join(self.probe_timeout + 2.0)
            if not found.get("entity"):
                return self._fall_back(f"cannot reach {url} ({found.get('error', 'timed out')})")
            self.entity = found["entity"]
        from wandb.util import api_to_app_url

        self._app_url = os.environ.get("WANDB_APP_URL", "").rstrip("/") or api_to_app_url(url)

    def _url(self, run_id: str) -> str | None:
        if self.mode != "online" or not self._app_url or not self.entity:
            return None
        return f"{self._app_url}/{self.entity}/{self.project}/runs/{run_id}"

    # --- hooks ------------------------------------------------------------------------------------------
    def hooks(self) -> Hooks:
        if self.mode == "disabled":
            return Hooks()
        return Hooks(trial_start=[self.trial_start], trial_end=[self.trial_end],
                     final_start=[self.final_start], final_end=[self.final_end])

    def _start(self, key: tuple) -> tuple[str, str | None]:
        run_id = new_run_id()
        self._starts[key] = (run_id, time.perf_counter())
        return run_id, self._url(run_id)

    def _end(self, key: tuple) -> tuple[str, float | None]:
        if key in self._starts:
            run_id, t0 = self._starts.pop(key)
            return run_id, time.perf_counter() - t0
        return new_run_id(), None

    def _base(self, unit, config: dict[str, Any], stage: str) -> dict[str, Any]:
        return {
            "group": f"{self.study}/{unit.dataset}",
            "tags": sorted({unit.dataset, unit.arch, unit.weighting,
                            *([unit.target] if unit.arch == "single_task" else [])}),
            "config": {**resolved_config(unit.arch, config), "config_hash": config_hash(config),
                       "study": self.study, "dataset": unit.dataset, "architecture": unit.label,
                       "target": unit.target, "stage": stage},
        }

    def trial_start(self, unit, trial, config: dict[str, Any]) -> None:
        run_id, url = self._start(("search", str(unit), trial.number))
        trial.set_user_attr("wandb_run", run_id)
        if url:
            trial.set_user_attr("wandb_url", url)

    def trial_end(self, unit, trial, config: dict[str, Any], record: dict[str, Any]) -> None:
        run_id, wall = self._end(("search", str(unit), trial.number))
        history = record.get("history") or [{"epoch": i, "val_objective": v}
                                            for i, v in enumerate(record.get("curve", []))]
        base = self._base(unit, config, "search")
        self._submit(RunJob(id=run_id, name=f"{unit_label(unit)}-t{trial_label(trial)}", job_type="search",
                            history=history, summary=trial_summary(trial, record, wall), **base))

    def final_start(self, unit, seed: int, config: dict[str, Any]) -> None:
        self._start(("final", str(unit), seed))

    def final_end(self, unit, seed: int, config: dict[str, Any], rows: list[dict[str, Any]],
                  record: dict[str, Any] | None = None) -> None:
        """Also writes the run's id (and URL) into ``rows``, which the runner then stores."""
        key = ("final", str(unit), seed)
        run_id, wall = self._end(key)
        url = self._url(run_id)
        for r in rows:
            r["wandb_run"] = run_id
            r["wandb_url"] = url
        record = record or {}
        first = rows[0] if rows else {}
        summary = final_summary(seed, rows, record, wall)
        base = self._base(unit, config, "final")
        # the results store hashes the configuration that was searched (seed 0); keep the same hash here
        if first.get("config_hash"):
            base["config"]["config_hash"] = first["config_hash"]
        self._submit(RunJob(id=run_id, name=f"{unit_label(unit)}-seed{seed}", job_type="final",
                            history=list(record.get("history") or []), summary=summary, **base))

    # --- the leaderboard run ------------------------------------------------------------------------------
    def log_leaderboard(self, meta: dict[str, Any], tables: dict[str, Any], plot_dir: Path | None = None) -> str | None:
        """One run per study invocation (job_type ``leaderboard``): ``tables`` (name -> a frame with ``columns``
        and ``rows()``, e.g. ``bench.results.leaderboard.tables``; an ``overall`` table's ``mean_rank`` per
        ``architecture`` also goes to the summary), the PNG plots in ``plot_dir``, and the study's metadata
        ``meta``. Returns the run's id."""
        if self.mode == "disabled" or not tables:
            return None
        payload = {name: (list(df.columns), [list(map(finite, r)) for r in df.rows()]) for name, df in tables.items()}
        images = {f"plots/{p.stem}": p for p in sorted(Path(plot_dir).glob("*.png"))} \
            if plot_dir is not None and Path(plot_dir).is_dir() else {}
        run_id = new_run_id()
        summary = {"datasets": len(meta.get("datasets", {})), "architectures": len(meta.get("architectures", []))}
        if "overall" in tables:
            for r in tables["overall"].iter_rows(named=True):
                summary[f"mean_rank/{r['architecture']}"] = finite(r["mean_rank"])
        self._submit(RunJob(id=run_id, name="leaderboard", group=self.study, job_type="leaderboard",
                            tags=["leaderboard", *sorted(meta.get("datasets", {}))],
                            config={"study": self.study, "spec_hash": meta.get("spec_hash"),
                                    "budget": meta.get("budget"), "seeds": meta.get("seeds")},
                            summary=summary, tables=payload, images=images))
        return run_id

    # --- the background thread ----------------------------------------------------------------------------
    def _submit(self, job: RunJob) -> None:
        if self.mode == "disabled" or self._closed:
            return
        self.runs.append(TrackedRun(job.id, job.name, job.job_type, self._url(job.id)))
        if not self._background:
            self._send(job)
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, daemon=True, name="wandb-tracker")
            self._thread.start()
        self._queue.put(job)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                self._send(job)
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _settings(self, mode: str):
        import wandb

        return wandb.Settings(
            mode=mode, console="off", silent=True, x_disable_stats=True, disable_git=True, disable_code=True,
            save_code=False, init_timeout=self.init_timeout,
        )

    def _init(self, job: RunJob, mode: str):
        import wandb

        kwargs = {"dir": str(self.directory)} if self.directory else {}
        if self.directory:
            self.directory.mkdir(parents=True, exist_ok=True)
        # reinit="create_new": every init is a new run even if one is still open (the default would return
        # the previous run and merge trials together)
        return wandb.init(project=self.project, entity=self.entity if mode == "online" else None, id=job.id,
                          name=job.name, group=job.group, job_type=job.job_type, tags=job.tags, config=job.config,
                          reinit="create_new", settings=self._settings(mode), **kwargs)

    def _send(self, job: RunJob) -> None:
        """Create, fill and finish one W&B run; never raises (a failure becomes one warning)."""
        tracked = next((r for r in reversed(self.runs) if r.id == job.id), None)
        start = time.perf_counter()
        try:
            import wandb

            mode = self.mode
            try:
                run = self._init(job, mode)
            except Exception as err:
                if mode != "online":
                    raise
                self._fall_back(f"cannot create run {job.name} online ({type(err).__name__}: {err})")
                mode = "offline"
                wandb.teardown()  # the service still holds the failed run's id; a fresh one starts clean
                run = self._init(job, mode)
            try:
                for h in job.history:
                    step = int(h.get("epoch", 0))
                    run.log({k: finite(v) for k, v in h.items()}, step=step)
                payload: dict[str, Any] = {}
                for name, (columns, data) in job.tables.items():
                    payload[name] = wandb.Table(columns=list(columns), data=data)
                for name, path in job.images.items():
                    payload[name] = wandb.Image(str(path))
                if payload:
                    run.log(payload)
                run.summary.update({k: finite(v) for k, v in job.summary.items() if v is not None})
            finally:
                run.finish()
            if tracked is not None:
                tracked.mode = mode
        except Exception as err:  # W&B never breaks a study
            if tracked is not None:
                tracked.error = f"{type(err).__name__}: {err}"
            self._warn_once("error", f"W&B: could not write run {job.name} ({type(err).__name__}: {err}); "
                            "the study goes on without it")
        finally:
            self.busy_seconds += time.perf_counter() - start

    def close(self, timeout: float = 120.0) -> None:
        """Wait (at most ``timeout`` seconds) for pending runs, then stop W&B's service process."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.warn(f"W&B: runs still being written after {timeout:.0f} s; leaving them unfinished")
                return
        if "wandb" in sys.modules:
            try:
                sys.modules["wandb"].teardown()
            except Exception:
                pass

    def describe(self) -> str:
        """One line for the end of ``bench run``: where the runs are and how to see them."""
        if self.mode == "disabled":
            return "W&B: disabled"
        n = len(self.runs)
        cost = f"{self.busy_seconds:.1f} s of W&B work in the background"
        if self.mode == "online":
            where = f"{self._app_url}/{self.entity}/{self.project}" if self._app_url else f"project {self.project}"
            return f"W&B: {n} runs online at {where} ({cost})"
        root = Path(os.environ.get("WANDB_DIR") or self.directory or ".") / "wandb"
        return f"W&B: {n} runs offline in {root}/ (upload: wandb sync {root}/offline-run-*; {cost})"

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def offline_run_dirs(directory: Path) -> dict[str, Path]:
    """Offline run directories under ``directory`` (a ``WANDB_DIR``), by run id: ``wandb/offline-run-<time>-<id>``."""
    out = {}
    for d in sorted((Path(directory) / "wandb").glob("offline-run-*")):
        if d.is_dir():
            out[d.name.rsplit("-", 1)[-1]] = d
    return out
