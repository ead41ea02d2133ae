"""Cost of each loss-weighting method against ``equal``: training samples/s of the same model, data and epochs.

Gradient-based methods (GradNorm, PCGrad) take one extra backward pass per task through the shared part of the
model, and PCGrad T^2 dot products of the flattened shared gradient; loss-based ones (static, uncertainty, DWA)
add a few element-wise operations per step. Every method trains ``--arch`` with the same configuration, seed and
epochs (early stopping off); methods are timed in rounds, each round running every method once in a new order,
and each method's fastest round is kept, so that a burst of load on a shared machine hits all methods alike.

    python benchmarks/weighting.py                          # MMoE, 2 tasks, CPU
    python benchmarks/weighting.py --arch ple --device cuda --n-samples 200000
    python benchmarks/weighting.py --population 8           # also: 8 seeds as one population, per method

With ``--population S`` each round also trains S seeds of every method as one population
(``bench.training.population.train_population``); its samples/s count every member's rows, and "population
speed-up" is that rate over the method's single-fit rate (what S separate fits would reach).
"""

from __future__ import annotations

import argparse
import platform
import random

import torch
from tabulate import tabulate

from bench import datasets, weighting
from bench.training.fit import fit, quiet_lightning
from bench.training.population import seed_configs, train_population


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="mmoe")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n-samples", type=int, default=25_000)
    ap.add_argument("--n-tasks", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--population", type=int, default=0, help="also time S seeds as one population (0: off)")
    args = ap.parse_args()
    quiet_lightning()
    torch.set_num_threads(args.threads)
    data = datasets.load("synthetic", n_samples=args.n_samples, d=100, n_tasks=args.n_tasks)
    n_train = len(data.train)
    config = {"max_epochs": args.epochs, "patience": args.epochs, "batch_size": args.batch_size, "seed": 0,
              "n_experts": 8, "expert_units": 64, "tower_units": 32}
    methods = weighting.available()
    fit(args.arch, data, {**config, "max_epochs": 1}, accelerator=args.device)  # warm-up
    best: dict[str, float] = {}
    pop: dict[str, float] = {}
    order = list(methods)
    for r in range(args.rounds):
        random.Random(r).shuffle(order)
        for name in order:
            res = fit(args.arch, data, {**config, "weighting": name}, accelerator=args.device)
            best[name] = max(best.get(name, 0.0), n_train * res.epochs / res.seconds)
            if args.population:
                configs = seed_configs({**config, "weighting": name}, range(args.population))
                results = train_population(args.arch, data, configs, device=args.device)
                rate = n_train * sum(m.epochs for m in results) / max(m.seconds for m in results)
                pop[name] = max(pop.get(name, 0.0), rate)
    base = best["equal"]
    rows = [[m, f"{best[m]:,.0f}", f"{best[m] / base:.2f}", "yes" if weighting.get(m).grad_based else "no",
             *([f"{pop[m]:,.0f}", f"{pop[m] / best[m]:.1f}"] if pop else [])]
            for m in methods]
    headers = ["weighting", "samples/s", "vs equal", "per-task gradients",
               *([f"population of {args.population}: samples/s", "population speed-up"] if pop else [])]
    print(f"{args.arch}, {args.n_tasks} tasks, {n_train:,} training rows, batch {args.batch_size}, {args.epochs} "
          f"epochs, {args.device} ({platform.machine()}, {args.threads} thread(s)), torch {torch.__version__}, "
          f"best of {args.rounds} rounds")
    print(tabulate(rows, headers=headers, tablefmt="github"))


if __name__ == "__main__":
    main()
