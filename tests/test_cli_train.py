import pytest
from conftest import registry_params

from bench import architectures
from bench.cli import main

TINY = ["--data", "n_samples=400", "--data", "d=6", "--set", "max_epochs=2", "--no-progress"]


@pytest.mark.parametrize("arch", registry_params())
def test_bench_train_every_architecture(arch, capsys):
    assert main(["train", "--dataset", "synthetic", "--arch", arch, *TINY]) == 0
    out = capsys.readouterr().out
    assert f"{arch} on synthetic" in out
    for task in ("y1", "y2"):
        assert f"{task}      mse" in out and f"{task}      mae" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arch", "mmoee"], "unknown architecture 'mmoee'; valid choices: aitm, cgc, cross_stitch, esmm, mmoe"),
        (["--arch", "mmoe", "--dataset", "nope"], "unknown dataset 'nope'; valid choices:"),
        (["--arch", "mmoe", "--set", "n_expert=3"], "unknown config key for mmoe 'n_expert'; valid choices:"),
        (["--arch", "mmoe", "--set", "lr=fast"], "lr='fast': expected float"),
        (["--arch", "mmoe", "--data", "rho=1"], "unknown option of dataset synthetic 'rho'; valid choices:"),
        (["--arch", "mmoe", "--set", "optimizer=sgd"], "unknown optimizer 'sgd'; valid choices: adam, adamw"),
        (["--arch", "mmoe", "--tasks", "y1,y3", *TINY], "unknown task 'y3'; valid choices: y1, y2"),
        (["--arch", "mmoe", "--accelerator", "foo"], "unknown accelerator 'foo'; valid choices: auto, cpu, cuda, gpu"),
        (["--arch", "mmoe", "--set", "lr=1e30", *TINY], "mmoe diverged: "),
        (["--arch", "mmoe", "--set", "gate_top_k=9", *TINY],
         "invalid options for mmoe: gate_top_k must be 0 (dense) or 1..8 (the experts one task's gate weighs: "
         "n_experts = 8), got 9"),
        (["--arch", "cgc", "--set", "gate_top_k=-2", *TINY], "gate_top_k must be 0 (dense) or 1..4"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_version_and_list(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == "mtl-bench 0.1.0"
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("architectures (bench train --arch NAME --set KEY=VALUE):\n")
    for name in architectures.available():
        assert f"\n  {name} " in out
    assert "  mmoe           tower_units=32, tower_layers=1, dropout=0.0, expert_units=64, expert_layers=1, " \
           "gate_top_k=0, gate_noise=1.0, gate_aux_weight=0.01, n_experts=8, embedding_dim=8\n" in out
    assert "\nloss weightings (bench train --set weighting=NAME; a study's weightings = [...]):\n  dwa " in out
    assert "  gradnorm       Learned weights balancing" in out and "(options: gradnorm_alpha=1.5)\n" in out
    assert "\ndatasets (bench train --dataset NAME --data KEY=VALUE):\n  adult " in out
    assert "options: n_samples=10000, d=100, p=0.5, n_tasks=2, m=10, c=1.0, noise_std=0.1" in out
    assert "\nstudies (bench run --study NAME):\n" in out
    assert "  quickstart             1 dataset(s), 7 architectures, 6 trials each, at most 12 epochs, 3 seeds\n" in out
    assert main(["list", "studies"]) == 0
    assert capsys.readouterr().out.startswith("studies (bench run --study NAME):\n")


def test_bad_accelerator_for_run_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--study", "quickstart", "--accelerator", "tpu9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "bench run: error: unknown accelerator 'tpu9'; valid choices: auto, cpu, cuda, gpu"
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()
    import torch

    if not torch.cuda.is_available():  # a GPU asked for where there is none
        assert main(["run", "--study", "quickstart", "--accelerator", "gpu"]) == 2
        assert "no CUDA GPU is available here" in capsys.readouterr().err
        assert not (tmp_path / "runs").exists()


def test_bench_train_a_table_with_ids_and_missing_labels(tmp_path, monkeypatch, capsys):
    import random

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    rng = random.Random(0)
    lines = ["user,price,click,conversion"]
    for _ in range(400):
        click = rng.randint(0, 1)
        lines.append(f"u{rng.randrange(40)},{rng.random():.3f},{click},{rng.randint(0, 1) if click else ''}")
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    args = ["train", "--dataset", "table", "--arch", "mmoe", "--data-dir", str(tmp_path), "--data", "path=t.csv",
            "--data", "labels=click:binary,conversion:binary", "--data", "min_count=2", "--set", "max_epochs=2",
            "--set", "embedding_dim=4", "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "conversion  auc" in out and "observed labels: conversion " in out and " of 40 (validation)" in out
    # a label column empty on every row: one line, exit 2
    (tmp_path / "t.csv").write_text("\n".join([lines[0], *(line.rsplit(",", 1)[0] + "," for line in lines[1:])]))
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("table: label conversion has no value in any row (every label is missing)")
    assert len(err.splitlines()) == 1
