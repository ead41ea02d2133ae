import pytest

from bench import architectures
from bench.cli import main

TINY = ["--data", "n_samples=400", "--data", "d=6", "--set", "max_epochs=2", "--no-progress"]


@pytest.mark.parametrize("arch", architectures.available())
def test_bench_train_every_architecture(arch, capsys):
    assert main(["train", "--dataset", "synthetic", "--arch", arch, *TINY]) == 0
    out = capsys.readouterr().out
    assert f"{arch} on synthetic" in out
    for task in ("y1", "y2"):
        assert f"{task}      mse" in out and f"{task}      mae" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arch", "mmoee"], "unknown architecture 'mmoee'; valid choices: cgc, cross_stitch, mmoe, omoe, ple"),
        (["--arch", "mmoe", "--dataset", "nope"], "unknown dataset 'nope'; valid choices:"),
        (["--arch", "mmoe", "--set", "n_expert=3"], "unknown config key for mmoe 'n_expert'; valid choices:"),
        (["--arch", "mmoe", "--set", "lr=fast"], "lr='fast': expected float"),
        (["--arch", "mmoe", "--data", "rho=1"], "unknown option of dataset synthetic 'rho'; valid choices:"),
        (["--arch", "mmoe", "--set", "optimizer=sgd"], "unknown optimizer 'sgd'; valid choices: adam, adamw"),
        (["--arch", "mmoe", "--tasks", "y1,y3", *TINY], "unknown task 'y3'; valid choices: y1, y2"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
