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
here (``Population``: a training step, an epoch's evaluation, retiring the members that stopped, their
results; ``train_population`` is the loop); the rules it follows are the system's own, from the same modules:
the loss assembly (``losses``), the optimisers' rules (``optim``: Adam/AdamW of ``torch.optim``, the
decay/no-decay split of ``param_groups``, the lazy sparse Adam rule), early stopping and best-epoch keeping
(``rules``). Checked against ``bench.training.fit.fit`` in ``tests/test_population.py``.

There is no host sync per step: losses are summed on the device and read once per epoch with the validation
metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch.func import functional_call, stack_module_state, vmap

from bench import architectures, weighting
from bench.architectures.layers import FeatureEncoder
from bench.datasets import BatchLoader, MTLData, Split
from bench.errors import UserError
from bench.spec.config import TrainConfig

from . import allocator
from .bootstrap import entire_draws, resampled_metrics
from .devices import resolve_device
from .diagnostics import diagnose as diagnostics_of
from .draws import draw, feed_draws, probe
from .fit import FitResult, count_params, observed_counts
from .losses import funnel_view, reported_loss, task_losses, total_loss
from .members import CPU_GROUP, Member, check_configs, default_members_per_call, seed_configs
from .metrics import check_finite_loss, entire_space_metrics, task_metrics
from .optim import StackedAdam, param_groups
from .rules import objective_value
from .system import embedding_tables, make_system

__all__ = ["CPU_GROUP", "Population", "StackedAdam", "check_configs", "default_members_per_call", "seed_configs",
           "train_population"]

class Population:
    """S members of one architecture as one stacked model on ``device``: the template model that runs them all
    (``functional_call`` of each member's parameters), the ``StackedAdam`` that owns their parameters (member s in
    row s), the stacked loss-weighting method, and each member's ``Member``. ``active``: the member index of each
    row of the stack (members leave it as they stop)."""

    def __init__(self, arch: str, data: MTLData, configs: list[dict[str, Any]], trains: list[TrainConfig],
                 device: torch.device, loss_weights: dict[str, float] | None, members_per_call: int | None) -> None:
        self.arch, self.data, self.device, self.fields = arch, data, device, data.field_sizes
        systems = [make_system(arch, data.tasks, data.d_in, dict(cfg), loss_weights, fields=self.fields,
                               partial=data.partial, funnel=data.funnel_steps) for cfg in configs]
        self.template = systems[0].model.to(device)  # runs every member via functional_call; its weights are unused
        self._prepare_template()
        self.tasks = systems[0].tasks
        # a funnel architecture: its joint view scored against joint labels, as MTLSystem.training_step
        self.steps, self.partial = funnel_view(self.template, self.tasks, data.funnel_steps, data.partial)
        self.with_aux = architectures.has_aux_loss(self.template)
        # one loss-weighting module of S members (bench.weighting): each member's state (fixed or learned weights,
        # loss history, PCGrad's generator) in its row, seeded and initialised as its own fit's
        self.method = type(systems[0].weighting).stack([s.weighting for s in systems]).to(device)
        self.loss_weights = systems[0].loss_weights  # the fixed w_k
        self.opt = self._stack([s.model for s in systems], trains)
        self.n_params = count_params(self.template)
        del systems
        self.train, self.val = data.train.to(device), data.val.to(device)
        self.members = [Member(dict(cfg), t, BatchLoader(self.train, t.batch_size, shuffle=True, seed=t.seed),
                               torch.Generator(device=device).manual_seed(t.seed)) for cfg, t in zip(configs, trains)]
        self.active = list(range(len(self.members)))
        self._bind()
        # one member's rows per vmap lane; the eval chunk is shared by S lanes, so it is divided by S
        self.eval_rows = max(1, min(t.eval_batch_size for t in trains) // len(configs))
        self.batch_size = trains[0].batch_size
        self.group = members_per_call or default_members_per_call(device, len(configs))
        self.shared: torch.Tensor | None = None  # (S, P_model) bool: gradient-based methods' shared elements
        self._loss_sum = self._task_loss_sum = None  # (S,), (S, T): the epoch's summed losses (train_epoch)
        self._calls: dict[int, list] = {}  # batch rows -> the random draws of one member's forward pass
        # (S, B, d), (S, B, F), (S, B, T), [(S, ...)] -> (S, T), (S,)
        self._batched_losses = vmap(self._member_losses, randomness="different")
        self._forward_shared = vmap(self._forward, in_dims=(0, None, None))  # one input, every member's weights
        self.template.train()

    def _prepare_template(self) -> None:
        """Dense embedding gradients under vmap (``StackedAdam`` moves the looked-up rows only: ``lazy`` names the
        table); dropout masks and gate noise fed from each member's own generator (``bench.training.draws``)."""
        tables = embedding_tables(self.template)
        self.encoder = next((m for m in self.template.modules() if isinstance(m, FeatureEncoder)), None)
        if self.encoder is not None:
            self.encoder.table.sparse = False
        self.lazy = next((name for name, p in self.template.named_parameters() if tables and p is tables[0]), None)
        # every set of embeddings (STEM: T + 1)
        self.n_rows = self.encoder.table.num_embeddings if self.encoder is not None else 0
        self.feed = feed_draws(self.template)

    def _stack(self, models: list[torch.nn.Module], trains: list[TrainConfig]) -> StackedAdam:
        """The members' trained parameters, ``(S, ...)`` each, in one ``StackedAdam`` with each member's lr, weight
        decay and optimiser: the models' (decayed as ``param_groups`` splits them), then the method's learned
        parameters ``(S, T)``, never decayed, last in the buffer."""
        decayed_ids = {id(p) for p in param_groups(self.template, 1.0)[0]["params"]}
        decayed = {name for name, p in self.template.named_parameters() if id(p) in decayed_ids}
        trainable = {name for name, p in self.template.named_parameters() if p.requires_grad}
        stacked, _ = stack_module_state(models)  # (S, ...) per parameter, detached copies
        stacked = {k: v.to(self.device) for k, v in stacked.items() if k in trainable}
        self.model_names = list(stacked)
        self.learned = [name for name, p in self.method.named_parameters() if p.requires_grad]
        stacked |= {f"weighting.{name}": self.method.get_parameter(name).detach() for name in self.learned}
        return StackedAdam(stacked, decayed & set(stacked), [t.lr for t in trains],
                           [t.weight_decay for t in trains], [t.optimizer == "adamw" for t in trains], lazy=self.lazy)

    def _bind(self) -> None:
        """The method's learned parameters as views of the optimiser's buffer (its steps and the method's own
        in-place updates, e.g. GradNorm's renormalisation, then act on the same numbers)."""
        for name in self.learned:
            self.method.get_parameter(name).data = self.opt.params[f"weighting.{name}"].detach()

    def _model_part(self, p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: p[k] for k in self.model_names}

    def _forward(self, p: dict[str, torch.Tensor], x: torch.Tensor, cat: torch.Tensor, **kw):
        # p: the model's parameters only (_model_part); the model takes the categorical codes only when it has a
        # FeatureEncoder (MTLSystem.forward)
        return functional_call(self.template, p, (x, cat) if self.fields else (x,), kw)

    # --- training
    def _member_losses(self, p: dict[str, torch.Tensor], x: torch.Tensor, cat: torch.Tensor, y: torch.Tensor,
                       masks: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One member's task losses ``(T,)`` (w_k L_k, ``losses.task_losses``) and auxiliary loss ``()`` (sparse
        gates' weighted load balancing; 0 without), under vmap: ``x (B, d)``, ``cat (B, F)``, ``y (B, T)``."""
        if self.feed is not None:
            self.feed.masks = list(masks)  # this member's masks, in the order its dropout layers are called
        kw = {"joint": True} if self.steps is not None else {}  # a funnel architecture's joint view
        if self.with_aux:
            out, aux = self._forward(p, x, cat, with_aux=True, **kw)
        else:
            out, aux = self._forward(p, x, cat, **kw), x.new_zeros(())
        return task_losses(self.tasks, out, y, self.loss_weights, self.partial, self.steps), aux

    def _draws(self, rows: int) -> list:
        """The random draws (shape, stride, p) of one member's forward pass on ``rows`` rows (probed once)."""
        if rows not in self._calls:
            inputs = (self.train.x[:rows], self.train.cat[:rows]) if self.fields else (self.train.x[:rows],)
            self._calls[rows] = probe(self.template, inputs, self.feed, self.arch, self.device)
        return self._calls[rows]

    def train_epoch(self, epoch: int, stop: Callable[[], None] | None) -> list[float]:
        """One epoch of every active member on its own data order; its mean training loss per member (one host
        sync). The method sees the epoch's mean task losses (``epoch_end``)."""
        perms = torch.stack([self.members[m].loader.permutation(epoch) for m in self.active])  # (S, N) on device
        self._loss_sum = torch.zeros(len(self.active), device=self.device)
        self._task_loss_sum = torch.zeros(len(self.active), len(self.tasks), device=self.device)  # (S, T)
        n_steps = 0
        for lo in range(0, len(self.train), self.batch_size):
            if stop is not None:
                stop()
            self.step(perms[:, lo : lo + self.batch_size])  # (S, B): member s's batch, as its BatchLoader slices it
            n_steps += 1
        self.method.epoch_end(self._task_loss_sum / n_steps)
        return (self._loss_sum / n_steps).tolist()

    def step(self, rows: torch.Tensor) -> None:
        """One training step of every active member on its batch ``rows (S, B)``, in groups of ``group`` members
        per vmap call; the losses are summed on the device for the epoch's ``train_loss``."""
        xb, yb, cb = self.train.x[rows], self.train.y[rows], self.train.cat[rows]  # (S, B, d), (S, B, T), (S, B, F)
        calls = self._draws(rows.shape[1])
        masks = draw(calls, [self.members[m].generator for m in self.active], self.device) if calls else []
        grads, n, g = [], len(self.active), self.group
        for a in range(0, n, g):
            p = self.opt.params if g >= n else self.opt.unflatten(self.opt.flat[a : a + g], True)
            losses, aux = self._batched_losses(self._model_part(p), xb[a : a + g], cb[a : a + g], yb[a : a + g],
                                               [mk[a : a + g] for mk in masks])  # (G, T), (G,)
            rows_of = slice(a, a + len(losses))
            # train_loss as MTLSystem counts it: sum_k lambda_k w_k L_k with the step's weights, plus aux
            self._loss_sum[rows_of] += reported_loss(self.method.weights(rows_of), losses, aux)
            self._task_loss_sum[rows_of] += losses.detach()
            grads.append(self._gradient(a, p, losses, aux))
        touched = None
        if self.lazy is not None:  # (S, R): the table rows each member's batch looked up
            touched = torch.zeros(n, self.n_rows, dtype=torch.bool, device=self.device)
            touched.scatter_(1, self.encoder.rows(cb).reshape(n, -1), True)
        self.opt.step(grads[0] if len(grads) == 1 else torch.cat(grads), touched)
        self.method.after_step()

    def _gradient(self, a: int, p: dict[str, torch.Tensor], losses: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        """``(G, P)``: the gradient of members ``a..a+G`` (their parameters ``p``, task losses ``(G, T)``, auxiliary
        losses ``(G,)``), as ``MTLSystem.training_step`` sets it for each: each member's rows of ``p`` get its own
        gradient only (members are independent), the method's learned parameters their gradient from the method."""
        rows = slice(a, a + len(losses))
        leaves = [p[k] for k in self.model_names]
        own_params = [self.method.get_parameter(name) for name in self.learned]
        if not self.method.grad_based:  # loss-based: backpropagate each member's combined loss (plus its aux)
            g = torch.autograd.grad(total_loss(self.method, losses, aux, rows).sum(), leaves + own_params,
                                    allow_unused=True)
            model, own = self.opt.flatten(g[: len(leaves)], len(losses)), g[len(leaves) :]
        else:
            model, own = self._method_gradient(rows, leaves, own_params, losses, aux)
        own_flat = [(g[rows] if g is not None else torch.zeros_like(q[rows])).reshape(len(losses), -1)
                    for g, q in zip(own, own_params)]
        return torch.cat([model, *own_flat], dim=1)

    def _method_gradient(self, rows: slice, leaves: list[torch.Tensor], own_params: list[torch.Tensor],
                         losses: torch.Tensor, aux: torch.Tensor) -> tuple[torch.Tensor, list]:
        """A gradient-based method's ``(G, P_model)`` update from each task's gradient (one backward pass per
        task), plus the auxiliary loss's gradient, and the gradients of its learned parameters."""
        n = len(losses)
        per_task = torch.stack([
            self.opt.flatten(torch.autograd.grad(losses[:, k].sum(), leaves, retain_graph=True, allow_unused=True), n)
            for k in range(len(self.tasks))], dim=1)  # (G, T, P_model)
        if self.shared is None or self.shared.shape[0] < rows.stop:  # each member's first step fixes its mask, as fit
            mask = weighting.shared_mask(per_task)  # (G, P_model)
            if self.opt.lazy is not None:
                mask[:, slice(*self.opt.lazy[:2])] = False  # embedding tables: the weighted sum, as fit (no projection)
            self.shared = mask if self.shared is None else torch.cat([self.shared, mask])
        model, own_loss = self.method.gradient(losses, per_task, self.shared[rows], rows)
        if self.with_aux:  # the auxiliary loss is no task's: its gradient is added to the method's update
            model = model + self.opt.flatten(torch.autograd.grad(aux.sum(), leaves, allow_unused=True), n)
        own = torch.autograd.grad(own_loss.sum(), own_params) if own_loss is not None else [None] * len(self.learned)
        return model, own

    # --- evaluation
    @torch.no_grad()
    def predict(self, p: dict[str, torch.Tensor], split: Split) -> dict[str, torch.Tensor]:
        """{task: (S, N, out_dim)} logits of every member on a whole split, in chunks of ``eval_rows``."""
        self.template.eval()
        rows = self.eval_rows
        chunks = [self._forward_shared(p, split.x[i : i + rows], split.cat[i : i + rows])
                  for i in range(0, len(split), rows)]
        self.template.train()
        return {t.name: torch.cat([c[t.name] for c in chunks], dim=1) for t in self.tasks}

    def _metrics(self, logits: dict[str, torch.Tensor], split: Split, row: int) -> dict[str, dict[str, float]]:
        return {t.name: task_metrics(t.kind, logits[t.name][row], split.y[:, k]) for k, t in enumerate(self.tasks)}

    def evaluate(self, epoch: int, train_loss: list[float], start: float) -> list[int]:
        """The epoch's validation: each active member's epoch recorded and judged; the rows of the stack whose
        members stopped (``seconds``: their wall time since ``start``)."""
        logits = self.predict(self._model_part(self.opt.params), self.val)
        stopped = []
        for row, m in enumerate(self.active):
            if self._end_epoch(self.members[m], row, epoch, train_loss[row], logits):
                self.members[m].seconds = time.perf_counter() - start
                stopped.append(row)
        return stopped

    def _end_epoch(self, mem: Member, row: int, epoch: int, train_loss: float,
                   logits: dict[str, torch.Tensor]) -> bool:
        """Member ``mem`` (row ``row``) after an epoch, as ``MTLSystem`` ends one: whether it stops."""
        try:  # as MTLSystem: a non-finite training loss ends this member's fit as a failure
            check_finite_loss(train_loss, epoch)
        except FloatingPointError as err:
            mem.error = str(err)
            return True
        metrics = self._metrics(logits, self.val, row)
        value = objective_value(self.tasks, metrics, mem.train.objective)
        mem.record.add(epoch, metrics, value, lambda: self.opt.flat[row].clone(), train_loss=train_loss)
        return mem.stop(value) or epoch + 1 >= mem.train.max_epochs

    def retire(self, stopped: list[int]) -> None:
        """Stopped members (rows of the stack) leave it: no compute is spent on them any more."""
        if not stopped:
            return
        keep = [row for row in range(len(self.active)) if row not in stopped]
        self.active = [self.active[row] for row in keep]
        if self.active:
            rows = torch.tensor(keep, device=self.device)
            self.opt.keep(rows)
            self.method.keep(rows)
            self._bind()
            if self.shared is not None:
                self.shared = self.shared[rows]

    # --- results
    def results(self, evaluate_test: bool, diagnose: bool) -> list[FitResult]:
        """One ``FitResult`` per member, in order, as ``fit`` gives it; the test split is read (once, with each
        member's best weights) only with ``evaluate_test``, never for a failed member."""
        for mem in self.members:
            if mem.error is None and mem.record.state is None:
                mem.error = "no finite validation epoch (diverged)"
        ok = [i for i, m in enumerate(self.members) if m.error is None]
        tested = self._test(ok, diagnose) if evaluate_test and ok else {}
        results = []
        for i, mem in enumerate(self.members):
            rec = mem.record
            results.append(FitResult(
                arch=self.arch, config=mem.config, val_metrics=rec.val_metrics, val_objective=rec.best_objective,
                best_epoch=rec.best_epoch, epochs=len(rec.history), n_params=self.n_params, seconds=mem.seconds,
                history=rec.history, error=mem.error, observed=observed_counts(self.data, evaluate_test),
                **tested.get(i, {})))
        return results

    def _test(self, ok: list[int], diagnose: bool) -> dict[int, dict[str, Any]]:
        """For each member of ``ok``: what its ``FitResult`` gets from the test split (test metrics and draws, its
        weights as its own model's ``state_dict``, diagnostics)."""
        best = self._model_part(self.opt.unflatten(torch.stack([self.members[i].record.state for i in ok])))
        test = self.data.test.to(self.device)
        logits, truth = self.predict(best, test), None
        if self.data.truth is not None:  # every test impression, for the entire-space metrics
            truth = self.predict(best, Split(self.data.truth.x, torch.zeros(len(self.data.truth.x), 0),
                                             self.data.truth.cat).to(self.device))
        # each member's weights as its own model's state_dict (what ``fit`` keeps): trained rows of the stack,
        # the template's values for what is not trained (buffers, frozen parameters)
        fixed = {k: v.detach().cpu() for k, v in self.template.state_dict().items() if k not in best}
        states = {i: {**fixed, **{k: v[row].detach().cpu().clone() for k, v in best.items()}}
                  for row, i in enumerate(ok)}
        diagnostics = {}
        if diagnose:  # one member at a time through the template, whose hooks see that member's weights
            for row, i in enumerate(ok):
                member = {name: v[row] for name, v in best.items()}
                diagnostics[i] = diagnostics_of(
                    self.template, test.x, [t.name for t in self.tasks], chunk=self.eval_rows * len(self.members),
                    cat=test.cat, forward=lambda xb, cb, w=member: self._forward(w, xb, cb))
        return {i: {"test_metrics": self._test_metrics(logits, truth, test, row),
                    "test_draws": resampled_metrics(self.tasks, {t.name: logits[t.name][row] for t in self.tasks},
                                                    test.y),
                    "entire_draws": None if truth is None else entire_draws(
                        {task: truth[task][row].cpu() for task in self.data.truth.outcome}, self.data.truth.outcome),
                    "state": states[i], "diagnostics": diagnostics.get(i)} for row, i in enumerate(ok)}

    def _test_metrics(self, logits: dict[str, torch.Tensor], truth: dict[str, torch.Tensor] | None, test: Split,
                      row: int) -> dict[str, dict[str, float]]:
        """A member's test metrics plus its entire-space ones (``fit.with_truth``)."""
        metrics = self._metrics(logits, test, row)
        if truth is None:
            return metrics
        known = self.data.truth
        return {**metrics, **{task: {**metrics.get(task, {}), **entire_space_metrics(
            truth[task][row].cpu(), known.prob[task], known.outcome[task])} for task in known.prob}}


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
    trains = check_configs(arch, configs)
    allocator.tune()
    dev = resolve_device(device)
    if members_per_call is not None and members_per_call < 1:
        raise UserError(f"members_per_call must be >= 1, got {members_per_call}")
    population = Population(arch, data, configs, trains, dev, loss_weights, members_per_call)
    start = time.perf_counter()
    # dropout masks come from each member's own generator; the forked RNG leaves the caller's untouched anyway
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(trains[0].seed)
        epoch = 0
        while population.active:
            train_loss = population.train_epoch(epoch, stop)
            population.retire(population.evaluate(epoch, train_loss, start))
            epoch += 1
    return population.results(evaluate_test, diagnose)
