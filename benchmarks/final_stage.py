"""Wall time of a whole final stage: every architecture retrained with S seeds, each as one population.

Issue 6's GPU target: the census-income final stage (7 architectures x 32 seeds) in under 5 minutes on an H100.

    python benchmarks/final_stage.py --device cuda --seeds 32 --data-dir DIR             # census-income, group 1
    python benchmarks/final_stage.py --option split=random --data-dir ../shared/data     # only the .test file at hand
    python benchmarks/final_stage.py --dataset synthetic --seeds 8 --max-epochs 3        # a quick check on a CPU

A study's final stage retrains each unit's best configuration; the best configurations are not known ahead, so
every architecture runs with its default options, batch 1024 and the study defaults for epochs and patience
(``--max-epochs``, ``--patience``). As in a study, single-task is one unit per task. Each unit is one
``train_population`` call with ``evaluate_test=True`` (the test split read once per member), timed with the device
synchronised; the table gives seconds and epochs per unit and the total, which includes loading the data.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from tabulate import tabulate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="census-income", help="registered dataset (default census-income)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset option (repeatable); census-income defaults to group=1")
    p.add_argument("--data-dir", default=None, help="where the dataset's files are (default: its own lookup)")
    p.add_argument("--arch", action="append", help="architecture (repeatable; default: all)")
    p.add_argument("--seeds", type=int, default=32, help="members per population (default 32)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--max-epochs", type=int, default=20)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default auto)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)

    from bench import architectures, datasets
    from bench.errors import UserError
    from bench.training.population import resolve_device, seed_configs, train_population

    if args.threads:
        torch.set_num_threads(args.threads)
    options: dict[str, object] = {"group": 1} if args.dataset == "census-income" else {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"error: --option wants KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        options[key] = int(value) if value.lstrip("-").isdigit() else value
    if args.data_dir is not None:
        options["data_dir"] = args.data_dir
    try:
        dev = resolve_device(args.device)
        start = time.perf_counter()
        data = datasets.load(args.dataset, **options)
        units: list[tuple[str, str | None]] = []  # (architecture, task of a single-task unit)
        for arch in args.arch or architectures.available():
            units += [(arch, t.name) for t in data.tasks] if arch == "single_task" else [(arch, None)]
        base = {"batch_size": args.batch_size, "max_epochs": args.max_epochs, "patience": args.patience}
        configs = seed_configs(base, range(1, args.seeds + 1))
        load_s = time.perf_counter() - start
        rows = []
        for arch, target in units:
            unit_data = data.select_tasks([target]) if target else data
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            results = train_population(arch, unit_data, configs, evaluate_test=True, device=dev)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            epochs = [r.epochs for r in results]
            rows.append([f"{arch}[{target}]" if target else arch, args.seeds,
                         f"{time.perf_counter() - t0:.1f}", f"{min(epochs)}-{max(epochs)}"])
            print(f"{rows[-1][0]}: {rows[-1][2]} s", flush=True)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    total = time.perf_counter() - start
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"\n{args.dataset} {options}, {len(data.train):,} training rows, d={data.d_in}, on {name}; "
          f"batch {args.batch_size}, at most {args.max_epochs} epochs, patience {args.patience}")
    print(tabulate(rows, headers=["unit", "seeds", "seconds", "epochs (min-max)"]))
    print(f"total {total:.1f} s ({load_s:.1f} s loading the data), {len(units)} units x {args.seeds} seeds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
