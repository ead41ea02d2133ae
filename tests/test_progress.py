"""The study's progress display: counts of trials and final runs, the time left, and the bar in a terminal."""

from __future__ import annotations

import io
import sys

from bench.study.progress import Progress


def test_counts_and_estimate_in_plain_lines():
    p = Progress(trials=10, runs=4)
    assert p.eta() is None
    # a resumed study: 6 trials were done before this process; its first trial is the 7th
    line = p.search(7, "syn | mmoe", "val mse (y1)", 0.0812)
    assert line.startswith("[7/10 trials, 0/4 final runs, ") and line.endswith("left]")
    p.start -= 10.0  # 10 s for this process's one trial: 3 trials and 4 runs left at that rate
    assert abs(p.eta() - 70.0) < 1.0
    assert p.best == "best val mse (y1) 0.0812"
    p.search(10, "syn | mmoe", "val mse (y1)", None)  # a pruned trial does not erase the best so far
    assert p.best == "best val mse (y1) 0.0812"
    assert p.final(4, "syn | mmoe").startswith("[10/10 trials, 4/4 final runs, ")
    assert p.describe().endswith("elapsed]")  # nothing left: no estimate
    p.final(9, "x")  # stale files beyond the study's count never push it past 100%
    assert p.done == p.total


def test_bar_draws_on_stderr_and_lines_print_above_it(monkeypatch):
    err, out = io.StringIO(), []
    monkeypatch.setattr(sys, "stderr", err)
    p = Progress(trials=4, runs=2, bar=True)
    write = p.writer(out.append)
    p.search(1, "syn | ple", "val auc (income)", 0.948)
    write("[syn | ple] trial 1/4 ...")
    p.final(2, "syn | ple")
    p.close()
    text = err.getvalue()
    assert "best val auc (income) 0.948" in text and "syn | ple" in text
    assert "3/6" in text  # 1 trial + 2 runs of 6
    assert out == ["[syn | ple] trial 1/4 ..."]
    assert Progress(trials=1, runs=1).writer(out.append) == out.append  # no bar: lines go straight out


def test_final_stage_does_not_show_the_previous_units_best(monkeypatch):
    # issue 28: "final synthetic | shared_bottom ... best val mse (y2) 0.06247" was single_task[y2]'s search best
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    p = Progress(trials=2, runs=2, bar=True)
    p.search(2, "synthetic | single_task[y2]", "val mse (y2)", 0.06247)
    assert p.best == "best val mse (y2) 0.06247"
    p.final(1, "synthetic | shared_bottom")
    assert p.best == ""
    p.close()
    last = err.getvalue().split("\r")[-1]
    assert "final synthetic | shared_bottom" in last and "0.06247" not in last
