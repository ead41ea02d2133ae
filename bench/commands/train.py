"""``bench train``: fit one configuration and print its per-task validation and test metrics."""

from __future__ import annotations

import argparse

from tabulate import tabulate


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train one configuration and print per-task metrics",
        description="Train one architecture with one configuration; print per-task validation and test metrics.",
    )
    p.add_argument("--dataset", default="synthetic", help="registered dataset (default: synthetic)")
    p.add_argument("--arch", required=True, help="registered architecture")
    p.add_argument(
        "--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
        help="a training setting (lr, batch_size, max_epochs, ...) or architecture option; repeatable",
    )
    p.add_argument(
        "--data", dest="data_options", action="append", default=[], metavar="KEY=VALUE",
        help="a dataset option (e.g. p=0.9 for synthetic); repeatable",
    )
    p.add_argument("--tasks", default=None, help="comma-separated tasks to train on (default: all of the dataset's)")
    p.add_argument(
        "--data-dir", default=None,
        help="folder holding the data files (default: $BENCH_DATA_DIR, then ~/.cache/mtl-bench); missing official "
        "files are downloaded into it",
    )
    p.add_argument("--accelerator", default="auto", help="auto (default: a CUDA GPU when there is one), cpu or gpu")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from bench import architectures, datasets
    from bench.errors import UserError
    from bench.spec.config import config_schema, parse_assignments, split_config
    from bench.training.devices import check_accelerator
    from bench.training.fit import fit

    architectures.get(args.arch)  # unknown names fail before any work
    check_accelerator(args.accelerator)
    datasets.get(args.dataset)
    config = parse_assignments(args.settings, config_schema(args.arch), f"config key for {args.arch}")
    split_config(args.arch, config)  # validates values before the data is loaded
    data_opts = parse_assignments(
        args.data_options, datasets.options(args.dataset), f"option of dataset {args.dataset}"
    )
    if args.data_dir is not None:
        if "data_dir" not in datasets.options(args.dataset):
            raise UserError(f"dataset {args.dataset} reads no data files; --data-dir does not apply to it")
        data_opts["data_dir"] = args.data_dir
    data = datasets.load(args.dataset, **data_opts)
    if args.tasks:
        data = data.select_tasks([t.strip() for t in args.tasks.split(",") if t.strip()])
    try:
        result = fit(
            args.arch, data, config, evaluate_test=True, accelerator=args.accelerator, progress=not args.no_progress
        )
    except FloatingPointError as err:  # the configuration diverged: a result, not a crash
        raise UserError(f"{args.arch} diverged: {err}; try a smaller lr") from None
    rows = []
    for task in data.tasks:
        for metric, value in result.val_metrics[task.name].items():
            rows.append([task.name, metric, value, result.test_metrics[task.name][metric]])
        for metric in sorted(set(result.test_metrics[task.name]) - set(result.val_metrics[task.name])):
            rows.append([task.name, metric, None, result.test_metrics[task.name][metric]])  # entire space: test only
    print(
        f"{args.arch} on {data.name}: best epoch {result.best_epoch} of {result.epochs}, "
        f"{result.n_params:,} parameters, {result.seconds:.1f} s"
    )
    print(tabulate(rows, headers=["task", "metric", "validation", "test"], floatfmt=".4f"))
    partial = [t.name for t in data.tasks if result.observed["val"][t.name] < len(data.val)
               or result.observed["test"][t.name] < len(data.test)]
    if partial:  # metrics of a task with missing labels are over its observed rows: say how many
        print("observed labels: " + "; ".join(
            f"{t} {result.observed['val'][t]:,} of {len(data.val):,} (validation), "
            f"{result.observed['test'][t]:,} of {len(data.test):,} (test)" for t in partial))
    return 0
