"""Task descriptions, the multi-task data object and the on-device batch loader."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import torch

from bench.errors import UnknownChoice, UserError

TASK_KINDS = ("binary", "regression", "multiclass")


@dataclass(frozen=True)
class Task:
    """One prediction task: its label column, kind and (multi-class only) number of classes."""

    name: str
    kind: str
    n_classes: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise UnknownChoice(f"kind of task {self.name!r}", self.kind, TASK_KINDS)
        if self.kind == "multiclass" and (self.n_classes is None or self.n_classes < 2):
            raise UserError(f"task {self.name!r}: a multiclass task needs n_classes >= 2")

    @property
    def out_dim(self) -> int:
        return self.n_classes if self.kind == "multiclass" else 1


@dataclass
class Split:
    """Rows of one split: features ``x (N, d)`` float32 and labels ``y (N, T)`` float32.

    Column k of ``y`` holds task k's label: 0/1 for binary, the value for regression, the class index
    (an exact small integer in float32) for multi-class. One label tensor keeps batch slicing to one op.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.dim() != 2 or self.y.dim() != 2 or len(self.x) != len(self.y):
            raise UserError(f"a split needs x (N, d) and y (N, T), got {tuple(self.x.shape)} and {tuple(self.y.shape)}")

    def __len__(self) -> int:
        return len(self.x)

    def to(self, device) -> Split:
        return Split(self.x.to(device, non_blocking=True), self.y.to(device, non_blocking=True))


@dataclass
class MTLData:
    """A multi-task data set: tasks, three splits and the names of the feature columns."""

    name: str
    tasks: list[Task]
    train: Split
    val: Split
    test: Split
    feature_names: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # provenance: options, source hashes

    def __post_init__(self) -> None:
        for split_name in ("train", "val", "test"):
            split = getattr(self, split_name)
            if len(split) == 0:
                raise UserError(f"data set {self.name!r}: the {split_name} split is empty")
            if split.y.shape[1] != len(self.tasks):
                raise UserError(f"data set {self.name!r}: {split.y.shape[1]} label columns for {len(self.tasks)} tasks")
            if split.x.shape[1] != self.train.x.shape[1]:
                raise UserError(f"data set {self.name!r}: feature widths differ between splits")

    @property
    def d_in(self) -> int:
        return self.train.x.shape[1]

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def with_label_fraction(self, task: str, fraction: float, seed: int = 0) -> MTLData:
        """The same data with only ``fraction`` of ``task``'s observed training labels kept, the others missing
        (NaN), chosen by a generator seeded with ``seed``: the label-scarcity experiment. Validation and test
        labels are untouched, so every model is selected and scored as with full labels."""
        if not 0.0 < fraction <= 1.0:
            raise UserError(f"label fraction of task {task!r} must be in (0, 1], got {fraction}")
        if task not in self.task_names:
            raise UnknownChoice("task", task, self.task_names)
        k = self.task_names.index(task)
        y = self.train.y.clone()
        seen = torch.nonzero(~torch.isnan(y[:, k])).squeeze(1)  # rows whose label is observed
        keep = max(1, round(fraction * len(seen)))
        order = torch.randperm(len(seen), generator=torch.Generator().manual_seed(seed))
        y[seen[order[keep:]], k] = float("nan")
        kept = {**self.info.get("label_fraction", {}), task: {"fraction": fraction, "kept": keep, "of": len(seen)}}
        return replace(self, train=replace(self.train, y=y), info={**self.info, "label_fraction": kept})

    def select_tasks(self, names: list[str]) -> MTLData:
        """The same rows with only the named tasks, in that order."""
        known = self.task_names
        for n in names:
            if n not in known:
                raise UnknownChoice("task", n, known)
        if len(set(names)) != len(names) or not names:
            raise UserError(f"data set {self.name!r}: tasks must be distinct and at least one, got {names}")
        idx = [known.index(n) for n in names]

        def pick(s: Split) -> Split:
            return Split(s.x, s.y[:, idx])

        return replace(
            self, tasks=[self.tasks[i] for i in idx], train=pick(self.train), val=pick(self.val), test=pick(self.test)
        )


class BatchLoader:
    """Batches sliced from tensors that already sit on the training device.

    No per-sample ``Dataset.__getitem__`` and no collation: one index op per batch. With ``shuffle`` every
    epoch draws a new permutation from a generator seeded by ``(seed, epoch)``, so a run's data order is
    reproducible and independent of any other run's.
    """

    def __init__(self, split: Split, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> None:
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        self.split, self.batch_size, self.shuffle, self.seed = split, batch_size, shuffle, seed
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.split) // self.batch_size)

    def permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.split), generator=g).to(self.split.x.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x, y, bs = self.split.x, self.split.y, self.batch_size
        if self.shuffle:
            perm = self.permutation(self.epoch)
            self.epoch += 1
            # one gather per epoch; batches are then contiguous views
            x, y = x[perm], y[perm]
        for start in range(0, len(x), bs):
            yield x[start : start + bs], y[start : start + bs]
