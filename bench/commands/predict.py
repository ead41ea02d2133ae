"""``bench predict``: per-task predictions of a study's saved model for the rows of a CSV or Parquet file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="predict with a study's saved model",
        description="Write per-task predictions of a final model of a study (runs/<study>/models/) for the rows "
        "of a CSV or Parquet file holding the training columns: the positive class's probability for binary "
        "tasks, class probabilities for multi-class ones, values for regression.",
    )
    p.add_argument("--study", required=True, help="a study name (or a path to its .toml file)")
    p.add_argument("--dataset", required=True, metavar="LABEL", help="the dataset's label in the study")
    p.add_argument("--arch", required=True, help="the architecture (single_task: each task from its own model)")
    p.add_argument("--seed", type=int, default=None,
                   help="the final seed whose model predicts (default: the best validation score)")
    p.add_argument("--input", required=True, type=Path, help="a .csv or .parquet file with the training columns")
    p.add_argument("--output", required=True, type=Path, help="where to write the predictions (.csv or .parquet)")
    p.add_argument("--runs-dir", default="runs", type=Path, help="where runs/<study>/ is stored (default: runs)")


def run(args: argparse.Namespace) -> int:
    from bench.study.predict import predict_file

    from .leaderboard import stored_root

    root = stored_root(args.study, args.runs_dir)
    frame = predict_file(root, args.dataset, args.arch, args.input, args.output, seed=args.seed,
                         out=lambda line: print(line, file=sys.stderr),
                         note=lambda line: print(f"bench predict: {line}", file=sys.stderr))
    print(f"{frame.height} rows, {frame.width} prediction columns written to {args.output}", file=sys.stderr)
    return 0
