"""``bench run --study NAME``: run (or resume) a study, then write and print its leaderboard."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run or resume a study (search, final seeds) and write its leaderboard",
        description="Run what is missing of a study: Optuna search per dataset and architecture, then the best "
        "configuration retrained with the final seeds; finally write leaderboard/<study>.md.",
    )
    p.add_argument("--study", required=True, help="a name in studies/ (current directory, then the installed repo) "
                   "or a path to a .toml file")
    p.add_argument("--runs-dir", default="runs", type=Path, help="where runs/<study>/ is stored (default: runs)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna storage URL shared by many workers (default: a journal file in runs/<study>/)")
    p.add_argument("--output", default="leaderboard", type=Path, help="leaderboard directory (default: leaderboard)")
    p.add_argument("--accelerator", default="auto", help="cpu, gpu or auto (default)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: these small models gain little from more, and parallel "
                   "workers share the cores)")
    p.add_argument("--no-plots", action="store_true", help="write the markdown without plots")
    p.add_argument("--wandb", default=None, choices=("online", "offline", "disabled"),
                   help="W&B tracking, one run per trial and final run (default: WANDB_MODE, else the spec's "
                   "[wandb] mode, else online when logged in, else offline into runs/<study>/wandb)")
    p.add_argument("--wandb-project", default=None, metavar="NAME",
                   help="W&B project (default: the spec's [wandb] project, WANDB_PROJECT, or mtl-bench)")


def run(args: argparse.Namespace) -> int:
    from bench import leaderboard
    from bench.errors import UserError
    from bench.runner import run_study
    from bench.study import load_study
    from bench.tracking import Tracker, resolve_mode

    study = load_study(args.study)  # every check of the spec happens here, before anything is written
    if args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    import torch

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    spec = study.wandb
    mode, _ = resolve_mode(args.wandb, spec.mode if spec else None)
    tracker = Tracker(study.name, mode=mode, project=args.wandb_project or (spec.project if spec else None),
                      entity=spec.entity if spec else None, directory=Path(args.runs_dir) / study.name)
    finished = False
    try:
        root = run_study(study, args.runs_dir, storage=args.storage, accelerator=args.accelerator,
                         hooks=tracker.hooks(), out=lambda line: print(line, flush=True))
        path, text = leaderboard.build(root, args.output, with_plots=not args.no_plots)
        tracker.log_leaderboard(root, args.output)
        finished = True
    finally:
        tracker.close(timeout=120 if finished else 15)  # pending W&B runs are written before exiting
    print()
    print(text)
    print(f"leaderboard written to {path} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    print(tracker.describe(), file=sys.stderr)
    return 0
