"""The one LightningModule that trains any architecture: losses, metrics, logging and optimisers.

Architectures are plain ``nn.Module``s returning ``{task: logits}`` (``bench.architectures``); nothing about
training is written per architecture. ``make_system(name, data.tasks, data.d_in, ...)`` returns a module that
a plain ``lightning.Trainer().fit(system, datamodule=MTLDataModule(data))`` trains, early-stops on the
validation objective and leaves at its best epoch.
"""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from torch import nn

from bench import architectures, weighting
from bench.architectures.layers import FeatureEncoder
from bench.datasets import BatchLoader, MTLData, Task
from bench.errors import UnknownChoice, UserError
from bench.spec.config import TrainConfig, split_config

from .bootstrap import resampled_metrics
from .losses import fixed_weights, funnel_view, reported_loss, task_losses, total_loss
from .metrics import check_finite_loss, funnel_targets, task_metrics
from .optim import BETAS, EPS, LazyAdam, distinct_rows, param_groups
from .rules import BestEpoch, EarlyStop, flat_metrics, objective_value

# what moved out of this module, still importable from it
__all__ = ["BETAS", "EPS", "LazyAdam", "distinct_rows", "funnel_view", "param_groups"]


def embedding_tables(model: nn.Module) -> list[nn.Parameter]:
    """The embedding tables of the model's ``FeatureEncoder`` (at most one), trained with sparse gradients."""
    return [m.table.weight for m in model.modules() if isinstance(m, FeatureEncoder) and m.sizes]


class KeepBest(Callback):
    """Restores the weights of the best validation epoch when fitting ends (the system's ``BestEpoch`` keeps a
    copy of them, ``bench.training.rules``), so the module is left at its best epoch without checkpoint files."""

    def on_fit_end(self, trainer, pl_module) -> None:
        if pl_module.record.state is not None:
            pl_module.load_state_dict(pl_module.record.state)


class StopEarly(EarlyStopping):
    """Lightning's ``EarlyStopping`` on ``val_objective`` (its hooks: when it judges, how it stops the trainer)
    judging by the rule ``bench.training.rules.EarlyStop`` that populations follow too."""

    def __init__(self, patience: int) -> None:
        # mode "max": val_objective is oriented so that higher is better; check_finite stops a diverged run
        super().__init__("val_objective", mode="max", patience=patience, check_finite=True)
        self.rule = EarlyStop(patience)

    def _evaluate_stopping_criteria(self, current: torch.Tensor) -> tuple[bool, str | None]:
        return self.rule(current), None


# what torch.load and rebuilding raise for a file that is not what it should be (damaged, foreign, truncated)
UNREADABLE = (OSError, RuntimeError, KeyError, TypeError, ValueError, AttributeError, EOFError, pickle.UnpicklingError)


def unreadable(path, what: str, err: BaseException) -> UserError:
    """The one-line error for a checkpoint or model file that cannot be read as one."""
    if isinstance(err, pickle.UnpicklingError):  # torch's message is a paragraph on weights_only
        why = "damaged, or not a file torch.load reads with weights_only=True"
    else:
        text = str(err).strip().splitlines()[0] if str(err).strip() else "unreadable"
        why = f"{type(err).__name__}: {text.split('. ')[0]}"  # the first sentence: torch's go on for lines
    return UserError(f"{path}: not an mtl-bench {what} ({why})")


class MTLSystem(L.LightningModule):
    """Trains ``model`` on ``tasks``: weighted sum of per-task losses, whole-split metrics per task.

    An architecture with an auxiliary loss (``bench.architectures.has_aux_loss``: sparse gates' load balancing)
    has it added to the training loss, so ``train_loss`` includes it; validation and test never see it.

    Logged per epoch: ``train_loss``, ``val/<task>/<metric>`` and ``val_objective`` (higher is better);
    after ``trainer.test``: ``test/<task>/<metric>``. ``history`` holds one dict per validation epoch,
    ``best_epoch``, ``best_objective`` and ``val_metrics`` describe the best validation epoch so far (the
    weights ``KeepBest`` restores), ``test_metrics`` the last test run.
    """

    def __init__(
        self,
        model: nn.Module,
        tasks: list[Task],
        train: TrainConfig | None = None,
        loss_weights: dict[str, float] | None = None,
        partial: list[bool] | None = None,
        funnel: list[tuple[str, bool]] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        for module in model.modules():
            if isinstance(module, FeatureEncoder):
                module.table.sparse = True  # sparse gradients: LazyAdam touches only the looked-up rows
        self.tasks = list(tasks)
        # per task: labels may be missing, so its loss averages over observed rows (MTLData.partial)
        self.partial = list(partial) if partial is not None else [False] * len(self.tasks)
        if len(self.partial) != len(self.tasks):
            raise UserError(f"partial has {len(self.partial)} entries for {len(self.tasks)} tasks")
        # a funnel architecture's losses: its joint view against joint labels (funnel_view)
        self.funnel_steps, self.partial = funnel_view(model, self.tasks, funnel, self.partial)
        self.train_config = train or TrainConfig()
        if self.train_config.objective != "mean" and self.train_config.objective not in [t.name for t in tasks]:
            raise UnknownChoice("objective", self.train_config.objective, ["mean", *[t.name for t in tasks]])
        self.loss_weights = fixed_weights(self.tasks, loss_weights)
        cfg = self.train_config
        self.weighting = weighting.create(cfg.weighting, [t.kind for t in self.tasks], cfg.weighting_options)
        self.weighting.seed([cfg.seed])  # a fit is a population of one member (bench.weighting)
        self._shared: weighting.Shared | None = None  # parameter elements more than one task depends on
        self._task_loss_sum: torch.Tensor | None = None
        self.record = BestEpoch()  # history, best epoch and its weights (bench.training.rules)
        self.test_metrics: dict[str, dict[str, float]] = {}
        self.test_draws: dict[str, list[float]] = {}  # bench.training.bootstrap
        self.last_objective: float | None = None
        self._outputs: list[tuple[dict[str, torch.Tensor], torch.Tensor]] = []
        self._loss_sum: torch.Tensor | None = None
        self._steps = 0
        # Manual optimisation: the step below is what automatic optimisation would do, without its closure
        # and per-step bookkeeping, which cost more than the arithmetic of a small model (benchmarks/README.md).
        self.automatic_optimization = False

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, **kwargs) -> MTLSystem:
        """The system a Lightning checkpoint holds, rebuilt by ``make_system`` from its saved hyperparameters
        (architecture, tasks, input width, config) with its weights; read with ``weights_only=True``. A file that
        is not such a checkpoint is a one-line ``UserError``."""
        try:
            ckpt = torch.load(checkpoint_path, map_location=map_location or "cpu", weights_only=True)
            hp = ckpt["hyper_parameters"]
            system = make_system(hp["arch"], [Task(**t) for t in hp["tasks"]], int(hp["d_in"]), hp["config"],
                                 hp.get("loss_weights"), fields=[int(v) for v in hp.get("fields", [])],
                                 funnel=[(str(t), bool(c)) for t, c in hp.get("funnel") or []])
            # a learned weighting's parameters were (T,) before weightings gained a member axis: now (1, T)
            state = {k: v[None] if k.startswith("weighting.") and v.ndim == 1 else v
                     for k, v in ckpt["state_dict"].items()}
            system.load_state_dict(state)
        except UserError:
            raise
        except UNREADABLE as err:
            raise unreadable(checkpoint_path, "checkpoint", err) from None
        return system

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.record.history

    @property
    def best_epoch(self) -> int | None:
        return self.record.best_epoch

    @property
    def best_objective(self) -> float:
        return self.record.best_objective

    @property
    def val_metrics(self) -> dict[str, dict[str, float]]:
        return self.record.val_metrics

    def forward(self, x: torch.Tensor, cat: torch.Tensor | None = None, with_aux: bool = False, joint: bool = False):
        """Logits from numeric features ``x`` and, where the data has categorical fields, their codes ``cat``
        (the model then begins with its ``FeatureEncoder``); with ``with_aux`` (an architecture with an auxiliary
        loss), ``(logits, aux_loss)``; ``joint``: a funnel architecture's joint view (its training losses')."""
        inputs = (x,) if cat is None or cat.shape[-1] == 0 else (x, cat)
        kw = {"joint": True} if joint else {}
        return self.model(*inputs, with_aux=True, **kw) if with_aux else self.model(*inputs, **kw)

    def task_losses(self, out: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        """``(T,)``: w_k L_k(logits_k, y[:, k]) per task, with the fixed ``loss_weights`` w_k (1 by default); L_k
        over task k's observed rows where it has missing labels (``losses.task_losses``)."""
        return task_losses(self.tasks, out, y, self.loss_weights, self.partial, None)

    def loss(self, out: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        """The scalar the weighting method backpropagates (``sum_k w_k L_k`` for equal weighting)."""
        return self.weighting.combine(self.task_losses(out, y)[None])[0]

    def dense_parameters(self) -> list[nn.Parameter]:
        """The model's trained parameters but its embedding tables (sparse gradients, ``LazyAdam``)."""
        sparse = {id(t) for t in embedding_tables(self.model)}
        return [p for p in self.model.parameters() if p.requires_grad and id(p) not in sparse]

    def shared_parameters(self, grads: torch.Tensor) -> weighting.Shared:
        """Where gradient-based weighting acts: the model's parameter elements that more than one task's loss
        depends on, from the tasks' gradients ``grads (T, P)`` on ``dense_parameters`` at the first step, then kept:
        the architectures stack task-specific weights (gates, towers) into one tensor per kind, so whole tensors
        would not do (``weighting.shared_mask``). Embedding tables are left out (their gradients are sparse): they
        get the gradient of the weighted sum of the task losses."""
        if self._shared is None:
            self._shared = weighting.Shared(self.dense_parameters(), weighting.shared_mask(grads))
        return self._shared

    # --- training: no per-step logging or host sync; the epoch's mean loss is logged at its end
    def training_step(self, batch, batch_idx) -> torch.Tensor:
        x, cat, y = batch
        aux, joint = None, self.funnel_steps is not None
        if architectures.has_aux_loss(self.model):  # sparse gates' load balancing, AITM's calibrator: a scalar
            out, aux = self(x, cat, with_aux=True, joint=joint)
        else:
            out = self(x, cat, joint=joint)
        if joint:  # a funnel architecture: every step's joint probability against the joint labels
            y = funnel_targets(y, self.funnel_steps)
        losses = self.task_losses(out, y)  # (T,): the one seam of a step's task losses (tests patch it)
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]  # [Adam/AdamW, LazyAdam of the embedding tables]
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        if self.weighting.grad_based:
            self.set_gradients(losses, aux)
        else:
            self.manual_backward(total_loss(self.weighting, losses[None], aux)[0])
        detached = losses.detach()
        # train_loss: sum_k lambda_k w_k L_k with the weights of this step, plus the auxiliary loss
        weighted = reported_loss(self.weighting.weights()[0], losses, aux)
        for opt in opts:
            opt.step()
        self.weighting.after_step()
        self._task_loss_sum = detached if self._task_loss_sum is None else self._task_loss_sum + detached
        self._loss_sum = weighted if self._loss_sum is None else self._loss_sum + weighted
        self._steps += 1
        return weighted

    def set_gradients(self, losses: torch.Tensor, aux: torch.Tensor | None) -> None:
        """The gradients of a gradient-based method's step: each task's gradient on the dense parameters (one
        backward pass per task), the method's update from them (``Weighting.gradient``, as a population of one),
        plus the auxiliary loss's gradient, which is no task's and is added to whatever the method sets; the
        embedding tables (sparse) get the gradient of the weighted task losses plus the auxiliary loss."""
        params = self.dense_parameters()
        grads = weighting.task_gradients(losses, params)  # (T, P), the graph kept
        shared = self.shared_parameters(grads)
        update, own = self.weighting.gradient(losses[None], grads[None], shared.mask[None])
        if aux is not None:
            update = update + weighting.task_gradients(aux[None], params)  # (1, P): the aux loss's gradient
        shared.set_flat_grad(update[0])
        tables = embedding_tables(self.model)
        if tables:
            total = (self.weighting.weights()[0].to(losses) * losses).sum()
            for table, g in zip(tables, torch.autograd.grad(total if aux is None else total + aux, tables)):
                table.grad = g
        if own is not None:  # what the method's learned parameters follow (GradNorm's L_grad)
            self.manual_backward(own.sum())

    def _check_finite_loss(self) -> None:
        """A non-finite training loss (NaN or inf) ends the fit with ``FloatingPointError``: judged once per
        epoch on the accumulated sum (one host sync per epoch, none per step)."""
        if self._loss_sum is not None and not bool(torch.isfinite(self._loss_sum)):
            check_finite_loss(float(self._loss_sum), self.current_epoch)

    def on_validation_epoch_start(self) -> None:
        self._check_finite_loss()  # the epoch's validation runs before on_train_epoch_end: judge the loss first

    def on_train_epoch_end(self) -> None:
        self._check_finite_loss()
        if self._steps:
            mean = (self._loss_sum / self._steps).item()
            self.log("train_loss", mean)
            if self.history and self.history[-1]["epoch"] == self.current_epoch:
                self.history[-1]["train_loss"] = mean
            self.weighting.epoch_end((self._task_loss_sum / self._steps)[None])
        self._loss_sum, self._task_loss_sum, self._steps = None, None, 0

    # --- evaluation: logits of the whole split are gathered, then metrics computed once
    def _collect(self, batch) -> None:
        x, cat, y = batch
        self._outputs.append((self(x, cat), y))

    def _split_metrics(self) -> dict[str, dict[str, float]]:
        outs, ys = zip(*self._outputs)
        self._outputs = []
        y = torch.cat(ys)
        return {
            t.name: task_metrics(t.kind, torch.cat([o[t.name] for o in outs]), y[:, k])
            for k, t in enumerate(self.tasks)
        }

    def validation_step(self, batch, batch_idx) -> None:
        self._collect(batch)

    def on_validation_epoch_end(self) -> None:
        metrics = self._split_metrics()
        if self.trainer.sanity_checking:
            return
        value = objective_value(self.tasks, metrics, self.train_config.objective)  # -inf: diverged
        self.last_objective = value
        self.log_dict({**flat_metrics(metrics), "val_objective": value})
        # the best epoch's weights: what KeepBest restores
        self.record.add(self.current_epoch, metrics, value,
                        lambda: {k: v.detach().clone() for k, v in self.state_dict().items()})

    def test_step(self, batch, batch_idx) -> None:
        self._collect(batch)

    def on_test_epoch_end(self) -> None:
        outs, ys = zip(*self._outputs)  # the test logits, also scored on the test resamples
        logits = {t.name: torch.cat([o[t.name] for o in outs]) for t in self.tasks}
        self.test_draws = resampled_metrics(self.tasks, logits, torch.cat(ys))
        self.test_metrics = self._split_metrics()
        self.log_dict({f"test/{task}/{m}": v for task, ms in self.test_metrics.items() for m, v in ms.items()})

    def configure_optimizers(self):
        cfg = self.train_config
        cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        # The fused kernel updates every parameter in one call: the step of a small model is dominated by the
        # per-tensor dispatch of the default (foreach) implementation, not by arithmetic.
        fused = all(p.device.type in ("cpu", "cuda") for p in self.model.parameters())
        tables = embedding_tables(self.model)
        sparse = {id(t) for t in tables}
        groups = [{**g, "params": [p for p in g["params"] if id(p) not in sparse]}
                  for g in param_groups(self.model, cfg.weight_decay)]
        learned = [p for p in self.weighting.parameters() if p.requires_grad]
        if learned:  # the weighting's own parameters (uncertainty's log-variances, GradNorm's weights): no decay
            groups.append({"params": learned, "weight_decay": 0.0})
            fused = fused and all(p.device.type in ("cpu", "cuda") for p in learned)
        dense = cls(groups, lr=cfg.lr, fused=fused)
        if not tables:
            return dense
        # Embedding rows are updated lazily (SparseAdam's rule, as recommender libraries do): only the rows a batch
        # looks up move, with their Adam moments. A dense Adam step over a table of millions of rows would cost far
        # more than the model it feeds; the tables are never decayed (FeatureEncoder.no_weight_decay).
        return [dense, LazyAdam(tables, lr=cfg.lr, betas=BETAS, eps=EPS)]

    def configure_callbacks(self):
        return [StopEarly(self.train_config.patience), KeepBest()]


def make_system(
    arch: str,
    tasks: list[Task],
    d_in: int,
    config: dict[str, Any] | None = None,
    loss_weights: dict[str, float] | None = None,
    *,
    fields: list[int] | tuple[int, ...] = (),
    partial: list[bool] | None = None,
    funnel: list[tuple[str, bool]] | None = None,
) -> MTLSystem:
    """A ready LightningModule for architecture ``arch`` and a flat ``config`` of training settings
    (``TrainConfig`` fields) and architecture options, on ``d_in`` numeric features and categorical ``fields``
    (embedding rows of each, ``MTLData.field_sizes``); ``partial`` marks tasks with missing labels
    (``MTLData.partial``); ``funnel`` the data's funnel steps (``MTLData.funnel.steps()``), which funnel
    architectures are built with. Weights are initialised from ``config["seed"]``."""
    train, opts = split_config(arch, dict(config or {}))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train.seed)
        try:
            model = architectures.create(arch, d_in, {t.name: t.out_dim for t in tasks}, fields=list(fields),
                                         funnel=list(funnel or []), **opts)
        except (TypeError, ValueError) as err:
            if isinstance(err, UserError):
                raise
            raise UserError(f"invalid options for {arch}: {err}") from None
    system = MTLSystem(model, tasks, train, loss_weights, partial, funnel)
    # what rebuilds it: saved in every Lightning checkpoint, read by MTLSystem.load_from_checkpoint
    system.save_hyperparameters({"arch": arch, "tasks": [dataclasses.asdict(t) for t in tasks], "d_in": d_in,
                                 "config": dict(config or {}), "loss_weights": loss_weights,
                                 "fields": list(fields), "funnel": [list(step) for step in funnel or []]})
    return system


class MTLDataModule(L.LightningDataModule):
    """Serves an ``MTLData`` from tensors moved once to the training device; batches are slices."""

    def __init__(self, data: MTLData, batch_size: int = 256, eval_batch_size: int = 65_536, seed: int = 0) -> None:
        super().__init__()
        self.data, self.batch_size, self.eval_batch_size, self.seed = data, batch_size, eval_batch_size, seed
        self._on_device: dict[str, Any] = {}

    @classmethod
    def for_system(cls, data: MTLData, system: MTLSystem) -> MTLDataModule:
        cfg = system.train_config
        return cls(data, cfg.batch_size, cfg.eval_batch_size, cfg.seed)

    def _split(self, name: str):
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        key = f"{name}@{device}"
        if key not in self._on_device:
            self._on_device[key] = getattr(self.data, name).to(device)
        return self._on_device[key]

    def train_dataloader(self) -> BatchLoader:
        return BatchLoader(self._split("train"), self.batch_size, shuffle=True, seed=self.seed)

    def val_dataloader(self) -> BatchLoader:
        return BatchLoader(self._split("val"), self.eval_batch_size)

    def test_dataloader(self) -> BatchLoader:
        return BatchLoader(self._split("test"), self.eval_batch_size)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch  # already on the training device
