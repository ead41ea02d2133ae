"""Wall time of a whole study (default: the quickstart) with ``bench run --jobs N`` for several N.

    python benchmarks/quickstart_jobs.py                         # --jobs 1 then --jobs 2, quickstart, CPU
    python benchmarks/quickstart_jobs.py --jobs 1 2 4 --threads 1
    python benchmarks/quickstart_jobs.py --extra=--no-population  # the final stage one fit per seed

Each N runs the study from scratch in its own temporary ``--runs-dir`` (no plots, W&B disabled), as a separate
``bench run`` process, and reports its wall time and the trials and final runs stored, so that a faster run
that did less work shows. The machine's load average at the start of each run is printed beside it: on a shared
machine compare runs taken under similar load.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", default="quickstart", help="study name or .toml path (default quickstart)")
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="values of --jobs to time (default 1 2)")
    p.add_argument("--threads", type=int, default=1, help="--threads of each worker (default 1)")
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--extra", action="append", default=[], help="more bench run arguments (repeatable)")
    args = p.parse_args(argv)
    if any(n < 1 for n in args.jobs):
        print(f"error: --jobs values must be >= 1, got {args.jobs}", file=sys.stderr)
        return 2

    import polars as pl

    from bench.results import store
    from bench.spec.study import load_study

    name = load_study(args.study).name
    table = []
    for n in args.jobs:
        with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
            cmd = [sys.executable, "-m", "bench.cli", "run", "--study", args.study, "--runs-dir", f"{tmp}/runs",
                   "--output", f"{tmp}/leaderboard", "--jobs", str(n), "--threads", str(args.threads),
                   "--accelerator", args.accelerator, "--no-plots", "--wandb", "disabled", *args.extra]
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if done.returncode:
                print(done.stdout[-2000:] + done.stderr[-2000:], file=sys.stderr)
                print(f"error: bench run --jobs {n} exited with {done.returncode}", file=sys.stderr)
                return 1
            rows = store.read(Path(tmp) / "runs" / name)
            trials = rows.filter((pl.col("stage") == "search") & (pl.col("metric") == "objective")).height
            finals = rows.filter(pl.col("stage") == "final").select("dataset", "architecture", "target",
                                                                      "seed").unique().height
        table.append([n, args.threads, f"{wall:.1f}", trials, finals, f"{load:.2f}"])
        print(f"--jobs {n}: {wall:.1f} s", flush=True)
    base = float(table[0][2])
    for row in table:
        row.append(f"{base / float(row[2]):.2f}x")
    print(f"\nbench run --study {' '.join([name, *args.extra])}, {os.cpu_count()} CPUs")
    print(tabulate(table, headers=["jobs", "threads/job", "wall s", "trials", "final runs", "load avg (1 min)",
                                   f"vs --jobs {args.jobs[0]}"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
