"""``bench leaderboard --study NAME``: rebuild results/<study>.md and its plots from the stored results (or, with
``--from leaderboard/<study>/``, from a published study's raw rows)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "leaderboard",
        help="rebuild a study's leaderboard page from its stored results",
        description="Rebuild results/<study>.md and its plots from runs/<study>/ alone (no training), or from a "
        "published study's raw rows (--from leaderboard/<study>/). Publishing is `bench publish`.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--study", help="a study name (or a path to its .toml file)")
    source.add_argument("--from", dest="published", type=Path, metavar="DIR",
                        help="a published study folder (leaderboard/<study>/ with rows.parquet and study.json): "
                        "rebuild its page from those rows alone, byte-identical to the published one")
    p.add_argument("--runs-dir", default="runs", type=Path, help="where runs/<study>/ is stored (default: runs)")
    p.add_argument("--output", default="results", type=Path,
                   help="where the page and its plots go (default: results; not tracked by git)")
    p.add_argument("--no-plots", action="store_true", help="write the markdown without plots")
    p.add_argument("--quiet", action="store_true", help="do not print the leaderboard")
    p.add_argument("--command", dest="stated_command", default=None, metavar="TEXT",
                   help="the exact command that produced the results, stated in the header (kept for later rebuilds)")


def run(args: argparse.Namespace) -> int:
    from bench.errors import UserError
    from bench.results import leaderboard
    from bench.results.publish import read_extras, read_published
    from bench.results.store import ensure_writable

    ensure_writable(args.output, "--output")
    if args.published is not None:
        if args.stated_command:
            raise UserError("--command cannot be used with --from: a published page states the command that ran")
        rows, meta = read_published(args.published)
        path, text = leaderboard.write_page(rows, meta, args.output, with_plots=not args.no_plots,
                                            **read_extras(args.published))
    else:
        root = stored_root(args.study, args.runs_dir)
        path, text = leaderboard.build(root, args.output, with_plots=not args.no_plots, command=args.stated_command)
    if not args.quiet:
        print(text)
    print(f"leaderboard written to {path}")
    return 0


def stored_root(study: str, runs_dir: Path) -> Path:
    """``runs_dir/<study>/`` of a study name (or spec path) with stored results; else a one-line error listing
    the studies that have some."""
    from bench.errors import UserError
    from bench.paths import component

    name = study
    if name.endswith(".toml") or "/" in name:
        from bench.spec.study import load_study

        name = load_study(name).name
    root = runs_dir / component(name, "study name")  # a name from the command line never leaves runs_dir
    if not (root / "study.json").is_file():
        known = sorted(p.name for p in runs_dir.glob("*") if (p / "study.json").is_file()) \
            if runs_dir.is_dir() else []
        raise UserError(f"no stored results for study {name!r} in {runs_dir}/; studies with results: "
                        f"{', '.join(known) or 'none'}")
    return root
