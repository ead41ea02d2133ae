"""Repeated runs (``--repeats N``): the distribution statistics against hand-computed values, the leaderboard
section (absent without repeats, byte-identical on regeneration), spec keys, and the CLI end to end with
resume."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from test_leaderboard import META, PROV, hand_made_rows

from bench.cli import main
from bench.errors import UnknownChoice, UserError
from bench.results import leaderboard as lb
from bench.results import plots, repeats, store
from bench.spec.study import parse_study
from bench.training.bootstrap import DRAWS

# (architecture, target, task, kind, metric, values over seeds 1001..) of repeat test rows on dataset d1
REPEATS = [
    ("mmoe", "mean", "click", "binary", "auc", [0.70, 0.74, 0.76, 0.80]),
    ("ple", "mean", "click", "binary", "auc", [0.79, 0.795, 0.60]),
    ("mmoe", "mean", "price", "regression", "mse", [1.0, 1.005, 1.2]),
    ("ple", "mean", "price", "regression", "mse", [1.02, 1.5, float("nan")]),  # a diverged run: left out
    ("single_task", "price", "price", "regression", "mse", [1.3, 1.1]),
]


def repeat_rows() -> pl.DataFrame:
    rows = []
    for arch, target, task, kind, metric, values in REPEATS:
        for r, v in enumerate(values, 1):
            base = {**PROV, "dataset": "d1", "architecture": arch, "target": target, "stage": "repeat", "trial": 0,
                    "seed": 1000 + r, "status": "complete", "task": task, "kind": kind, "n_params": 10,
                    "seconds": 1.0, "epochs": 3, "finished_at": "2026-01-05T10:00:00+00:00"}
            rows += [
                {**base, "split": "test", "metric": metric, "value": v},
                {**base, "split": "test", "metric": "mae" if kind == "regression" else "logloss", "value": 0.0},
                {**base, "split": "val", "metric": metric, "value": 123.0},  # validation: ignored
            ]
    return store.frame(rows)


def test_repeat_seeds_are_not_final_seeds():
    study = parse_study({"datasets": [{"name": "synthetic"}], "repeats": 3})
    assert study.repeat_seeds == [1001, 1002, 1003]
    assert not set(study.repeat_seeds) & set(study.final_seeds)
    assert parse_study({"datasets": [{"name": "synthetic"}]}).repeat_seeds == []


def test_repeat_summary_hand_computed():
    rows = pl.concat([hand_made_rows(), repeat_rows()])  # final rows are not repeat runs: ignored
    got = {(r["architecture"], r["task"]): r for r in repeats.repeat_summary(rows).iter_rows(named=True)}
    assert set(got) == {("mmoe", "click"), ("ple", "click"), ("mmoe", "price"), ("ple", "price"),
                        ("single_task", "price")}
    for arch, _, task, _, metric, values in REPEATS:
        vals = [v for v in values if math.isfinite(v)]
        r = got[(arch, task)]
        assert r["metric"] == metric and r["runs"] == len(vals)
        assert r["median"] == pytest.approx(float(np.median(vals)))
        q25, q75 = np.percentile(vals, [25, 75])  # linear interpolation
        assert r["q25"] == pytest.approx(q25) and r["q75"] == pytest.approx(q75)
        assert r["iqr"] == pytest.approx(q75 - q25)
        assert (r["min"], r["max"]) == (min(vals), max(vals))
    # the median best on the error scale: click 1 - 0.79 (ple's median) = 0.21 -> within 10%: e <= 0.231, i.e.
    # AUC >= 0.769; price: mmoe's median MSE 1.005 -> within 10%: MSE <= 1.1055
    assert got[("mmoe", "click")]["within"] == pytest.approx(1 / 4)
    assert got[("ple", "click")]["within"] == pytest.approx(2 / 3)
    assert got[("mmoe", "price")]["within"] == pytest.approx(2 / 3)
    assert got[("ple", "price")]["within"] == pytest.approx(1 / 2)
    assert got[("single_task", "price")]["within"] == pytest.approx(1 / 2)
    assert got[("ple", "click")]["best_median"] == pytest.approx(0.79)
    assert got[("mmoe", "price")]["best_median"] == pytest.approx(1.005)
    # failures: beyond twice the median best's error: AUC < 1 - 0.42 = 0.58, MSE > 2.01: none here
    assert {r["failures"] for r in got.values()} == {0}
    assert got[("mmoe", "click")]["threshold"] == pytest.approx(0.58)
    assert got[("mmoe", "price")]["threshold"] == pytest.approx(2.01)
    # a stricter ratio: MSE > 1.4 * 1.005 = 1.407 fails ple's 1.5; AUC < 1 - 1.4 * 0.21 = 0.706 fails 0.60 and 0.70
    strict = {(r["architecture"], r["task"]): r["failures"]
              for r in repeats.repeat_summary(rows, failure=1.4).iter_rows(named=True)}
    assert strict == {("mmoe", "click"): 1, ("ple", "click"): 1, ("mmoe", "price"): 0, ("ple", "price"): 1,
                      ("single_task", "price"): 0}
    # within a task, best median first (AUC: higher, MSE: lower)
    order = repeats.repeat_summary(rows).select("task", "architecture").rows()
    # medians: click ple 0.79 > mmoe 0.75; price mmoe 1.005 < single_task 1.2 < ple 1.26
    assert order == [("click", "ple"), ("click", "mmoe"), ("price", "mmoe"), ("price", "single_task"),
                     ("price", "ple")]


def test_leaderboard_section_only_with_repeats():
    base = hand_made_rows()
    without = lb.render(base, META)
    with_rows = pl.concat([base, repeat_rows()])
    plots = {"repeats:d1": [("hist", "toy/d1-repeats.png")]}
    text = lb.render(with_rows, META, plots)
    # the same rows in another order give the same bytes
    assert text == lb.render(with_rows.sample(fraction=1.0, shuffle=True, seed=1), META, plots)
    section = "\n".join(repeats.section(with_rows, "d1", plots["repeats:d1"])) + "\n"
    assert section.startswith("### d1: repeated runs\n") and "![hist](toy/d1-repeats.png)" in section
    assert text.count(section) == 1
    # nothing else changes (but the wall time, which the repeat runs extend); d2 has no repeats
    drop_wall_time = lambda md: "\n".join(ln for ln in md.splitlines() if "wall time" not in ln)  # noqa: E731
    assert drop_wall_time(text.replace(section, "")) == drop_wall_time(without)
    assert text.index(section) < text.index("## d2")
    assert repeats.section(with_rows, "d2") == []
    table = [ln for ln in section.splitlines() if ln.startswith("| mmoe ") and "click" in ln]
    assert [c.strip() for c in table[0].strip("|").split("|")] == [
        "mmoe", "click", "auc", "4", "0.7500", "0.7300–0.7700", f"{0.77 - 0.73:.4f}", "0 (0%)", "25%", "0.7000",
        "0.8000"]


def test_histogram_written(tmp_path):
    rows = pl.concat([hand_made_rows(), repeat_rows()])
    links = plots.leaderboard_plots(rows, META, tmp_path, "toy")
    assert links["repeats:d1"] == [("d1: repeated runs, histogram of the test metric", "toy/d1-repeats.png")]
    assert (tmp_path / "toy" / "d1-repeats.png").stat().st_size > 0
    assert "repeats:d2" not in links


def test_runs_are_judged_against_their_own_draw_where_replicates_are_draws(tmp_path):
    """Two data draws, the second ten times harder for every model: against one pooled median best every run of the
    hard draw is a failure; against its own draw's median best only the run that is bad within its draw is."""
    rows = []
    draws = {1: {"mmoe": [0.10, 0.11, 0.12], "omoe": [0.12, 0.13, 0.40]},  # omoe's 0.40: 4x its draw's best
             2: {"mmoe": [1.00, 1.10, 1.20], "omoe": [1.05, 1.15, 1.25]}}
    for replicate, by in draws.items():
        for arch, values in by.items():
            for k, v in enumerate(values, 1):
                rows.append({**PROV, "dataset": "syn", "architecture": arch, "target": "mean", "stage": "repeat",
                             "seed": 1000 + k, "status": "complete", "task": "y", "kind": "regression",
                             "metric": "mse", "split": "test", "value": v, "replicate": replicate,
                             "finished_at": "2026-01-05T10:00:00+00:00"})
    rows = store.frame(rows)
    pooled = {r["architecture"]: r for r in repeats.repeat_summary(rows).iter_rows(named=True)}
    # pooled: the best median over all six runs of each model is mmoe's (0.11 + 1.00)/2 = 0.555; > 1.11 fails
    assert pooled["mmoe"]["failures"] == 1 and pooled["omoe"]["failures"] == 2
    own = {r["architecture"]: r for r in repeats.repeat_summary(rows, per_draw=frozenset({"syn"})).iter_rows(
        named=True)}
    # per draw: bests 0.11 (draw 1) and 1.10 (draw 2); only omoe's 0.40 > 0.22 fails
    assert own["mmoe"]["failures"] == 0 and own["omoe"]["failures"] == 1
    # within 10% of the own draw's best (0.121, 1.21): all of mmoe's; omoe's 0.12, 1.05 and 1.15
    assert own["mmoe"]["within"] == pytest.approx(1.0) and own["omoe"]["within"] == pytest.approx(0.5)
    assert (own["mmoe"]["best_median"], own["mmoe"]["best_high"]) == pytest.approx((0.11, 1.10))
    assert own["mmoe"]["threshold"] is None  # no single threshold: each draw has its own
    text = "\n".join(repeats.section(rows, "syn", paired=frozenset({"syn"})))
    assert "judged against its own data draw's median best" in text and "y 0.1100 to 1.1000 across the draws" in text
    # the histogram shows each run's error over its draw's median best, on a log axis with plain tick labels
    links = plots.repeat_plots(rows, tmp_path, "toy", paired=frozenset({"syn"}))
    caption = "syn: repeated runs, error relative to the median best of the run's own data draw"
    assert links["repeats:syn"][0][0] == caption and (tmp_path / "syn-repeats.png").stat().st_size > 0


def test_log_axes_label_ticks_as_plain_text():
    """The leaderboard turns mathtext off (names are text), so a log axis must not use the default mathtext
    tick labels, which would print as their raw source ("$\\mathdefault{10^{-1}}$")."""
    from bench.results.figures import log_scale

    plt = plots._pyplot()
    fig, ax = plt.subplots()
    ax.plot([0.01, 10], [1, 2])
    log_scale(ax)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() + ax.get_xminorticklabels() if t.get_text()]
    plt.close(fig)
    assert labels and not any("$" in t or "mathdefault" in t for t in labels), labels


def test_spec_keys():
    raw = {"datasets": [{"name": "synthetic"}]}
    s = parse_study(raw)
    assert s.repeats == 0 and s.population
    s2 = parse_study({**raw, "repeats": 7, "final": {"population": False}})
    assert s2.repeats == 7 and not s2.population
    assert parse_study({**raw, "final": {"population": True}}).spec_hash == s.spec_hash  # how, not what
    with pytest.raises(UserError, match="repeats must be between 0 and 100000, got -1"):
        parse_study({**raw, "repeats": -1})
    with pytest.raises(UserError, match=r"repeats='three': expected int"):
        parse_study({**raw, "repeats": "three"})
    with pytest.raises(UnknownChoice, match="unknown key in final 'populaton'; valid choices: population"):
        parse_study({**raw, "final": {"populaton": False}})
    with pytest.raises(UserError, match="final.population=1: expected bool"):
        parse_study({**raw, "final": {"population": 1}})


SPEC = """
name = "rep"
architectures = ["mmoe"]
seeds = 1

[budget]
trials = 1
max_epochs = 2
patience = 2

[[datasets]]
name = "synthetic"
label = "syn"
options = { n_samples = 240, d = 6, p = 0.5 }

[search.all]
batch_size = [48]
expert_units = [8]
tower_units = [8]
n_experts = 2
"""


def test_cli_repeats_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "rep.toml").write_text(SPEC)
    args = ["run", "--study", "rep", "--accelerator", "cpu", "--wandb", "disabled"]

    # a bad value: one line, exit 2, nothing written
    assert main([*args, "--repeats", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["bench run: error: --repeats must be between 0 and 100000, got -1"]
    assert not (tmp_path / "runs").exists()

    assert main([*args, "--repeats", "3"]) == 0
    out = capsys.readouterr().out
    assert "[syn | mmoe] repeat seeds 1001..1003 (3 runs, up to 3/3): test median y1 mse=" in out
    root = tmp_path / "runs" / "rep"
    rows = store.read(root)
    rep = rows.filter(pl.col("stage") == "repeat")
    final = rows.filter(pl.col("stage") == "final")
    assert sorted(rep["seed"].unique().to_list()) == [1001, 1002, 1003]
    # per repeat: val and test, 2 tasks x 2 metrics each; the test split read once per run; and MMoE's gate and
    # expert diagnostics (2 tasks x 2 gate weights, 2 tasks x 3 gate statistics, 2 experts' dead units)
    diag = rep.filter(pl.col("kind") == "diagnostic")
    assert diag.group_by("seed").len().sort("seed")["len"].to_list() == [4 + 6 + 2] * 3
    rep = rep.filter(pl.col("kind") != "diagnostic")
    # and per repeat and task the test MSE on each test-set resample (draw 1..DRAWS)
    draws = rep.filter(pl.col("draw").is_not_null())
    assert draws.group_by("seed", "task").len()["len"].to_list() == [DRAWS] * 3 * 2
    rep = rep.filter(pl.col("draw").is_null())
    assert rep.height == 3 * 2 * 2 * 2
    assert rep.group_by("seed", "split", "task", "metric").len()["len"].to_list() == [1] * rep.height
    # the final stage's traceability columns, same configuration and search trial
    for col in ("trial", "config_hash", "git_commit", "versions", "hardware", "n_params", "status"):
        assert rep[col].null_count() == 0, col
        assert rep[col].unique().to_list() == final[col].unique().to_list(), col
    files = sorted(p.name for p in (root / "results" / "repeat" / "syn" / "mmoe").iterdir())
    assert files == ["seed-1001.parquet", "seed-1002.parquet", "seed-1003.parquet"]

    md_path = tmp_path / "results" / "rep.md"
    markdown = md_path.read_text()
    assert "### syn: repeated runs" in markdown and "(rep/syn-repeats.png)" in markdown
    assert (tmp_path / "results" / "rep" / "syn-repeats.png").stat().st_size > 0
    # the section's rows recomputed from the stored values with numpy
    section = markdown.split("### syn: repeated runs\n", 1)[1].split("\n#", 1)[0]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in section.splitlines() if ln.startswith("| mmoe")]
    assert [c[1] for c in cells] == ["y1", "y2"]
    for c in cells:
        vals = rep.filter((pl.col("split") == "test") & (pl.col("task") == c[1]) &
                          (pl.col("metric") == "mse"))["value"].to_list()
        q25, q75 = np.percentile(vals, [25, 75])
        assert c[2:7] == ["mse", "3", f"{np.median(vals):.4f}", f"{q25:.4f}–{q75:.4f}", f"{q75 - q25:.4f}"]
        assert c[9:] == [f"{min(vals):.4f}", f"{max(vals):.4f}"]

    # resume: stored repeats are not trained again; one more repeat trains only seed 1004
    mtimes = {p: p.stat().st_mtime_ns for stage in ("final", "repeat")
              for p in (root / "results" / stage).glob("**/*.parquet")}
    assert len(mtimes) == 4
    assert main([*args, "--repeats", "3"]) == 0
    assert "repeat seeds" not in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert md_path.read_text() == markdown
    assert main(["leaderboard", "--study", "rep", "--quiet"]) == 0
    assert md_path.read_text() == markdown  # regenerated byte-identical
    assert main([*args, "--repeats", "4"]) == 0
    out = capsys.readouterr().out.split("# Leaderboard")[0]
    assert "repeat seeds 1004..1004 (1 runs, up to 4/4)" in out and "1001" not in out
    assert store.read(root).filter(pl.col("stage") == "repeat")["seed"].n_unique() == 4

    # without --repeats (spec: none) the stored repeats stay and are still reported
    assert main(args) == 0
    assert "### syn: repeated runs" in md_path.read_text()
