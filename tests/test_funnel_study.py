"""studies/funnel.toml made tiny, end to end: the entire-space metrics stored by final runs and shown in their own
leaderboard section."""

from pathlib import Path

import polars as pl

from bench.cli import main
from bench.results import store

SPEC = Path(__file__).resolve().parents[1] / "studies" / "funnel.toml"


def tiny_spec(tmp_path: Path) -> Path:
    """The shipped spec with fewer rows, trials, epochs, seeds and only its first two datasets (at a click rate tiny
    data can validate on); nothing else changed."""
    text = SPEC.read_text()
    third = text.index("[[datasets]]", text.index('label = "rho0.8-ctr0.05"'))
    text = text[:third] + text[text.index("[search.all]"):]
    for old, new in (('name = "funnel"', 'name = "tiny-funnel"'), ("seeds = 3", "seeds = 2"),
                     ("trials = 10", "trials = 2"), ("max_epochs = 15", "max_epochs = 2"),
                     ("n_samples = 20000", "n_samples = 1500"), ("click_rate = 0.05", "click_rate = 0.4")):
        assert old in text
        text = text.replace(old, new)
    spec = tmp_path / "tiny-funnel.toml"
    spec.write_text(text)
    return spec


def test_tiny_funnel_study_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tiny_spec(tmp_path)
    assert main(["run", "--study", str(spec), "--accelerator", "cpu", "--wandb", "disabled"]) == 0
    rows = store.read(tmp_path / "runs" / "tiny-funnel").filter(pl.col("stage") == "final")
    entire = rows.filter(pl.col("metric").is_in(["auc_entire", "calib_entire"]))
    # every unit predicting the CVR has its entire-space scores, per seed, over the 300 test impressions
    cvr = entire.filter(pl.col("task") == "cvr")
    assert set(cvr["architecture"].unique()) == {"esmm", "aitm", "mmoe", "ple", "shared_bottom", "single_task"}
    assert cvr.height == 2 * 6 * 2 * 2  # datasets x units x seeds x metrics
    assert set(cvr["observed"].unique()) == {300} and cvr["value"].is_finite().all()
    clicked = rows.filter((pl.col("task") == "cvr") & (pl.col("metric") == "auc") & (pl.col("split") == "test"))
    assert (clicked["observed"] < 300).all()  # the usual CVR: the clicked test rows only
    markdown = (tmp_path / "leaderboard" / "tiny-funnel.md").read_text()
    assert markdown.count("Entire impression space, task cvr") == 2
    assert "| architecture   | AUC, observed rows" in markdown and "nan" not in markdown
