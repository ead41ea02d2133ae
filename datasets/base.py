"""Task descriptions, the multi-task data object and the on-device batch loader.

Features are two tensors per split: ``x (N, d)`` float32 numeric columns (standardised numbers, one-hot blocks,
missing indicators) and ``cat (N, F)`` int64 codes of the categorical fields that are embedded (``Field``: code 0
is the out-of-vocabulary row, 1..V the training split's levels; a hashed field's code is its bucket). Labels are
``y (N, T)`` float32 with NaN where a task's label is not observed for that row: the per-task mask is
``~y.isnan()``, so it travels with every batch slice at no extra cost (``observed``).

A data set whose tasks form a conversion funnel (impression -> click -> conversion) declares it (``Funnel``): the
funnel architectures (ESMM, AITM) need the order of its steps. A generator whose truth is known also keeps the test
impressions' true probabilities and counterfactual outcomes (``Truth``): what no log records.
"""

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


@dataclass(frozen=True)
class Field:
    """A categorical feature held as an index into its own embedding table of ``size`` rows.

    A vocabulary field: its ``levels`` training levels kept (at least ``min_count`` rows each) get codes 1..levels,
    code 0 is the out-of-vocabulary row (rarer and unseen levels), ``size = levels + 1``. A ``hashed`` field: its
    ``levels`` distinct training levels (and any other) hashed into ``size`` buckets, no vocabulary.
    """

    name: str
    size: int
    levels: int
    hashed: bool = False

    def __post_init__(self) -> None:
        if self.size < 1:
            raise UserError(f"categorical field {self.name!r} needs at least one embedding row, got {self.size}")


@dataclass(frozen=True)
class Funnel:
    """The tasks of a conversion funnel, in order (``tasks[0]`` the first step, e.g. the click), each later step
    ``conditional`` or joint:

    - joint (``conditional[t]`` False): task t's label covers every row and is 1 only where step t-1's is
      (``ctcvr`` = click and conversion, AliExpress's pair);
    - conditional (True): task t's label is observed only where step t-1's is 1, missing (NaN) elsewhere
      (``cvr``: a conversion given a click; ``table``'s ``observed_if``).

    ``conditional[0]`` is always False. Every step is a binary task of the data set."""

    tasks: tuple[str, ...]
    conditional: tuple[bool, ...]

    def __post_init__(self) -> None:
        if len(self.tasks) < 2 or len(set(self.tasks)) != len(self.tasks):
            raise UserError(f"a funnel needs at least two distinct steps, got {list(self.tasks)}")
        if len(self.conditional) != len(self.tasks) or self.conditional[0]:
            raise UserError(f"funnel {list(self.tasks)}: one conditional flag per step, the first one False")

    def steps(self) -> list[tuple[str, bool]]:
        """``[(task, conditional), ...]`` in funnel order: what a funnel architecture is built with."""
        return list(zip(self.tasks, self.conditional))

    def check(self, data: MTLData) -> None:
        """A one-line error when the funnel names a task the data lack, a non-binary one, or labels that
        contradict it (a conditional step observed where the previous step is 0; a joint step 1 where it is 0)."""
        names = data.task_names
        for t in self.tasks:
            if t not in names:
                raise UserError(f"data set {data.name!r}: funnel step {t!r} is not a task; tasks: {', '.join(names)}")
            if data.tasks[names.index(t)].kind != "binary":
                raise UserError(f"data set {data.name!r}: funnel step {t!r} must be a binary task")
        for split_name in ("train", "val", "test"):
            y = getattr(data, split_name).y
            for (prev, _), (task, cond) in zip(self.steps()[:-1], self.steps()[1:]):
                before, after = y[:, names.index(prev)], y[:, names.index(task)]
                bad = (before == 0) & (observed(after) if cond else (after == 1))
                if bool(bad.any()):
                    what = "observed" if cond else "1"
                    raise UserError(f"data set {data.name!r}: funnel {prev} -> {task}: {task} is {what} where {prev} "
                                    f"is 0 in {int(bad.sum())} rows of the {split_name} split")


@dataclass
class Truth:
    """What a generator knows and no log records, for the test impressions (all of them, whichever task's label is
    observed): their features ``x (N, d)`` and codes ``cat (N, F)``, and per task the true probability ``prob[task]
    (N,)`` its label was drawn from and the outcome ``outcome[task] (N,)`` drawn for every impression, also where the
    logged label is missing (the conversion an unclicked impression would have had: counterfactual)."""

    x: torch.Tensor
    cat: torch.Tensor
    prob: dict[str, torch.Tensor]
    outcome: dict[str, torch.Tensor]

    def select(self, names: list[str]) -> Truth | None:
        """The truth of the tasks ``names`` keeps (None when none of them has one)."""
        kept = [n for n in self.prob if n in names]
        if not kept:
            return None
        return Truth(self.x, self.cat, {n: self.prob[n] for n in kept}, {n: self.outcome[n] for n in kept})


def observed(y: torch.Tensor) -> torch.Tensor:
    """The per-task label mask ``(..., T)``: True where the label is observed (not NaN)."""
    return ~torch.isnan(y)


@dataclass
class Split:
    """Rows of one split: numeric features ``x (N, d)`` float32, labels ``y (N, T)`` float32 and categorical
    codes ``cat (N, F)`` int64 (``F = 0`` when nothing is embedded).

    Column k of ``y`` holds task k's label: 0/1 for binary, the value for regression, the class index
    (an exact small integer in float32) for multi-class, NaN where it is not observed. One label tensor keeps
    batch slicing to one op, mask included.
    """

    x: torch.Tensor
    y: torch.Tensor
    cat: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.x.dim() != 2 or self.y.dim() != 2 or len(self.x) != len(self.y):
            raise UserError(f"a split needs x (N, d) and y (N, T), got {tuple(self.x.shape)} and {tuple(self.y.shape)}")
        if self.cat is None:
            self.cat = torch.zeros(len(self.x), 0, dtype=torch.int64, device=self.x.device)
        if self.cat.dim() != 2 or len(self.cat) != len(self.x) or self.cat.dtype != torch.int64:
            raise UserError(f"a split needs cat (N, F) int64 codes, got {tuple(self.cat.shape)} {self.cat.dtype}")

    def __len__(self) -> int:
        return len(self.x)

    def to(self, device) -> Split:
        return Split(
            self.x.to(device, non_blocking=True),
            self.y.to(device, non_blocking=True),
            self.cat.to(device, non_blocking=True),
        )

    def rows(self, index: torch.Tensor) -> Split:
        """The rows ``index`` (a boolean mask or indices) of every tensor."""
        return Split(self.x[index], self.y[index], self.cat[index])


@dataclass
class MTLData:
    """A multi-task data set: tasks, three splits, the names of the numeric feature columns and the embedded
    categorical fields (``fields[j]`` describes column j of every split's ``cat``).

    Every task needs at least one observed label in every split: a task with none in a split is a one-line
    error naming both (its metrics could not be computed, and a search would optimise nothing)."""

    name: str
    tasks: list[Task]
    train: Split
    val: Split
    test: Split
    feature_names: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # provenance: options, source hashes
    fields: list[Field] = field(default_factory=list)
    funnel: Funnel | None = None  # the tasks' conversion funnel, when they form one
    truth: Truth | None = None  # the test impressions' true probabilities and outcomes (generators only)

    def __post_init__(self) -> None:
        for split_name in ("train", "val", "test"):
            split = getattr(self, split_name)
            if len(split) == 0:
                raise UserError(f"data set {self.name!r}: the {split_name} split is empty")
            if split.y.shape[1] != len(self.tasks):
                raise UserError(f"data set {self.name!r}: {split.y.shape[1]} label columns for {len(self.tasks)} tasks")
            if split.x.shape[1] != self.train.x.shape[1]:
                raise UserError(f"data set {self.name!r}: feature widths differ between splits")
            if split.cat.shape[1] != len(self.fields):
                raise UserError(
                    f"data set {self.name!r}: {split.cat.shape[1]} categorical code columns in the {split_name} "
                    f"split for {len(self.fields)} fields"
                )
            counts = observed(split.y).sum(0).tolist()
            for k, (task, n) in enumerate(zip(self.tasks, counts)):
                if n == 0:
                    raise UserError(
                        f"data set {self.name!r}: task {task.name} has no observed label in the {split_name} split"
                    )
                if task.kind == "binary" and split_name != "train":
                    positives = int((split.y[:, k] == 1).sum())
                    if positives in (0, n):  # its AUC would be undefined (NaN): refused before anything is stored
                        raise UserError(
                            f"data set {self.name!r}: the observed labels of task {task.name} in the {split_name} "
                            f"split are all {int(positives == n)} ({n} rows); AUC needs both classes"
                        )
            if split.cat.numel():
                sizes = torch.tensor([f.size for f in self.fields], device=split.cat.device)
                if bool(((split.cat < 0) | (split.cat >= sizes)).any()):
                    raise UserError(
                        f"data set {self.name!r}: a categorical code of the {split_name} split is out of range"
                    )
        if self.funnel is not None:
            self.funnel.check(self)

    @property
    def d_in(self) -> int:
        """Width of the numeric features ``x`` (the encoder adds the embedded fields)."""
        return self.train.x.shape[1]

    @property
    def field_sizes(self) -> list[int]:
        """Embedding rows of each categorical field, in ``cat`` column order."""
        return [f.size for f in self.fields]

    @property
    def funnel_steps(self) -> list[tuple[str, bool]]:
        """The funnel's steps ``[(task, conditional), ...]`` (empty without a funnel): what funnel architectures
        are built with."""
        return self.funnel.steps() if self.funnel is not None else []

    @property
    def partial(self) -> list[bool]:
        """Per task: whether some training label is missing (its loss then averages over observed rows)."""
        return (~observed(self.train.y)).any(0).tolist()

    def observed_counts(self, split_name: str) -> dict[str, int]:
        """Observed labels per task in one split."""
        counts = observed(getattr(self, split_name).y).sum(0).tolist()
        return {t.name: int(n) for t, n in zip(self.tasks, counts)}

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
            # rows where none of the chosen tasks is observed carry no signal: a single-task baseline trains
            # (and is evaluated) on its own task's observed rows only
            y = s.y[:, idx]
            keep = observed(y).any(1)
            part = Split(s.x, y, s.cat)
            return part if bool(keep.all()) else part.rows(keep)

        # the funnel stays when all of its steps stay, in the same order (a step alone is no funnel)
        funnel = self.funnel if self.funnel is not None and set(self.funnel.tasks) <= set(names) else None
        return replace(
            self, tasks=[self.tasks[i] for i in idx], train=pick(self.train), val=pick(self.val), test=pick(self.test),
            funnel=funnel, truth=self.truth.select(names) if self.truth is not None else None,
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

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Batches ``(x, cat, y)``; the label mask is ``observed(y)``."""
        x, y, cat, bs = self.split.x, self.split.y, self.split.cat, self.batch_size
        if self.shuffle:
            perm = self.permutation(self.epoch)
            self.epoch += 1
            # one gather per epoch; batches are then contiguous views
            x, y = x[perm], y[perm]
            cat = cat[perm] if cat.shape[1] else cat[: len(perm)]
        for start in range(0, len(x), bs):
            yield x[start : start + bs], cat[start : start + bs], y[start : start + bs]
