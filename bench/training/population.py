"""Population training: S members of one architecture and shape trained together as one stacked model.

Members differ in what does not change shapes: seed (initialisation, data order), learning rate, weight
decay, optimiser (adam / adamw), patience, max_epochs, objective and static loss weights; they share the loss
weighting method (``bench.weighting``), which is one module of S members: each member's state (learned weights,
trained by ``StackedAdam`` with the model's; loss histories; random streams) in its own row. Each member keeps its
own data order, optimiser state, early stopping, best epoch, metrics and history, and is numerically the model
``bench.training.fit.fit(arch, data, config_s)`` would train alone (up to float rounding). Every random draw of a
member's forward pass (its dropout masks, the noise of noisy top-k gates: ``layers.GateNoise``) comes from a
generator seeded with its own seed, drawn in the order ``fit`` draws them after seeding torch with that seed: a
member's result never depends on which members share its population, and on a CPU it is ``fit``'s with dropout
and gate noise too (on a GPU ``fit``'s fused kernels draw other numbers of the same distribution). A forward pass
that draws from torch's generator in any other way is refused (``bench.training.draws``). Used for the
multi-seed final stage of studies and for repeated-run experiments:
``train_population(arch, data, seed_configs(config, range(8)))``.

How: the S models are built by ``make_system`` (so each is initialised from its own seed exactly as ``fit``
does), their parameters stacked into ``(S, ...)`` tensors, and the forward pass is ``torch.func.vmap`` of
``functional_call`` over the stack. Member s reads its own rows ``x[perm_s[batch]]`` -> ``(S, B, d)``, with
``perm_s`` the permutation ``BatchLoader(train, batch_size, shuffle=True, seed=seed_s)`` draws (and its
categorical codes ``cat[perm_s[batch]]`` -> ``(S, B, F)`` and labels, NaN where missing, the same way); every member
has the same number of rows and batch size, so batch boundaries (the final partial batch included) coincide.
The loss summed over members has, for each member's parameters, exactly that member's gradient.

Why not Lightning: a LightningModule owns one model, one optimiser with scalar learning rates and one
early-stopping state, and stops the whole loop at once. A population needs per-member optimiser coefficients
(``StackedAdam``), per-member early stopping and best-weight keeping, and drops members from the stack as they
stop so that stragglers do not pay for finished members. That loop is short, so it is written in plain torch
here; its semantics (Adam/AdamW of ``torch.optim``, the decay/no-decay split of ``param_groups``,
``EarlyStopping(mode="max", check_finite=True)`` on the float32 logged objective, ``KeepBest``) follow
``bench.training.system`` and are checked against ``bench.training.fit.fit`` in ``tests/test_population.py``.

There is no host sync per step: losses are summed on the device and read once per epoch with the validation
metrics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.func import functional_call, stack_module_state, vmap

from bench import architectures, weighting
from bench.architectures.layers import FeatureEncoder
from bench.datasets import BatchLoader, MTLData, Split
from bench.errors import UserError
from bench.spec.config import TrainConfig, split_config

from . import allocator
from .bootstrap import resampled_metrics
from .devices import resolve_device
from .diagnostics import diagnose as diagnostics_of
from .draws import draw, feed_draws, no_other_draws
from .fit import FitResult, count_params, observed_counts
from .metrics import check_finite_loss, entire_space_metrics, funnel_targets, objective, task_loss, task_metrics
from .optim import StackedAdam, param_groups
from .system import embedding_tables, funnel_view, make_system

CPU_GROUP = 8


def seed_configs(config: dict[str, Any], seeds) -> list[dict[str, Any]]:
    """One config per seed: ``config`` with ``seed`` replaced (the repeated-run population)."""
    return [{**config, "seed": int(s)} for s in seeds]


def default_members_per_call(device: torch.device, n_members: int) -> int:
    """How many members one vmap call runs: all of them on a GPU (one kernel launch serves S members); at most
    ``CPU_GROUP`` on a CPU, where stacked temporaries S times larger than one model's fall out of cache and
    per-call overhead is already small next to the arithmetic."""
    return n_members if device.type == "cuda" else min(n_members, CPU_GROUP)


@dataclass
class _Member:
    """Bookkeeping of one member, as ``MTLSystem`` + ``EarlyStopping`` + ``KeepBest`` keep it for one fit."""

    config: dict[str, Any]
    train: TrainConfig
    loader: BatchLoader  # only its ``permutation(epoch)`` is used: the data order ``fit`` would see
    history: list[dict[str, Any]] = field(default_factory=list)
    val_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    best_objective: float = -math.inf
    best_epoch: int | None = None
    best_state: torch.Tensor | None = None  # (P,) row of the flat parameter buffer at the best epoch
    es_best: torch.Tensor = field(default_factory=lambda: torch.tensor(-math.inf))  # float32, as logged
    wait: int = 0
    seconds: float = 0.0
    error: str | None = None  # why the member failed (a non-finite training loss, no finite validation epoch)
    generator: torch.Generator | None = None  # its dropout masks, seeded with its own seed (as fit seeds torch)

    def early_stop(self, value: float) -> bool:
        """``EarlyStopping(mode="max", check_finite=True)`` on the float32 value ``self.log`` would store."""
        current = torch.tensor(value, dtype=torch.float32)
        if not torch.isfinite(current):
            return True
        if current > self.es_best:
            self.es_best, self.wait = current, 0
            return False
        self.wait += 1
        return self.wait >= self.train.patience


def _check_configs(arch: str, configs: list[dict[str, Any]]) -> list[TrainConfig]:
    """Split every config; members must share everything that fixes shapes or batch boundaries."""
    if not configs:
        raise UserError("a population needs at least one config")
    defaults = architectures.options(arch)
    trains, shapes = [], []
    for cfg in configs:
        train, opts = split_config(arch, dict(cfg))
        trains.append(train)
        shapes.append({**defaults, **opts})
    for i, (train, opts) in enumerate(zip(trains[1:], shapes[1:]), start=1):
        for key, value in opts.items():
            if value != shapes[0][key]:
                raise UserError(
                    f"population members must share the architecture options; {key} is {shapes[0][key]!r} "
                    f"in config 0 but {value!r} in config {i} (members may differ in: seed, lr, weight_decay, "
                    "optimizer, patience, max_epochs, objective, eval_batch_size)"
                )
        if train.batch_size != trains[0].batch_size:
            raise UserError(
                f"population members must share batch_size; it is {trains[0].batch_size} in config 0 but "
                f"{train.batch_size} in config {i}"
            )
    return trains


def train_population(
    arch: str,
    data: MTLData,
    configs: list[dict[str, Any]],
    *,
    evaluate_test: bool = False,
    device: str | torch.device = "auto",
    loss_weights: dict[str, float] | None = None,
    members_per_call: int | None = None,
    diagnose: bool = False,
    stop: Callable[[], None] | None = None,
) -> list[FitResult]:
    """Train one member per config of ``configs`` (flat configs as ``bench.training.fit.fit`` takes) as one stacked
    model; return one ``FitResult`` per config, in order, as ``fit(arch, data, config, evaluate_test=...)``
    would. ``seconds`` is the wall time from the start until that member stopped. The test split is read
    (once, with each member's best weights) only when ``evaluate_test``. A member whose training loss turns
    non-finite, or that has no finite validation epoch, fails alone: its result has ``error`` set and no test
    metrics, and the others train on.

    ``device``: ``auto`` (CUDA when available), ``cpu``, ``cuda``. ``members_per_call``: how many members one
    vmap call runs (default ``default_members_per_call``); fewer bound the size of the stacked temporaries
    (memory), the results do not depend on it beyond float rounding. ``diagnose`` (with ``evaluate_test``): each
    member's gate and expert diagnostics on the test split with its best weights, after training, as ``fit``
    gives them. ``stop``: called before every step (e.g. a SIGTERM flag's check); whatever it raises ends the
    training at once, with no result."""
    trains = _check_configs(arch, configs)
    allocator.tune()
    dev = resolve_device(device)
    if members_per_call is not None and members_per_call < 1:
        raise UserError(f"members_per_call must be >= 1, got {members_per_call}")
    fields, partial = data.field_sizes, data.partial
    systems = [
        make_system(arch, data.tasks, data.d_in, dict(cfg), loss_weights, fields=fields, partial=partial,
                    funnel=data.funnel_steps)
        for cfg in configs
    ]
    template = systems[0].model.to(dev)  # runs every member via functional_call; its own weights are unused
    tables = embedding_tables(template)
    encoder = next((m for m in template.modules() if isinstance(m, FeatureEncoder)), None)
    if encoder is not None:
        encoder.table.sparse = False  # dense gradients under vmap; StackedAdam updates the looked-up rows only
    lazy = next((name for name, p in template.named_parameters() if tables and p is tables[0]), None)
    n_rows = encoder.table.num_embeddings if encoder is not None else 0  # every set of embeddings (STEM: T + 1)
    feed = feed_draws(template)  # dropout masks and gate noise from each member's own seed (as fit's)
    tasks = systems[0].tasks
    # a funnel architecture: its joint view scored against joint labels, as MTLSystem.training_step
    steps, partial = funnel_view(template, tasks, data.funnel_steps, partial)
    joint = {"joint": True} if steps is not None else {}
    # one loss-weighting module of S members (bench.weighting): each member's state (fixed or learned weights,
    # loss history, PCGrad's generator) in its row, seeded and initialised as its own fit's
    method = type(systems[0].weighting).stack([s.weighting for s in systems]).to(dev)
    loss_weights = torch.tensor(systems[0].loss_weights, device=dev)  # (T,): the fixed loss_weights w_k
    decayed_ids = {id(p) for p in param_groups(template, 1.0)[0]["params"]}
    decayed = {name for name, p in template.named_parameters() if id(p) in decayed_ids}
    trainable = {name for name, p in template.named_parameters() if p.requires_grad}
    stacked, _ = stack_module_state([s.model for s in systems])  # (S, ...) per parameter, detached copies
    stacked = {k: v.to(dev) for k, v in stacked.items() if k in trainable}
    model_names = list(stacked)
    # the method's learned parameters (S, T) train with the model's, never decayed; they come last in the buffer
    learned = [name for name, p in method.named_parameters() if p.requires_grad]
    stacked |= {f"weighting.{name}": method.get_parameter(name).detach() for name in learned}
    n_params = count_params(template)
    del systems

    train = data.train.to(dev)
    val = data.val.to(dev)
    members = [
        _Member(
            dict(cfg),
            t,
            BatchLoader(train, t.batch_size, shuffle=True, seed=t.seed),
            generator=torch.Generator(device=dev).manual_seed(t.seed),
        )
        for cfg, t in zip(configs, trains)
    ]
    opt = StackedAdam(
        stacked,
        decayed & set(stacked),
        [t.lr for t in trains],
        [t.weight_decay for t in trains],
        [t.optimizer == "adamw" for t in trains],
        lazy=lazy,
    )
    del stacked

    def bind() -> None:
        """The method's learned parameters as views of the optimiser's buffer (its steps and the method's own
        in-place updates, e.g. GradNorm's renormalisation, then act on the same numbers)."""
        for name in learned:
            method.get_parameter(name).data = opt.params[f"weighting.{name}"].detach()

    bind()
    # one member's rows per vmap lane; the eval chunk is shared by S lanes, so it is divided by S
    eval_rows = max(1, min(t.eval_batch_size for t in trains) // len(configs))
    batch_size, n_train = trains[0].batch_size, len(train)
    group = members_per_call or default_members_per_call(dev, len(configs))

    with_aux = architectures.has_aux_loss(template)

    def run(p: dict[str, torch.Tensor], x: torch.Tensor, cat: torch.Tensor, aux: bool = False):
        # p: the model's parameters only (model_part); the model takes the categorical codes only when it has a
        # FeatureEncoder (MTLSystem.forward)
        return functional_call(template, p, (x, cat) if fields else (x,), {"with_aux": True} if aux else {})

    def run_joint(p: dict[str, torch.Tensor], x: torch.Tensor, cat: torch.Tensor, aux: bool = False):
        # the view the losses are computed in: a funnel architecture's joint one
        kw = ({"with_aux": True} if aux else {}) | joint
        return functional_call(template, p, (x, cat) if fields else (x,), kw)

    def member_losses(
        p: dict[str, torch.Tensor], x: torch.Tensor, cat: torch.Tensor, y: torch.Tensor, masks: list[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One member's task losses ``(T,)`` (w_k L_k, as MTLSystem.task_losses: masked where labels are missing)
        and auxiliary loss ``()`` (sparse gates' weighted load balancing; 0 without)."""
        if feed is not None:
            feed.masks = list(masks)  # this member's masks, in the order its dropout layers are called
        if with_aux:
            out, aux = run_joint(p, x, cat, aux=True)
        else:
            out, aux = run_joint(p, x, cat), x.new_zeros(())
        if steps is not None:
            y = funnel_targets(y, steps)
        losses = torch.stack([task_loss(t.kind, out[t.name], y[:, k], partial[k]) for k, t in enumerate(tasks)])
        return loss_weights * losses, aux

    # (S, B, d), (S, B, F), (S, B, T), [(S, ...)] -> (S, T), (S,)
    batched_losses = vmap(member_losses, randomness="different")
    lazy_columns = slice(*opt.lazy[:2]) if opt.lazy is not None else None
    shared: torch.Tensor | None = None  # (S, P_model) bool: gradient-based methods' shared elements, per member

    def group_gradient(a: int, p: dict[str, torch.Tensor], losses: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        """``(G, P)``: the gradient of members ``a..a+G`` (their parameters ``p``, task losses ``(G, T)``, auxiliary
        losses ``(G,)``), as ``MTLSystem.training_step`` sets it for each: each member's rows of ``p`` get its own
        gradient only (members are independent), the method's learned parameters their gradient from the method."""
        nonlocal shared
        rows = slice(a, a + len(losses))
        leaves = [p[k] for k in model_names]
        own_params = [method.get_parameter(name) for name in learned]
        if not method.grad_based:  # loss-based: backpropagate each member's combined loss (plus its aux)
            total = method.combine(losses, rows) + aux
            g = torch.autograd.grad(total.sum(), leaves + own_params, allow_unused=True)
            model, own = opt.flatten(g[: len(leaves)], len(losses)), g[len(leaves) :]
        else:  # gradient-based: each task's gradient (one backward pass per task), then the method's update
            per_task = torch.stack([
                opt.flatten(torch.autograd.grad(losses[:, k].sum(), leaves, retain_graph=True, allow_unused=True),
                            len(losses))
                for k in range(len(tasks))], dim=1)  # (G, T, P_model)
            if shared is None or shared.shape[0] < rows.stop:  # each member's first step fixes its mask, as fit
                mask = weighting.shared_mask(per_task)  # (G, P_model)
                if lazy_columns is not None:
                    mask[:, lazy_columns] = False  # embedding tables: the weighted sum, as fit (no projection)
                shared = mask if shared is None else torch.cat([shared, mask])
            model, own_loss = method.gradient(losses, per_task, shared[rows], rows)
            if with_aux:  # the auxiliary loss is no task's: its gradient is added to the method's update
                model = model + opt.flatten(torch.autograd.grad(aux.sum(), leaves, allow_unused=True), len(losses))
            own = torch.autograd.grad(own_loss.sum(), own_params) if own_loss is not None else [None] * len(learned)
        own_flat = [(g[rows] if g is not None else torch.zeros_like(q[rows])).reshape(len(losses), -1)
                    for g, q in zip(own, own_params)]
        return torch.cat([model, *own_flat], dim=1)
    calls_of: dict[int, list[tuple[torch.Size, tuple[int, ...], float | None]]] = {}

    def dropout_calls(rows: int) -> list[tuple[torch.Size, tuple[int, ...], float | None]]:
        """The (shape, stride, p) of every random draw (dropout, gate noise) of one member's forward pass on
        ``rows`` rows; none may draw from torch's generator unfed (``bench.training.draws``)."""
        if rows not in calls_of:
            if feed is not None:
                feed.probe = []
            with torch.no_grad(), no_other_draws(arch, dev):
                template(*((train.x[:rows], train.cat[:rows]) if fields else (train.x[:rows],)))
            calls_of[rows] = feed.probe if feed is not None else []
            if feed is not None:
                feed.probe = None
        return calls_of[rows]

    forward_shared = vmap(run, in_dims=(0, None, None))

    @torch.no_grad()
    def predict(p: dict[str, torch.Tensor], split: Split) -> dict[str, torch.Tensor]:
        """{task: (S, N, out_dim)} logits of every member on a whole split, in chunks of ``eval_rows``."""
        template.eval()
        chunks = [
            forward_shared(p, split.x[i : i + eval_rows], split.cat[i : i + eval_rows])
            for i in range(0, len(split), eval_rows)
        ]
        template.train()
        return {t.name: torch.cat([c[t.name] for c in chunks], dim=1) for t in tasks}

    def model_part(p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: p[k] for k in model_names}

    def metrics_of(logits: dict[str, torch.Tensor], split: Split, row: int) -> dict[str, dict[str, float]]:
        return {t.name: task_metrics(t.kind, logits[t.name][row], split.y[:, k]) for k, t in enumerate(tasks)}

    active = list(range(len(members)))  # member index of each row of the stack
    template.train()
    start = time.perf_counter()
    # dropout masks come from each member's own generator; the forked RNG leaves the caller's untouched anyway
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(trains[0].seed)
        epoch = 0
        while active:
            perms = torch.stack([members[m].loader.permutation(epoch) for m in active])  # (S, N) on dev
            loss_sum = torch.zeros(len(active), device=dev)
            task_loss_sum = torch.zeros(len(active), len(tasks), device=dev)  # (S, T): for the method's epoch_end
            n_steps = 0
            for lo in range(0, n_train, batch_size):
                if stop is not None:
                    stop()
                rows = perms[:, lo : lo + batch_size]  # (S, B): member s's batch, as its BatchLoader slices it
                xb, yb = train.x[rows], train.y[rows]  # (S, B, d), (S, B, T)
                cb = train.cat[rows]  # (S, B, F)
                calls = dropout_calls(rows.shape[1])
                masks = draw(calls, [members[m].generator for m in active], dev) if calls else []
                grads = []
                for a in range(0, len(active), group):  # groups of members per vmap call (see members_per_call)
                    p = opt.params if group >= len(active) else opt.unflatten(opt.flat[a : a + group], True)
                    losses, aux = batched_losses(
                        model_part(p), xb[a : a + group], cb[a : a + group], yb[a : a + group],
                        [mk[a : a + group] for mk in masks],
                    )  # (G, T), (G,)
                    # train_loss as MTLSystem counts it: sum_k w_k L_k with the step's weights, plus aux
                    rows_of = slice(a, a + len(losses))
                    loss_sum[rows_of] += (method.weights(rows_of) * losses.detach()).sum(-1) + aux.detach()
                    task_loss_sum[rows_of] += losses.detach()
                    grads.append(group_gradient(a, p, losses, aux))
                touched = None
                if lazy is not None:  # (S, R): the table rows each member's batch looked up
                    touched = torch.zeros(len(active), n_rows, dtype=torch.bool, device=dev)
                    touched.scatter_(1, encoder.rows(cb).reshape(len(active), -1), True)
                opt.step(grads[0] if len(grads) == 1 else torch.cat(grads), touched)
                method.after_step()
                n_steps += 1
            method.epoch_end(task_loss_sum / n_steps)
            train_loss = (loss_sum / n_steps).tolist()
            logits = predict(model_part(opt.params), val)
            stopped = []
            for row, m in enumerate(active):
                mem = members[m]
                try:  # as MTLSystem: a non-finite training loss ends this member's fit as a failure
                    check_finite_loss(train_loss[row], epoch)
                except FloatingPointError as err:
                    mem.error, mem.seconds = str(err), time.perf_counter() - start
                    stopped.append(row)
                    continue
                metrics = metrics_of(logits, val, row)
                value = objective(tasks, metrics, mem.train.objective)
                if not math.isfinite(value):
                    value = -math.inf  # a diverged epoch never counts as the best
                flat = {f"val/{task}/{name}": v for task, ms in metrics.items() for name, v in ms.items()}
                mem.history.append({"epoch": epoch, "val_objective": value, **flat, "train_loss": train_loss[row]})
                if value > mem.best_objective:
                    mem.best_objective, mem.best_epoch, mem.val_metrics = value, epoch, metrics
                    mem.best_state = opt.flat[row].clone()
                if mem.early_stop(value) or epoch + 1 >= mem.train.max_epochs:
                    mem.seconds = time.perf_counter() - start
                    stopped.append(row)
            if stopped:
                keep = [row for row in range(len(active)) if row not in stopped]
                active = [active[row] for row in keep]
                if active:  # stopped members leave the stack: no compute is spent on them any more
                    rows = torch.tensor(keep, device=dev)
                    opt.keep(rows)
                    method.keep(rows)
                    bind()
                    if shared is not None:
                        shared = shared[rows]
            epoch += 1

    for mem in members:
        if mem.error is None and mem.best_state is None:
            mem.error = "no finite validation epoch (diverged)"
    test_logits, test_row, states, diagnostics, truth_logits = None, {}, {}, {}, None

    def with_truth(metrics: dict[str, dict[str, float]], logits, row: int) -> dict[str, dict[str, float]]:
        """A member's test metrics plus its entire-space ones (``fit.with_truth``)."""
        if logits is None:
            return metrics
        return {**metrics, **{task: {**metrics.get(task, {}), **entire_space_metrics(
            logits[task][row].cpu(), data.truth.prob[task], data.truth.outcome[task])} for task in data.truth.prob}}
    ok = [i for i, m in enumerate(members) if m.error is None]
    if evaluate_test and ok:  # the test split, read once per member with its best weights; never a failed one's
        best = model_part(opt.unflatten(torch.stack([members[i].best_state for i in ok])))
        test = data.test.to(dev)
        test_logits, test_row = predict(best, test), {i: row for row, i in enumerate(ok)}
        if data.truth is not None:  # every test impression, for the entire-space metrics
            every = Split(data.truth.x, torch.zeros(len(data.truth.x), 0), data.truth.cat).to(dev)
            truth_logits = predict(best, every)
        # each member's weights as its own model's state_dict (what ``fit`` keeps): trained rows of the stack,
        # the template's values for what is not trained (buffers, frozen parameters)
        fixed = {k: v.detach().cpu() for k, v in template.state_dict().items() if k not in best}
        states = {i: {**fixed, **{k: v[row].detach().cpu().clone() for k, v in best.items()}}
                  for i, row in test_row.items()}
        if diagnose:  # one member at a time through the template, whose hooks see that member's weights
            for i, row in test_row.items():
                member = {name: v[row] for name, v in best.items()}
                diagnostics[i] = diagnostics_of(
                    template, test.x, [t.name for t in tasks], chunk=eval_rows * len(configs), cat=test.cat,
                    forward=lambda xb, cb, w=member: run(w, xb, cb))
    results = []
    for i, (arch_config, mem) in enumerate(zip(configs, members)):
        results.append(
            FitResult(
                arch=arch,
                config=dict(arch_config),
                val_metrics=mem.val_metrics,
                val_objective=mem.best_objective,
                best_epoch=mem.best_epoch,
                epochs=len(mem.history),
                n_params=n_params,
                seconds=mem.seconds,
                history=mem.history,
                test_metrics=(with_truth(metrics_of(test_logits, test, test_row[i]), truth_logits, test_row[i])
                              if i in test_row else None),
                test_draws=resampled_metrics(tasks, {t.name: test_logits[t.name][test_row[i]] for t in tasks},
                                             test.y) if i in test_row else None,
                error=mem.error,
                state=states.get(i),
                diagnostics=diagnostics.get(i),
                observed=observed_counts(data, evaluate_test),
            )
        )
    return results
