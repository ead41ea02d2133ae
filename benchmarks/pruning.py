"""Search trials per hour on census-income group 1: the median pruner against Hyperband (and successive halving).

    BENCH_DATA_DIR=/work/shared/data python benchmarks/pruning.py                     # median vs hyperband
    python benchmarks/pruning.py --data-dir /work/shared/data --minutes 4 --rounds 2 --arch mmoe
    python benchmarks/pruning.py --pruner median --pruner successive_halving --minutes 2

One unit of the shipped ``census-income`` study (group 1: income main, never married; paper split and features;
its search space, ``max_epochs`` 15, patience 3, its TPE sampler with the default start-up of ``budget.trials``
10: ``bench.spec.study.startup_trials``), searched with each ``--pruner`` for ``--minutes`` of wall time per
round, the pruners taking turns for ``--rounds`` rounds (each continues its own Optuna study), so that a change
of the shared machine's load falls on both. The objective is the harness's own (``bench.study.search
.make_objective``: one ``fit`` per trial, validation AUC of income after each epoch reported to the pruner).

Pruners: ``median``: the study's (``n_startup_trials`` 4, ``n_warmup_steps`` 2: prune a trial whose epoch-e value
is below the median of earlier trials at epoch e); ``hyperband``: Optuna's ``HyperbandPruner(min_resource=1,
max_resource=max_epochs, reduction_factor=3)``; ``successive_halving``: ``SuccessiveHalvingPruner()``'s defaults.

Printed per pruner: trials complete / pruned / failed, trials per hour and complete trials per hour over the
wall time of its rounds and over the CPU time this process used in them (a machine shared with other work
inflates the wall time far more than the CPU time: a process waiting for a core uses none), the mean epochs a
trial trained, and the best validation AUC found (noisy with few
trials: it shows that pruning did not only save time by stopping the good ones). The load average (``uptime``)
is printed before and after: on a shared machine it moves the figures by tens of percent.
"""

from __future__ import annotations

import argparse
import os
import time

import optuna
from tabulate import tabulate

from bench.spec.study import load_study
from bench.study.search import make_objective
from bench.study.units import RunContext, Unit, load_data, unit_data, unit_fixed, unit_space

PRUNERS = {
    "median": lambda epochs: optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2),
    "hyperband": lambda epochs: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs,
                                                               reduction_factor=3),
    "successive_halving": lambda epochs: optuna.pruners.SuccessiveHalvingPruner(),
}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pruner", action="append", choices=sorted(PRUNERS), help="default: median, hyperband")
    parser.add_argument("--minutes", type=float, default=4.0, help="wall minutes per pruner per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--arch", default="mmoe")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="epochs per trial at most (default: the study's 15; Hyperband's max_resource)")
    parser.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR", ""))
    args = parser.parse_args()
    pruners = args.pruner or ["median", "hyperband"]

    import torch

    from bench.training.fit import quiet_lightning

    torch.set_num_threads(args.threads)
    quiet_lightning()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_study("census-income")
    if args.max_epochs:
        study.budget = type(study.budget)(study.budget.trials, args.max_epochs, study.budget.patience)
    study.datasets = [d for d in study.datasets if d.label == "census-group1"]
    if args.data_dir:
        study.datasets = [type(d)(d.name, d.label, {**d.options, "data_dir": args.data_dir}, d.tasks, d.objective)
                          for d in study.datasets]
    data = load_data(study)
    unit = Unit("census-group1", args.arch, study.objective_for("census-group1"))
    ctx = RunContext(study=study, root=None, data=data, coordinator=None, stop=None, hooks=None, accelerator="cpu",
                     hardware="", out=print)
    objective = make_objective(unit, unit_data(unit, data[unit.data_key]), unit_space(study, unit, data),
                               unit_fixed(study, unit), accelerator="cpu")
    epochs = study.budget.max_epochs
    opts = {p: optuna.create_study(direction="maximize", pruner=PRUNERS[p](epochs)) for p in pruners}
    wall, cpu = dict.fromkeys(pruners, 0.0), dict.fromkeys(pruners, 0.0)
    print(f"load average before: {load()}  (threads {args.threads}, {args.minutes:g} min x {args.rounds} rounds per "
          f"pruner, {args.arch}, census-income group 1, max_epochs {epochs})", flush=True)
    for r in range(args.rounds):
        for p in pruners:
            opt = opts[p]
            start, cpu_start = time.perf_counter(), time.process_time()
            while time.perf_counter() - start < args.minutes * 60:  # the trial that crosses the line finishes
                opt.sampler = ctx.new_sampler(unit, len(opt.trials))  # the harness's per-trial seeding
                opt.optimize(objective, n_trials=1, catch=(Exception,))
                t = opt.trials[-1]
                print(f"  {p} trial {t.number}: {t.state.name.lower()} after {len(t.user_attrs.get('curve', []))} "
                      f"epochs, {t.user_attrs.get('seconds', 0.0):.0f} s", flush=True)
            wall[p] += time.perf_counter() - start
            cpu[p] += time.process_time() - cpu_start
            print(f"round {r + 1} {p}: {len(opt.trials)} trials so far, load {load()}", flush=True)
    rows = []
    for p in pruners:
        trials = opts[p].trials
        states = [t.state.name for t in trials]
        complete, pruned = states.count("COMPLETE"), states.count("PRUNED")
        hours = wall[p] / 3600
        epochs_run = [len(t.user_attrs.get("curve", [])) for t in trials]
        best = max((t.value for t in trials if t.value is not None), default=float("nan"))
        cpu_hours = cpu[p] / 3600
        rows.append([p, complete, pruned, states.count("FAIL"), f"{len(trials) / hours:.0f}",
                     f"{complete / hours:.0f}", f"{len(trials) / cpu_hours:.0f}", f"{complete / cpu_hours:.0f}",
                     f"{sum(epochs_run) / max(len(trials), 1):.1f}", f"{best:.4f}", f"{wall[p] / 60:.1f}",
                     f"{cpu[p] / 60:.1f}"])
    print(tabulate(rows, headers=["pruner", "complete", "pruned", "failed", "trials/h", "complete/h", "trials/cpu-h",
                                  "complete/cpu-h", "epochs/trial", "best val auc", "wall min", "cpu min"],
                   tablefmt="github"))
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
