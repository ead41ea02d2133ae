"""Predicting with a study's saved models (``bench predict``): find the model of a (dataset, architecture) and
seed under ``runs/<study>/models/``, encode the input rows as the training rows were, write per-task
predictions.

The single-task baseline is one model per task: its prediction of each task comes from that task's model.
Without ``seed``, each model is the seed with the best validation objective among those saved (the test split
plays no part in the choice).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl

from bench.errors import UnknownChoice, UserError
from bench.paths import name_of


def model_files(root: Path, dataset: str, arch: str, seed: int | None) -> list[Path]:
    """The model file of each unit of (dataset, arch): one for a multi-task architecture, one per task for the
    single-task baseline."""
    from bench.training import models

    base = Path(root) / "models"
    if not base.is_dir():
        raise UserError(f"{root} has no saved models (runs/<study>/models/): run the study first, without "
                        "--keep-models none")
    # folders are named by bench.paths.component: compared and shown as the names they encode
    datasets = {name_of(p.name): p for p in base.iterdir() if p.is_dir()}
    if dataset not in datasets:
        raise UnknownChoice("dataset of the study's saved models", dataset, datasets)
    units = sorted(p for p in datasets[dataset].iterdir() if p.is_dir() and any(p.glob("seed-*.ckpt")))
    archs = sorted({name_of(p.name).split("@")[0] for p in units})
    if arch not in archs:
        raise UnknownChoice(f"architecture of the saved models of {dataset}", arch, archs)
    files = []
    for unit in (u for u in units if name_of(u.name).split("@")[0] == arch):
        saved = sorted(unit.glob("seed-*.ckpt"), key=lambda f: int(f.stem.split("-")[1]))
        if seed is None:  # the best validation objective
            files.append(models.best_seed(saved))
            continue
        chosen = unit / f"seed-{seed}.ckpt"
        if not chosen.is_file():
            raise UnknownChoice(f"seed of {dataset} {name_of(unit.name)}", str(seed),
                                [f.stem.split("-")[1] for f in saved])
        files.append(chosen)
    return files


def describe_model(meta: dict, *, chosen: bool) -> str:
    """``mmoe: seed 3 predicts (the saved seed with the best validation objective)``: one line per model, the
    unit spelt as logs and pages spell it."""
    unit = meta["architecture"] + (f"[{meta['target']}]" if meta["architecture"] == "single_task" else "")
    why = "the saved seed with the best validation objective" if chosen else "--seed"
    return f"{unit}: seed {meta['seed']} predicts ({why})"


def predict_file(root: Path, dataset: str, arch: str, input_path: Path, output_path: Path,
                 seed: int | None = None, out: Callable[[str], None] | None = None,
                 note: Callable[[str], None] | None = None) -> pl.DataFrame:
    """Write the predictions of (dataset, arch) for the rows of ``input_path`` to ``output_path`` (CSV or
    Parquet, by its suffix): one column per task, the positive class's probability for a binary task, one
    column per class (``<task>:<k>``) for a multi-class task, the value for a regression task. Returns them.
    ``out`` is told, per model, which unit and seed predicted and why that seed.

    Inputs follow the training rules (``bench.datasets.table.NUMERIC_RULE``: text or ±inf in a numeric column is
    a one-line error). A prediction that is still not finite (inputs far outside the training data overflow the
    model) is never written as NaN: its cell is left empty (null) and ``note`` gets one line saying how many
    rows, why, and the first of them."""
    from bench.datasets.table import encode_file
    from bench.training import models

    if output_path.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise UserError(f"--output {output_path}: the name must end in .csv or .parquet")
    columns: dict[str, pl.Series] = {}
    encoded: dict[str, object] = {}  # the same encoding (one per dataset) is applied once
    for path in model_files(root, dataset, arch, seed):
        system, meta = models.load_model(path)
        key = repr(meta["encoding"])
        if key not in encoded:  # the input checked before anything is said: a bad file is one line alone
            encoded[key] = encode_file(input_path, meta["encoding"])
        x, cat = encoded[key]
        if out is not None:
            out(describe_model(meta, chosen=seed is None))
        for task, values in models.predict(system, x, cat).items():
            if values.dim() == 2:  # class probabilities
                for k in range(values.shape[1]):
                    columns[f"{task}:{k}"] = pl.Series(f"{task}:{k}", values[:, k].numpy())
            else:
                columns[task] = pl.Series(task, values.numpy())
    frame = pl.DataFrame(list(columns.values()))
    finite = frame.select(pl.all_horizontal(pl.all().is_finite())).to_series()
    if not finite.all():
        first = finite.not_().arg_true()[0] + 1
        frame = frame.with_columns(pl.when(pl.col(c).is_finite()).then(pl.col(c)) for c in frame.columns)
        if note is not None:
            note(f"{finite.not_().sum():,} of {frame.height:,} rows could not be predicted (the model's output is "
                 f"not finite: their inputs lie far outside the training data; the first is data row {first} of "
                 f"{input_path}): their cells are left empty")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_name(f".{output_path.name}.tmp")
    if output_path.suffix.lower() == ".csv":
        frame.write_csv(tmp)
    else:
        frame.write_parquet(tmp)
    tmp.replace(output_path)
    return frame
