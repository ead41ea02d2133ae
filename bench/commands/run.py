"""``bench run --study NAME``: run (or resume) a study, then write and print its leaderboard."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run or resume a study (search, final seeds) and write its leaderboard",
        description="Run what is missing of a study: Optuna search per dataset and architecture, then the best "
        "configuration retrained with the final seeds; finally write its page, results/<study>.md (publishing "
        "it into leaderboard/ is `bench publish`).",
    )
    p.add_argument("--study", required=True, help="a name in studies/ (current directory, then the installed repo) "
                   "or a path to a .toml file")
    p.add_argument("--runs-dir", default="runs", type=Path, help="where runs/<study>/ is stored (default: runs)")
    p.add_argument("--storage", default=os.environ.get("BENCH_STORAGE") or None, metavar="URL",
                   help="Optuna storage shared by workers on many machines: postgresql://user@host/db (or "
                   "sqlite:///file.db on one machine); default: $BENCH_STORAGE, else a journal file in runs/<study>/")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="N worker processes on this machine sharing the study (each --threads threads; one GPU is "
                   "shared); the budget stays exact")
    p.add_argument("--oversubscribe", action="store_true",
                   help="allow --jobs above this machine's CPU count")
    p.add_argument("--fresh", action="store_true",
                   help="start afresh: move an existing runs/<study>/ aside to runs/<study>.old-<time>/ (embedded "
                   "storage only); needed when the spec changed in a way that changes results")
    p.add_argument("--max-failure-rate", type=float, default=0.5, metavar="R",
                   help="stop when more than this fraction of a unit's trials failed (at least 3; default 0.5)")
    p.add_argument("--heartbeat", type=int, default=20, metavar="S",
                   help="with --storage: seconds between a running trial's heartbeats; a trial silent for 3x this "
                   "is failed and retried (default 20)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # "i/N": one of --jobs N's processes
    p.add_argument("--output", default="results", type=Path,
                   help="where the page and its plots go (default: results; not tracked by git)")
    p.add_argument("--accelerator", default="auto", help="auto (default: a CUDA GPU when there is one), cpu or gpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: these small models gain little from more, and parallel "
                   "workers share the cores)")
    p.add_argument("--no-plots", action="store_true", help="write the markdown without plots")
    p.add_argument("--quiet", action="store_true",
                   help="print no progress lines and no leaderboard (errors and where it was written still)")
    p.add_argument("--keep-models", default="all", choices=("all", "best", "none"),
                   help="final runs' models kept under runs/<study>/models/ for `bench predict`: all (default), best "
                   "(per unit, the seed with the best validation score) or none")
    p.add_argument("--repeats", type=int, default=None, metavar="N",
                   help="also retrain each best configuration N more times (seeds 1001..1000+N) and report the "
                   "distribution of its test metric (default: the spec's repeats, else 0)")
    p.add_argument("--replicates", type=int, default=None, metavar="R",
                   help="run the whole pipeline (search and final seeds) R times, each with its own sampler streams "
                   "and, where the data allow it, its own data draw (default: the spec's replicates, else 1)")
    p.add_argument("--no-population", action="store_true",
                   help="train final seeds and repeats one fit after another instead of as one population "
                   "(same as [final] population = false in the spec)")
    p.add_argument("--wandb", default=None, choices=("online", "offline", "disabled"),
                   help="W&B tracking, one run per trial and final run (default: WANDB_MODE, else the spec's "
                   "[wandb] mode, else online when logged in, else offline into runs/<study>/wandb)")
    p.add_argument("--wandb-project", default=None, metavar="NAME",
                   help="W&B project (default: the spec's [wandb] project, WANDB_PROJECT, or mtl-bench)")


def run(args: argparse.Namespace) -> int:
    if args.worker:
        _await_go()
    _check_jobs(args)  # before any worker is spawned
    # --jobs N: this process is worker 1 of N. Workers 2..N start first thing, so that their imports (seconds:
    # torch, Lightning) overlap with this process's checks and imports; they train once the study is prepared.
    procs = _start_workers(args) if args.jobs > 1 and not args.worker else []
    tracker = None
    try:
        study = _load_study(args)  # every check of the spec and the options happens here, before anything is written
        import torch

        from bench.study.run import run_study

        torch.set_num_threads(args.threads)
        start = time.perf_counter()
        tracker = _tracker(args, study)
        prefix = f"[w{args.worker}] " if args.worker else (f"[w1/{args.jobs}] " if procs else "")
        options = _study_options(args, prefix)
        # a progress bar only for one process writing to a terminal; else the counts end every log line
        bar = not args.quiet and not procs and not args.worker and sys.stderr.isatty()
        if procs:
            run_study(study, args.runs_dir, fresh=args.fresh, prepare_only=True, **options)
    except BaseException:
        _release_workers(procs, go=False)
        if tracker is not None:
            tracker.close(timeout=15)
        raise
    _release_workers(procs, go=True)
    finished = False
    before = stored_work(Path(args.runs_dir) / study.name)  # every worker's work shows in the store
    try:
        code, root = _train(args, study, procs, tracker, prefix, bar, options)
        if code is not None:
            return code
        if args.worker:
            finished = True
            return 0  # the process that started the workers writes the leaderboard
        idle = stored_work(root) == before  # nothing was missing: no new W&B run, the stored command kept
        path, text = _write_leaderboard(args, study, root, tracker, idle)
        finished = True
    finally:
        tracker.close(timeout=120 if finished else 15)  # pending W&B runs are written before exiting
    if idle:
        print(f"bench run: nothing is missing of study {study.name}: every search trial and final run is stored; "
              f"its page is {path} (publish it with `bench publish --study {study.name}`)", file=sys.stderr)
        return 0
    if not args.quiet:
        print()
        print(text)
    print(f"leaderboard written to {path} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    print(tracker.describe(), file=sys.stderr)
    return 0


def _load_study(args: argparse.Namespace):
    """The study spec, with the command line's overrides (repeats, replicates, population) checked and applied,
    and the run's own options checked."""
    from bench.errors import UserError
    from bench.spec.study import MAX_REPEATS, MAX_REPLICATES, load_study

    study = load_study(args.study)  # every check of the spec happens here, before anything is written
    if args.repeats is not None:
        if not 0 <= args.repeats <= MAX_REPEATS:
            raise UserError(f"--repeats must be between 0 and {MAX_REPEATS}, got {args.repeats}")
        study.repeats = args.repeats
    if args.replicates is not None:
        if not 1 <= args.replicates <= MAX_REPLICATES:
            raise UserError(f"--replicates must be between 1 and {MAX_REPLICATES}, got {args.replicates}")
        study.replicates = args.replicates
    if args.no_population:
        study.population = False
    if args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    _check_options(args)
    return study


def _tracker(args: argparse.Namespace, study):
    """The W&B tracker of this run: its mode from ``--wandb``, ``WANDB_MODE`` or the spec; runs beside the
    study's store (runs/<study>/wandb)."""
    from bench.paths import component
    from bench.tracking.settings import resolve_mode
    from bench.tracking.tracker import Tracker

    spec = study.wandb
    mode, _ = resolve_mode(args.wandb, spec.mode if spec else None)
    folder = component(study.name, "study name")  # runs/<study>/, leaderboard/<study>/
    return Tracker(study.name, mode=mode, project=args.wandb_project or (spec.project if spec else None),
                   entity=spec.entity if spec else None, directory=Path(args.runs_dir) / folder)


def _study_options(args: argparse.Namespace, prefix: str) -> dict:
    """The keyword arguments of ``run_study`` every worker shares: storage, accelerator, where log lines go
    (nowhere with ``--quiet``; a storage URL's password masked), failure rate and heartbeat."""
    from bench.coordination.urls import mask_url

    out = (lambda line: None) if args.quiet else (lambda line: print(prefix + mask_url(line), flush=True))
    return dict(storage=args.storage, accelerator=args.accelerator, out=out,
                max_failure_rate=args.max_failure_rate, heartbeat=args.heartbeat)


def _train(args: argparse.Namespace, study, procs: list[subprocess.Popen], tracker, prefix: str, bar: bool,
           options: dict) -> tuple[int | None, Path | None]:
    """Runs what is missing of the study in this process, then waits for workers 2..N. Returns (an exit status,
    None) when terminated or a worker failed, else (None, the study's store)."""
    from bench.coordination.signals import Terminated
    from bench.study.run import run_study

    try:
        root = run_study(study, args.runs_dir, hooks=tracker.hooks(), fresh=args.fresh and not procs,
                         keep_models=args.keep_models, progress_bar=bar, **options)
    except Terminated as stop:
        print(f"bench run: {prefix}terminated by {signal.Signals(stop.signum).name}; an interrupted trial is "
              "failed and will be retried by the next run", file=sys.stderr, flush=True)
        _wait_workers(args, procs, terminate=True)
        return int(stop.code), None
    except BaseException:
        _wait_workers(args, procs, terminate=True)
        raise
    code = _wait_workers(args, procs)
    return (code or None), root


def _write_leaderboard(args: argparse.Namespace, study, root: Path, tracker, idle: bool) -> tuple[Path, str]:
    """The study's page (its header's command restated unless nothing was run) and, after a run that did work,
    the leaderboard's tables and plots as a W&B run. Returns the page's path and text."""
    from bench.paths import component
    from bench.results import leaderboard, store

    path, text = leaderboard.build(root, args.output, with_plots=not args.no_plots,
                                   command=None if idle else stated_command(args))
    rows = store.read(root)
    if rows.height and not idle:  # the leaderboard's tables and plots as a W&B run
        folder = component(study.name, "study name")
        tracker.log_leaderboard(store.read_meta(root), leaderboard.tables(rows), args.output / folder)
    return path, text


def stored_work(root: Path) -> dict[str, int]:
    """What a study's store holds of its work: the rows of each unit's search file (they grow with every counted
    trial) and the modification time of each final and repeated run's file. The same before and after a run (of
    any number of workers) that found nothing missing."""
    from bench.results.store import read_file, run_files

    work = {}
    for path in sorted(Path(root).glob("results/search/*/*.parquet")):
        rows = read_file(path)
        work[str(path)] = -1 if rows is None else rows.height
    for path in run_files(root, "final", "repeat"):  # every replicate's (r<k>-seed-<j>.parquet too)
        work[str(path)] = path.stat().st_mtime_ns
    return work


def stated_command(args: argparse.Namespace) -> str:
    """The command line that ran, as the page's header states it (a storage URL's password masked)."""
    import shlex

    from bench.coordination.urls import mask_url

    return mask_url("bench " + shlex.join(getattr(args, "argv", None) or ["run", "--study", str(args.study)]))


def _check_jobs(args: argparse.Namespace) -> None:
    """``--jobs`` between 1 and this machine's CPU count (each worker is a process that imports torch and
    trains with ``--threads`` threads); ``--oversubscribe`` allows more."""
    from bench.errors import UserError

    cores = os.cpu_count() or 1
    if args.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {args.jobs}")
    if args.jobs > cores and not args.oversubscribe:
        raise UserError(f"--jobs {args.jobs} is more than this machine's {cores} CPU cores; each worker is a "
                        "process of its own: use at most that many, or add --oversubscribe")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the kernel sends SIGTERM to this worker when the process that started it dies (even by SIGKILL), so
    that no worker outlives its study's first process; its running trial is then failed for a retry."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _check_options(args: argparse.Namespace) -> None:
    """The run's own options, and the storage URL and directories, checked before anything is written."""
    from bench.coordination.urls import check_storage_url
    from bench.errors import UserError
    from bench.results.store import ensure_writable
    from bench.training.devices import check_accelerator

    if not 0.0 <= args.max_failure_rate <= 1.0:
        raise UserError(f"--max-failure-rate must be between 0 and 1, got {args.max_failure_rate}")
    if args.heartbeat < 1:
        raise UserError(f"--heartbeat must be >= 1 second, got {args.heartbeat}")
    check_accelerator(args.accelerator)
    if args.storage:
        check_storage_url(args.storage)
    ensure_writable(args.runs_dir, "--runs-dir")
    if not args.worker:
        ensure_writable(args.output, "--output")


def _start_workers(args: argparse.Namespace) -> list[subprocess.Popen]:
    """``--jobs N``: workers 2..N (``bench run --worker i/N``) on the same study storage as this process; each
    waits for ``_release_workers`` before it reads the study."""
    cmd = [sys.executable, "-m", "bench.cli", "run", "--study", str(args.study),
           "--runs-dir", str(args.runs_dir), "--accelerator", args.accelerator, "--threads", str(args.threads),
           "--max-failure-rate", str(args.max_failure_rate), "--heartbeat", str(args.heartbeat),
           "--keep-models", args.keep_models]
    if args.wandb:
        cmd += ["--wandb", args.wandb]
    if args.wandb_project:
        cmd += ["--wandb-project", args.wandb_project]
    if args.repeats is not None:
        cmd += ["--repeats", str(args.repeats)]
    if args.replicates is not None:
        cmd += ["--replicates", str(args.replicates)]
    if args.no_population:
        cmd += ["--no-population"]
    if args.quiet:
        cmd += ["--quiet"]
    env = dict(os.environ)
    env.pop("BENCH_STORAGE", None)
    if args.storage:
        env["BENCH_STORAGE"] = args.storage  # not on the command line, where `ps` shows credentials
    return [
        subprocess.Popen([*cmd, "--worker", f"{i}/{args.jobs}"], env=env, stdin=subprocess.PIPE, text=True,
                         preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        for i in range(2, args.jobs + 1)
    ]


def _await_go() -> None:
    """A worker started by ``--jobs N`` pays for its slow imports while worker 1 checks and prepares the study,
    then waits for worker 1's word on its stdin: "go", or end of file (or SIGTERM) when preparing failed (worker 1
    reports why; this worker leaves quietly)."""
    import optuna  # noqa: F401

    import bench.training.fit  # noqa: F401  (torch, Lightning)

    if sys.stdin.readline().strip() != "go":
        raise SystemExit(0)


def _release_workers(procs: list[subprocess.Popen], *, go: bool) -> None:
    for proc in procs:
        try:
            if go:
                proc.stdin.write("go\n")
            proc.stdin.close()
        except OSError:  # the worker already died; _wait_workers reports it
            pass
    if not go:  # don't keep the user waiting for their imports: they have nothing to clean up yet
        for proc in procs:
            proc.terminate()
            proc.wait()


def _wait_workers(args: argparse.Namespace, procs: list[subprocess.Popen], *, terminate: bool = False) -> int:
    """Wait for workers 2..N (SIGTERM, also passed on when this process gets one, fails their running trials
    for a retry). Returns 0 when all of them finished."""

    def forward(signum=None, frame=None):
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    if terminate:
        forward()
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        codes = [proc.wait() for proc in procs]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    bad = [(i, c) for i, c in enumerate(codes, 2) if c]
    if bad:
        print(f"bench run: {len(bad)} of {args.jobs} workers failed (" +
              ", ".join(f"worker {i}: exit status {c}" for i, c in bad) + "); rerun to resume", file=sys.stderr)
        return max(c if c > 0 else 128 - c for _, c in bad)
    return 0
