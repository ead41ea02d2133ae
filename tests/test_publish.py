"""Running does not overwrite what is published; publishing is its own step and ships the raw rows.

``bench run`` writes its page to ``results/<study>.md``; ``bench publish`` copies page, plots and the rows the
page is built from into ``leaderboard/<study>/``; ``bench leaderboard --from leaderboard/<study>/`` rebuilds the
page byte-identical with no ``runs/``."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from bench.cli import main
from bench.results import store
from bench.results.publish import read_published

# the single-task baseline (a unit per task) and MMoE, one trial each, two seeds: a page with gains, gates and plots
SPEC = ('name = "pub"\narchitectures = ["single_task", "mmoe"]\nseeds = 2\n'
        '[budget]\ntrials = 1\nmax_epochs = 2\npatience = 1\n[pruner]\nkind = "none"\n'
        '[[datasets]]\nname = "synthetic"\nlabel = "syn"\noptions = { n_samples = 300, d = 8 }\n'
        '[search.all]\nbatch_size = [128]\nexpert_units = [8]\ntower_units = [8]\nn_experts = 2\n')


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A tiny study run and published in a fresh folder: (folder, results page, published page)."""
    tmp = tmp_path_factory.mktemp("pub")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        (tmp / "pub.toml").write_text(SPEC)
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            assert main(["run", "--study", "pub.toml", "--accelerator", "cpu", "--wandb", "disabled"]) == 0
        (tmp / "log.txt").write_text(log.getvalue())
        assert not (tmp / "leaderboard").exists()  # a run never writes the published folder
        ran = (tmp / "results" / "pub.md").read_text()
        assert main(["publish", "--study", "pub", "--quiet"]) == 0
    return tmp, ran, (tmp / "leaderboard" / "pub.md").read_text()


def test_run_writes_results_and_publish_copies_page_plots_and_rows(published):
    tmp, ran, page = published
    folder = tmp / "leaderboard" / "pub"
    assert page == ran  # the published page is the one the run wrote, built from the published rows
    assert {p.name for p in (tmp / "results" / "pub").glob("*.png")} == {p.name for p in folder.glob("*.png")} != set()
    rows, meta = read_published(folder)
    assert rows.equals(store.read(tmp / "runs" / "pub"))  # every row of the store, in its order
    assert set(rows["stage"].unique()) == {"search", "final"} and rows["versions"].null_count() == 0
    assert meta == store.read_meta(tmp / "runs" / "pub")
    assert (folder / "spec.toml").read_text() == SPEC
    # the header states the command that ran, not a made-up one
    assert "- command: `bench run --study pub.toml --accelerator cpu --wandb disabled`; wall time" in page


def test_page_explains_itself_and_speaks_as_the_logs_do(published):
    tmp, _, page = published
    lines = page.splitlines()
    assert lines[0] == "# Leaderboard: pub" and lines[2].startswith("Which multi-task architecture should you use")
    assert lines[2].count(". ") + lines[2].count("? ") == 1  # two sentences
    assert page.index("Cells: test split") < page.index("## syn") < page.index("![syn: test metric")  # legend first
    # each unit's selected configuration: the trial as the log numbers it, the objective in its own orientation
    rows = store.read(tmp / "runs" / "pub")
    log = (tmp / "log.txt").read_text()
    for task in ("y1", "y2"):
        final = rows.filter((pl.col("stage") == "final") & (pl.col("target") == task))
        trial = final["trial"][0]
        objective = rows.filter((pl.col("stage") == "search") & (pl.col("target") == task)
                                & (pl.col("trial") == trial) & (pl.col("metric") == "objective"))["value"].item()
        assert objective < 0  # stored as Optuna maximised it: -MSE
        assert f"single_task[{task}]: trial {trial + 1}, val mse ({task}) {-objective:.4f}, config" in page
        assert f"[syn | single_task[{task}]] trial {trial + 1}/1 complete val mse ({task}) " in log
    # one spelling of a unit in every user-facing line: single_task[y1], never single_task@y1 or .../single_task/y1
    assert "single_task@" not in log + page and "single_task/" not in log + page


def test_leaderboard_from_published_rows_is_byte_identical_without_runs(published, tmp_path, monkeypatch):
    tmp, _, page = published
    copy = tmp_path / "copy"
    shutil.copytree(tmp / "leaderboard", copy / "leaderboard")  # as a fresh clone has it: no runs/, no results/
    monkeypatch.chdir(copy)
    assert main(["leaderboard", "--from", "leaderboard/pub/", "--quiet"]) == 0
    assert (copy / "results" / "pub.md").read_bytes() == page.encode()
    assert main(["leaderboard", "--from", "leaderboard/pub", "--output", "leaderboard", "--quiet"]) == 0
    assert (copy / "leaderboard" / "pub.md").read_bytes() == page.encode()  # rebuilt in place: the same bytes


def test_bad_published_folders_are_one_line(published, tmp_path, monkeypatch, capsys):
    tmp, _, _ = published
    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard", "--from", str(tmp_path)]) == 2
    assert "is not a published study folder: no study.json or rows.parquet" in capsys.readouterr().err
    shutil.copytree(tmp / "leaderboard" / "pub", tmp_path / "evil")
    meta = json.loads((tmp_path / "evil" / "study.json").read_text())
    (tmp_path / "evil" / "study.json").write_text(json.dumps({**meta, "study": "../../escape"}))
    assert main(["leaderboard", "--from", str(tmp_path / "evil")]) == 2
    assert "'../../escape' is not a valid study or dataset name" in capsys.readouterr().err
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").glob("*.md"))
    (tmp_path / "evil" / "study.json").write_text(json.dumps(meta))  # the names of the rows are checked too
    rows = pl.read_parquet(tmp_path / "evil" / "rows.parquet").with_columns(dataset=pl.lit("../up"))
    rows.write_parquet(tmp_path / "evil" / "rows.parquet")
    assert main(["leaderboard", "--from", str(tmp_path / "evil")]) == 2
    assert "'../up' is not a valid study or dataset name" in capsys.readouterr().err
    assert not (tmp_path / "up-metrics.png").exists()
    with pytest.raises(SystemExit) as exit_:  # one source only (argparse's own one-line error, status 2)
        main(["leaderboard", "--study", "pub", "--from", str(tmp_path / "evil")])
    assert exit_.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_publish_refuses_a_study_without_results(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["publish", "--study", "nothing"]) == 2
    assert "no stored results for study 'nothing'" in capsys.readouterr().err
    assert not (tmp_path / "leaderboard").exists()


def test_rows_published_before_a_column_existed_read_as_nulls(published, tmp_path):
    tmp, _, _ = published
    shutil.copytree(tmp / "leaderboard" / "pub", tmp_path / "old")
    rows = pl.read_parquet(tmp_path / "old" / "rows.parquet").drop("replicate")
    rows.write_parquet(tmp_path / "old" / "rows.parquet")
    again, _ = read_published(tmp_path / "old")
    assert again.columns == list(store.SCHEMA) and again["replicate"].null_count() == again.height


def test_the_published_quickstart_rebuilds_byte_identical_from_its_rows(tmp_path, monkeypatch):
    """Issue 25: `bench leaderboard --from leaderboard/quickstart/` reproduces the shipped page, with no runs/."""
    published = Path(__file__).resolve().parents[1] / "leaderboard"
    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard", "--from", str(published / "quickstart"), "--quiet"]) == 0
    assert (tmp_path / "results" / "quickstart.md").read_bytes() == (published / "quickstart.md").read_bytes()
    assert sorted(p.name for p in (tmp_path / "results" / "quickstart").iterdir()) == \
        sorted(p.name for p in (published / "quickstart").glob("*.png"))
