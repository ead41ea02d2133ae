"""Learning curves (store rows of kind "curve") and what each replicate's search selected: stored by a real run
(population and sequential paths), left out of every metric reader, published beside the rows and rebuilt
byte-identical; the selections table from hand-made rows; findings rendered as inert text."""

from __future__ import annotations

import json
import math

import polars as pl
import pytest
from test_leaderboard import META, PROV, hand_made_rows
from test_repeats import SPEC as REPEAT_SPEC

from bench.cli import main
from bench.errors import UserError
from bench.results import curves, publish, store
from bench.results import leaderboard as lb

# test_repeats' tiny study, with a single-task baseline and two final seeds
SPEC = REPEAT_SPEC.replace('name = "rep"', 'name = "cur"').replace(
    'architectures = ["mmoe"]', 'architectures = ["mmoe", "single_task"]').replace("seeds = 1", "seeds = 2")


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """One tiny study run through the CLI (final seeds as a population), then published."""
    tmp = tmp_path_factory.mktemp("cur")
    (tmp / "studies").mkdir()
    (tmp / "studies" / "cur.toml").write_text(SPEC)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        assert main(["run", "--study", "cur", "--accelerator", "cpu", "--wandb", "disabled", "--quiet",
                     "--repeats", "2"]) == 0
        assert main(["publish", "--study", "cur", "--quiet"]) == 0
    return tmp


def test_runs_store_their_curves(ran):
    root = ran / "runs" / "cur"
    rows, cur = store.read(root), store.read_curves(root)
    assert rows["epoch"].null_count() == rows.height and "curve" not in rows["kind"].to_list()  # readers see none
    assert cur.columns == store.CURVE_COLUMNS and cur.height
    runs = rows.filter(pl.col("stage").is_in(["final", "repeat"]) & pl.col("draw").is_null()
                       & (pl.col("split") == "test") & (pl.col("kind") != "diagnostic"))
    keys = ["architecture", "target", "stage", "seed"]
    # every final and repeated run has a curve; its epochs are 0..epochs-1 of the run's ``epochs``
    assert set(runs.select(keys).unique().rows()) == set(cur.select(keys).unique().rows())
    epochs = dict(((r["architecture"], r["target"], r["stage"], r["seed"]), r["epochs"])
                  for r in runs.iter_rows(named=True))
    for key, part in cur.filter(pl.col("metric") == "loss").group_by(keys):
        assert part["split"].unique().to_list() == ["train"]
        assert sorted(part["epoch"].to_list()) == list(range(epochs[key]))
        assert all(math.isfinite(v) and v > 0 for v in part["value"])
    # the kept epoch's validation MSE is the run's stored validation MSE (the weights it kept)
    best = curves.best_epochs(cur)
    val = rows.filter(pl.col("stage").is_in(["final", "repeat"]) & (pl.col("split") == "val")
                      & (pl.col("metric") == "mse"))
    checked = 0
    for r in best.iter_rows(named=True):
        at = cur.filter((pl.col("architecture") == r["architecture"]) & (pl.col("target") == r["target"])
                        & (pl.col("stage") == r["stage"]) & (pl.col("seed") == r["seed"]) & (pl.col("split") == "val")
                        & (pl.col("metric") == "mse") & (pl.col("epoch") == r["best_epoch"]))
        for c in at.iter_rows(named=True):
            stored = val.filter((pl.col("architecture") == r["architecture"]) & (pl.col("target") == r["target"])
                                & (pl.col("stage") == r["stage"]) & (pl.col("seed") == r["seed"])
                                & (pl.col("task") == c["task"]))["value"].to_list()
            assert stored == [pytest.approx(c["value"], rel=1e-9)]
            checked += 1
    assert checked >= 2 * (2 + 2) + 2 * 2  # mmoe: 2 tasks x 4 runs; each single-task unit: its task x 4 runs


def test_sequential_path_stores_the_same_curve_rows():
    from bench import datasets
    from bench.study.final import final_stage, population_final_stage

    data = datasets.load("synthetic", n_samples=240, d=6, p=0.5)
    config = {"batch_size": 48, "expert_units": 8, "tower_units": 8, "n_experts": 2, "max_epochs": 3, "patience": 3}
    seq, _ = final_stage(data, "mmoe", config, [1], accelerator="cpu")
    pop, _ = population_final_stage(data, "mmoe", config, [1], accelerator="cpu")
    pick = lambda rows: sorted((r["split"], r["task"], r["metric"], r["epoch"]) for r in rows  # noqa: E731
                               if r.get("kind") == store.CURVE)
    assert pick(seq) and pick(seq) == pick(pop)
    assert all(r.get("epoch") is None for r in seq if r.get("kind") != store.CURVE)


def test_published_with_curves_and_rebuilt_identical(ran, tmp_path):
    folder = ran / "leaderboard" / "cur"
    assert (folder / publish.CURVES).is_file()
    page = (ran / "leaderboard" / "cur.md").read_text()
    assert "### syn: learning curves" in page and "## Learning curves" in page and "(cur/curves.png)" in page
    assert (folder / "curves.png").stat().st_size > 0
    # the raw rows hold no curve: they are in curves.parquet
    assert store.read_file(folder / publish.ROWS)["epoch"].null_count() == store.read_file(folder / publish.ROWS).height
    assert main(["leaderboard", "--from", str(folder), "--output", str(tmp_path), "--quiet"]) == 0
    assert (tmp_path / "cur.md").read_text() == page
    assert (tmp_path / "cur" / "curves.png").read_bytes() == (folder / "curves.png").read_bytes()


def test_findings_are_inert_text(ran, tmp_path):
    folder = tmp_path / "cur"
    for f in ran.joinpath("leaderboard", "cur").iterdir():
        (folder / f.name).parent.mkdir(exist_ok=True)
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / publish.FINDINGS).write_text("MMoE's y1 MSE is 0.13.\n\n- a [link](http://x) <script>x</script> | a\n")
    out = tmp_path / "out"
    assert main(["leaderboard", "--from", str(folder), "--output", str(out), "--quiet"]) == 0
    page = (out / "cur.md").read_text()
    tail = page.split("## Findings\n", 1)[1]
    assert "MMoE's y1 MSE is 0.13." in tail
    assert "- a \\[link\\](http://x) \\<script\\>x\\</script\\> \\| a" in tail
    assert "<script>" not in page
    # a damaged curves file: one line, exit 2
    (folder / publish.CURVES).write_bytes(b"not parquet")
    with pytest.raises(UserError, match="curves.parquet is damaged"):
        publish.read_extras(folder)


def test_selections_table_names_the_keys_replicates_disagree_on():
    rows = hand_made_rows().filter((pl.col("dataset") == "d1") & (pl.col("stage") == "final"))
    base = rows.filter(pl.col("architecture") == "mmoe").with_columns(
        config=pl.lit(json.dumps({"lr": 0.001, "dropout": 0.1, "seed": 1})), replicate=pl.lit(1, pl.Int64))
    other = base.with_columns(config=pl.lit(json.dumps({"lr": 0.01, "dropout": 0.1, "seed": 1})),
                              replicate=pl.lit(2, pl.Int64))
    keys, table = curves.selections(pl.concat([base, other]), "d1")
    assert keys == ["lr"]
    assert {r["replicate"]: r["values"] for r in table.iter_rows(named=True)} == {1: {"lr": 0.001}, 2: {"lr": 0.01}}
    lines = "\n".join(curves.selection_lines(pl.concat([base, other]), "d1"))
    # each cell: the selection, then the replicate's mean test metric over its final seeds (hand-made: click AUC
    # of seeds 1 and 2, the same rows in both replicates)
    click = rows.filter((pl.col("architecture") == "mmoe") & (pl.col("split") == "test") & (pl.col("task") == "click")
                        & (pl.col("metric") == "auc"))["value"].mean()
    assert f"| mmoe   | lr=0.001; click {click:.4f}" in lines and f"| lr=0.01; click {click:.4f}" in lines
    assert lines.startswith("### d1: replicate by replicate")
    # the same selection in every replicate: said once, the means still shown; one replicate: nothing
    same = "\n".join(curves.selection_lines(pl.concat([base, base.with_columns(replicate=pl.lit(2, pl.Int64))]),
                                            "d1"))
    assert "every replicate's search selected the same configuration" in same and f"| click {click:.4f}" in same
    assert curves.selection_lines(base, "d1") == []
    # a unit shows only its own keys on which its replicates disagree: ple agrees on lr and has no n_experts
    ple = rows.filter(pl.col("architecture") == "ple").with_columns(
        config=pl.lit(json.dumps({"lr": 0.001, "n_levels": 2, "seed": 1})), replicate=pl.lit(1, pl.Int64))
    ple2 = ple.with_columns(config=pl.lit(json.dumps({"lr": 0.001, "n_levels": 1, "seed": 1})),
                            replicate=pl.lit(2, pl.Int64))
    keys, table = curves.selections(pl.concat([base, other, ple, ple2]), "d1")
    assert keys == ["lr", "n_levels"]
    got = {(r["architecture"], r["replicate"]): r["values"] for r in table.iter_rows(named=True)}
    assert got[("ple", 1)] == {"n_levels": 2} and got[("mmoe", 2)] == {"lr": 0.01}


def test_page_without_curves_is_unchanged():
    rows = hand_made_rows()
    assert lb.render(rows, META) == lb.render(rows, META, None, None, None)
    assert "learning curves" not in lb.render(rows, META).lower()
    assert PROV  # the hand-made rows' provenance columns
