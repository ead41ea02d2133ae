"""Bad input, refused before anything is written (issue 18): the bad-spec matrix and the ``table`` matrix. Each
variant exits with status 2 and exactly one line on stderr, no traceback, and leaves the stored study (the whole
runs/ folder) byte for byte as it was."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import polars as pl
import pytest

from bench.cli import main

BASE = """
name = "m"
architectures = ["mmoe"]
seeds = 1

[budget]
trials = 1
max_epochs = 1
patience = 1

[pruner]
kind = "none"

[[datasets]]
name = "synthetic"
options = { n_samples = 200, d = 4 }

[search.all]
batch_size = [64]
expert_units = [4]
tower_units = [4]
n_experts = 2
"""

COMMON = ["--accelerator", "cpu", "--no-plots", "--wandb", "disabled", "--quiet"]


def replaced(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


FIXED = "lr = 0.01\nweight_decay = 0.0\ndropout = 0.0\nexpert_layers = 1\ntower_layers = 1\n"  # no ranges: a grid
# (id, spec text or bytes, a fragment of the one-line message)
SPECS = [
    ("unknown-key", 'colour = "red"\n' + BASE, "unknown key in study spec 'colour'"),
    ("name-chars", replaced('name = "m"', 'name = "a b"'), "study name 'a b' must be"),
    ("name-type", replaced('name = "m"', "name = 3"), "name=3: expected str"),
    ("archs-empty", replaced('architectures = ["mmoe"]', "architectures = []"), "non-empty list"),
    ("archs-type", replaced('architectures = ["mmoe"]', 'architectures = "mmoe"'), "non-empty list"),
    (
        "arch-unknown",
        replaced('architectures = ["mmoe"]', 'architectures = ["mmoe", "nope"]'),
        "unknown architecture 'nope'",
    ),
    ("arch-twice", replaced('architectures = ["mmoe"]', 'architectures = ["mmoe", "mmoe"]'), "twice"),
    ("trials-zero", replaced("trials = 1", "trials = 0"), "trials and max_epochs must be >= 1"),
    ("trials-type", replaced("trials = 1", 'trials = "three"'), "budget.trials='three': expected int"),
    ("epochs-zero", replaced("max_epochs = 1", "max_epochs = 0"), "trials and max_epochs must be >= 1"),
    ("patience-negative", replaced("patience = 1", "patience = -1"), "patience >= 0"),
    ("timeout-zero", replaced("patience = 1", "patience = 1\ntimeout = 0"), "budget.timeout must be > 0"),
    ("budget-key", replaced("patience = 1", "patience = 1\nepochs = 3"), "unknown key in budget 'epochs'"),
    ("seeds-zero", replaced("seeds = 1", "seeds = 0"), "seeds must be between 1 and"),
    ("seeds-1e11", replaced("seeds = 1", "seeds = 100000000000"), "seeds must be between 1 and 1000"),
    ("seeds-float", replaced("seeds = 1", "seeds = 1e11"), "seeds=100000000000.0: expected int"),
    ("repeats-negative", replaced("seeds = 1", "seeds = 1\nrepeats = -1"), "repeats must be between 0"),
    ("objective-unknown", replaced("seeds = 1", 'seeds = 1\nobjective = "y9"'), "unknown objective 'y9'"),
    ("no-datasets", BASE.split("[[datasets]]")[0] + "[search.all]\nbatch_size = [64]\n", "at least one [[datasets]]"),
    ("dataset-unknown", replaced('name = "synthetic"', 'name = "synthetc"'), "unknown dataset 'synthetc'"),
    ("dataset-option", replaced("n_samples = 200", "n_sample = 200"), "'n_sample'"),
    ("dataset-option-type", replaced("n_samples = 200", 'n_samples = "many"'), "expected int"),
    ("n-samples-1e11", replaced("n_samples = 200", "n_samples = 100000000000"), "n_samples=100000000000 with d=4"),
    ("dataset-task", replaced('name = "synthetic"', 'name = "synthetic"\ntasks = ["y9"]'), "unknown task 'y9'"),
    ("dataset-label", replaced('name = "synthetic"', 'name = "synthetic"\nlabel = "a b"'), "dataset label 'a b'"),
    (
        "dataset-twice",
        BASE.replace("[search.all]", '[[datasets]]\nname = "synthetic"\n\n[search.all]'),
        "dataset labels must be distinct",
    ),
    ("search-key", replaced("n_experts = 2", "n_experts = 2\ncolour = [1]"), "unknown search key for mmoe 'colour'"),
    ("search-empty", replaced("expert_units = [4]", "expert_units = []"), "expert_units"),
    ("search-range", replaced("expert_units = [4]", "lr = { low = 0.1, high = 0.01 }\nexpert_units = [4]"), "lr"),
    ("batch-zero", replaced("batch_size = [64]", "batch_size = [0]"), "batch_size"),
    ("lr-1e30", replaced("n_experts = 2", "n_experts = 2\nlr = 1e30"), "lr"),
    ("dropout-1.5", replaced("n_experts = 2", "n_experts = 2\ndropout = 1.5"), "dropout"),
    ("tower-units-zero", replaced("tower_units = [4]", "tower_units = [4, 0]"), "search.mmoe.tower_units = 0: an MLP"),
    ("experts-zero", replaced("n_experts = 2", "n_experts = 0"), "search.mmoe: an extraction level"),
    ("units-1e9", replaced("expert_units = [4]", "expert_units = { low = 4, high = 1000000000 }"),
     "parameters, more than the 1,000,000,000 allowed"),
    ("search-type", replaced("expert_units = [4]", 'expert_units = ["four"]'), "expert_units"),
    ("sampler-kind", replaced("[pruner]", '[sampler]\nkind = "cmaes"\n\n[pruner]'), "unknown sampler 'cmaes'"),
    ("sampler-option", replaced("[pruner]", "[sampler]\nfoo = 1\n\n[pruner]"), "unknown option of sampler tpe 'foo'"),
    (
        "grid-mismatch",
        replaced("[pruner]", '[sampler]\nkind = "grid"\n\n[pruner]').replace(
            "expert_units = [4]", FIXED + "expert_units = [4, 8]"
        ),
        "the grid of mmoe has 4 points but budget.trials = 1",
    ),
    (
        "grid-range",
        replaced("[pruner]", '[sampler]\nkind = "grid"\n\n[pruner]').replace(
            "n_experts = 2", "n_experts = 2\nlr = { low = 0.001, high = 0.01 }"
        ),
        "needs a list of choices",
    ),
    ("pruner-kind", replaced('kind = "none"', 'kind = "sometimes"'), "unknown pruner 'sometimes'"),
    ("final-type", BASE + '\n[final]\npopulation = "maybe"\n', "final.population='maybe': expected bool"),
    ("wandb-mode", 'wandb = "loud"\n' + BASE, "unknown wandb mode 'loud'"),
    (
        "published-dataset",
        BASE + '\n[[published]]\nsource = "x"\ndataset = "nope"\nmetric = "auc"\nvalues = { mmoe = { y1 = 0.9 } }\n',
        "unknown dataset label in published[0] 'nope'",
    ),
    ("repeats-huge", replaced("seeds = 1", "seeds = 1\nrepeats = 100000000000"), "repeats must be between 0"),
    ("replicates-zero", replaced("seeds = 1", "seeds = 1\nreplicates = 0"), "replicates must be between 1 and 100"),
    ("common-draws-type", replaced("[pruner]", "[sampler]\ncommon_draws = 2\n\n[pruner]"),
     "sampler.common_draws=2: expected bool"),
    ("objective-type", replaced("seeds = 1", "seeds = 1\nobjective = 1"), "objective=1: expected str"),
    ("datasets-type", BASE.split("[[datasets]]")[0] + 'datasets = "synthetic"\n', "at least one [[datasets]]"),
    ("dataset-no-name", replaced('name = "synthetic"\n', ""), "datasets[0] needs a name"),
    (
        "tasks-empty",
        replaced('name = "synthetic"', 'name = "synthetic"\ntasks = []'),
        "datasets[0].tasks must be a non-empty list",
    ),
    ("search-section", BASE + "\n[search.nope]\nlr = 0.1\n", "unknown key in search 'nope'"),
    (
        "pruner-option",
        replaced('kind = "none"', 'kind = "median"\nn_warmup_steps = "x"'),
        "pruner.n_warmup_steps='x': expected int",
    ),
    ("invalid-toml", BASE + "\n[budget\n", "invalid TOML"),
    # issue 27, case 5: gate_top_k checked against the space as it is sampled, not against n_experts' default
    (
        "top-k-above-sampled-experts",
        replaced("n_experts = 2", "n_experts = { low = 2, high = 8 }\ngate_top_k = [0, 4]"),
        "search.mmoe.n_experts = 2 with gate_top_k = 4 (its highest searched value): gate_top_k must be 0 (dense) "
        "or 1..2",
    ),
    (
        "top-k-range-above-experts-choices",
        replaced("n_experts = 2", "n_experts = [3, 6]\ngate_top_k = { low = 0, high = 5 }"),
        "gate_top_k must be 0 (dense) or 1..3",
    ),
    (
        "top-k-above-sampled-cgc-experts",
        replaced('architectures = ["mmoe"]', 'architectures = ["cgc"]').replace(
            "n_experts = 2", "n_shared = { low = 1, high = 3 }\nn_specific = [1, 2]\ngate_top_k = [0, 4]"),
        "search.cgc.n_shared = 1 with gate_top_k = 4 (its highest searched value): gate_top_k must be 0 (dense) or "
        "1..3 (the experts one task's gate weighs: n_shared + n_specific = 1 + 2), got 4",
    ),
    (
        "top-k-above-sampled-ple-experts",
        replaced('architectures = ["mmoe"]', 'architectures = ["ple"]').replace(
            "n_experts = 2", "n_levels = [1, 2]\nn_shared = [1, 2]\nn_specific = 1\ngate_top_k = 3"),
        "gate_top_k must be 0 (dense) or 1..2",
    ),
    (
        "sampled-model-too-large",
        replaced("expert_units = [4]", "expert_units = { low = 4, high = 40000 }\nexpert_layers = [1, 2]"),
        "parameters, more than the 1,000,000,000 allowed",
    ),
    ("binary-file", bytes(range(256)) * 4, "not a study spec (not UTF-8 text"),
]


def tree_hash(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    """A folder with a complete stored study named like every variant ("m"), so refusals have something to
    leave untouched."""
    import torch

    cwd = tmp_path_factory.mktemp("store")
    (cwd / "m.toml").write_text(BASE)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run(cwd, "m.toml") == 0
    finally:
        torch.set_num_threads(threads)
    return cwd


def run(cwd: Path, spec: str) -> int:
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return main(["run", "--study", spec, *COMMON])
    finally:
        os.chdir(old)


def refused(cwd: Path, spec: str, capsys, needle: str) -> None:
    before = tree_hash(cwd / "runs")
    capsys.readouterr()
    code = run(cwd, spec)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.startswith("bench run: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert needle in err and "changes results" not in err, err  # refused as bad input, not as another study
    assert tree_hash(cwd / "runs") == before


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(("text", "needle"), [pytest.param(t, n, id=i) for i, t, n in SPECS])
def test_bad_spec_is_refused_in_one_line(stored, tmp_path, capsys, text, needle):
    path = tmp_path / "m.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    refused(stored, str(path), capsys, needle)


def test_the_matrix_has_the_issue_s_34_variants_and_more():
    assert len(SPECS) >= 34 and len({i for i, _, _ in SPECS}) == len(SPECS)


# --- the table matrix ----------------------------------------------------------------------------------------
def good_frame(n: int = 60) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "x": [float(i % 7) for i in range(n)],
            "c": [["a", "b", "c"][i % 3] for i in range(n)],
            "click": [i % 2 for i in range(n)],
            "price": [i / 10 for i in range(n)],
            "segment": [["u", "v", "w"][i % 3] for i in range(n)],
            "fold": [["train", "train", "train", "valid", "test"][i % 5] for i in range(n)],
        }
    )


def csv_with(**columns) -> str:
    return good_frame().with_columns(**{k: pl.Series(v) for k, v in columns.items()}).write_csv()


N = 60
LABELS = '{ click = "binary", price = "regression" }'
# (id, file content (str or bytes) or None for no file, table options in TOML, a fragment of the message)
TABLES = [
    ("header-only", "x,c,click,price\n", f"labels = {LABELS}", "no data rows (only a header line)"),
    ("empty-file", "", f"labels = {LABELS}", "t.csv"),
    (
        "constant-binary",
        csv_with(click=[1] * N),
        f"labels = {LABELS}",
        "label click is binary but every row holds the same value (1)",
    ),
    (
        "inf-regression",
        csv_with(price=[1.0] * (N - 1) + [float("inf")]),
        f"labels = {LABELS}",
        "label price is a regression label but inf is not a finite number",
    ),
    ("huge-regression", csv_with(price=[1.0] * (N - 1) + [1e39]), f"labels = {LABELS}", "beyond the float32 range"),
    # (a NaN or empty label is a missing label, trained around: tests/test_missing_labels.py; a label with no value
    # in a whole split is refused: tests/test_datasets_table.py)
    ("empty-label", csv_with(click=[None] * N), f"labels = {LABELS}", "label click has no value in any row"),
    (
        "binary-three-values",
        csv_with(click=[0, 1, 2] * (N // 3)),
        f"labels = {LABELS}",
        "label click is binary but holds values 0, 1, 2",
    ),
    ("regression-text", csv_with(price=["cheap"] * N), f"labels = {LABELS}", "'cheap' is not a number"),
    (
        "multiclass-one-class",
        csv_with(segment=["u"] * N),
        'labels = { segment = "multiclass" }',
        "label segment is multiclass but holds only 1 distinct value",
    ),
    ("unknown-label-column", csv_with(), 'labels = { clicks = "binary" }', "unknown label column"),
    ("unknown-label-kind", csv_with(), 'labels = { click = "ordinal" }', "unknown kind of label click 'ordinal'"),
    ("no-labels", csv_with(), "labels = {}", "no labels given"),
    ("malformed-row", good_frame().write_csv() + "1,a,0\n", f"labels = {LABELS}", "malformed row: 3 fields"),
    ("binary-garbage", bytes(range(256)) * 8, f"labels = {LABELS}", "t.csv"),
    ("file-missing", None, f"labels = {LABELS}", "file not found"),
    (
        "split-value",
        csv_with(fold=["train", "later"] * (N // 2)),
        f'labels = {LABELS}, split_column = "fold"',
        "unknown value of split column fold",
    ),
    (
        "split-empty",
        csv_with(fold=["train", "valid"] * (N // 2)),
        f'labels = {LABELS}, split_column = "fold"',
        "the test split is empty",
    ),
    ("split-column-missing", csv_with(), f'labels = {LABELS}, split_column = "part"', "unknown split column"),
    (
        "feature-is-label",
        csv_with(),
        f'labels = {LABELS}, features = ["x", "click"]',
        "label column click cannot also be a feature",
    ),
    ("no-features", good_frame().select("click", "price").write_csv(), f"labels = {LABELS}", "no feature columns left"),
    (
        "numeric-text",
        csv_with(x=["1.5", "many"] * (N // 2)),
        f'labels = {LABELS}, numeric = ["x"]',
        "numeric feature x: 'many' is not a number",
    ),
    (
        "reserved-column",
        good_frame().rename({"x": "__line"}).write_csv(),
        f"labels = {LABELS}",
        "column name '__line' is reserved",
    ),
    ("fractions", csv_with(), f"labels = {LABELS}, val_fraction = 0.7, test_fraction = 0.5", "fraction"),
    ("separator", csv_with(), f'labels = {LABELS}, separator = ";;"', "separator must be one character"),
    # issue 27, case 6: ±inf in a feature, refused naming the column (NaN is a missing value, imputed)
    (
        "inf-feature",
        csv_with(x=[1.0] * (N - 1) + [float("inf")]),
        f"labels = {LABELS}",
        "t.csv:61: numeric feature x: inf is not a finite number (a numeric column holds finite numbers",
    ),
    ("minus-inf-feature", csv_with(x=[float("-inf")] + [1.0] * (N - 1)), f"labels = {LABELS}",
     "t.csv:2: numeric feature x: -inf is not a finite number"),
    ("inf-listed-numeric", csv_with(x=["2", "inf"] * (N // 2)), f'labels = {LABELS}, numeric = ["x"]',
     "t.csv:3: numeric feature x: inf is not a finite number"),
    # case 7: text among numbers is a numeric column with a bad cell (as bench predict says), not a categorical one
    (
        "text-in-numbers",
        csv_with(x=["1.5"] * (N - 1) + ["abc"]),
        f"labels = {LABELS}",
        "t.csv:61: feature x: 'abc' is not a number, while 59 of its 60 values are (a numeric column holds finite "
        "numbers; an empty cell (or NaN) is a missing value, imputed); fix the cell, or list x under categorical",
    ),
    ("text-in-numbers-padded", csv_with(x=[" 7 "] * (N // 2) + ["7 kg"] * (N // 2)), f"labels = {LABELS}",
     "t.csv:32: feature x: '7 kg' is not a number, while 30 of its 60 values are"),
]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(("content", "options", "needle"), [pytest.param(c, o, n, id=i) for i, c, o, n in TABLES])
def test_bad_table_is_refused_in_one_line(stored, tmp_path, capsys, monkeypatch, content, options, needle):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    csv = tmp_path / "t.csv"
    if isinstance(content, bytes):
        csv.write_bytes(content)
    elif content is not None:
        csv.write_text(content)
    spec = BASE.replace(
        'name = "synthetic"\noptions = { n_samples = 200, d = 4 }',
        f'name = "table"\noptions = {{ path = "{csv}", {options} }}',
    )
    (tmp_path / "m.toml").write_text(spec)
    refused(stored, str(tmp_path / "m.toml"), capsys, needle)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


@pytest.mark.usefixtures("one_thread")
def test_a_bad_BENCH_GEMM_is_refused_in_one_line(stored, capsys, monkeypatch):
    from bench.architectures import gemm

    monkeypatch.setenv("BENCH_GEMM", "mkl")
    monkeypatch.setattr(gemm, "_state", None)  # decided again, from the setting above
    refused(stored, "m.toml", capsys, "unknown BENCH_GEMM setting 'mkl'; valid choices: auto, blas")
