"""A newcomer's first ten minutes (issue 28): the README is a short front door whose commands work as written, the
documentation covers every command-line option and names none that does not exist, a first run leaves the checkout
clean, CI installs what the README says, and the CLI behaves in a pipe."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import build_parser, main
from bench.commands.list import WHAT

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def options() -> dict[str, set[str]]:
    """Every option each ``bench`` subcommand shows in its ``--help`` (``-h``/``--help`` aside), and the top level's."""
    parser, _ = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = {"bench": {s for a in parser._actions for s in a.option_strings if s.startswith("--")} - {"--help"}}
    for name, p in sub.choices.items():
        found[name] = {s for a in p._actions if a.help != argparse.SUPPRESS for s in a.option_strings
                       if s.startswith("--")} - {"--help"}
    return found


def documented() -> str:
    return "\n".join(p.read_text() for p in [README, *DOCS])


def code_blocks(text: str, lang: str = "bash") -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_every_option_in_help_is_documented():
    text = documented()
    shown = set(FLAG.findall(text))
    missing = {f"bench {cmd} {flag}" for cmd, flags in options().items() for flag in flags if flag not in shown}
    assert not missing, f"options in --help but in neither README.md nor docs/: {sorted(missing)}"


def test_every_documented_flag_exists():
    ours = set().union(*options().values())
    # other programs' flags the documentation shows: pip's, and the benchmark scripts' own
    scripts = {f for p in (ROOT / "benchmarks").glob("*.py")
               for f in re.findall(r"add_argument\(\s*\"(--[a-z0-9-]+)\"", p.read_text())}
    unknown = set(FLAG.findall(documented())) - ours - scripts - {"--index-url"}
    assert not unknown, f"flags in the documentation that no command has: {sorted(unknown)}"


def test_readme_is_a_short_front_door():
    text = README.read_text()
    lines = text.splitlines()
    assert len(lines) <= 150
    assert lines[0] == "# mtl-bench" and "which multi-task architecture should I use" in lines[2]
    for word in ("study", "unit", "MTL gain", "Δm", "decision"):  # the glossary defines each before the reference
        assert f"- **{word}**:" in text
    assert_excerpt_is_the_published_page(text)
    # every page of docs/ is linked, and every relative link of the README and docs/ resolves, anchors included
    assert {p.name for p in DOCS} <= set(re.findall(r"\(docs/([\w-]+\.md)", text))
    for page in [README, *DOCS]:
        for target, anchor in re.findall(r"\]\((?!https?:)([^)#\s]*)(?:#([^)\s]+))?\)", page.read_text()):
            path = (page.parent / target).resolve() if target else page
            assert path.exists(), f"{page.name}: broken link {target}"
            if anchor:
                assert anchor in anchors(path), f"{page.name}: no heading #{anchor} in {path.name}"


def table(lines: list[str]) -> list[dict[str, str]]:
    cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    return [dict(zip(cells[0], row, strict=True)) for row in cells[2:]]


def assert_excerpt_is_the_published_page(readme: str) -> None:
    """The README's leaderboard excerpt is the published quickstart page's table, cell for cell (regenerate the
    excerpt when the page is republished)."""
    section = readme.split("## What you get", 1)[1].split("\n## ", 1)[0]
    excerpt = table([ln for ln in section.splitlines() if ln.startswith("|")])
    page = (ROOT / "leaderboard" / "quickstart.md").read_text()
    blocks = page.split("## synthetic\n", 1)[1].strip().split("\n\n")
    published = {r["architecture"]: r for r in table(next(b for b in blocks if b.startswith("|")).splitlines())}
    assert len(excerpt) == len(published) >= 7
    for row in excerpt:
        mine = published[row["architecture"]]
        assert {k: mine.get(k) for k in row} == row, "README excerpt differs from leaderboard/quickstart.md"


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    heads = re.findall(r"^#+ (.+)$", path.read_text(), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


def test_the_install_command_is_one_copyable_line_in_the_right_order():
    (quickstart, tests, *_) = code_blocks(README.read_text())
    steps = [s.strip() for s in quickstart.strip().split("&&")]
    assert steps == ["python3 -m venv .venv", ". .venv/bin/activate", f"pip install torch --index-url {CPU_INDEX}",
                     "pip install -e '.[dev]'", "bench run --study quickstart"]
    assert tests.strip() == "pytest -q"


def test_ci_installs_the_readme_torch_and_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    (_, tests, *_) = code_blocks(README.read_text())
    assert ci.rstrip().splitlines()[-1] == tests.strip()  # exactly the README's test command, last
    assert f"CPU_INDEX={CPU_INDEX}" in ci and 'pip install -q torch --index-url "$CPU_INDEX"' in ci
    assert "pip install -q torch==2.13.0" in ci  # the fallback, only when the index cannot be reached
    assert ci.index("torch --index-url") < ci.index("-e '.[dev]'") < ci.index("pytest -q")


@pytest.mark.skipif(shutil.which("git") is None, reason="no git")
def test_a_first_run_leaves_the_checkout_clean(tmp_path, monkeypatch):
    """What a run writes (runs/, results/, W&B's offline runs) is ignored by the project's .gitignore."""
    shutil.copy(ROOT / ".gitignore", tmp_path / ".gitignore")
    (tmp_path / "tiny.toml").write_text(
        'name = "tiny"\narchitectures = ["single_task", "shared_bottom"]\nseeds = 1\n'
        '[budget]\ntrials = 1\nmax_epochs = 2\npatience = 1\n[pruner]\nkind = "none"\n'
        '[[datasets]]\nname = "synthetic"\noptions = { n_samples = 300, d = 8 }\n[search.all]\nbatch_size = [128]\n')

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True, text=True,
                              env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                                   "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(tmp_path)}).stdout

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "checkout")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--study", "tiny.toml", "--accelerator", "cpu", "--wandb", "disabled", "--quiet"]) == 0
    assert (tmp_path / "results" / "tiny.md").is_file() and not (tmp_path / "leaderboard").exists()
    assert git("status", "--porcelain", "--untracked-files=all") == ""


def test_list_in_a_pipe_that_closes_early_ends_quietly():
    # `bench list studies | head -1`: the reader is gone before the output is written
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "list", "studies"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""  # no BrokenPipeError traceback, nothing at all


def test_list_help_names_its_parts(capsys):
    with pytest.raises(SystemExit):
        main(["list", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "{" + ",".join(WHAT) + "}" in text and "every part" in text and "three" not in text


def test_every_shipped_study_is_in_the_docs():
    listed = set(re.findall(r"^\| `([\w-]+)` \|", (ROOT / "docs" / "studies.md").read_text(), flags=re.M))
    assert {p.stem for p in (ROOT / "studies").glob("*.toml")} <= listed
