"""The layers of ``bench`` (``[tool.importlinter]`` in pyproject.toml) hold: import-linter's ``lint-imports`` on
the package as it is installed, and a deliberately added upward import or ``wandb`` import breaks a contract.

``architectures/`` and ``datasets/`` are installed as ``bench.architectures`` and ``bench.datasets`` (setuptools
``package-dir``); import-linter reads packages from their folders, so the test lays the installed tree out in a
temporary folder (the .py files only) and lints that.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def installed_tree(dest: Path) -> Path:
    """``dest/bench`` as the wheel installs it: bench/ with architectures/ and datasets/ inside."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "bench", dest / "bench", ignore=ignore)
    shutil.copytree(REPO / "architectures", dest / "bench" / "architectures", ignore=ignore, dirs_exist_ok=True)
    shutil.copytree(REPO / "datasets", dest / "bench" / "datasets", ignore=ignore, dirs_exist_ok=True)
    return dest


def lint(tree: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)}  # the copy, not the editable install, is `bench`
    return subprocess.run([str(LINT), str(REPO / "pyproject.toml"), "--no-cache"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def tree(tmp_path):
    if not LINT.is_file():
        pytest.skip(f"import-linter is not installed beside {sys.executable} (pip install -e '.[dev]')")
    return installed_tree(tmp_path)


def test_contracts_are_kept(tree):
    done = lint(tree)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 3 kept, 0 broken." in done.stdout
    assert "Analyzed" in done.stdout and "bench is layered KEPT" in done.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("spec/metrics.py", "from bench.study import run", "bench.spec is not allowed to import bench.study"),
    ("results/store.py", "from bench.training import fit", "bench.results is not allowed to import bench.training"),
    ("training/fit.py", "from bench.results import store", "bench.training is not allowed to import bench.results"),
    ("results/markdown.py", "import wandb", "bench.results is not allowed to import wandb"),
    ("coordination/locks.py", "import torch", "bench.coordination is not allowed to import torch"),
])
def test_an_upward_import_breaks_the_contract(tree, module, line, contract):
    path = tree / "bench" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    done = lint(tree)
    assert done.returncode == 1, done.stdout + done.stderr
    assert contract in done.stdout
