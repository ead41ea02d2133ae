"""Names, files and numbers from users are data (issue 27): a hostile user's table, spec, store and predict input.

A label (a column of the user's table, so a task and a unit) named to escape the results folder, to be read as a
glob, or to inject HTML; a study or dataset name with the same characters; noisy top-k gates in a population; a
gate_top_k range against an n_experts range; ±inf and text in numeric features, in training and in ``bench
predict``; a full disk while a model file is written; a journal line cut short in the middle of the file; a resumed
run's progress counts; a 5 s run's wall time; ``--study`` naming a directory. Each is refused in one line or handled,
never a traceback, never a file outside the study's folders.
"""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
import torch
from test_bad_input import BASE  # the same tiny MMoE study on synthetic data

from bench.cli import main
from bench.paths import component, name_of
from bench.results import leaderboard, store

pytestmark = pytest.mark.usefixtures("one_thread")

COMMON = ["--accelerator", "cpu", "--no-plots", "--wandb", "disabled"]

# labels of the user's table: each is a task, so the unit single_task@<label> and its files
HOSTILE = {
    "dotdot-escape": "../../../../../../ESCAPED",  # issue 27, case 1
    "url-slash": "http://e",  # case 1: one "/" broke the store
    "brackets": "price[usd]",  # case 2: read as a glob, never finished
    "double-star": "a**b",  # a glob too
    "glob-twin": "a?b",  # beside the label "axb", which a glob "a?b" would read as well
    "backslash": "a\\b",
    "dot": ".",
    "dotdot": "..",
    "leading-dot": ".hidden",
    "percent-hex": "x%2F..%2Fy",  # what an encoded name looks like: must stay itself
    "html": "<img src=x onerror=alert(1) x=",  # case 4
    "nul-like-control": "tab\there",
    "ansi-escape": "red\x1b[31mx",  # an ANSI escape sequence: never sent raw to a terminal or a page
}
PLAIN = {"axb": "axb", "y1": "y1", "percent": "growth%", "unicode": "größe", "space": "a b"}
LABELS = {**HOSTILE, **PLAIN}



def toml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a TOML basic string


def hostile_spec(name: str = "h", storage_note: str = "") -> str:
    labels = ", ".join(f"{toml_string(label)} = \"regression\"" for label in LABELS.values())
    return f"""
name = "{name}"
architectures = ["single_task", "mmoe"]
seeds = 2
{storage_note}
[budget]
trials = 1
max_epochs = 1
patience = 1

[pruner]
kind = "none"

[[datasets]]
name = "table"
label = "t"
options = {{ path = "t.csv", labels = {{ {labels} }}, cache = false }}

[search.all]
batch_size = [64]
expert_units = [4]
tower_units = [4]
n_experts = 2
"""


def hostile_table(n: int = 120) -> pl.DataFrame:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    columns = {"x0": x[:, 0].tolist(), "x1": x[:, 1].tolist()}
    for k, label in enumerate(LABELS.values()):
        columns[label] = (x[:, 0] * (k % 3 + 1) + 0.1 * x[:, 1]).tolist()
    return pl.DataFrame(columns)


def cli(cwd: Path, *argv: str) -> int:
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return main(list(argv))
    finally:
        os.chdir(old)


def files_under(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module", params=["journal", "sqlite"])
def hostile(request, tmp_path_factory):
    """A study of the hostile table, run once per storage (the embedded journal, an Optuna database), in a folder
    nested deep enough that "../" six times stays inside the test's own folder."""
    top = tmp_path_factory.mktemp(f"hostile-{request.param}")
    cwd = top.joinpath(*"abcdefgh") / "work"
    cwd.mkdir(parents=True)
    hostile_table().write_csv(cwd / "t.csv")
    (cwd / "h.toml").write_text(hostile_spec())
    url = ["--storage", f"sqlite:///{top / 'optuna.db'}"] if request.param == "sqlite" else []
    before = files_under(top)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = cli(cwd, "run", "--study", "h.toml", *COMMON, "--quiet", *url)
    finally:
        torch.set_num_threads(threads)
    created = files_under(top) - before
    return {"cwd": cwd, "top": top, "code": code, "created": created, "url": url, "root": cwd / "runs" / "h"}


# --- 1, 2: a task name is a path component, never a path; files are read with globbing off ----------------------
@pytest.mark.parametrize("label", [pytest.param(v, id=k) for k, v in LABELS.items()])
def test_a_task_name_stays_inside_the_study_folder(hostile, label):
    assert hostile["code"] == 0
    inside = ("a/b/c/d/e/f/g/h/work/runs/h/", "a/b/c/d/e/f/g/h/work/results/", "optuna.db", ".optuna.db.locks/")
    outside = {p for p in hostile["created"] if not str(p).startswith(inside)}
    assert outside == set(), sorted(map(str, outside))
    root = hostile["root"]
    unit = store.unit_name("single_task", label)
    assert not set("/\\*?[]") & set(unit) and name_of(unit) == f"single_task@{label}"
    for seed in (1, 2):
        for path in (store.stage_path(root, "final", "t", "single_task", label, seed),
                     store.model_path(root, "t", "single_task", label, seed)):
            assert path.is_file(), path
            assert path.parent.parent.parent.parent in (root / "results", root)  # <root>/<kind>/.../t/<unit>/<file>
            assert path.parent.name == unit
    assert store.search_path(root, "t", "single_task", label).parent == root / "results" / "search" / "t"


@pytest.mark.parametrize("label", [pytest.param(v, id=k) for k, v in LABELS.items()])
def test_a_task_name_s_runs_read_back_as_its_own(hostile, label):
    root = hostile["root"]
    rows = store.read(root).filter((pl.col("architecture") == "single_task") & (pl.col("target") == label))
    final = rows.filter(pl.col("stage") == "final")
    assert sorted(final["seed"].unique().to_list()) == [1, 2]
    assert set(final["task"].unique().to_list()) == {label}  # never the rows of "axb" read through a glob "a?b"
    for seed in (1, 2):
        one = store.read_file(store.stage_path(root, "final", "t", "single_task", label, seed))
        assert one is not None and set(one["target"].unique().to_list()) == {label}
    assert rows.filter(pl.col("stage") == "search").height > 0
    assert not [p for p in root.rglob("*") if ".damaged-" in p.name]


def test_a_hostile_study_reruns_as_a_no_op_and_its_leaderboard_builds(hostile, capsys):
    cwd, root = hostile["cwd"], hostile["root"]
    before = {p: p.read_bytes() for p in (root / "results").rglob("*.parquet")}
    capsys.readouterr()
    assert cli(cwd, "run", "--study", "h.toml", *COMMON, *hostile["url"]) == 0
    out = capsys.readouterr().out
    assert "] final seed" not in out and "damaged" not in out, out  # nothing retrained, nothing set aside
    assert {p: p.read_bytes() for p in (root / "results").rglob("*.parquet")} == before
    assert cli(cwd, "leaderboard", "--study", "h", "--no-plots") == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "red\\x1b\\[31mx" in out  # the page printed: the escape shown, not sent


# --- 4: the page: entity escaping inside HTML, markdown escaping in markdown, no live element ---------------------
class Elements(HTMLParser):
    """Every element of a rendered page: (tag, attributes, its text)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict[str, str | None], list[str]]] = []
        self.open: list[int] = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs), []))
        if tag not in ("img", "br", "hr", "input"):
            self.open.append(len(self.found) - 1)

    def handle_endtag(self, tag):
        for i in range(len(self.open) - 1, -1, -1):
            if self.found[self.open[i]][0] == tag:
                del self.open[i:]
                break

    def handle_data(self, data):
        for i in self.open:
            self.found[i][2].append(data)


def rendered(markdown: str) -> list[tuple[str, dict[str, str | None], str]]:
    """The page as a GitHub-like renderer shows it (CommonMark with raw HTML and tables)."""
    from markdown_it import MarkdownIt

    parser = Elements()
    parser.feed(MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown))
    return [(tag, attrs, "".join(text)) for tag, attrs, text in parser.found]


def assert_inert(elements) -> None:
    for tag, attrs, _ in elements:
        assert not any(a.startswith("on") for a in attrs), (tag, attrs)  # no live handler anywhere
        assert not (tag == "img" and attrs.get("src") == "x"), attrs


EVIL = HOSTILE["html"]


@pytest.mark.parametrize("context", ["summary", "table-header", "list-item", "the-whole-page"])
def test_the_page_shows_hostile_names_as_text(hostile, context):
    text = (hostile["cwd"] / "results" / "h.md").read_text()
    elements = rendered(text)
    assert_inert(elements)
    if context == "summary":  # inside <details><summary>: entities, and no backslash shows
        summaries = [t for tag, _, t in elements if tag == "summary"]
        assert f"single_task[{EVIL}]: trial 1" in " ".join(summaries)
        assert "single_task[y1]: trial 1" in " ".join(summaries)
        assert not [s for s in summaries if "\\[" in s or "\\]" in s], summaries  # no markdown escapes in HTML
        assert re.search(r"<summary>single_task\[&lt;img src=x onerror=alert\(1\) x=\]: trial", text)
    elif context == "table-header":
        assert f"{EVIL} mse" in [t for tag, _, t in elements if tag == "th"]
    elif context == "list-item":
        assert any(f"'{EVIL}': 'regression'" in t for tag, _, t in elements if tag == "li")
    else:
        assert EVIL in "".join(t for tag, _, t in elements if tag in ("p", "li", "td", "th", "summary"))


def hand_made():
    from test_leaderboard import META, hand_made_rows

    return hand_made_rows(), META


@pytest.mark.parametrize("where", ["alt-text", "link", "heading-and-cells", "description"])
def test_other_html_contexts_of_the_page_are_inert(where, tmp_path):
    rows, meta = hand_made()
    evil = f"{EVIL} ](x) [a](javascript:alert(1)) *b* | c"
    rows = rows.with_columns(task=pl.when(pl.col("task") == "click").then(pl.lit(evil)).otherwise("task"))
    meta = {**meta, "description": evil}
    path = "toy/%2E.%2Fd1 (1)-metrics.png"  # an encoded file name: its "%", space and parenthesis
    text = leaderboard.render(rows, meta, {"d1": [(evil, path)]})
    elements = rendered(text)
    assert_inert(elements)
    assert not [a for tag, a, _ in elements if tag == "a" and "javascript" in (a.get("href") or "")]
    if where == "alt-text":
        images = [a for tag, a, _ in elements if tag == "img"]
        assert [a["alt"] for a in images] == [evil]
    elif where == "link":
        images = [a for tag, a, _ in elements if tag == "img"]
        from urllib.parse import unquote

        assert [unquote(a["src"]) for a in images] == [path]  # the browser opens the file that was written
    elif where == "heading-and-cells":
        assert f"{evil} auc" in [t for tag, _, t in elements if tag == "th"]
    else:
        assert evil in [t for tag, _, t in elements if tag == "p"]


@pytest.mark.parametrize("task", ["cost $x^$", "$\\alpha$ <b> a_b^c"])
def test_plots_take_a_task_name_as_text_not_mathtext(tmp_path, task):
    """Another markup context: matplotlib reads "$...$" as mathtext, and "$x^$" stopped savefig with a
    ParseException (a traceback from bench run and bench leaderboard)."""
    from bench.results import plots

    rows, meta = hand_made()
    rows = rows.with_columns(task=pl.when(pl.col("task") == "click").then(pl.lit(task)).otherwise("task"))
    plots.leaderboard_plots(rows, meta, tmp_path, "toy")
    assert {"d1-metrics.png", "d1-gain.png", "d1-pareto.png", "d1-gates.png"} <= {
        p.name for p in (tmp_path / "toy").iterdir()}


def test_a_study_json_naming_the_study_with_a_path_writes_inside_the_output(tmp_path):
    """A neighbour of case 1: the store's study.json (data too) names the study "../../x", a dataset label is a
    path: the page and its plots stay in the output folder, and its links open the files written."""
    from urllib.parse import unquote

    rows, meta = hand_made()
    rows = rows.with_columns(dataset=pl.when(pl.col("dataset") == "d1").then(pl.lit("../d1[0]")).otherwise("dataset"),
                             study=pl.lit("../../x"))
    meta = {**meta, "study": "../../x", "datasets": {"../d1[0]": {}, "d2": {}}}
    root = tmp_path / "runs" / "x"
    store.write_atomic(rows, root / "results" / "final" / "d" / "u" / "seed-1.parquet")
    store.write_meta(root, meta)
    out = tmp_path / "deep" / "lb"
    path, text = leaderboard.build(root, out, with_plots=True)
    assert path.parent == out and path.name == f"{component('../../x')}.md"
    written = {p.relative_to(out) for p in out.rglob("*") if p.is_file()}
    assert {p for p in files_under(tmp_path) if not str(p).startswith(("deep/lb/", "runs/x/"))} == set()
    links = [unquote(a["src"]) for tag, a, _ in rendered(text) if tag == "img"]
    assert links and all(Path(link) in written for link in links), (links, written)


# --- names of a study and a dataset: the same characters --------------------------------------------------------
@pytest.mark.parametrize("name", ["../x", "a/b", "x[1]", "..", ".hidden", "a*b", "a\\b", "<b>x</b>"])
@pytest.mark.parametrize("where", ["study", "dataset-label"])
def test_a_hostile_study_or_dataset_name_is_refused_in_one_line(tmp_path, capsys, name, where):
    spec = BASE.replace('name = "m"', f"name = {toml_string(name)}") if where == "study" else \
        BASE.replace('name = "synthetic"', f'name = "synthetic"\nlabel = {toml_string(name)}')
    (tmp_path / "m.toml").write_text(spec)
    capsys.readouterr()
    assert cli(tmp_path, "run", "--study", "m.toml", *COMMON) == 2
    err = one_line(capsys.readouterr().err)
    assert ("study name" if where == "study" else "dataset label") in err
    assert not (tmp_path / "runs").exists() and files_under(tmp_path) == {Path("m.toml")}


@pytest.mark.parametrize("name", ["..", "../runs", "a/../..", "x[1]"])
def test_a_hostile_study_name_on_the_command_line_never_leaves_runs(tmp_path, capsys, name):
    """``bench leaderboard --study NAME`` / ``bench predict --study NAME``: the name is a folder of --runs-dir,
    never a path out of it (a study.json one level up is not this study's)."""
    (tmp_path / "study.json").write_text(json.dumps({"study": "up"}))
    (tmp_path / "runs").mkdir()
    capsys.readouterr()
    code = cli(tmp_path, "leaderboard", "--study", name, "--no-plots", "--quiet")
    err = one_line(capsys.readouterr().err)
    assert code == 2 and ("no stored results" in err or "does not exist" in err), err
    assert not (tmp_path / "leaderboard").exists() and not (tmp_path / "results").exists()


def test_a_name_component_is_reversible_and_safe():
    import random

    rng = random.Random(0)
    alphabet = "ab%/\\*?[].0F4\x00\n\té\x85 {}"
    for name in [*LABELS.values(), *(
            "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))) for _ in range(20_000))]:
        c = component(name)
        assert name_of(c) == name, (name, c)
        assert not set("/\\*?[]\x00\n\t") & set(c) and not c.startswith("."), c
    for plain in ("single_task@y1", "census-group1", "mmoe+gradnorm", "growth%", "größe", "a b", "syn-p0.5"):
        assert component(plain) == plain  # stores of names already safe keep their exact paths


@pytest.mark.parametrize("name", ["", "x" * 300])
def test_a_name_that_cannot_be_a_file_name_is_refused_before_anything_is_written(tmp_path, capsys, name):
    frame = hostile_table().select("x0", "x1", "y1").rename({"y1": name} if name else {"y1": "y1"})
    if not name:  # an empty column name: polars writes and reads it as such
        frame = frame.rename({"y1": ""})
    frame.write_csv(tmp_path / "t.csv")
    label = toml_string(name)
    spec = hostile_spec().split("options = {")[0] + (
        f'options = {{ path = "t.csv", labels = {{ {label} = "regression" }}, cache = false }}\n'
        "[search.all]\nbatch_size = [64]\nexpert_units = [4]\ntower_units = [4]\nn_experts = 2\n")
    (tmp_path / "h.toml").write_text(spec)
    capsys.readouterr()
    assert cli(tmp_path, "run", "--study", "h.toml", *COMMON) == 2
    err = one_line(capsys.readouterr().err)
    assert "task name of dataset t" in err and ("too long" in err or "empty" in err), err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["t[1].csv", "t[1].parquet", "a**b.parquet", "x?.csv"])
def test_a_data_file_named_like_a_glob_is_that_file(tmp_path, name):
    """The user's own table file: a name holding glob characters that exists is read as it is (it was taken for a
    pattern matching nothing, or polars globbed it)."""
    from bench import datasets

    frame = hostile_table(40).select("x0", "x1", "y1")
    (frame.write_parquet if name.endswith(".parquet") else frame.write_csv)(tmp_path / name)
    data = datasets.load("table", path=str(tmp_path / name), labels={"y1": "regression"}, cache=False)
    assert len(data.train) + len(data.val) + len(data.test) == 40 and data.task_names == ["y1"]


# --- 6, 7, 8: one rule for numeric columns in training and in bench predict; predict never writes NaN ----------
def small_table_spec(name: str = "h", seeds: int = 2) -> str:
    """A study of a table with features x0, x1 and one regression label y1 (no hostile name)."""
    return hostile_spec(name).replace("seeds = 2", f"seeds = {seeds}").split("options = {")[0] + (
        'options = { path = "t.csv", labels = { y1 = "regression" }, cache = false }\n'
        "[search.all]\nbatch_size = [64]\nexpert_units = [4]\ntower_units = [4]\nn_experts = 2\n")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """A folder with a trained table study "p" and its saved models, for bench predict."""
    cwd = tmp_path_factory.mktemp("predict")
    hostile_table().select("x0", "x1", "y1").write_csv(cwd / "t.csv")
    (cwd / "p.toml").write_text(small_table_spec("p", seeds=1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert cli(cwd, "run", "--study", "p.toml", *COMMON, "--quiet") == 0
    finally:
        torch.set_num_threads(threads)
    return cwd


def predict(cwd: Path, frame: pl.DataFrame | str, capsys, suffix: str = ".csv") -> tuple[int, str, Path]:
    source = cwd / f"in{suffix}"
    if isinstance(frame, str):
        source.write_text(frame)
    elif suffix == ".csv":
        frame.write_csv(source)
    else:
        frame.write_parquet(source)
    out = cwd / "out.csv"
    out.unlink(missing_ok=True)
    capsys.readouterr()
    code = cli(cwd, "predict", "--study", "p", "--dataset", "t", "--arch", "mmoe", "--input", source.name,
               "--output", "out.csv")
    return code, capsys.readouterr().err, out


@pytest.mark.parametrize(("cell", "message"), [
    ("abc", "in.csv:4: numeric column x0: 'abc' is not a number (a numeric column holds finite numbers; an empty "
            "cell (or NaN) is a missing value, imputed)"),
    ("inf", "in.csv:4: numeric column x0: inf is not a finite number (a numeric column holds finite numbers"),
    ("-inf", "in.csv:4: numeric column x0: -inf is not a finite number"),
])
def test_predict_refuses_what_training_refuses_in_one_line(models, capsys, cell, message):
    frame = hostile_table(6).select("x0", "x1").with_columns(
        x0=pl.Series([str(v) if i != 2 else cell for i, v in enumerate(hostile_table(6)["x0"].to_list())]))
    code, err, out = predict(models, frame, capsys)
    assert code == 2 and message in one_line(err), err
    assert not out.exists()


def test_predict_and_training_state_the_same_rule(models, tmp_path, capsys):
    rule = ("a numeric column holds finite numbers; an empty cell (or NaN) is a missing value, imputed")
    frame = hostile_table(60).select("x0", "x1", "y1").with_columns(
        x0=pl.Series([str(v) for v in hostile_table(60)["x0"].to_list()[:-1]] + ["abc"]))
    frame.write_csv(tmp_path / "t.csv")
    (tmp_path / "h.toml").write_text(small_table_spec())
    capsys.readouterr()
    assert cli(tmp_path, "run", "--study", "h.toml", *COMMON) == 2
    trained = one_line(capsys.readouterr().err)
    _, predicted, _ = predict(models, frame.select("x0", "x1"), capsys)
    assert f"({rule})" in trained and f"({rule})" in one_line(predicted), (trained, predicted)
    assert "t.csv:61: feature x0: 'abc' is not a number" in trained
    assert "in.csv:61: numeric column x0: 'abc' is not a number" in predicted


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_predict_never_writes_nan_silently(models, capsys, suffix):
    """Rows whose inputs overflow the model (finite, far outside the training data) are said, with their count and
    the first of them, and left empty; the other rows are predicted; no NaN is written."""
    frame = hostile_table(8).select("x0", "x1").with_columns(
        x0=pl.Series([1e300 if i in (3, 5) else v for i, v in enumerate(hostile_table(8)["x0"].to_list())]))
    code, err, out = predict(models, frame, capsys, suffix)
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("bench predict:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0] == (f"bench predict: 2 of 8 rows could not be predicted (the model's output is not finite: "
                        f"their inputs lie far outside the training data; the first is data row 4 of in{suffix}): "
                        "their cells are left empty")
    written = pl.read_csv(out)
    assert written.height == 8 and "nan" not in out.read_text().lower()
    empty = written.select(pl.all_horizontal(pl.all().is_null())).to_series().to_list()
    assert empty == [i in (3, 5) for i in range(8)]
    assert written.select(pl.all().is_finite().all()).row(0) == tuple([True] * written.width)


# --- 9: a full disk while a model file is written ----------------------------------------------------------------
def test_a_full_disk_while_saving_a_model_is_one_line_and_leaves_no_temporary_file(tmp_path, capsys):
    """The temporary file of seed 1's model is a link to /dev/full (every write fails with ENOSPC, as on a full
    disk): one line says the model was not saved and why, the run's results still count, nothing is left behind."""
    cwd = tmp_path
    hostile_table().select("x0", "x1", "y1").write_csv(cwd / "t.csv")
    (cwd / "h.toml").write_text(small_table_spec(seeds=1))
    unit = store.model_path(cwd / "runs" / "h", "t", "mmoe", "mean", 1)
    unit.parent.mkdir(parents=True)
    (unit.parent / f".{unit.name}.tmp").symlink_to("/dev/full")
    capsys.readouterr()
    assert cli(cwd, "run", "--study", "h.toml", *COMMON) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    notes = [line for line in out.splitlines() if "model not saved" in line]
    where = unit.relative_to(cwd)  # as the run names it: runs/h/...
    assert notes == [f"[t | mmoe] final seed 1: model not saved ([Errno 28] No space left on device: '{where}')"], notes
    assert not [p for p in (cwd / "runs").rglob("*") if p.name.endswith(".tmp") or p.is_symlink()]
    assert not unit.exists() and store.stage_path(cwd / "runs" / "h", "final", "t", "mmoe", "mean", 1).is_file()


# --- 10: a journal line cut short in the middle of the file ------------------------------------------------------
@pytest.fixture(scope="module")
def journal_study(tmp_path_factory) -> tuple[Path, bytes]:
    cwd = tmp_path_factory.mktemp("journal")
    (cwd / "m.toml").write_text(BASE.replace("trials = 1", "trials = 2"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert cli(cwd, "run", "--study", "m.toml", *COMMON, "--quiet") == 0
    finally:
        torch.set_num_threads(threads)
    return cwd, (cwd / "runs" / "m" / "optuna.journal").read_bytes()


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, -1], ids=["10%", "50%", "90%", "last-brace"])
@pytest.mark.parametrize("line", [2, 5])
def test_a_journal_line_cut_short_mid_file_is_one_line_not_a_traceback(journal_study, tmp_path, capsys, cut, line):
    source, whole = journal_study
    lines = whole.split(b"\n")
    assert len(lines) > line + 1
    keep = len(lines[line - 1]) - 1 if cut == -1 else int(len(lines[line - 1]) * cut)
    lines[line - 1] = lines[line - 1][:keep]  # cut short, its newline kept; the lines after it whole
    cwd = tmp_path
    (cwd / "m.toml").write_text((source / "m.toml").read_text())
    (cwd / "runs" / "m").mkdir(parents=True)
    journal = cwd / "runs" / "m" / "optuna.journal"
    journal.write_bytes(b"\n".join(lines))
    before = journal.read_bytes()
    capsys.readouterr()
    assert cli(cwd, "run", "--study", "m.toml", *COMMON) == 2
    err = one_line(capsys.readouterr().err)
    assert f"optuna.journal:{line}: damaged Optuna journal (not a JSON entry) that cannot be repaired" in err, err
    assert journal.read_bytes() == before


def test_a_damaged_sqlite_storage_is_one_line(tmp_path, capsys):
    """The neighbour of case 10 on another Optuna storage: a database file that is not one."""
    (tmp_path / "m.toml").write_text(BASE)
    (tmp_path / "bad.db").write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)
    capsys.readouterr()
    code = cli(tmp_path, "run", "--study", "m.toml", *COMMON, "--storage", f"sqlite:///{tmp_path / 'bad.db'}")
    err = one_line(capsys.readouterr().err)
    assert code in (1, 2) and "bad.db" in err, err


# --- also seen: a resumed run's counts, a short run's wall time, --study naming a directory, the benchmark -------
def test_a_resumed_run_counts_the_work_done_before(tmp_path, capsys):
    (tmp_path / "m.toml").write_text(BASE)
    assert cli(tmp_path, "run", "--study", "m.toml", *COMMON, "--quiet") == 0
    (tmp_path / "m.toml").write_text(BASE.replace("seeds = 1", "seeds = 2"))
    capsys.readouterr()
    assert cli(tmp_path, "run", "--study", "m.toml", *COMMON) == 0
    counts = re.findall(r"\[(\d+)/(\d+) trials, (\d+)/(\d+) final runs", capsys.readouterr().out)
    assert counts == [("1", "1", "2", "2")], counts  # the trial and seed 1 ran before: not "[0/1 trials, ..."


def test_a_short_run_s_wall_time_is_in_seconds(tmp_path, capsys):
    from bench.results.header import _duration

    assert [_duration(s) for s in (0.2, 5, 89, 90, 150, 3600, 5400)] == [
        "1 s", "5 s", "89 s", "2 min", "2 min", "1 h 00 min", "1 h 30 min"]
    (tmp_path / "m.toml").write_text(BASE)
    assert cli(tmp_path, "run", "--study", "m.toml", *COMMON, "--quiet") == 0
    assert re.search(r"; wall time \d+ s \(first run started", (tmp_path / "results" / "m.md").read_text())


@pytest.mark.parametrize("command", ["run", "leaderboard", "predict"])
def test_study_naming_a_directory_says_so(tmp_path, capsys, command):
    (tmp_path / "runs" / "m").mkdir(parents=True)
    extra = {"run": [*COMMON], "leaderboard": ["--no-plots"],
             "predict": ["--dataset", "d", "--arch", "mmoe", "--input", "x.csv", "--output", "y.csv"]}[command]
    capsys.readouterr()
    assert cli(tmp_path, command, "--study", "runs/m", *extra) == 2
    err = one_line(capsys.readouterr().err)
    assert "study 'runs/m' is a directory, not a study spec" in err and "does not exist" not in err, err


def test_the_throughput_benchmark_s_default_table_runs_every_architecture():
    """``python benchmarks/throughput.py`` stopped at Cross-Stitch: its default table ran the top-k paths too, on
    architectures without gates. Every path of the default table builds every architecture."""
    import importlib.util
    from types import SimpleNamespace

    from bench import architectures

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"
    spec = importlib.util.spec_from_file_location("throughput", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = SimpleNamespace(top_k=2)
    for arch in architectures.available():
        for p in module.MAIN_PATHS:
            architectures.check_options(arch, **module.path_options(p, args))
    gated = [a for a in architectures.available() if "gate_top_k" in architectures.options(a)]
    for arch in gated:
        for p in module.GATE_PATHS:
            architectures.check_options(arch, **module.path_options(p, args))
