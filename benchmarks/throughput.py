"""Training throughput per architecture: mtl-bench's path against the plain way users train today.

Reference ("plain"): a LightningModule over ``DataLoader(TensorDataset(...), shuffle=True)``, experts, gates and towers
held in ``nn.ModuleList`` and looped in Python, ``self.log`` of the loss every step. Ours:
``bench.training.fit.fit`` (data on the device, batches sliced, experts stacked and run as one batched matmul, no
per-step logging, glibc's allocator thresholds raised by ``bench.training.allocator``). Same architecture settings
(parameter counts are printed to show it), same data, same epochs, validation every epoch in both. Samples/s counts
training samples over the wall time of ``fit``.

Each path runs in its own fresh interpreter (a one-epoch warm-up, then ``--repeats`` timed fits, the fastest kept),
so that process-wide settings of one never reach the other. "plain+allocator" is the plain path with
``bench.training.allocator.tune()`` applied, to show how much of the gap the allocator setting alone explains.

    python benchmarks/throughput.py                       # all seven, batch 1024, CPU
    python benchmarks/throughput.py --arch mmoe --device cuda --n-samples 200000
    python benchmarks/throughput.py --gates --top-k 2     # gated architectures: dense against top-k gates

``--gates`` compares our path with dense gates against the same architecture with noisy top-k gates (``gate_top_k``,
noise and load-balancing loss on, the defaults) and with top-k gates without noise, instead of the plain path.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time

import lightning as L
import torch
import torch.nn.functional as F
from tabulate import tabulate
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bench import architectures, datasets
from bench.training import allocator
from bench.training.fit import fit, quiet_lightning


def mlp(d_in: int, units: int, layers: int) -> nn.Sequential:
    mods, d = [], d_in
    for _ in range(layers):
        mods += [nn.Linear(d, units), nn.ReLU()]
        d = units
    return nn.Sequential(*mods)


class PlainLevel(nn.Module):
    """One CGC/PLE level written the usual way: a Python loop over experts and over gates."""

    def __init__(self, d_in, n_tasks, n_shared, n_specific, units, layers, tied, shared_gate):
        super().__init__()
        self.n_tasks, self.n_shared, self.n_specific, self.tied = n_tasks, n_shared, n_specific, tied
        self.shared = nn.ModuleList(mlp(d_in, units, layers) for _ in range(n_shared))
        self.specific = nn.ModuleList(
            nn.ModuleList(mlp(d_in, units, layers) for _ in range(n_specific)) for _ in range(n_tasks)
        )
        n_choices = n_shared + n_specific
        n_gates = 1 if tied else n_tasks
        self.gates = nn.ModuleList(nn.Linear(d_in, n_choices) for _ in range(n_gates)) if n_choices > 1 else None
        self.shared_gate = nn.Linear(d_in, n_shared + n_tasks * n_specific) if shared_gate else None

    def forward(self, task_in: list[torch.Tensor], shared_in: torch.Tensor):
        shared_out = [e(shared_in) for e in self.shared]
        task_outs, all_specific = [], []
        for k in range(self.n_tasks):
            own = [e(task_in[k]) for e in self.specific[k]]
            all_specific += own
            experts = torch.stack(own + shared_out, dim=1)  # (B, C, h)
            if self.gates is None:
                task_outs.append(experts[:, 0])
                continue
            gate = self.gates[0 if self.tied else k]
            w = torch.softmax(gate(task_in[k]), dim=-1).unsqueeze(-1)
            task_outs.append((w * experts).sum(1))
        shared_next = None
        if self.shared_gate is not None:
            experts = torch.stack(shared_out + all_specific, dim=1)
            w = torch.softmax(self.shared_gate(shared_in), dim=-1).unsqueeze(-1)
            shared_next = (w * experts).sum(1)
        return task_outs, shared_next


class PlainMoE(nn.Module):
    def __init__(self, d_in, n_tasks, *, n_levels, n_shared, n_specific, units, layers, tower_units, tied=False):
        super().__init__()
        self.levels = nn.ModuleList(
            PlainLevel(d_in if i == 0 else units, n_tasks, n_shared, n_specific, units, layers, tied, i < n_levels - 1)
            for i in range(n_levels)
        )
        self.towers = nn.ModuleList(
            nn.Sequential(nn.Linear(units, tower_units), nn.ReLU(), nn.Linear(tower_units, 1)) for _ in range(n_tasks)
        )

    def forward(self, x):
        task_in, shared_in = [x] * len(self.towers), x
        for level in self.levels:
            task_in, shared_in = level(task_in, shared_in)
        return [tower(h) for tower, h in zip(self.towers, task_in)]


class PlainCrossStitch(nn.Module):
    def __init__(self, d_in, n_tasks, *, units, layers, tower_units):
        super().__init__()
        self.columns = nn.ModuleList(
            nn.ModuleList(nn.Linear(d_in if i == 0 else units, units) for i in range(layers)) for _ in range(n_tasks)
        )
        self.stitch = nn.ParameterList(nn.Parameter(torch.eye(n_tasks)) for _ in range(layers))
        self.towers = nn.ModuleList(
            nn.Sequential(nn.Linear(units, tower_units), nn.ReLU(), nn.Linear(tower_units, 1)) for _ in range(n_tasks)
        )

    def forward(self, x):
        hs = [x] * len(self.columns)
        for i, alpha in enumerate(self.stitch):
            hs = [torch.relu(col[i](h)) for col, h in zip(self.columns, hs)]
            hs = [sum(alpha[k, j] * hs[j] for j in range(len(hs))) for k in range(len(hs))]
        return [tower(h) for tower, h in zip(self.towers, hs)]


def plain_model(arch: str, d_in: int, n_tasks: int) -> nn.Module:
    o = architectures.options(arch)
    common = dict(units=o.get("expert_units"), layers=o.get("expert_layers"), tower_units=o["tower_units"])
    settings = {
        "single_task": dict(n_levels=1, n_shared=0, n_specific=1),
        "shared_bottom": dict(n_levels=1, n_shared=1, n_specific=0),
        "omoe": dict(n_levels=1, n_shared=o.get("n_experts"), n_specific=0, tied=True),
        "mmoe": dict(n_levels=1, n_shared=o.get("n_experts"), n_specific=0),
        "cgc": dict(n_levels=1, n_shared=o.get("n_shared"), n_specific=o.get("n_specific")),
        "ple": dict(n_levels=o.get("n_levels"), n_shared=o.get("n_shared"), n_specific=o.get("n_specific")),
    }
    if arch == "cross_stitch":
        return PlainCrossStitch(
            d_in, n_tasks, units=o["column_units"], layers=o["column_layers"], tower_units=o["tower_units"]
        )
    return PlainMoE(d_in, n_tasks, **settings[arch], **common)


class PlainSystem(L.LightningModule):
    """How an MTL training step is usually written: per-step logging, a loss per task head."""

    def __init__(self, model: nn.Module, lr: float) -> None:
        super().__init__()
        self.model, self.lr = model, lr

    def training_step(self, batch, batch_idx):
        x, y = batch
        outs = self.model(x)
        loss = sum(F.mse_loss(o.squeeze(-1), y[:, k]) for k, o in enumerate(outs))
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        outs = self.model(x)
        self.log("val_loss", sum(F.mse_loss(o.squeeze(-1), y[:, k]) for k, o in enumerate(outs)))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def run_plain(arch, data, batch_size, epochs, device) -> tuple[float, int]:
    torch.manual_seed(0)
    model = plain_model(arch, data.d_in, len(data.tasks))
    train = DataLoader(TensorDataset(data.train.x, data.train.y), batch_size=batch_size, shuffle=True)
    val = DataLoader(TensorDataset(data.val.x, data.val.y), batch_size=batch_size)
    trainer = L.Trainer(
        max_epochs=epochs, accelerator=device, devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    trainer.fit(PlainSystem(model, 1e-3), train, val)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, sum(p.numel() for p in model.parameters())


def run_ours(arch, data, batch_size, epochs, device, **options) -> tuple[float, int]:
    # patience above max_epochs: both paths run exactly `epochs` epochs
    config = {"batch_size": batch_size, "max_epochs": epochs, "patience": epochs + 1, **options}
    res = fit(arch, data, config, accelerator=device)
    if device == "cuda":
        torch.cuda.synchronize()
    return res.seconds, res.n_params


PATHS = {"plain": run_plain, "plain+allocator": run_plain, "ours": run_ours, "top-k": run_ours,
         "top-k-no-noise": run_ours}
MAIN_PATHS = ("plain", "plain+allocator", "ours")  # the default table: every architecture, gates as they default
GATE_PATHS = ("ours", "top-k", "top-k-no-noise")  # --gates: dense gates, noisy top-k, top-k without noise


def path_options(path: str, args) -> dict:
    """The architecture options a path adds: the top-k gates of ``--gates``."""
    if path == "top-k":
        return {"gate_top_k": args.top_k}
    if path == "top-k-no-noise":
        return {"gate_top_k": args.top_k, "gate_noise": 0.0}
    return {}


def measure(path: str, arch: str, args) -> dict:
    """Time one path in this process: a one-epoch warm-up (allocator, kernels, Lightning's first trainer),
    then ``repeats`` timed fits."""
    quiet_lightning()
    if args.threads:
        torch.set_num_threads(args.threads)
    if path == "plain+allocator":
        allocator.tune()
    data = datasets.load("synthetic", n_samples=args.n_samples, d=args.d)
    run, options = PATHS[path], path_options(path, args)
    run(arch, data, args.batch_size, 1, args.device, **options)
    times, params = [], 0
    for _ in range(args.repeats):
        seconds, params = run(arch, data, args.batch_size, args.epochs, args.device, **options)
        times.append(seconds)
    return {"times": times, "params": params, "rows": len(data.train), "threads": torch.get_num_threads()}


def in_subprocess(path: str, arch: str, argv: list[str]) -> dict:
    """Each path runs in a fresh interpreter, so that process-wide settings (our allocator thresholds, torch's
    lazily initialised state) of one path never reach the other."""
    cmd = [sys.executable, __file__, *argv, "--worker", path, "--arch", arch]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", action="append", help="architecture (repeatable; default: all)")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--n-samples", type=int, default=40_000, help="synthetic rows (80%% train)")
    ap.add_argument("--d", type=int, default=100, help="input features")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--repeats", type=int, default=3, help="timed fits per path; the fastest is kept")
    ap.add_argument("--gates", action="store_true", help="dense against top-k gates (gated architectures only)")
    ap.add_argument("--top-k", type=int, default=2, help="k of the top-k gates of --gates (default 2)")
    ap.add_argument("--steps", action="store_true", help="with --gates: time one training step of each gating "
                    "variant, interleaved in this process (steadier than whole fits on a loaded machine)")
    ap.add_argument("--worker", choices=list(PATHS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args.arch[0], args)))
        return
    argv = [
        f"--batch-size={args.batch_size}", f"--epochs={args.epochs}", f"--n-samples={args.n_samples}",
        f"--d={args.d}", f"--device={args.device}", f"--threads={args.threads}", f"--repeats={args.repeats}",
        f"--top-k={args.top_k}",
    ]
    if args.gates and args.steps:
        gate_steps(args)
        return
    if args.gates:
        gates_table(args, argv)
        return
    rows, info = [], {}
    for arch in args.arch or architectures.available():
        res = {path: in_subprocess(path, arch, argv) for path in MAIN_PATHS}
        info = res["ours"]
        rate = {path: info["rows"] * args.epochs / min(r["times"]) for path, r in res.items()}
        rows.append([
            arch, res["ours"]["params"], res["plain"]["params"], rate["plain"], rate["plain+allocator"],
            rate["ours"], rate["ours"] / rate["plain"], rate["ours"] / rate["plain+allocator"],
        ])
        print(f"{arch}: done", flush=True)
    dev = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.processor() or 'cpu'}"
    print(
        f"\nbatch {args.batch_size}, {args.epochs} epochs of {info['rows']} rows, d={args.d}, device {dev}, "
        f"torch {torch.__version__}, {info['threads']} threads, best of {args.repeats} fits per path"
    )
    print(
        tabulate(
            rows,
            headers=[
                "arch", "params (ours)", "params (plain)", "plain samples/s", "plain+allocator samples/s",
                "ours samples/s", "speed-up", "vs plain+allocator",
            ],
            floatfmt=(".0f", ".0f", ".0f", ".0f", ".0f", ".0f", ".1f", ".1f"),
            intfmt=",",
        )
    )


def gates_table(args, argv: list[str]) -> None:
    """``--gates``: samples/s of each gated architecture with dense gates, noisy top-k gates (with the
    load-balancing loss) and top-k gates without noise, each path in its own interpreter."""
    gated = [a for a in architectures.available() if "gate_top_k" in architectures.options(a)]
    rows, info = [], {}
    for arch in args.arch or gated:
        res = {path: in_subprocess(path, arch, argv) for path in GATE_PATHS}
        info = res["ours"]
        rate = {path: info["rows"] * args.epochs / min(r["times"]) for path, r in res.items()}
        rows.append([arch, res["ours"]["params"], res["top-k"]["params"], rate["ours"], rate["top-k"],
                     rate["top-k"] / rate["ours"], rate["top-k-no-noise"], rate["top-k-no-noise"] / rate["ours"]])
        print(f"{arch}: done", flush=True)
    dev = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.processor() or 'cpu'}"
    print(f"\nbatch {args.batch_size}, {args.epochs} epochs of {info['rows']} rows, d={args.d}, device {dev}, "
          f"torch {torch.__version__}, {info['threads']} threads, best of {args.repeats} fits per path, k={args.top_k}")
    print(tabulate(rows, headers=["arch", "params (dense)", "params (top-k)", "dense samples/s", "top-k samples/s",
                                  "top-k / dense", "top-k no noise samples/s", "no noise / dense"],
                   floatfmt=(".0f", ".0f", ".0f", ".0f", ".0f", ".2f", ".0f", ".2f"), intfmt=","))


def gate_steps(args, rounds: int = 15, steps: int = 5) -> None:
    """``--gates --steps``: forward plus backward of one batch (task losses plus the auxiliary loss) for each gating
    variant of each gated architecture, the variants interleaved round by round so that a changing machine load
    hits them alike; the best of ``rounds`` rounds of ``steps`` steps, in ms per step."""
    if args.threads:
        torch.set_num_threads(args.threads)
    allocator.tune()
    variants = {"dense": {}, "top-k": {"gate_top_k": args.top_k},
                "top-k no noise": {"gate_top_k": args.top_k, "gate_noise": 0.0},
                "top-k no noise, no aux": {"gate_top_k": args.top_k, "gate_noise": 0.0, "gate_aux_weight": 0.0}}
    gated = [a for a in architectures.available() if "gate_top_k" in architectures.options(a)]
    x = torch.randn(args.batch_size, args.d, device=args.device)
    rows = []
    for arch in args.arch or gated:
        torch.manual_seed(0)
        models = {v: architectures.create(arch, args.d, {"y1": 1, "y2": 1}, **o).to(args.device)
                  for v, o in variants.items()}

        def step(model) -> None:
            out, aux = model(x, with_aux=True)
            (sum(o.square().mean() for o in out.values()) + aux).backward()

        best = dict.fromkeys(models, math.inf)
        for model in models.values():  # warm-up
            step(model)
        for _ in range(rounds):
            for v, model in models.items():
                if args.device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in range(steps):
                    step(model)
                if args.device == "cuda":
                    torch.cuda.synchronize()
                best[v] = min(best[v], (time.perf_counter() - start) / steps)
        rows.append([arch, *[f"{1e3 * best[v]:.2f} ({best['dense'] / best[v]:.2f}x)" for v in variants]])
    print(f"\nms per training step (speed against dense), batch {args.batch_size}, d={args.d}, k={args.top_k}, "
          f"{torch.get_num_threads()} threads, best of {rounds} rounds of {steps} steps")
    print(tabulate(rows, headers=["arch", *variants], disable_numparse=True))


if __name__ == "__main__":
    main()
