"""Categorical embeddings and missing labels at recommender scale, and embeddings against one-hot on census-income.

    python benchmarks/embeddings.py                       # both parts: the generated table, then census-income
    python benchmarks/embeddings.py --part table --rows 200000
    python benchmarks/embeddings.py --part census --epochs 3
    python benchmarks/embeddings.py --part table --epochs 2 --threads 1 --repeats 3    # on a shared machine
    python benchmarks/embeddings.py --part lazy --threads 1 --repeats 6                # the lazy step alone
    python benchmarks/embeddings.py --part steps --threads 1 --repeats 3               # where a step's time goes

Part ``table``: a generated table of ``--rows`` (1,000,000) rows with ``--fields`` (10) categorical fields of
``--levels`` (100,000) levels each (Zipf-like: a few levels are frequent, most are rare, as IDs are), 20 numeric
columns and two binary tasks, the second observed on 20 % of the rows (80 % of its labels missing). MMoE is
trained with ``bench.training.fit.fit`` on it (fields embedded, ``embedding_dim`` 8) and, as the reference, on the
20 numeric columns alone (same rows, tasks, batch size and model settings), and, to tell what the wider input
costs from what the embeddings cost, on a ``wide`` control: the 20 numeric columns plus as many N(0, 1) columns as
the embeddings give the model (fields x ``embedding_dim``: 80), so the model has the embedded one's shape but no
table, no lookups and no gradient with respect to its input. Throughput is training rows x epochs
over the wall time of the fit, and training rows x epochs over the CPU time the fit's process used (which a
machine shared with other work inflates far less than the wall time: a process waiting for a core uses none);
each mode runs in a fresh interpreter, whose peak resident memory (``ru_maxrss``: data generation, encoding and
training together) is reported. ``--repeats N`` runs the three modes in turn N times each and keeps each mode's
best throughput (each measure on its own), so that a burst of load on the machine does not decide the ratio.
Targets (issue 14): embedded throughput within 2x of numeric-only, peak memory under 4 GB.

Part ``lazy``: ``LazyAdam``'s step alone (``bench.training.optim``), on the gradients of 60 batches of the
generated table (the batches' lookups, random values), after 10 steps of warm-up: milliseconds per step over the
other 50, in ``--repeats`` rounds of a fresh table and optimiser each; the best and the median round.

Part ``steps``: where a training step's time goes, outside Lightning. The table part's MMoE, built by
``make_system`` as ``fit`` builds it, in four variants on the same batches: ``numeric`` (the 20 numeric columns),
``wide`` (plus 80 N(0, 1) columns: the embedded model's input width), ``wide+grad`` (the same, with the gradient
with respect to the whole input computed, as the embedded model's table needs it) and ``embedded``. Each step is
``MTLSystem.training_step``'s work for equal weighting (forward and losses, backward, the dense Adam step, the lazy
step), timed by phase: milliseconds per step over ``--steps`` batches after 20 of warm-up, the variants in turn for
``--repeats`` rounds; each variant's best round. Then the first layer's GEMMs alone, ``(B x d) @ (d x 528)`` (8
experts x 64 units and 2 gates x 8 choices) at d = 20 and d = 100, with ``torch.mm`` (torch's BLAS) and, where
this torch build has it, oneDNN's fp32 inner product (``torch.ops.mkldnn._linear_pointwise``, the kernel
``torch.compile`` calls for linear layers on x86 CPUs, and which ``architectures/gemm.py`` uses for the product
and both gradients unless ``BENCH_GEMM=blas``): how fast the same arithmetic runs on either kernel.

Part ``census``: census-income (paper split and features) with its nominal columns one-hot (the default) and
embedded, MMoE with the same settings, per-epoch time and validation / test AUC side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from tabulate import tabulate

EMBEDDING_DIM = 8  # the table part's embedding width


def generated(rows: int, fields: int, levels: int, numeric: int, seed: int, val_rows: int):
    """The generated table as an ``MTLData``, encoded by the library's own path (``preprocess.to_data``)."""
    import polars as pl

    from bench.datasets import Task, preprocess

    g = torch.Generator().manual_seed(seed)
    n = rows + 2 * val_rows
    x = torch.randn(n, numeric, generator=g)
    # Zipf-like ids: level = floor(levels ** u) - 1 for u ~ U(0, 1): P(level < k) = log(k + 1) / log(levels)
    codes = (torch.rand(n, fields, generator=g) * torch.log(torch.tensor(float(levels)))).exp().floor().long() - 1
    effects = torch.randn(fields, levels, generator=g) * 0.5
    field_effect = effects.gather(1, codes.T.clamp(max=levels - 1)).T.sum(1)  # (n,)
    logit_a = x[:, :3].sum(1) * 0.5 + field_effect - 1.0
    logit_b = x[:, 3:6].sum(1) * 0.5 - field_effect
    y = torch.stack([torch.bernoulli(torch.sigmoid(v), generator=g) for v in (logit_a, logit_b)], 1)
    y[torch.rand(n, generator=g) < 0.8, 1] = float("nan")  # task b: 80 % of labels missing
    num_cols = [f"x{i}" for i in range(numeric)]
    cat_cols = [f"f{j}" for j in range(fields)]
    frame = pl.DataFrame(
        {
            **{c: x[:, i].numpy() for i, c in enumerate(num_cols)},
            **{c: codes[:, j].numpy() for j, c in enumerate(cat_cols)},
            "a": y[:, 0].numpy(),
            "b": y[:, 1].numpy(),
        }
    ).with_columns(pl.col("b").fill_nan(None))
    frames = {"train": frame[:rows], "val": frame[rows : rows + val_rows], "test": frame[rows + val_rows :]}
    encoding = preprocess.CategoricalEncoding("embedding", min_count=1)
    return preprocess.to_data(
        "generated", [Task("a", "binary"), Task("b", "binary")], frames, num_cols, cat_cols, ["a", "b"], {}, encoding
    )


def cpu_clock():
    """A Lightning callback holding the CPU seconds of this process (all threads) between the start and the end
    of ``trainer.fit``, the span ``FitResult.seconds`` times on the wall clock."""
    import lightning as L

    class CpuClock(L.Callback):
        def on_fit_start(self, trainer, pl_module) -> None:
            self.start = time.process_time()

        def on_fit_end(self, trainer, pl_module) -> None:
            self.seconds = time.process_time() - self.start

    return CpuClock()


def run_table_mode(args) -> dict:
    """One mode in this interpreter: build the data, fit, report throughput and peak memory."""
    from bench.datasets import MTLData, Split
    from bench.training.fit import fit

    torch.set_num_threads(args.threads) if args.threads else None
    start = time.perf_counter()
    data = generated(args.rows, args.fields, args.levels, 20, 0, args.val_rows)
    prep = time.perf_counter() - start
    if args.mode == "numeric":
        data = MTLData(data.name, data.tasks, *(Split(s.x, s.y) for s in (data.train, data.val, data.test)))
    elif args.mode == "wide":  # the embedded model's input width, all of it numeric: (n, 20 + fields x dim)
        g = torch.Generator().manual_seed(1)
        data = MTLData(data.name, data.tasks, *(
            Split(torch.cat([s.x, torch.randn(len(s.x), args.fields * EMBEDDING_DIM, generator=g)], 1), s.y)
            for s in (data.train, data.val, data.test)))
    config = {
        "max_epochs": args.epochs,
        "patience": args.epochs,
        "batch_size": args.batch_size,
        "lr": 1e-3,
        "n_experts": 8,
        "expert_units": 64,
        "tower_units": 32,
        "embedding_dim": EMBEDDING_DIM,
    }
    clock = cpu_clock()
    result = fit("mmoe", data, config, accelerator="cpu", evaluate_test=True, callbacks=[clock])
    return {
        "mode": args.mode,
        "rows_per_s": len(data.train) * result.epochs / result.seconds,
        "rows_per_cpu_s": len(data.train) * result.epochs / clock.seconds,
        "fit_s": result.seconds,
        "cpu_s": clock.seconds,
        "epochs": result.epochs,
        "prep_s": prep,
        "params": result.n_params,
        "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "auc_a": result.test_metrics["a"]["auc"],
        "auc_b": result.test_metrics["b"]["auc"],
        "observed_b": result.observed["test"]["b"],
        "test_rows": len(data.test),
    }


def table_part(args) -> None:
    runs: dict[str, list[dict]] = {"embedded": [], "numeric": [], "wide": []}
    for mode in [m for _ in range(args.repeats) for m in runs]:  # in turn: a burst of load hits every mode
        cmd = [
            sys.executable,
            __file__,
            "--part",
            "table",
            "--mode",
            mode,
            "--rows",
            str(args.rows),
            "--fields",
            str(args.fields),
            "--levels",
            str(args.levels),
            "--epochs",
            str(args.epochs),
            "--batch-size",
            str(args.batch_size),
            "--val-rows",
            str(args.val_rows),
        ]
        cmd += ["--threads", str(args.threads)] if args.threads else []
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        runs[mode].append(json.loads(out.strip().splitlines()[-1]))
    for mode, done in runs.items():
        print(f"{mode} runs: " + ", ".join(f"{r['rows_per_s']:,.0f} rows/s ({r['rows_per_cpu_s']:,.0f} per CPU-s)"
                                           for r in done))
    # each mode's best run on the wall clock, and its best on the CPU clock (possibly another run)
    results = [{**max(done, key=lambda r: r["rows_per_s"]),
                "rows_per_cpu_s": max(r["rows_per_cpu_s"] for r in done)} for done in runs.values()]
    emb, num, wide = results
    print(
        f"generated table: {args.rows:,} training rows, {args.fields} fields x {args.levels:,} levels, 20 numeric, "
        f"task b observed on {emb['observed_b']:,} of {emb['test_rows']:,} test rows; MMoE 8x64, batch "
        f"{args.batch_size}, {args.epochs} epoch(s), threads {args.threads or torch.get_num_threads()}, "
        f"{gemm_kernel()}, best of {args.repeats} run(s) per mode"
    )
    print(
        tabulate(
            [
                [
                    r["mode"],
                    f"{r['params']:,}",
                    f"{r['rows_per_s']:,.0f}",
                    f"{r['rows_per_cpu_s']:,.0f}",
                    f"{r['fit_s']:.1f}",
                    f"{r['prep_s']:.1f}",
                    f"{r['peak_gb']:.2f}",
                    f"{r['auc_a']:.4f}",
                    f"{r['auc_b']:.4f}",
                ]
                for r in results
            ],
            headers=["mode", "params", "train rows/s", "rows / CPU-s", "fit s", "data s", "peak RSS GB",
                     "test AUC a", "test AUC b"],
        )
    )
    print(
        f"embedded / numeric-only throughput: {emb['rows_per_s'] / num['rows_per_s']:.2f}x on the wall clock, "
        f"{emb['rows_per_cpu_s'] / num['rows_per_cpu_s']:.2f}x on the CPU clock (target >= 0.5x); embedded peak "
        f"{emb['peak_gb']:.2f} GB (target < 4 GB)"
    )
    print(
        f"wide control / numeric-only: {wide['rows_per_s'] / num['rows_per_s']:.2f}x (the wider input alone); "
        f"embedded / wide control: {emb['rows_per_s'] / wide['rows_per_s']:.2f}x (table, lookups, lazy step and the "
        f"input gradient), on the wall clock"
    )


def lazy_part(args) -> None:
    from bench.training import allocator
    from bench.training.optim import LazyAdam, distinct_rows

    allocator.tune()  # glibc's malloc settings, as training sets them (``fit``)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = generated(args.rows, args.fields, args.levels, 20, 0, 1000)
    sizes = data.field_sizes
    offsets = torch.tensor([0, *sizes[:-1]]).cumsum(0)  # (F,): field j's first row in the one table
    rows, width = sum(sizes), EMBEDDING_DIM
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(data.train), generator=g)
    lookups = [(data.train.cat[order[i * args.batch_size:(i + 1) * args.batch_size]] + offsets).reshape(-1)
               for i in range(60)]  # (B F,) each
    grads = [torch.sparse_coo_tensor(i[None], torch.randn(i.numel(), width, generator=g), (rows, width))
             for i in lookups]
    distinct = sum(distinct_rows(gr)[0].numel() for gr in grads) / len(grads)
    rounds = []
    for _ in range(args.repeats):
        table = torch.nn.Parameter(torch.randn(rows, width, generator=g))
        opt = LazyAdam([table], lr=1e-3)
        for k, grad in enumerate(grads):
            if k == 10:
                start = time.perf_counter()
            table.grad = grad
            opt.step()
        rounds.append((time.perf_counter() - start) / (len(grads) - 10) * 1e3)
    rounds.sort()
    print(f"LazyAdam step: {rows:,} rows of width {width}, batch {args.batch_size} x {args.fields} fields "
          f"({distinct:,.0f} distinct rows a step on average), threads {torch.get_num_threads()}: best "
          f"{rounds[0]:.2f} ms, median {rounds[len(rounds) // 2]:.2f} ms a step over {len(rounds)} round(s) "
          f"({', '.join(f'{r:.2f}' for r in rounds)})")


def gemm_kernel() -> str:
    """Which kernel runs the layers' 2-D products in this process (``architectures/gemm.py``; ``BENCH_GEMM``)."""
    from bench.architectures import gemm

    return "first layer on oneDNN" if gemm.onednn_active() else "first layer on torch's BLAS"


def step_variants(args):
    """The generated table and the ``steps`` part's four variants: name -> (system, dense optimiser, lazy optimiser
    or None, input grad)."""
    from bench.training.system import make_system

    data = generated(args.rows, args.fields, args.levels, 20, 0, 1000)
    config = {"batch_size": args.batch_size, "lr": 1e-3, "n_experts": 8, "expert_units": 64, "tower_units": 32,
              "embedding_dim": EMBEDDING_DIM}
    out = {}
    for name, d, fields in (("numeric", 20, []), ("wide", 20 + args.fields * EMBEDDING_DIM, []),
                            ("wide+grad", 20 + args.fields * EMBEDDING_DIM, []), ("embedded", 20, data.field_sizes)):
        system = make_system("mmoe", data.tasks, d, config, fields=fields, partial=data.partial)
        opts = system.configure_optimizers()
        dense, lazy = opts if isinstance(opts, list) else (opts, None)
        out[name] = (system.train(), dense, lazy, name == "wide+grad")
    return data, out


def steps_part(args) -> None:
    from bench.datasets import BatchLoader
    from bench.training import allocator

    allocator.tune()  # as fit sets it
    if args.threads:
        torch.set_num_threads(args.threads)
    data, variants = step_variants(args)
    n = 20 + args.steps
    loader = BatchLoader(data.train, args.batch_size, shuffle=True, seed=0)
    batches = []
    while len(batches) < n:  # as many epochs as n batches take
        batches += [b for _, b in zip(range(n - len(batches)), loader)]
    g = torch.Generator().manual_seed(1)
    extra = torch.randn(args.batch_size, args.fields * EMBEDDING_DIM, generator=g)  # the wide variants' columns
    phases = ("forward", "backward", "dense Adam", "lazy step")

    def round_of(name: str) -> dict[str, float]:
        system, dense, lazy, input_grad = variants[name]
        spent = dict.fromkeys(phases, 0.0)
        for k, (x, cat, y) in enumerate(batches):
            if name.startswith("wide"):
                x = torch.cat([x, extra[: len(x)]], 1).requires_grad_(input_grad)
            t0 = time.perf_counter()
            losses = system.task_losses(system(x, cat if name == "embedded" else None), y)
            total = system.weighting.combine(losses[None])[0]
            t1 = time.perf_counter()
            for opt in (dense, lazy):
                if opt is not None:
                    opt.zero_grad(set_to_none=True)
            total.backward()
            t2 = time.perf_counter()
            dense.step()
            t3 = time.perf_counter()
            if lazy is not None:
                lazy.step()
            t4 = time.perf_counter()
            if k >= 20:  # after the warm-up
                for phase, a, b in zip(phases, (t0, t1, t2, t3), (t1, t2, t3, t4)):
                    spent[phase] += (b - a) * 1e3 / args.steps
        return {**spent, "step": sum(spent.values())}

    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name in variants:  # in turn: a slow spell of the machine hits every variant
            rounds[name].append(round_of(name))
    print(f"training step by phase: MMoE 8x64, batch {args.batch_size}, threads {torch.get_num_threads()}, "
          f"{gemm_kernel()}, ms per step over {args.steps} steps after 20 of warm-up; each variant's best of "
          f"{args.repeats} round(s) (all rounds' steps in brackets)")
    numeric_best = min(r["step"] for r in rounds["numeric"])
    table = []
    for name, done in rounds.items():
        best = min(done, key=lambda r: r["step"])
        table.append([name, *(f"{best[p]:.2f}" for p in phases), f"{best['step']:.2f}",
                      ", ".join(f"{r['step']:.2f}" for r in done), f"{numeric_best / best['step']:.2f}x"])
    print(tabulate(table, headers=["variant", *phases, "step", "rounds", "numeric step / this"]))
    gemm_part()


def gemm_part(batch: int = 2048, width: int = 8 * 64 + 2 * 8, reps: int = 200) -> None:
    """The first layer's GEMMs alone, with torch's BLAS and with oneDNN's inner product where torch has it."""

    def ms(f, *operands) -> float:
        for _ in range(10):
            f(*operands)
        start = time.perf_counter()
        for _ in range(reps):
            f(*operands)
        return (time.perf_counter() - start) / reps * 1e3

    try:
        onednn = torch.ops.mkldnn._linear_pointwise  # what torch.compile's CPU backend calls for nn.Linear
    except (AttributeError, RuntimeError):
        onednn = None
    rows = []
    for d in (20, 100):
        x, w, grad = torch.randn(batch, d), torch.randn(d, width), torch.randn(batch, width)
        times = [ms(torch.mm, x, w), ms(torch.mm, grad, w.t()), ms(torch.mm, x.t(), grad)]  # forward, dX, dW
        if onednn is not None:  # input @ weight.T, (out, in) weight: (528, d) forward, (d, 528) dX, views of x, g dW
            times += [ms(onednn, x, w.t().contiguous(), None, "none", [], ""),
                      ms(onednn, grad, w, None, "none", [], ""), ms(onednn, x.t(), grad.t(), None, "none", [], "")]
        rows.append([d, *(f"{t:.3f}" for t in times)])
    print(f"first-layer GEMMs alone, (B x d) @ (d x {width}), B {batch}, threads {torch.get_num_threads()}, ms "
          f"(oneDNN: {'torch.ops.mkldnn._linear_pointwise' if onednn else 'not in this torch build'})")
    print(tabulate(rows, headers=["d", "forward mm", "input grad mm", "weight grad mm",
                                  *(["forward oneDNN", "input grad oneDNN", "weight grad oneDNN"] if onednn else [])]))


def census_part(args) -> None:
    from bench import datasets
    from bench.training.fit import fit

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for encoding in ("onehot", "embedding"):
        data = datasets.load("census-income", split="paper", features="paper", encoding=encoding)
        config = {
            "max_epochs": args.epochs,
            "patience": args.epochs,
            "batch_size": 1024,
            "lr": 1e-3,
            "n_experts": 8,
            "expert_units": 64,
            "tower_units": 32,
            "embedding_dim": args.embedding_dim,
        }
        fit("mmoe", data, {**config, "max_epochs": 1}, accelerator="cpu")  # warm-up
        result = fit("mmoe", data, config, accelerator="cpu", evaluate_test=True)
        width = data.d_in + len(data.fields) * args.embedding_dim
        rows.append(
            [
                encoding,
                f"{data.d_in} + {len(data.fields)} fields",
                width,
                f"{result.n_params:,}",
                f"{result.seconds / result.epochs:.2f}",
                *(f"{result.val_metrics[t]['auc']:.4f}" for t in data.task_names),
                *(f"{result.test_metrics[t]['auc']:.4f}" for t in data.task_names),
            ]
        )
    names = datasets.load("census-income", split="paper", features="paper").task_names
    print(
        f"census-income (paper split and features), MMoE 8x64, batch 1024, {args.epochs} epochs, embedding_dim "
        f"{args.embedding_dim}, threads {torch.get_num_threads()}, {gemm_kernel()}"
    )
    print(
        tabulate(
            rows,
            headers=[
                "encoding",
                "inputs",
                "first-layer width",
                "params",
                "s / epoch",
                *(f"val AUC {t}" for t in names),
                *(f"test AUC {t}" for t in names),
            ],
        )
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("table", "census", "both", "lazy", "steps"), default="both")
    p.add_argument("--mode", choices=("embedded", "numeric", "wide"), default=None, help=argparse.SUPPRESS)
    p.add_argument("--rows", type=int, default=1_000_000, help="training rows of the generated table")
    p.add_argument("--val-rows", type=int, default=50_000, help="validation (and test) rows of the generated table")
    p.add_argument("--fields", type=int, default=10)
    p.add_argument("--levels", type=int, default=100_000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--embedding-dim", type=int, default=8, help="census part")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--steps", type=int, default=300, help="steps part: timed steps per round")
    p.add_argument("--repeats", type=int, default=1,
                   help="table part: runs per mode, in turn (the best is kept); lazy and steps parts: rounds")
    args = p.parse_args(argv)
    if args.mode is not None:
        print(json.dumps(run_table_mode(args)))
        return 0
    if args.part in ("table", "both"):
        table_part(args)
    if args.part in ("census", "both"):
        census_part(args)
    if args.part == "lazy":
        lazy_part(args)
    if args.part == "steps":
        steps_part(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
