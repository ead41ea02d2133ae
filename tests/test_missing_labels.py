"""Missing labels (NaN in y) and categorical fields through training: masked losses, metrics on observed rows,
single-task rows, the one-line error for a task with no observed label, and populations equal to separate fits."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from test_population import assert_same_fit

from bench.datasets import Field, MTLData, Split, Task
from bench.errors import UserError
from bench.training.fit import fit
from bench.training.metrics import task_loss, task_metrics
from bench.training.population import train_population
from bench.training.system import LazyAdam, make_system

SIZES = [6, 4, 150]  # the last field: most rows of its table are missed by any one batch


def make_data(n: int = 330, missing: float = 0.6, seed: int = 0) -> MTLData:
    """Two binary tasks from 4 numeric columns and 2 categorical fields; task b is missing on ``missing`` of the
    rows (as a conversion is observed only where there was a click)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    cat = torch.stack([torch.randint(0, v, (n,), generator=g) for v in SIZES], 1)
    effect = torch.randn(SIZES[0], generator=g)
    la = x[:, 0] + effect[cat[:, 0]]
    lb = x[:, 1] - effect[cat[:, 0]] + (cat[:, 1] == 2).float()
    y = torch.stack([torch.bernoulli(torch.sigmoid(v), generator=g) for v in (la, lb)], 1)
    y[torch.rand(n, generator=g) < missing, 1] = math.nan
    cut1, cut2 = int(0.8 * n), int(0.9 * n)

    def part(a, b):
        return Split(x[a:b], y[a:b], cat[a:b])

    return MTLData(
        "masked",
        [Task("a", "binary"), Task("b", "binary")],
        part(0, cut1),
        part(cut1, cut2),
        part(cut2, n),
        fields=[Field(f"f{j}", v, v - 1) for j, v in enumerate(SIZES)],
    )


@pytest.fixture(scope="module")
def data():
    return make_data()


@pytest.mark.parametrize("kind", ["binary", "regression", "multiclass"])
def test_masked_rows_get_exactly_zero_gradient(kind):
    torch.manual_seed(0)
    width = 3 if kind == "multiclass" else 1
    logits = torch.randn(8, width, requires_grad=True)
    y = torch.tensor([1.0, 0.0, math.nan, 2.0, math.nan, 1.0, 0.0, math.nan])
    if kind == "binary":
        y = torch.where(y > 1, 1.0, y)
    loss = task_loss(kind, logits, y, masked=True)
    (grad,) = torch.autograd.grad(loss, logits)
    obs = ~torch.isnan(y)
    assert torch.equal(grad[~obs], torch.zeros_like(grad[~obs]))  # exactly zero, not merely small
    assert bool((grad[obs] != 0).any())
    # the mean over the observed rows only
    torch.testing.assert_close(loss, task_loss(kind, logits[obs], y[obs]))


@pytest.mark.parametrize("kind", ["binary", "regression", "multiclass"])
def test_fully_masked_batch_contributes_zero_and_stays_finite(kind):
    logits = torch.randn(5, 3 if kind == "multiclass" else 1, requires_grad=True)
    loss = task_loss(kind, logits, torch.full((5,), math.nan), masked=True)
    (grad,) = torch.autograd.grad(loss, logits)
    assert loss.item() == 0.0 and bool(torch.isfinite(grad).all()) and not grad.any()


def test_system_loss_gives_masked_rows_zero_gradient_through_the_whole_model(data):
    system = make_system(
        "mmoe", data.tasks, data.d_in, {"expert_units": 8}, fields=data.field_sizes, partial=data.partial
    )
    assert data.partial == [False, True]
    x, cat, y = data.train.x[:64].clone().requires_grad_(), data.train.cat[:64], data.train.y[:64]
    system.loss_weights = [0.0, 1.0]  # task b's loss alone
    loss = system.loss(system(x, cat), y)
    (gx,) = torch.autograd.grad(loss, x)
    missing = torch.isnan(y[:, 1])
    assert 0 < int(missing.sum()) < 64
    assert not gx[missing].any() and bool(gx[~missing].abs().sum(1).gt(0).all())
    # the same as task b's plain mean loss over its observed rows
    ref = task_loss("binary", system(x[~missing], cat[~missing])["b"], y[~missing, 1])
    torch.testing.assert_close(loss, ref)


def test_metrics_use_observed_rows_only_and_report_their_count(data):
    torch.manual_seed(1)
    logits = torch.randn(len(data.val), 1)
    y = data.val.y[:, 1]
    obs = ~torch.isnan(y)
    assert task_metrics("binary", logits, y) == task_metrics("binary", logits[obs], y[obs])
    result = fit(
        "mmoe", data, {"max_epochs": 2, "expert_units": 8, "batch_size": 64}, evaluate_test=True, accelerator="cpu"
    )
    assert result.observed["val"] == {"a": len(data.val), "b": int(obs.sum())}
    assert result.observed["test"]["b"] == int((~torch.isnan(data.test.y[:, 1])).sum())
    for split in (result.val_metrics, result.test_metrics):
        assert all(math.isfinite(v) for ms in split.values() for v in ms.values())


def test_metrics_of_a_fit_equal_metrics_on_the_filtered_split(data):
    from bench.training.fit import make_trainer
    from bench.training.system import MTLDataModule

    system = make_system(
        "shared_bottom",
        data.tasks,
        data.d_in,
        {"expert_units": 8, "batch_size": 64},
        fields=data.field_sizes,
        partial=data.partial,
    )
    dm = MTLDataModule.for_system(data, system)
    trainer = make_trainer(2, accelerator="cpu")
    trainer.fit(system, datamodule=dm)
    trainer.test(system, datamodule=dm, verbose=False)
    obs = ~torch.isnan(data.test.y[:, 1])
    filtered = data.test.rows(obs)  # the test split with task b's unobserved rows removed
    system.eval()
    with torch.no_grad():
        expect = task_metrics("binary", system(filtered.x, filtered.cat)["b"], filtered.y[:, 1])
    for metric, value in expect.items():
        assert system.test_metrics["b"][metric] == pytest.approx(value, rel=1e-6)


def test_single_task_selection_keeps_only_that_tasks_observed_rows(data):
    only_b = data.select_tasks(["b"])
    for s in ("train", "val", "test"):
        part, full = getattr(only_b, s), getattr(data, s)
        assert len(part) == int((~torch.isnan(full.y[:, 1])).sum())
        assert not torch.isnan(part.y).any() and part.cat.shape == (len(part), len(SIZES))
    assert only_b.partial == [False] and len(data.select_tasks(["a", "b"]).train) == len(data.train)


def test_a_task_with_no_observed_label_in_a_split_is_a_one_line_error(data):
    y = data.val.y.clone()
    y[:, 1] = math.nan
    with pytest.raises(UserError, match=r"^data set 'masked': task b has no observed label in the val split$"):
        MTLData("masked", data.tasks, data.train, Split(data.val.x, y, data.val.cat), data.test, fields=data.fields)


def test_categorical_code_out_of_range_is_refused(data):
    cat = data.val.cat.clone()
    cat[0, 0] = SIZES[0]
    with pytest.raises(UserError, match="categorical code of the val split is out of range"):
        MTLData("masked", data.tasks, data.train, Split(data.val.x, data.val.y, cat), data.test, fields=data.fields)


@pytest.mark.parametrize("arch", ["mmoe", "single_task", "cross_stitch"])
def test_population_with_masks_and_fields_equals_separate_fits(arch, data):
    small = {"expert_units": 8, "tower_units": 8} if arch != "cross_stitch" else {"column_units": 8}
    base = {"max_epochs": 3, "batch_size": 48, "patience": 10, "embedding_dim": 3, **small}
    configs = [{**base, "seed": 1, "lr": 3e-3}, {**base, "seed": 5, "lr": 1e-2, "weight_decay": 0.01}]
    pop = train_population(arch, data, configs, evaluate_test=True, device="cpu")
    refs = [fit(arch, data, c, evaluate_test=True, accelerator="cpu") for c in configs]
    for p, r in zip(pop, refs):
        assert_same_fit(p, r)
        assert p.observed == r.observed


def test_checkpoint_of_a_system_with_fields_reloads(data, tmp_path):
    from bench.training.fit import make_trainer
    from bench.training.system import MTLDataModule, MTLSystem

    system = make_system(
        "ple",
        data.tasks,
        data.d_in,
        {"expert_units": 8, "embedding_dim": 3},
        fields=data.field_sizes,
        partial=data.partial,
    )
    trainer = make_trainer(1, accelerator="cpu")
    trainer.fit(system, datamodule=MTLDataModule.for_system(data, system))
    trainer.save_checkpoint(tmp_path / "ple.ckpt")
    loaded = MTLSystem.load_from_checkpoint(tmp_path / "ple.ckpt")
    system.eval()
    loaded.eval()
    with torch.no_grad():
        a, b = system(data.test.x, data.test.cat), loaded(data.test.x, data.test.cat)
    assert all(torch.equal(a[k], b[k]) for k in a) and loaded.model.encoder.sizes == SIZES


def test_stacked_adam_lazy_rows_match_sparse_adam():
    from bench.training.population import StackedAdam

    torch.manual_seed(0)
    rows, width, lrs = 10, 3, [1e-2, 3e-3]
    start = torch.randn(rows, width)
    refs = [torch.nn.Parameter(start.clone()) for _ in lrs]
    opts = [torch.optim.SparseAdam([r], lr=lr) for r, lr in zip(refs, lrs)]
    lazies = [torch.nn.Parameter(start.clone()) for _ in lrs]  # the system's LazyAdam: SparseAdam's numbers
    lazy_opts = [LazyAdam([r], lr=lr) for r, lr in zip(lazies, lrs)]
    stacked = StackedAdam({"t": start.expand(2, rows, width).clone()}, set(), lrs, [0.0, 0.0], [False, False], lazy="t")
    for step in range(4):
        idx = [torch.tensor([0, 3, 3, step + 4]), torch.tensor([1, 3, 9])]  # each member its own rows
        for r, o, i in zip([*refs, *lazies], [*opts, *lazy_opts], idx + idx):
            o.zero_grad()
            F.embedding(i, r, sparse=True).square().sum().backward()
            o.step()
        touched = torch.zeros(2, rows, dtype=torch.bool)
        for s_, i in enumerate(idx):
            touched[s_, i] = True
        # the gradient StackedAdam gets is the dense one vmap gives (rows summed), computed from its own weights
        g = torch.stack(
            [
                torch.zeros(rows, width).index_add_(0, i, 2 * stacked.params["t"][s_].detach()[i])
                for s_, i in enumerate(idx)
            ]
        ).reshape(2, -1)
        stacked.step(g, touched)
        for s_, r in enumerate(refs):
            torch.testing.assert_close(stacked.params["t"][s_].detach(), r.detach(), rtol=1e-6, atol=1e-7)
            torch.testing.assert_close(lazies[s_].detach(), r.detach(), rtol=1e-6, atol=1e-7)
    untouched = [1, 2, 8, 9]  # never looked up by member 0: exactly the initial rows
    assert torch.equal(stacked.params["t"][0].detach()[untouched], start[untouched])


def test_distinct_rows_sums_duplicates_as_coalesce_does():
    from bench.training.system import distinct_rows

    g = torch.Generator().manual_seed(1)
    index = torch.randint(0, 40, (500,), generator=g)  # many duplicates, 40 rows of 1,000 touched at most
    values = torch.randn(500, 3, generator=g, dtype=torch.float64)
    grad = torch.sparse_coo_tensor(index[None], values, (1000, 3), check_invariants=True)
    ref = grad.coalesce()
    scratch = torch.full((1000,), 123_456, dtype=torch.int32)
    # a fresh int64 index; a kept int32 one holding garbage, then holding what the call before left in it
    for kept in (None, scratch, scratch):
        rows, summed = distinct_rows(grad, kept)
        order = rows.argsort()
        assert torch.equal(rows[order], ref.indices()[0])
        torch.testing.assert_close(summed[order], ref.values(), rtol=1e-12, atol=1e-12)
    # an already coalesced gradient is taken as it is
    assert torch.equal(distinct_rows(ref)[0], ref.indices()[0])


def test_lazy_adam_equals_sparse_adam_when_gradients_accumulate():
    # two backward passes before a step (as a gradient-based weighting's per-task backward): the table's gradient
    # is then the concatenation of both passes' lookups, duplicates across passes included
    torch.manual_seed(0)
    start = torch.randn(30, 4)
    ref, lazy = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    opts = [torch.optim.SparseAdam([ref], lr=0.01), LazyAdam([lazy], lr=0.01)]
    for _ in range(5):
        first, second = torch.randint(0, 30, (12,)), torch.randint(0, 30, (7,))
        for p, o in zip([ref, lazy], opts):
            o.zero_grad()
            F.embedding(first, p, sparse=True).sum().backward()
            F.embedding(second, p, sparse=True).square().sum().backward()
            assert not p.grad.is_coalesced()
            o.step()
        torch.testing.assert_close(lazy.detach(), ref.detach(), rtol=1e-6, atol=1e-7)
    dense = torch.nn.Parameter(start.clone())
    dense.grad = torch.ones_like(dense)
    with pytest.raises(ValueError, match="sparse gradients"):
        LazyAdam([dense], lr=0.01).step()


def test_a_training_step_moves_only_the_looked_up_embedding_rows(data):
    system = make_system("mmoe", data.tasks, data.d_in, {"expert_units": 8, "lr": 0.05}, fields=data.field_sizes)
    table = system.model.encoder.table
    opts = system.configure_optimizers()
    assert isinstance(opts, list) and isinstance(opts[1], LazyAdam) and table.sparse
    before = table.weight.detach().clone()
    x, cat, y = data.train.x[:16], data.train.cat[:16], data.train.y[:16]
    for opt in opts:
        opt.zero_grad()
    system.loss(system(x, cat), y).backward()
    assert table.weight.grad.is_sparse
    for opt in opts:
        opt.step()
    looked_up = torch.zeros(sum(SIZES), dtype=torch.bool)
    looked_up[(cat + system.model.encoder.offsets).flatten()] = True
    moved = (table.weight.detach() != before).any(1)
    assert torch.equal(moved, looked_up) and int((~looked_up).sum()) > 100


def test_a_binary_task_with_one_class_observed_in_validation_is_refused(data):
    y = data.val.y.clone()
    y[~torch.isnan(y[:, 1]), 1] = 0.0  # every observed conversion in validation negative: AUC undefined
    with pytest.raises(UserError, match=r"observed labels of task b in the val split are all 0 \(\d+ rows\)"):
        MTLData("masked", data.tasks, data.train, Split(data.val.x, y, data.val.cat), data.test, fields=data.fields)


@pytest.mark.parametrize("population", [False, True])
def test_final_rows_carry_each_tasks_observed_label_count(data, population):
    from bench.study.final import train_seeds

    config = {"expert_units": 8, "max_epochs": 1, "patience": 1, "batch_size": 64}
    rows, errors = train_seeds(data, "mmoe", config, [1, 2], population=population, accelerator="cpu")
    assert not errors
    metrics = [r for r in rows if r["kind"] not in ("diagnostic", "curve")]  # curves: per epoch, no count
    assert metrics and all(r["observed"] == data.observed_counts(r["split"])[r["task"]] for r in metrics)
    assert {(r["split"], r["task"]): r["observed"] for r in metrics}[("test", "b")] < len(data.test)
    assert all(r.get("observed") is None for r in rows if r["kind"] == "diagnostic")
