"""Throughput of population training against the same members trained one after another.

    python benchmarks/population.py                                  # CPU: MMoE, 8 experts, batch 1024, S = 8
    python benchmarks/population.py --device cuda --population 32    # GPU target: >= 20x sequential

Throughput is sample-steps per second: members x epochs x training rows / wall seconds, the wall time of the
whole ``train_population`` call against the summed wall time of ``bench.training.fit.fit`` calls (same configs, same
epochs, patience larger than the epochs, so nobody stops early). Sequential throughput is a rate, so
``--sequential K`` may time only K of the S runs (default: all S). A one-epoch warm-up of both precedes timing;
the two modes then alternate ``--repeats`` times and the best time of each is kept (robust to a shared machine).
Targets (issue 6): S = 8 on CPU >= 2x, S = 32 on a GPU >= 20x.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from tabulate import tabulate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="mmoe")
    p.add_argument("--population", type=int, default=8, help="members S (default 8)")
    p.add_argument("--sequential", type=int, default=None, help="sequential runs timed (default: S)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--n-experts", type=int, default=8)
    p.add_argument("--n-samples", type=int, default=10_000, help="synthetic rows (80%% train)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.add_argument(
        "--members-per-call", type=int, default=None, help="members per vmap call (default: the library's choice)"
    )
    p.add_argument("--repeats", type=int, default=3, help="timed repeats of each mode; the best is kept")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)

    from bench import architectures, datasets
    from bench.errors import UserError
    from bench.training.fit import fit
    from bench.training.population import resolve_device, seed_configs, train_population

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        dev = resolve_device(args.device)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    accelerator = "gpu" if dev.type == "cuda" else "cpu"
    data = datasets.load("synthetic", n_samples=args.n_samples)
    base = {"batch_size": args.batch_size, "max_epochs": args.epochs, "patience": args.epochs + 1}
    if "n_experts" in architectures.options(args.arch):
        base["n_experts"] = args.n_experts
    configs = seed_configs(base, range(args.population))
    n_seq = args.sequential or args.population
    n_rows = len(data.train)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    # warm-up: first calls pay for lazy initialisation (kernels, Lightning's first trainer)
    warm = seed_configs({**base, "max_epochs": 1}, range(2))
    train_population(args.arch, data, warm, device=dev)
    fit(args.arch, data, warm[0], accelerator=accelerator)

    def timed(call) -> tuple[float, float]:
        """(wall seconds, CPU seconds of this process); CPU time is the steadier figure on a shared machine."""
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        call()
        sync()
        return time.perf_counter() - t0, time.process_time() - c0

    def population() -> None:
        assert all(
            r.epochs == args.epochs
            for r in train_population(args.arch, data, configs, device=dev, members_per_call=args.members_per_call)
        )

    def sequential() -> None:
        for cfg in configs[:n_seq]:
            assert fit(args.arch, data, cfg, accelerator=accelerator).epochs == args.epochs

    # alternate the two so that both see the same machine load; keep the best of the repeats
    pop_times, seq_times = [], []
    for _ in range(args.repeats):
        pop_times.append(timed(population))
        seq_times.append(timed(sequential))
    pop_s, seq_s = min(t for t, _ in pop_times), min(t for t, _ in seq_times)
    pop_cpu, seq_cpu = min(c for _, c in pop_times), min(c for _, c in seq_times)

    pop_rate = args.population * args.epochs * n_rows / pop_s
    seq_rate = n_seq * args.epochs * n_rows / seq_s
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(
        f"{args.arch} ({base.get('n_experts', '-')} experts), batch {args.batch_size}, {args.epochs} epochs of "
        f"{n_rows} rows, on {name}"
    )
    work_pop, work_seq = args.population * args.epochs * n_rows, n_seq * args.epochs * n_rows
    rows = [
        ["sequential fit", n_seq, f"{seq_s:.2f}", f"{seq_rate:,.0f}", "1.00x", f"{seq_cpu:.2f}", "1.00x"],
        [
            "population",
            args.population,
            f"{pop_s:.2f}",
            f"{pop_rate:,.0f}",
            f"{pop_rate / seq_rate:.2f}x",
            f"{pop_cpu:.2f}",
            f"{(work_pop / pop_cpu) / (work_seq / seq_cpu):.2f}x",
        ],
    ]
    headers = ["mode", "members", "wall s (best)", "sample-steps/s", "vs sequential", "CPU s (best)", "per CPU s"]
    print(tabulate(rows, headers=headers))
    print(
        "all repeats (wall s): population "
        + ", ".join(f"{t:.2f}" for t, _ in pop_times)
        + "; sequential "
        + ", ".join(f"{t:.2f}" for t, _ in seq_times)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
