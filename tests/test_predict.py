"""Reusing a study's winner: final runs keep their best-epoch weights and the fitted feature encoding under
runs/<study>/models/; ``bench predict`` turns the rows of a CSV or Parquet file into per-task predictions.

Fed the test split, the predictions reproduce the stored test metrics (both final-stage paths); a model file is
a Lightning checkpoint that ``MTLSystem.load_from_checkpoint`` reads; a damaged or foreign file is one line."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from bench.cli import main
from bench.results import store
from bench.training import models
from bench.training.metrics import task_metrics
from bench.training.system import MTLSystem

SPEC = """
name = "{name}"
architectures = ["single_task", "mmoe"]
seeds = 2
[final]
population = {population}
[budget]
trials = 1
max_epochs = 3
patience = 3
[[datasets]]
name = "table"
label = "shop"
options = {{ path = "{path}", labels = {{ click = "binary", spend = "regression" }}, split_column = "split"{extra} }}
[search.all]
batch_size = [64]
expert_units = [8]
tower_units = [8]
n_experts = 2
"""


def make_table(path, n: int = 600, seed: int = 0) -> pl.DataFrame:
    """Numeric and categorical features (with missing values) and two labels that depend on them."""
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 10, n)
    city = rng.choice(["paris", "rome", "oslo", "lima"], n)
    score = rng.normal(0, 1, n)
    logit = 0.08 * (age - 40) + 1.5 * (city == "rome") + score
    click = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    spend = 2.0 * score + (city == "oslo") + rng.normal(0, 0.3, n)
    frame = pl.DataFrame({"age": age, "city": city, "score": score, "click": click, "spend": spend,
                          "split": np.where(np.arange(n) % 5 == 3, "val", np.where(np.arange(n) % 5 == 4, "test",
                                                                                   "train"))})
    frame = frame.with_columns(pl.when(pl.int_range(pl.len()) % 17 == 0).then(None).otherwise(pl.col("age"))
                               .alias("age"))  # missing values: imputed and flagged as in training
    frame.write_csv(path)
    return frame


def run_study(tmp_path, monkeypatch, name: str, population: bool, *extra: str, options: str = ""):
    monkeypatch.chdir(tmp_path)
    frame = make_table(tmp_path / "shop.csv")
    (tmp_path / f"{name}.toml").write_text(SPEC.format(name=name, population=str(population).lower(),
                                                       path=tmp_path / "shop.csv", extra=options))
    assert main(["run", "--study", f"{name}.toml", "--accelerator", "cpu", "--wandb", "disabled", "--no-plots",
                 "--quiet", *extra]) == 0
    return frame, tmp_path / "runs" / name


@pytest.mark.parametrize("population, options", [
    (True, ""), (False, ""),
    (True, ', encoding = "embedding", min_count = 1'),  # city as an embedded field: codes through the encoder
], ids=["population", "one-fit-per-seed", "embedded-field"])
def test_predictions_on_the_test_split_reproduce_the_stored_test_metrics(tmp_path, monkeypatch, population, options):
    frame, root = run_study(tmp_path, monkeypatch, "shop", population, options=options)
    test = frame.filter(pl.col("split") == "test")
    test.write_parquet(tmp_path / "test.parquet")  # labels and split column too: extra columns are ignored
    rows = store.read(root).filter((pl.col("stage") == "final") & (pl.col("split") == "test")
                                   & pl.col("draw").is_null())  # the runs' own metrics, not the test resamples
    y_click = torch.tensor(test["click"].to_numpy(), dtype=torch.float32)
    y_spend = torch.tensor(test["spend"].to_numpy(), dtype=torch.float32)
    for arch in ("mmoe", "single_task"):
        for seed in (1, 2):
            out = tmp_path / f"{arch}-{seed}.csv"
            assert main(["predict", "--study", "shop", "--dataset", "shop", "--arch", arch, "--seed", str(seed),
                         "--input", str(tmp_path / "test.parquet"), "--output", str(out)]) == 0
            pred = pl.read_csv(out)
            assert pred.columns == ["click", "spend"] and pred.height == test.height
            assert pred["click"].is_between(0, 1).all()  # probabilities
            p = torch.tensor(pred["click"].to_numpy(), dtype=torch.float32)
            got = {
                ("click", "auc"): task_metrics("binary", p.unsqueeze(1), y_click)["auc"],  # a monotone map of logits
                ("click", "logloss"): torch.nn.functional.binary_cross_entropy(p, y_click).item(),
                ("spend", "mse"): ((torch.tensor(pred["spend"].to_numpy()) - y_spend) ** 2).mean().item(),
            }
            mine = rows.filter((pl.col("architecture") == arch) & (pl.col("seed") == seed))
            # AUC counts ordered pairs: float rounding (a stacked population's forward against one model's) may
            # flip the order of one near-tied pair, one pair's worth of AUC
            pair = 1.0 / float(y_click.sum() * (1 - y_click).sum())
            for (task, metric), value in got.items():
                stored = mine.filter((pl.col("task") == task) & (pl.col("metric") == metric))["value"].item()
                tol = 1.01 * pair if metric == "auc" else 1e-6
                assert value == pytest.approx(stored, rel=1e-4, abs=tol), (arch, seed, task, metric)


def test_model_file_is_a_checkpoint_and_damaged_files_are_one_line(tmp_path, monkeypatch, capsys):
    frame, root = run_study(tmp_path, monkeypatch, "ckpt", True)
    path = root / "models" / "shop" / "mmoe" / "seed-1.ckpt"
    meta = models.read_meta(path)
    assert (meta["study"], meta["dataset"], meta["architecture"], meta["seed"]) == ("ckpt", "shop", "mmoe", 1)
    assert [c for c, *_ in meta["encoding"]["numeric"]] == ["age", "score"]  # split column and labels are not inputs
    system = MTLSystem.load_from_checkpoint(path)  # rebuilt from the saved hyperparameters, weights_only
    loaded, _ = models.load_model(path)
    x = torch.randn(5, system.hparams["d_in"])
    system.eval()
    torch.testing.assert_close(system(x)["spend"], loaded(x)["spend"])
    # the stored n_params is what the file holds (4 bytes a float) plus metadata
    n_params = store.read(root).filter(pl.col("architecture") == "mmoe")["n_params"][0]
    assert 4 * n_params < path.stat().st_size < 4 * n_params + 64_000
    capsys.readouterr()
    frame.write_csv(tmp_path / "rows.csv")
    args = ["predict", "--study", "ckpt", "--dataset", "shop", "--arch", "mmoe", "--seed", "1",
            "--input", str(tmp_path / "rows.csv"), "--output", str(tmp_path / "p.csv")]
    good = path.read_bytes()
    for damage in (good[: len(good) // 2], b"not a model", None):
        if damage is None:
            torch.save({"state_dict": {}, "weights": torch.zeros(3)}, path)  # a foreign torch file
        else:
            path.write_bytes(damage)
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not an mtl-bench model file" in err and "Traceback" not in err, err
    path.write_bytes(good)
    frame.drop("score").write_csv(tmp_path / "rows.csv")
    assert main(args) == 2
    assert "lacks 1 of the model's input columns: score" in capsys.readouterr().err
    frame.with_columns(pl.col("score").cast(pl.String).replace("", None)).with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("n/a")).otherwise(pl.col("score")).alias("score")
    ).write_csv(tmp_path / "rows.csv")
    assert main(args) == 2
    assert "rows.csv:5: numeric column score: 'n/a' is not a number" in capsys.readouterr().err
    for bad, message in ((["--arch", "ple"], "valid choices: mmoe, single_task"),
                         (["--seed", "9"], "valid choices: 1, 2"), (["--dataset", "x"], "valid choices: shop")):
        i = args.index(bad[0])
        assert main([*args[:i], *bad, *args[i + 2:]]) == 2
        assert message in capsys.readouterr().err


def test_keep_models_best_and_none(tmp_path, monkeypatch, capsys):
    frame, root = run_study(tmp_path, monkeypatch, "best", True, "--keep-models", "best")
    rows = store.read(root).filter((pl.col("stage") == "final") & (pl.col("architecture") == "mmoe"))
    kept = sorted((root / "models" / "shop" / "mmoe").glob("*.ckpt"))
    assert len(kept) == 1
    # the kept seed has the best validation objective: mean of AUC and -MSE, as the study selects
    val = rows.filter(pl.col("split") == "val")
    score = {s: val.filter((pl.col("seed") == s) & (pl.col("metric") == "auc"))["value"].item()
             - val.filter((pl.col("seed") == s) & (pl.col("metric") == "mse"))["value"].item() for s in (1, 2)}
    assert kept[0].name == f"seed-{max(score, key=score.get)}.ckpt"
    assert len(list((root / "models" / "shop").glob("single_task@*/*.ckpt"))) == 2  # one per task
    # bench predict says which seed of which unit predicted, and why that one
    capsys.readouterr()
    frame.write_csv(tmp_path / "rows.csv")
    for arch in ("mmoe", "single_task"):
        assert main(["predict", "--study", "best", "--dataset", "shop", "--arch", arch, "--input",
                     str(tmp_path / "rows.csv"), "--output", str(tmp_path / "p.csv")]) == 0
    err = capsys.readouterr().err
    best = "the saved seed with the best validation objective"
    assert f"mmoe: seed {max(score, key=score.get)} predicts ({best})" in err
    assert "single_task[click]: seed " in err and "single_task[spend]: seed " in err
    _, root = run_study(tmp_path, monkeypatch, "none", True, "--keep-models", "none")
    assert not (root / "models").exists()
