"""The package as users install it: a built wheel in a fresh virtual environment outside the repository finds the
shipped studies from any directory, answers --version and list, and runs a tiny study into the current directory.

The wheel is installed without dependencies; the fresh environment sees this environment's packages (torch,
Lightning, ...) through a .pth file, so that the test checks the wheel's own contents without a second download.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

TINY = """
name = "tiny"
architectures = ["single_task", "mmoe"]
seeds = 1

[budget]
trials = 1
max_epochs = 1
patience = 1

[[datasets]]
name = "synthetic"
options = { n_samples = 200, d = 4 }

[search.all]
batch_size = [64]
expert_units = [8]
tower_units = [8]
n_experts = 2
"""


def run(cmd, cwd, timeout=600, **env):
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing but the fresh environment
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**clean, **env})
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", REPO, "--no-deps", "-q", "-w", tmp / "dist"], cwd=tmp)
    wheels = list((tmp / "dist").glob("mtl_bench-*.whl"))
    assert len(wheels) == 1
    env = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", env], cwd=tmp)
    python = env / "bin" / "python"
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).strip()
    (Path(purelib) / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", purelib, wheels[0]], cwd=tmp)
    return env, Path(purelib)


def test_wheel_runs_shipped_and_own_studies_from_anywhere(venv, tmp_path):
    env, purelib = venv
    bench = [env / "bin" / "python", "-m", "bench.cli"]
    where = run([env / "bin" / "python", "-c", "import bench, bench.architectures, bench.datasets; "
                 "from bench.spec.study import find_study; print(bench.__file__); print(find_study('quickstart'))"],
                cwd=tmp_path)
    module, spec = where.split()
    assert module.startswith(str(purelib)) and spec.startswith(str(purelib))  # the wheel's, not the repository's
    assert run([*bench, "--version"], cwd=tmp_path).strip() == "mtl-bench 0.1.0"
    studies = run([*bench, "list", "studies"], cwd=tmp_path)
    for name in ("quickstart", "census-income", "adult", "mmoe-synthetic"):
        assert f"  {name} " in studies
    (tmp_path / "tiny.toml").write_text(TINY)
    run([*bench, "run", "--study", "tiny.toml", "--accelerator", "cpu", "--wandb", "disabled", "--no-plots"],
        cwd=tmp_path)
    assert (tmp_path / "results" / "tiny.md").is_file() and (tmp_path / "runs" / "tiny" / "study.json").is_file()


def test_wheel_metadata_names_the_papers_and_data_and_every_direct_import(venv, tmp_path):
    env, _ = venv
    meta = run([env / "bin" / "python", "-c", "from importlib.metadata import metadata; m = metadata('mtl-bench'); "
                "print('\\n'.join(m.get_all('Project-URL'))); print('\\n'.join(m.get_all('Requires-Dist')))"],
               cwd=tmp_path)
    assert "https://doi.org/10.1145/3219819.3220007" in meta and "https://doi.org/10.1145/3383313.3412236" in meta
    assert "https://arxiv.org/abs/1604.03539" in meta
    for package in ("torch", "lightning", "optuna", "polars", "scipy", "sqlalchemy", "tqdm", "wandb", "tabulate"):
        assert f"\n{package}" in "\n" + meta, package
