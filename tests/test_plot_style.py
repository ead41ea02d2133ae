"""The leaderboard's plots do not mislead: a metric on a zoomed axis is drawn as dots with intervals around the
single-task reference (no bars whose length would exaggerate a difference), gains as bars from 0; the gate
heatmap's colour bar is labelled and its numbers readable; the Pareto plot tells every architecture apart."""

from __future__ import annotations

import polars as pl
import pytest
from matplotlib.colors import to_rgb

from bench.results import figures, plots


@pytest.fixture
def plt():
    return plots._pyplot()


def cell(mean, lo, hi, values, gain=None, metric="auc"):
    return {"mean": mean, "lo": lo, "hi": hi, "values": values, "metric": metric, "gain": gain,
            "gain_lo": None if gain is None else gain - 0.001, "gain_hi": None if gain is None else gain + 0.001}


BY = {"single_task": cell(0.940, 0.939, 0.941, [0.9395, 0.9405]),
      "mmoe": cell(0.945, 0.944, 0.946, [0.9445, 0.9455], gain=0.005),
      "ple": cell(0.943, 0.942, 0.944, [0.9425, 0.9435], gain=0.003)}


def test_metrics_are_dots_around_the_baseline_and_gains_are_bars_from_zero(plt):
    fig, (metric_ax, gain_ax) = plt.subplots(1, 2)
    figures.bars(metric_ax, ["mmoe", "ple", "single_task"], BY, "metrics")
    assert not metric_ax.patches  # no bars on an axis that does not start at 0
    bottom, top = metric_ax.get_ylim()
    assert 0.9 < bottom < 0.94 < 0.946 < top  # zoomed to the values, each mean and interval inside
    dashed = [line for line in metric_ax.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and dashed[0].get_ydata()[0] == pytest.approx(0.940)  # the single-task reference
    figures.bars(gain_ax, ["mmoe", "ple"], BY, "gain")
    bars = gain_ax.patches
    assert len(bars) == 2 and all(b.get_y() == 0.0 for b in bars)  # from 0, the no-gain reference
    assert [b.get_height() for b in bars] == pytest.approx([0.005, 0.003])
    assert gain_ax.get_ylim()[0] <= 0.0
    plt.close(fig)


def test_gate_heatmap_has_a_labelled_colour_bar_and_readable_numbers(plt):
    util = pl.DataFrame({"dataset": "d", "architecture": "mmoe", "level": 0, "task": ["a", "a", "b", "b"],
                         "expert": [0, 1, 0, 1], "weight": [0.8, 0.2, 0.3, 0.7]})
    fig = figures.gate_figure(plt, util, ["mmoe"], "d")
    colour_bar = fig.axes[-1]
    assert colour_bar.get_ylabel() == "mean gate weight (0 to 1)"
    numbers = [t for t in fig.axes[0].texts]
    assert len(numbers) == 4 and min(t.get_fontsize() for t in numbers) >= 8
    plt.close(fig)


def test_every_architecture_has_its_own_colour_and_marker():
    archs = ["single_task", "shared_bottom", "cross_stitch", "omoe", "mmoe", "cgc", "ple"]
    styles = [figures.arch_style(a, i) for i, a in enumerate(archs)]
    assert len({c for c, _ in styles}) == len({m for _, m in styles}) == len(archs)
    # issue 28: single-task and OMoE were nearly the same colour; every pair is now far apart in RGB
    rgb = [to_rgb(c) for c, _ in styles]
    nearest = min(sum((x - y) ** 2 for x, y in zip(a, b)) ** 0.5 for i, a in enumerate(rgb) for b in rgb[i + 1:])
    assert nearest > 0.25
    assert figures.arch_style("omoe", 0)[0] == figures.arch_style("omoe", 5)[0]  # the same colour on every plot
