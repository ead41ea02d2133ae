"""``bench list``: what can be run: architectures (options and defaults), datasets (options), shipped studies
(description and budget)."""

from __future__ import annotations

import argparse

WHAT = ("architectures", "weightings", "datasets", "studies")


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="list architectures, loss weightings, datasets and shipped studies",
                       description="List the registered architectures and loss weightings with their options and "
                       "defaults, the registered datasets with their options, and the shipped studies with their "
                       "budget.")
    p.add_argument("what", nargs="?", choices=WHAT, help="only this part (default: every part, in this order)")


def run(args: argparse.Namespace) -> int:
    from bench import architectures, datasets, weighting
    from bench.spec.study import available_studies, load_study

    parts = [args.what] if args.what else list(WHAT)
    if "architectures" in parts:
        print("architectures (bench train --arch NAME --set KEY=VALUE):")
        for name in architectures.available():
            options = ", ".join(f"{k}={v}" for k, v in architectures.options(name).items())
            needs = architectures.requirements(name)
            print(f"  {name:<14} {options}" + (f" (needs {' and '.join(needs)})" if needs else ""))
    if "weightings" in parts:
        print("loss weightings (bench train --set weighting=NAME; a study's weightings = [...]):")
        for name in weighting.available():
            doc = (weighting.get(name).__doc__ or "").strip().splitlines()
            options = ", ".join(f"{k}={v!r}" for k, v in weighting.options(name).items())
            print(f"  {name:<14} {doc[0] if doc else ''}" + (f" (options: {options})" if options else ""))
    if "datasets" in parts:
        print("datasets (bench train --dataset NAME --data KEY=VALUE):")
        for name in datasets.available():
            doc = (datasets.get(name).__doc__ or "").strip().splitlines()
            print(f"  {name:<14} {doc[0] if doc else ''}")
            options = ", ".join(f"{k}={v!r}" for k, v in datasets.options(name).items())
            print(f"  {'':<14} options: {options}")
    if "studies" in parts:
        print("studies (bench run --study NAME):")
        for name in available_studies():
            study = load_study(name)
            b = study.budget
            print(f"  {name:<22} {len(study.datasets)} dataset(s), {len(study.architectures)} architectures, "
                  f"{b.trials} trials each, at most {b.max_epochs} epochs, {study.seeds} seeds"
                  + (f", {study.repeats} repeats" if study.repeats else ""))
            if study.description:
                print(f"  {'':<22} {study.description}")
    return 0
