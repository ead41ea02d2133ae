"""Study specs: defaults, validation of every name, bad input through the CLI (exit 2, one line, nothing written)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import architectures
from bench.cli import main
from bench.errors import UnknownChoice, UserError
from bench.spec.study import load_study, parse_study

MINIMAL = {"datasets": [{"name": "synthetic"}]}


def test_defaults():
    s = parse_study(MINIMAL, default_name="mini")
    assert s.name == "mini"
    # every architecture that runs on any data: not the funnel ones (ESMM, AITM) nor STEM (embedded fields only)
    assert s.architectures == [a for a in architectures.available() if a not in ("aitm", "esmm", "stem")]
    assert len(s.architectures) == 7
    assert s.seeds == 5 and s.final_seeds == [1, 2, 3, 4, 5]
    assert s.objective == "mean"
    assert s.sampler == {"kind": "tpe", "seed": 0} and s.pruner == {"kind": "median"}
    # built-in spaces: learning rate everywhere, experts for MMoE, levels for PLE
    assert s.search["mmoe"]["lr"].kind == "float" and s.search["mmoe"]["lr"].log
    assert s.search["mmoe"]["n_experts"].kind == "int"
    assert s.search["ple"]["n_levels"].kind == "int"
    assert "n_experts" not in s.search["shared_bottom"]
    # the gated architectures try dense and top-2 gates; the others have no gates
    assert {a: s.search[a]["gate_top_k"].choices for a in ("omoe", "mmoe", "cgc", "ple")} == dict.fromkeys(
        ("omoe", "mmoe", "cgc", "ple"), (0, 2))
    assert not any("gate_top_k" in s.search[a] for a in ("single_task", "shared_bottom", "cross_stitch"))


def test_overrides_and_options():
    raw = {
        **MINIMAL,
        "architectures": ["mmoe", "shared_bottom"],
        "datasets": [{"name": "synthetic", "label": "p09", "options": {"p": 0.9, "n_samples": 500}}],
        "budget": {"trials": 3, "max_epochs": 4, "patience": 1, "timeout": 60},
        "search": {"all": {"batch_size": [64], "n_experts": 3},
                   "mmoe": {"dropout": 0.1, "lr": {"low": 1e-3, "high": 1e-2}}},
        "pruner": {"kind": "none"},
        "sampler": {"kind": "random", "seed": 7},
    }
    s = parse_study(raw)
    assert s.datasets[0].label == "p09" and s.datasets[0].options == {"p": 0.9, "n_samples": 500}
    assert s.budget.trials == 3 and s.budget.timeout == 60.0
    assert s.search["mmoe"]["batch_size"].choices == (64,)
    assert s.search["mmoe"]["n_experts"].value == 3  # from search.all
    assert "n_experts" not in s.search["shared_bottom"]  # applies only where the option exists
    assert s.search["mmoe"]["dropout"].kind == "fixed"
    assert s.search["mmoe"]["lr"].kind == "float" and not s.search["mmoe"]["lr"].log
    assert s.sampler == {"kind": "random", "seed": 7}


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({**MINIMAL, "budjet": {}}, "unknown key in study spec 'budjet'; valid choices: architectures, budget"),
        ({**MINIMAL, "architectures": ["mmoe", "mmeo"]}, "unknown architecture 'mmeo'; valid choices: aitm, cgc"),
        ({"datasets": [{"name": "nope"}]}, "unknown dataset 'nope'; valid choices:"),
        ({"datasets": [{"name": "synthetic", "options": {"q": 1}}]}, "unknown key in options of dataset synthetic 'q'"),
        ({**MINIMAL, "budget": {"trails": 3}}, "unknown key in budget 'trails'; valid choices: max_epochs"),
        ({**MINIMAL, "search": {"mmoe": {"n_levels": 2}}}, "unknown search key for mmoe 'n_levels'"),
        ({**MINIMAL, "search": {"all": {"wings": 2}}}, "unknown search key for cgc 'wings'"),
        ({**MINIMAL, "pruner": {"kind": "sometimes"}}, "unknown pruner 'sometimes'; valid choices: hyperband"),
        ({**MINIMAL, "search": {"mmoe": {"lr": {"low": 1, "hi": 2}}}}, "unknown key in search.mmoe.lr 'hi'"),
        ({**MINIMAL, "search": {"mmoe": {"n_experts": [2, "many"]}}}, "expected int"),
        ({**MINIMAL, "budget": {"trials": "ten"}}, "expected int"),
        ({"datasets": [{"name": "synthetic"}, {"name": "synthetic"}]}, "dataset labels must be distinct"),
        # architecture option values refused with the spec, listing the valid ones
        ({**MINIMAL, "search": {"mmoe": {"n_experts": 4, "gate_top_k": 5}}},
         "search.mmoe: gate_top_k must be 0 (dense) or 1..4 (the experts one task's gate weighs: n_experts = 4), "
         "got 5"),
        ({**MINIMAL, "search": {"cgc": {"gate_top_k": [0, -1]}}},
         "search.cgc.gate_top_k = -1: gate_top_k must be 0 (dense) or 1..4"),
        ({**MINIMAL, "search": {"ple": {"gate_noise": -1.0}}}, "gate_noise must be a finite number >= 0"),
        ({**MINIMAL, "search": {"all": {"dropout": 1.0}}}, "dropout must be in [0, 1), got 1.0"),
    ],
)
def test_bad_specs(raw, needle):
    with pytest.raises(UserError) as info:
        parse_study(raw)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_study_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnknownChoice) as info:
        load_study("no-such-study")
    assert "quickstart" in info.value.choices  # found in the installed repo's studies/


def test_shipped_studies_load():
    shipped = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "studies").glob("*.toml"))
    assert {"quickstart", "synthetic-correlation", "census-income", "census-income-resplit", "adult"} <= set(shipped)
    for name in shipped:
        s = load_study(name)
        assert s.name == name
    resplit = load_study("census-income-resplit")
    assert [d.options["split"] for d in resplit.datasets] == ["random", "random"]
    corr = load_study("synthetic-correlation")
    assert sorted(d.options["p"] for d in corr.datasets) == [0.5, 0.9, 1.0]
    assert len({d.label for d in corr.datasets}) == 3


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ('datasets = [{ name = "synthetic" }]\nunknown = 1\n', "unknown key in study spec 'unknown'"),
        ('architectures = ["mmoe", "moe"]\ndatasets = [{ name = "synthetic" }]\n', "unknown architecture 'moe'"),
        ('datasets = [{ name = "synthetc" }]\n', "unknown dataset 'synthetc'; valid choices:"),
        ('datasets = [{ name = "synthetic", options = { pp = 1 } }]\n', "unknown key in options of dataset synthetic"),
        ('datasets = [{ name = "synthetic" }]\nobjective = "y9"\n', "unknown objective 'y9'"),
        ("datasets = [\n", "invalid TOML"),
        ('datasets = [{ name = "synthetic" }]\n[search.omoe]\nn_experts = 2\ngate_top_k = 3\n',
         "search.omoe: gate_top_k must be 0 (dense) or 1..2"),
    ],
)
def test_cli_bad_spec_exit_2_nothing_written(tmp_path, monkeypatch, capsys, spec, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.toml").write_text(spec)
    code = main(["run", "--study", "bad.toml", "--runs-dir", str(tmp_path / "runs"), "--output", str(tmp_path / "lb")])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and err.startswith("bench run: error:") and err.count("\n") == 1
    assert not (tmp_path / "runs").exists() and not (tmp_path / "lb").exists()


def test_cli_unknown_study_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["run", "--study", "quickstrat", "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "unknown study 'quickstrat'; valid choices:" in err and "quickstart" in err
    assert not (tmp_path / "runs").exists()
    code = main(["leaderboard", "--study", "quickstrat", "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "no stored results for study 'quickstrat'" in err and err.count("\n") == 1


def test_an_entry_may_run_a_subset_of_the_architectures():
    """STEM needs embedded fields: a study runs it only on the entry that has them (``architectures`` of the entry),
    and its units, metadata and leaderboard say so; a name the study does not list is refused in one line."""
    from bench.results.tables import overall_ranking
    from bench.spec.study import architectures_on
    from bench.study.units import load_data, units

    raw = {"architectures": ["single_task", "mmoe", "stem"], "seeds": 1,
           "datasets": [{"name": "synthetic", "options": {"n_samples": 300}, "architectures": ["single_task", "mmoe"]},
                        {"name": "synthetic-funnel", "label": "funnel", "options": {"n_samples": 2000}}]}
    s = parse_study(raw)
    assert s.architectures_of("synthetic") == ["single_task", "mmoe"]
    assert s.architectures_of("funnel") == s.architectures
    got = {(u.dataset, u.arch) for u in units(s, load_data(s))}
    assert ("synthetic", "stem") not in got and ("funnel", "stem") in got and ("synthetic", "mmoe") in got
    meta = s.meta()
    assert architectures_on(meta, "synthetic") == ["single_task", "mmoe"]
    assert architectures_on(meta, "funnel") == ["single_task", "mmoe", "stem"]
    assert "architectures" not in meta["datasets"]["funnel"]  # the spec's hash and page unchanged without the key
    # the overall ranking names why STEM has no rank across datasets
    import polars as pl
    archs = pl.DataFrame({"dataset": ["synthetic", "synthetic", "funnel", "funnel", "funnel"],
                          "architecture": ["single_task", "mmoe", "single_task", "mmoe", "stem"],
                          "delta_m": [0.0, 1.0, 0.0, 2.0, 3.0], "rank": [2.0, 1.0, 3.0, 2.0, 1.0]})
    _, info = overall_ranking(archs, meta["architectures"], meta)
    assert info["excluded"] == {"stem": "not run on synthetic (the spec's dataset entries)"}
    with pytest.raises(UserError, match=r"^datasets\[0\]\.architectures: 'ple' is not one of the study's "
                                        r"architectures; valid choices: single_task, mmoe, stem$"):
        parse_study({**raw, "datasets": [{"name": "synthetic", "architectures": ["ple"]}]})
    with pytest.raises(UserError, match=r"datasets\[0\]\.architectures must be a non-empty list"):
        parse_study({**raw, "datasets": [{"name": "synthetic", "architectures": "mmoe"}]})
