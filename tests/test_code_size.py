"""The rooms read like architectures/: no module over MAX_MODULE lines and no function over MAX_FUNCTION lines in
the package's code (tests and benchmarks aside), unless the module says why in its docstring (``EXEMPT``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "architectures", "datasets")
MAX_MODULE, MAX_FUNCTION = 400, 60
EXEMPT = "may exceed the size limits because"  # the phrase a module's docstring uses to explain why it must


def sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def exempt(tree: ast.Module) -> bool:
    return EXEMPT in (ast.get_docstring(tree) or "")


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_and_function_sizes(path):
    text = path.read_text()
    tree = ast.parse(text)
    if exempt(tree):
        return
    assert len(text.splitlines()) <= MAX_MODULE, f"{path.name}: {len(text.splitlines())} lines"
    long = [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION]
    assert not long, f"{path.name}: functions over {MAX_FUNCTION} lines: {long}"


def test_the_check_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION))
    tree = ast.parse(f"def f():\n{body}\n")
    lengths = [n.end_lineno - n.lineno + 1 for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    assert lengths == [MAX_FUNCTION + 1] and not exempt(tree)
