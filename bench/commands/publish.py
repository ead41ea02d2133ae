"""``bench publish --study NAME``: copy a study's page, plots and raw rows into ``leaderboard/``."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "publish",
        help="publish a study: its page, plots and raw rows into leaderboard/",
        description="Publish a study from its stored results (runs/<study>/): leaderboard/<study>.md, its plots "
        "and the raw rows the page is built from (leaderboard/<study>/rows.parquet, study.json, spec.toml), so "
        "that `bench leaderboard --from leaderboard/<study>/` rebuilds the page byte-identical without runs/. "
        "bench run and bench leaderboard never write there.",
    )
    p.add_argument("--study", required=True, help="a study name (or a path to its .toml file)")
    p.add_argument("--runs-dir", default="runs", type=Path, help="where runs/<study>/ is stored (default: runs)")
    p.add_argument("--output", default="leaderboard", type=Path,
                   help="the published folder (default: leaderboard)")
    p.add_argument("--no-plots", action="store_true", help="publish the markdown and rows without plots")
    p.add_argument("--quiet", action="store_true", help="do not print the page")


def run(args: argparse.Namespace) -> int:
    from bench.results.publish import ROWS, publish
    from bench.results.store import ensure_writable

    from .leaderboard import stored_root

    root = stored_root(args.study, args.runs_dir)
    ensure_writable(args.output, "--output")
    path, rows = publish(root, args.output, with_plots=not args.no_plots)
    if not args.quiet:
        print(path.read_text())
    print(f"published {path} with its plots and {rows.height:,} raw rows in {path.with_suffix('') / ROWS}")
    return 0
