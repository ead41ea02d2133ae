"""Loss weighting methods (``bench.weighting``) against hand-computed values, in the system, and in populations."""

from __future__ import annotations

import math
import tomllib

import pytest
import torch
from test_population import assert_same_fit

from bench import datasets, weighting
from bench.cli import main
from bench.datasets import MTLData, Split, Task
from bench.errors import UserError
from bench.spec.study import parse_study
from bench.training.fit import fit
from bench.training.population import train_population
from bench.training.system import make_system
from bench.weighting.pcgrad import project


@pytest.fixture(scope="module")
def data():
    return datasets.load("synthetic", n_samples=330, d=8, seed=3)


@pytest.mark.parametrize("name", weighting.available())
def test_every_method_trains_mmoe_to_finite_metrics(name, data):
    res = fit("mmoe", data, {"weighting": name, "max_epochs": 3, "patience": 5, "batch_size": 64,
                             "expert_units": 8, "tower_units": 8, "n_experts": 2}, accelerator="cpu")
    assert res.best_epoch is not None and math.isfinite(res.val_objective)
    assert all(math.isfinite(h["train_loss"]) for h in res.history)


def test_unknown_method_and_option_are_one_line_errors(data, capsys):
    with pytest.raises(UserError, match=r"unknown weighting 'gradnrom'; valid choices: dwa, equal, gradnorm, pcgrad"):
        make_system("mmoe", data.tasks, data.d_in, {"weighting": "gradnrom"})
    with pytest.raises(UserError, match="unknown config key for mmoe 'gradnorm_beta'.*gradnorm_alpha"):
        make_system("mmoe", data.tasks, data.d_in, {"weighting": "gradnorm", "gradnorm_beta": 1.0})
    with pytest.raises(UserError, match="gradnorm_alpha must be >= 0"):
        make_system("mmoe", data.tasks, data.d_in, {"weighting": "gradnorm", "gradnorm_alpha": -1.0})
    with pytest.raises(UserError, match="static_weights has 3 weights for 2 tasks"):
        make_system("mmoe", data.tasks, data.d_in, {"weighting": "static", "static_weights": "1,2,3"})
    assert main(["train", "--arch", "mmoe", "--dataset", "synthetic", "--set", "weighting=uniform"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "valid choices: dwa, equal, gradnorm, pcgrad, static, uncertainty" in err


def test_search_space_values_are_checked_with_the_spec():
    spec = """
name = "w"
architectures = ["mmoe"]
[budget]
trials = 2
[[datasets]]
name = "synthetic"
[search.all]
weighting = ["equal", "gradnorn"]
"""
    with pytest.raises(UserError, match="unknown weighting 'gradnorn'"):
        parse_study(tomllib.loads(spec))


def test_static_weights_scale_each_task_loss(data):
    system = make_system("mmoe", data.tasks, data.d_in, {"weighting": "static", "static_weights": "2,0.5"})
    losses = torch.tensor([[3.0, 4.0], [1.0, 2.0]])  # two members of one static weighting (rows)
    method = weighting.get("static").stack([system.weighting, weighting.create("static", ["binary"] * 2)])
    assert method.combine(losses).tolist() == pytest.approx([2 * 3 + 0.5 * 4, 1 + 2])


def test_uncertainty_gives_the_noisier_task_the_larger_variance():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3000, 4, generator=g)
    clean = x @ torch.tensor([1.0, -1.0, 0.5, 0.0])
    noisy = x @ torch.tensor([0.0, 1.0, 1.0, 1.0]) + 3.0 * torch.randn(3000, generator=g)  # noise variance 9
    y = torch.stack([clean, noisy], 1)
    tasks = [Task("clean", "regression"), Task("noisy", "regression")]
    d = MTLData("two", tasks, Split(x[:2000], y[:2000]), Split(x[2000:2500], y[2000:2500]),
                Split(x[2500:], y[2500:]))
    system = make_system("shared_bottom", tasks, 4, {"weighting": "uncertainty", "lr": 3e-2, "seed": 0,
                                                     "patience": 50, "batch_size": 128, "expert_units": 16})
    import lightning as L

    from bench.training.fit import make_trainer
    from bench.training.system import MTLDataModule

    L.seed_everything(0, verbose=False)
    make_trainer(15, accelerator="cpu").fit(system, datamodule=MTLDataModule.for_system(d, system))
    s = system.weighting.log_var.detach()[0]
    # s_i -> log L_i at the optimum of 0.5 e^{-s} L + 0.5 s: the noisy task's toward log 9, the clean one's down
    assert s[1] > 1.0 and s[0] < -1.0
    w = system.weighting.weights()[0]
    assert w[1] < w[0]


def test_dwa_weights_from_given_loss_histories():
    one = weighting.create("dwa", ["binary", "binary"], {"dwa_temperature": 2.0})
    dwa = weighting.get("dwa").stack([one, one])  # two members, each with its own loss history
    dwa.epoch_end(torch.tensor([[1.0, 1.0], [1.0, 1.0]]))
    assert dwa.weights().tolist() == [[1.0, 1.0]] * 2  # the first two epochs: w = 1
    dwa.epoch_end(torch.tensor([[0.5, 1.0], [0.0, 1.0]]))  # member 0: r = (0.5, 1.0), task 2 falls more slowly
    e1, e2 = math.exp(0.5 / 2), math.exp(1.0 / 2)
    expected = [2 * e1 / (e1 + e2), 2 * e2 / (e1 + e2)]
    assert dwa.weights()[0].tolist() == pytest.approx(expected)
    z1, z2 = math.exp(0.0), math.exp(1.0 / 2)  # member 1: r = (0, 1)
    assert dwa.weights()[1].tolist() == pytest.approx([2 * z1 / (z1 + z2), 2 * z2 / (z1 + z2)])
    dwa.epoch_end(torch.tensor([[0.25, 1.0], [0.5, 1.0]]))  # only the last two epochs count: r = (0.5, 1.0) again
    assert dwa.weights()[0].tolist() == pytest.approx(expected)
    # member 1: r = (0.5 / 0, 1) is not finite: its previous weights are kept
    assert dwa.weights()[1].tolist() == pytest.approx([2 * z1 / (z1 + z2), 2 * z2 / (z1 + z2)])


def test_gradnorm_targets_and_weight_gradient():
    gn = weighting.create("gradnorm", ["binary", "binary"], {"gradnorm_alpha": 1.0})
    gn.initial.copy_(torch.tensor([[4.0, 1.0]]))  # L_i(0)
    losses, norms = torch.tensor([[2.0, 1.0]]), torch.tensor([[3.0, 1.0]])
    # Ltilde = (0.5, 1), r = Ltilde / mean = (2/3, 4/3); G = w * norms = (3, 1), mean 2; target = 2 r
    assert gn.targets(losses, norms).tolist() == [pytest.approx([4 / 3, 8 / 3])]
    # from real per-task gradients of a shared parameter: sign(G - target) * ||g_i|| for the weights
    p = torch.nn.Parameter(torch.tensor([1.0, 0.0]))
    losses = torch.stack([3.0 * p[0], p[1]]) + torch.tensor([-1.0, 1.0])  # values (2, 1), grads (3,0), (0,1)
    grads = weighting.task_gradients(losses, [p])
    update, own = gn.gradient(losses[None], grads[None], torch.ones(1, 2, dtype=torch.bool))
    own.sum().backward()
    assert gn.w.grad.tolist() == [pytest.approx([3.0, -1.0])]
    assert update.tolist() == [pytest.approx([3.0, 1.0])]  # the model follows sum_i w_i L_i (w = 1)
    with torch.no_grad():
        gn.w.copy_(torch.tensor([[3.0, 1.0]]))
    gn.after_step()
    assert gn.w.tolist() == [pytest.approx([1.5, 0.5])]  # renormalised to sum T


def test_gradnorm_first_step_sets_each_members_initial_losses():
    gn = weighting.get("gradnorm").stack([weighting.create("gradnorm", ["binary"] * 2)] * 2)
    gn.targets(torch.tensor([[2.0, 1.0]]), torch.ones(1, 2), rows=slice(0, 1))  # member 0 steps alone
    assert gn.initial[0].tolist() == [2.0, 1.0] and bool(gn.initial[1].isnan().all())
    gn.targets(torch.tensor([[1.0, 1.0], [5.0, 4.0]]), torch.ones(2, 2))
    assert gn.initial.tolist() == [[2.0, 1.0], [5.0, 4.0]]  # member 0 keeps its first-step losses


def test_pcgrad_projects_conflicting_gradients_and_leaves_agreeing_ones():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])  # g1 . g2 = -1 < 0
    # g1 - (-1 / 2) g2 = (0.5, 0.5); g2 - (-1 / 1) g1 = (0, 1)
    assert project(g[None]).tolist() == [pytest.approx([0.5, 1.5])]
    agree = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert project(agree[None]).tolist() == [pytest.approx([2.0, 1.0])]  # the plain sum
    # two members at once: each projected on its own
    assert project(torch.stack([g, agree])).tolist() == [pytest.approx([0.5, 1.5]), pytest.approx([2.0, 1.0])]


def test_pcgrad_order_of_three_tasks_comes_from_each_members_generator():
    """With three tasks the order of projections matters; member s draws it from its own seed, as its fit does."""
    g = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [-0.5, -1.0, 1.0]])
    seeds = [0, 1, 2, 3]
    alone = [project(g[None], [torch.Generator().manual_seed(s)])[0] for s in seeds]
    together = project(g.expand(4, 3, 3).clone(), [torch.Generator().manual_seed(s) for s in seeds])
    for s in range(4):
        torch.testing.assert_close(together[s], alone[s])
    assert len({tuple(a.tolist()) for a in alone}) > 1  # the orders differ, and so do the results


def test_shared_elements_of_mmoe_are_its_experts(data):
    system = make_system("mmoe", data.tasks, data.d_in, {"n_experts": 2})
    out = system(data.train.x[:32])
    losses = system.task_losses(out, data.train.y[:32])
    shared = system.shared_parameters(weighting.task_gradients(losses, system.dense_parameters()))
    names = [n for n, p in system.model.named_parameters() if p.requires_grad]
    sizes = [p.numel() for p in system.model.parameters() if p.requires_grad]
    per_tensor = dict(zip(names, torch.split(shared.mask, sizes)))
    # the experts serve both tasks; the stacked per-task gates and towers hold no shared element
    assert all(bool(m.all()) for n, m in per_tensor.items() if "experts" in n)
    assert not any(bool(m.any()) for n, m in per_tensor.items() if "gate" in n or "tower" in n)


def test_pcgrad_leaves_task_specific_elements_alone(data):
    """On a stacked tower tensor, task 1's rows get task 1's gradient only, whatever the projection does."""
    cfg = {"n_experts": 2, "seed": 0}
    sys_pc = make_system("mmoe", data.tasks, data.d_in, {**cfg, "weighting": "pcgrad"})
    sys_eq = make_system("mmoe", data.tasks, data.d_in, cfg)
    x, y = data.train.x[:64], data.train.y[:64]
    sys_pc.set_gradients(sys_pc.task_losses(sys_pc(x), y), None)
    sys_eq.loss(sys_eq(x), y).backward()
    changed = False
    for (name, a), b in zip(sys_pc.model.named_parameters(), sys_eq.model.parameters()):
        if "tower" in name or "gate" in name:
            torch.testing.assert_close(a.grad, b.grad)
        elif "experts" in name:
            changed |= not torch.allclose(a.grad, b.grad)
    assert changed  # the shared experts' gradients were projected (the tasks conflict somewhere)


BASE = {"max_epochs": 4, "lr": 1e-2, "batch_size": 48, "patience": 10, "expert_units": 16, "tower_units": 16}
OPTIONS = {"static": {"static_weights": "2,1"}, "dwa": {"dwa_temperature": 0.5}, "gradnorm": {"gradnorm_alpha": 1.0}}


@pytest.mark.parametrize("name", weighting.available())
def test_population_member_with_each_weighting_equals_its_separate_fit(name, data):
    """Members with their own seeds, learning rates and lengths (one leaves the stack early, taking its method's
    state with it), two per vmap call: each equals its separate fit with that weighting, epoch by epoch; and the
    method does something (the members differ from equal weighting's)."""
    base = {**BASE, "weighting": name, **OPTIONS.get(name, {})}
    configs = [{**base, "seed": 1}, {**base, "seed": 4, "lr": 3e-3, "max_epochs": 2}, {**base, "seed": 7}]
    pop = train_population("mmoe", data, configs, evaluate_test=True, device="cpu", members_per_call=2)
    for cfg, member in zip(configs, pop):
        assert_same_fit(member, fit("mmoe", data, cfg, evaluate_test=True, accelerator="cpu"))
    if name != "equal":
        plain = train_population("mmoe", data, [{**c, "weighting": "equal"} for c in configs], device="cpu")
        assert pop[0].history[-1]["train_loss"] != pytest.approx(plain[0].history[-1]["train_loss"], rel=1e-4)


@pytest.mark.parametrize("name", ["uncertainty", "gradnorm", "pcgrad"])
def test_population_with_fields_masks_and_aux_loss_equals_separate_fits(name):
    """Embedding tables (lazy rows), missing labels, and OMoE's sparse gate with its load-balancing loss."""
    from test_missing_labels import make_data

    masked = make_data()
    base = {"max_epochs": 3, "batch_size": 48, "patience": 10, "expert_units": 8, "tower_units": 8,
            "embedding_dim": 3, "n_experts": 4, "gate_top_k": 2, "gate_noise": 0.0, "gate_aux_weight": 0.1,
            "weighting": name}
    configs = [{**base, "seed": 2}, {**base, "seed": 3, "lr": 3e-3}]
    pop = train_population("omoe", masked, configs, evaluate_test=True, device="cpu")
    for cfg, member in zip(configs, pop):
        assert_same_fit(member, fit("omoe", masked, cfg, evaluate_test=True, accelerator="cpu"))


def test_population_members_must_share_the_weighting_options(data):
    configs = [{"weighting": "dwa", "max_epochs": 1}, {"weighting": "dwa", "dwa_temperature": 1.0, "max_epochs": 1}]
    with pytest.raises(UserError, match="population members must share the weighting and its options"):
        train_population("mmoe", data, configs, device="cpu")


STUDY = """
name = "weigh"
architectures = ["single_task", "mmoe"]
weightings = ["equal", "dwa", "pcgrad"]
seeds = 2
[budget]
trials = 1
max_epochs = 2
patience = 2
[[datasets]]
name = "synthetic"
label = "syn"
options = { n_samples = 300, d = 8 }
[search.all]
batch_size = [64]
expert_units = [8]
tower_units = [8]
n_experts = 2
"""


def test_a_study_compares_weightings_as_units(tmp_path, monkeypatch, capsys):
    """Each (architecture, weighting) is a unit with the full budget, stored and ranked as ``mmoe+dwa``; the
    single-task baseline runs once; equal weighting keeps the plain name (and the identity of older studies)."""
    import polars as pl

    from bench.results import store

    monkeypatch.chdir(tmp_path)
    (tmp_path / "weigh.toml").write_text(STUDY)
    assert main(["run", "--study", "weigh.toml", "--accelerator", "cpu", "--wandb", "disabled", "--no-plots",
                 "--quiet"]) == 0
    rows = store.read(tmp_path / "runs" / "weigh")
    final = rows.filter(pl.col("stage") == "final")
    assert sorted(final["architecture"].unique()) == ["mmoe", "mmoe+dwa", "mmoe+pcgrad", "single_task"]
    search = rows.filter((pl.col("stage") == "search") & (pl.col("metric") == "objective"))
    assert search.group_by("architecture").len().sort("architecture")["len"].to_list() == [1, 1, 1, 2]
    configs = {a: c for a, c in final.select("architecture", "config").unique().iter_rows()}
    assert '"weighting": "pcgrad"' in configs["mmoe+pcgrad"] and "weighting" not in configs["mmoe"]
    page = (tmp_path / "results" / "weigh.md").read_text()
    assert "| mmoe+pcgrad " in page and "loss weightings compared: equal, dwa, pcgrad" in page
    meta = store.read_meta(tmp_path / "runs" / "weigh")
    assert meta["architectures"] == ["single_task", "mmoe", "mmoe+dwa", "mmoe+pcgrad"]
    # searching the weighting while the study lists weightings is refused with the spec
    (tmp_path / "bad.toml").write_text(STUDY.replace('batch_size = [64]', 'batch_size = [64]\nweighting = ["dwa"]'))
    capsys.readouterr()
    assert main(["run", "--study", "bad.toml", "--wandb", "disabled"]) == 2
    assert "the study's weightings set it" in capsys.readouterr().err


@pytest.mark.parametrize("name", weighting.available())
def test_top_k_gates_load_balancing_loss_trains_under_every_method(name, data):
    # OMoE's one gate is shared by both tasks, so a gradient-based method rewrites its gradient: the auxiliary
    # loss's gradient must still be added (same seed, with and without it: different validation metrics)
    base = {"weighting": name, "max_epochs": 2, "patience": 5, "batch_size": 64, "expert_units": 8,
            "tower_units": 8, "n_experts": 4, "gate_top_k": 2, "gate_noise": 0.0}
    with_aux = fit("omoe", data, {**base, "gate_aux_weight": 1.0}, accelerator="cpu")
    without = fit("omoe", data, {**base, "gate_aux_weight": 0.0}, accelerator="cpu")
    assert all(math.isfinite(h["train_loss"]) for h in with_aux.history + without.history)
    assert with_aux.val_metrics != without.val_metrics
