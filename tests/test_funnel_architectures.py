"""ESMM, AITM and STEM: their equations, what they need of the data, and populations equal to separate fits."""

import math

import pytest
import torch
from test_population import assert_same_fit

from bench import architectures, datasets
from bench.architectures.funnel import product_logit, ratio_logit
from bench.cli import main
from bench.errors import UserError
from bench.training.fit import fit
from bench.training.metrics import funnel_targets
from bench.training.population import train_population

NEW = ["esmm", "aitm", "stem"]
COND = [("ctr", False), ("cvr", True)]  # click -> conversion given a click
JOINT = [("ctr", False), ("ctcvr", False)]  # click -> click and conversion
FIELDS = [7, 5]
D = 6


def build(name, steps=COND, **opts):
    torch.manual_seed(0)
    return architectures.create(name, D, {t: 1 for t, _ in steps}, fields=FIELDS, funnel=steps, **opts)


def batch(n=16):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, D, generator=g), torch.stack([torch.randint(7, (n,), generator=g),
                                                        torch.randint(5, (n,), generator=g)], 1)


@pytest.fixture(scope="module")
def data():
    return datasets.load("synthetic-funnel", n_samples=600, n_users=30, n_items=20, click_rate=0.4,
                         conversion_rate=0.4, seed=2)


@pytest.mark.parametrize("name", NEW)
def test_shapes_finite_and_every_parameter_trained(name):
    model = build(name, dropout=0.0)
    x, cat = batch()
    out, aux = model(x, cat, with_aux=True, **({"joint": True} if name != "stem" else {}))
    assert {k: v.shape for k, v in out.items()} == {"ctr": (16, 1), "cvr": (16, 1)}
    assert all(torch.isfinite(v).all() for v in out.values()) and aux.dim() == 0
    (sum(o.square().mean() for o in out.values()) + aux).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}.{pname} got no gradient"


def test_esmm_pctcvr_is_exactly_pctr_times_pcvr():
    model = build("esmm", COND).double()
    x, cat = batch()
    out, joint = model(x.double(), cat), model(x.double(), cat, joint=True)
    p_ctr, p_cvr = torch.sigmoid(out["ctr"]), torch.sigmoid(out["cvr"])  # the conditional view: pCVR itself
    torch.testing.assert_close(torch.sigmoid(joint["cvr"]), p_ctr * p_cvr, rtol=1e-12, atol=0)
    torch.testing.assert_close(joint["ctr"], out["ctr"])
    # on a joint funnel (ctr -> ctcvr) the same weights give pCTCVR as the task's own output
    torch.manual_seed(0)
    on_joint = architectures.create("esmm", D, {"ctr": 1, "ctcvr": 1}, fields=FIELDS, funnel=JOINT).double()
    on_joint.load_state_dict(model.state_dict())
    torch.testing.assert_close(torch.sigmoid(on_joint(x.double(), cat)["ctcvr"]), p_ctr * p_cvr, rtol=1e-12, atol=0)


def test_product_and_ratio_logits_are_exact_and_finite_at_the_extremes():
    a = torch.tensor([-50.0, -3.0, 0.0, 2.0, 40.0], dtype=torch.float64)
    b = torch.tensor([-2.0, 1.0, 0.5, 30.0, 60.0], dtype=torch.float64)
    p = product_logit(a, b)
    assert torch.isfinite(p).all()
    torch.testing.assert_close(torch.sigmoid(p), torch.sigmoid(a) * torch.sigmoid(b), rtol=1e-12, atol=1e-300)
    low = torch.tensor([-6.0, -1.0, 0.5], dtype=torch.float64)
    high = torch.tensor([-2.0, 0.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(torch.sigmoid(ratio_logit(low, high)), torch.sigmoid(low) / torch.sigmoid(high))
    capped = ratio_logit(high, low)  # the later step likelier: read as a probability just below 1
    assert torch.isfinite(capped).all() and (torch.sigmoid(capped) > 0.999).all()


def logit(p: float) -> torch.Tensor:
    return torch.tensor([[math.log(p / (1 - p))]] * 3)


def test_aitm_calibration_is_zero_when_the_funnel_holds_and_positive_when_violated():
    model = build("aitm", calibration=0.5)
    assert model.has_aux_loss and architectures.has_aux_loss(model)
    net = model.net
    assert net.calibration_loss({"ctr": logit(0.4), "cvr": logit(0.1)}).item() == 0.0
    assert net.calibration_loss({"ctr": logit(0.3), "cvr": logit(0.3)}).item() == 0.0
    assert net.calibration_loss({"ctr": logit(0.2), "cvr": logit(0.5)}).item() == pytest.approx(0.3)
    x, cat = batch()
    joint, aux = model(x, cat, with_aux=True, joint=True)
    y = torch.sigmoid(torch.cat([joint["ctr"], joint["cvr"]], 1))
    assert aux.item() == pytest.approx(0.5 * torch.relu(y[:, 1] - y[:, 0]).mean().item(), rel=1e-5)
    assert not architectures.has_aux_loss(build("aitm", calibration=0.0))


def test_aitm_transfer_is_attention_over_the_previous_step_and_the_own_input():
    net = build("aitm").net
    p, q = torch.randn(4, net.attend.d_in), torch.randn(4, net.attend.d_in)
    w, b = net.attend.weight, net.attend.bias  # (3, k, k), (3, k): h1 (value), h2 (key), h3 (query)
    items = torch.stack([p, q])  # (2, B, k)
    v, key, query = (items @ w[i] + b[i] for i in range(3))
    weights = torch.softmax((key * query).sum(-1) / math.sqrt(net.attend.d_in), dim=0)  # (2, B)
    torch.testing.assert_close(net.ait(p, q), (weights.unsqueeze(-1) * v).sum(0))
    # the conditional view of a step is the ratio of the joint ones
    x, cat = batch()
    out, joint = build("aitm")(x, cat), build("aitm")(x, cat, joint=True)
    torch.testing.assert_close(out["cvr"], ratio_logit(joint["cvr"], joint["ctr"]))


def embedding_grads(model, task: str) -> torch.Tensor:
    """Per set of embeddings (ctr's, cvr's, shared), the gradient's size from task ``task``'s output alone."""
    model.zero_grad()
    x, cat = batch()
    model(x, cat)[task].sum().backward()
    grad = model.encoder.table.weight.grad  # (3 R, e): set j's rows at j R
    return grad.unflatten(0, (3, sum(FIELDS))).abs().sum((1, 2))


def test_stem_task_embeddings_get_their_own_tasks_gradient_only():
    model = build("stem", n_shared=1, n_specific=2)
    assert model.encoder.sets == 3 and model.encoder.table.num_embeddings == 3 * sum(FIELDS)
    ctr, cvr = embedding_grads(model, "ctr"), embedding_grads(model, "cvr")
    assert ctr[0] > 0 and ctr[1] == 0 and ctr[2] > 0  # ctr's loss: its own and the shared embeddings
    assert cvr[0] == 0 and cvr[1] > 0 and cvr[2] > 0
    # all forward: cvr's embeddings still reach ctr's prediction (through cvr's experts, stop-gradient)
    x, cat = batch()
    before = model(x, cat)["ctr"]
    with torch.no_grad():
        model.encoder.table.weight[sum(FIELDS) : 2 * sum(FIELDS)] += 1.0
    assert not torch.allclose(model(x, cat)["ctr"], before)


def test_what_the_data_lack_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    for name, message in (("esmm", "esmm is a funnel architecture: it needs data whose tasks form a declared funnel"),
                          ("stem", "stem needs embedded categorical fields")):
        with pytest.raises(UserError, match=message) as err:
            architectures.create(name, D, {"y1": 1, "y2": 1})
        assert len(str(err.value).splitlines()) == 1
    assert main(["train", "--dataset", "synthetic", "--arch", "aitm", "--data", "n_samples=200"]) == 2
    assert "aitm is a funnel architecture" in capsys.readouterr().err
    assert main(["train", "--dataset", "synthetic-funnel", "--arch", "esmm", "--data", "n_samples=1000",
                 "--set", "max_epochs=1", "--no-progress"]) == 0
    out = capsys.readouterr().out  # the entire-space metrics beside the usual ones, test only
    assert "cvr     auc_entire" in out and "cvr     calib_entire" in out
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text('architectures = ["mmoe", "esmm"]\n[[datasets]]\nname = "synthetic"\n'
                                     'options = { n_samples = 200 }\n')
    assert main(["run", "--study", str(tmp_path / "s.toml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dataset synthetic: esmm is a funnel architecture" in err[0]
    assert not (tmp_path / "runs").exists()


def test_funnel_targets_make_a_conditional_step_joint():
    nan = math.nan
    y = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, nan], [nan, nan]])
    out = funnel_targets(y, [(0, False), (1, True)])
    assert out[:3].tolist() == [[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]] and out[3].isnan().all()
    assert torch.equal(funnel_targets(y[:3], [(0, False), (1, False)]).nan_to_num(-1), y[:3].nan_to_num(-1))


@pytest.mark.parametrize("name", NEW)
def test_check_options_builds_them_on_the_meta_device(name):
    architectures.check_options(name)
    with pytest.raises(ValueError, match="dropout"):
        architectures.check_options(name, dropout=1.0)


@pytest.mark.parametrize("name", NEW)
def test_population_reproduces_separate_fits_with_dropout(name, data):
    base = {"max_epochs": 2, "batch_size": 64, "patience": 10, "dropout": 0.2, "expert_units": 8, "tower_units": 8,
            "embedding_dim": 4}
    configs = [{**base, "seed": 1}, {**base, "seed": 5, "lr": 1e-2, "optimizer": "adamw", "weight_decay": 0.01}]
    pop = train_population(name, data, configs, evaluate_test=True, device="cpu", diagnose=True)
    for p, c in zip(pop, configs):
        ref = fit(name, data, c, evaluate_test=True, accelerator="cpu", diagnose=True)
        assert_same_fit(p, ref)
        # STEM's gates weigh every expert (3 per task here): its diagnostics, the member's as its fit's
        assert len(ref.diagnostics or []) == (2 * (3 + 3) + 3 if name == "stem" else 0)
        for a, b in zip(p.diagnostics or [], ref.diagnostics or []):
            assert {k: v for k, v in a.items() if k != "value"} == {k: v for k, v in b.items() if k != "value"}
            assert a["value"] == pytest.approx(b["value"], rel=1e-4, abs=1e-6)
        assert set(ref.test_metrics["cvr"]) == {"auc", "logloss", "auc_entire", "calib_entire"}
        assert ref.observed["entire"] == {"ctr": len(data.test), "cvr": len(data.test)}
        # the entire-space AUC on every resample of the impressions, the member's as its fit's
        assert set(ref.entire_draws) == {"ctr", "cvr"} and len(ref.entire_draws["cvr"]) == 200
        for task, values in ref.entire_draws.items():
            assert p.entire_draws[task] == pytest.approx(values, abs=1e-4)
