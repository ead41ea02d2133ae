import lightning as L
import pytest
import torch
from conftest import registry_params
from torch import nn

from bench import architectures, datasets
from bench.datasets import MTLData, Split, Task
from bench.errors import UserError
from bench.spec.config import TrainConfig
from bench.training.fit import fit
from bench.training.system import MTLDataModule, MTLSystem, make_system, param_groups


@pytest.fixture(scope="module")
def tiny():
    return datasets.load("synthetic", n_samples=600, d=8, seed=3)


def test_weight_decay_excludes_biases_and_stitches_by_name():
    model = architectures.create("cross_stitch", 5, {"a": 1, "b": 1})
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(not names[id(p)].endswith("bias") and names[id(p)] != "stitch" for p in decay["params"])
    assert {names[id(p)] for p in no_decay["params"]} == {
        n for n in names.values() if n.endswith("bias") or n == "stitch"
    }


class EchoModel(nn.Module):
    """Task a's logit is feature 0, task b's is feature 1."""

    def forward(self, x):
        return {"a": x[:, :1], "b": x[:, 1:2]}


def test_metric_for_task_k_uses_task_k_labels():
    g = torch.Generator().manual_seed(0)

    def split(n):
        x = torch.randn(n, 2, generator=g)
        # a's labels follow feature 0; b's labels follow minus feature 1: AUC 1 and 0 if matched right,
        # about 0.5 each if a task were scored against the other task's labels
        y = torch.stack([(x[:, 0] > 0).float(), (x[:, 1] < 0).float()], 1)
        return Split(x, y)

    data = MTLData("echo", [Task("a", "binary"), Task("b", "binary")], split(50), split(400), split(50))
    system = MTLSystem(EchoModel(), data.tasks)
    L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False).validate(
        system, datamodule=MTLDataModule(data, eval_batch_size=64)
    )
    assert system.val_metrics["a"]["auc"] == pytest.approx(1.0)
    assert system.val_metrics["b"]["auc"] == pytest.approx(0.0)


def test_loss_for_task_k_uses_task_k_labels():
    tasks = [Task("a", "regression"), Task("b", "regression")]
    system = MTLSystem(EchoModel(), tasks, loss_weights={"b": 0.0})
    x = torch.tensor([[1.0, 5.0]])
    assert system.loss(system(x), torch.tensor([[1.0, 0.0]])).item() == 0.0  # a exact; b weighted out
    assert system.loss(system(x), torch.tensor([[0.0, 5.0]])).item() == pytest.approx(1.0)


@pytest.mark.parametrize("arch", registry_params())
def test_plain_trainer_fits_any_architecture(arch, tiny, tmp_path):
    system = make_system(arch, tiny.tasks, tiny.d_in, {"max_epochs": 2, "batch_size": 128})
    trainer = L.Trainer(max_epochs=2, default_root_dir=tmp_path, enable_progress_bar=False, logger=False)
    trainer.fit(system, datamodule=MTLDataModule.for_system(tiny, system))
    assert len(system.history) == 2 and system.best_epoch in (0, 1)
    assert set(system.val_metrics) == {"y1", "y2"}


def test_best_epoch_weights_are_restored_and_match_reported_metrics(tiny):
    res = fit("mmoe", tiny, {"max_epochs": 6, "patience": 2, "lr": 0.05}, evaluate_test=False)
    best = max(range(len(res.history)), key=lambda i: res.history[i]["val_objective"])
    assert res.best_epoch == res.history[best]["epoch"]
    assert res.val_objective == pytest.approx(res.history[best]["val_objective"])
    assert res.val_metrics["y1"]["mse"] == pytest.approx(res.history[best]["val/y1/mse"])
    assert res.test_metrics is None  # search-stage fits never read the test split


def test_early_stopping_stops_before_max_epochs(tiny):
    # lr 0 never improves after the first epoch: patience 1 stops at epoch 2 of 50
    res = fit("shared_bottom", tiny, {"max_epochs": 50, "patience": 1, "lr": 1e-12})
    assert res.epochs <= 3 and res.best_epoch == 0


def test_fit_is_reproducible_by_seed(tiny):
    a = fit("cgc", tiny, {"max_epochs": 2, "seed": 4}, evaluate_test=True)
    b = fit("cgc", tiny, {"max_epochs": 2, "seed": 4}, evaluate_test=True)
    c = fit("cgc", tiny, {"max_epochs": 2, "seed": 5}, evaluate_test=True)
    assert a.test_metrics == b.test_metrics
    assert a.test_metrics != c.test_metrics


def test_bad_training_settings_are_user_errors(tiny):
    with pytest.raises(UserError, match="optimizer"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(UserError, match="unknown config key for mmoe 'lrr'"):
        make_system("mmoe", tiny.tasks, tiny.d_in, {"lrr": 0.1})
    with pytest.raises(UserError, match="objective"):
        make_system("mmoe", tiny.tasks, tiny.d_in, {"objective": "y9"})
    with pytest.raises(UserError, match="invalid options for mmoe"):
        make_system("mmoe", tiny.tasks, tiny.d_in, {"expert_units": 0})


def test_load_from_checkpoint_round_trip(tmp_path):
    """A system made by make_system saves what rebuilds it: MTLSystem.load_from_checkpoint(path) gives the same
    predictions; a corrupted or foreign file is a one-line UserError."""
    import lightning as L

    data = datasets.load("synthetic", n_samples=300, d=6)
    system = make_system("mmoe", data.tasks, data.d_in, {"lr": 3e-3, "n_experts": 3, "seed": 4, "max_epochs": 2})
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(system, datamodule=MTLDataModule.for_system(data, system))
    path = tmp_path / "mmoe.ckpt"
    trainer.save_checkpoint(path)
    loaded = MTLSystem.load_from_checkpoint(path)
    system.eval()
    loaded.eval()
    with torch.no_grad():
        a, b = system(data.test.x), loaded(data.test.x)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.train_config.lr == 3e-3 and loaded.hparams["config"]["n_experts"] == 3
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in system.parameters())
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    for bad in ("bad.ckpt", "foreign.ckpt", "missing.ckpt"):
        with pytest.raises(UserError, match=rf"{bad}: not an mtl-bench checkpoint \(") as err:
            MTLSystem.load_from_checkpoint(tmp_path / bad)
        assert "\n" not in str(err.value)


def test_checkpoint_with_a_learned_weighting_reloads_also_from_before_the_member_axis(tmp_path):
    """Uncertainty's log-variances are saved with the system; a checkpoint of an older version held them as (T,)."""
    data = datasets.load("synthetic", n_samples=200, d=4)
    system = make_system("mmoe", data.tasks, data.d_in, {"weighting": "uncertainty", "n_experts": 2})
    with torch.no_grad():
        system.weighting.log_var.copy_(torch.tensor([[0.5, -1.0]]))
    import lightning as L

    trainer = L.Trainer(max_epochs=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(system, datamodule=MTLDataModule.for_system(data, system))
    path = tmp_path / "u.ckpt"
    trainer.save_checkpoint(path)
    assert MTLSystem.load_from_checkpoint(path).weighting.log_var.tolist() == [[0.5, -1.0]]
    old = torch.load(path, weights_only=True)
    old["state_dict"]["weighting.log_var"] = old["state_dict"]["weighting.log_var"][0]  # the older (T,) layout
    torch.save(old, tmp_path / "old.ckpt")
    assert MTLSystem.load_from_checkpoint(tmp_path / "old.ckpt").weighting.log_var.tolist() == [[0.5, -1.0]]
