"""A study's identity: what of its spec changes results, stored with each unit's Optuna study and checked
before a rerun writes anything, so that results of different specs are never mixed under one name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.spec.replicates import replicate_options

ALLOWED_CHANGES = ("description", "budget.trials", "budget.timeout", "seeds (more)", "replicates (more)",
                   "architectures or datasets added", "wandb")


def source_digests(data) -> dict[str, str]:
    """``{"<label> <file name>": SHA-256}`` of the files a loaded dataset was read from
    (``data.info["sources"]``, which the dataset layer's tensor cache computes anyway, once per file, size and
    modification time); ``{}`` for generated data."""
    sources = (getattr(data, "info", None) or {}).get("sources") or {}
    return {f"{label} {Path(src.get('path', '')).name}".strip(): src["sha256"]
            for label, src in sorted(sources.items()) if "sha256" in src}


def unit_identity(study, unit, data=None) -> dict[str, Any]:
    """Everything of the spec that changes a unit's results: dataset and options, the content of its source
    files (``data``, the loaded dataset: ``source_digests``), tasks, architecture, target, objective, search
    space (built-in defaults included), epochs, patience, sampler and pruner. Not the description, the number of
    trials, the timeout or the final seeds (a larger budget continues a study)."""
    import json
    from dataclasses import asdict

    ds = next(d for d in study.datasets if d.label == unit.dataset)
    ident = {
        "study": study.name,
        "dataset": {"name": ds.name, "options": ds.options, "tasks": list(ds.tasks or []),
                    **({"label_fraction": ds.label_fraction} if ds.label_fraction else {}),
                    **({"sources": source_digests(data)} if data is not None else {})},
        "architecture": unit.arch, "target": unit.target, "objective": study.objective_for(unit.dataset),
        "search": {k: asdict(p) for k, p in sorted(study.search[unit.arch].items())},
        "max_epochs": study.budget.max_epochs, "patience": study.budget.patience,
        "sampler": study.sampler, "pruner": study.pruner,
        # only when not the default, so that studies from before weightings keep their identity
        **({"weighting": unit.weighting} if unit.weighting != "equal" else {}),
        # replicates >= 2 only (replicate 1 keeps the identity of a study without replicates): its data draw
        **({"replicate": unit.replicate,
            "data_options": replicate_options(ds.name, ds.options, unit.replicate)}
           if unit.replicate != 1 else {}),
    }
    return json.loads(json.dumps(ident, sort_keys=True, default=str))  # the form it has after a storage round trip


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict) and key in ("search", "dataset"):
            for k in sorted(set(a) | set(b)):
                if key == "dataset" and k == "sources" and k not in a:
                    continue  # stored before source digests were part of the identity
                if a.get(k) == b.get(k):
                    continue
                if key == "dataset" and k == "sources":
                    changed = sorted(f for f in set(a[k]) | set(b[k]) if a[k].get(f) != b[k].get(f))
                    out.append(f"dataset.sources: the content of {', '.join(changed)} changed")
                else:
                    out.append(f"{key}.{k}")
        else:
            out.append(key)
    return out


def check_identity(study, units, storage, root: Path, *, url: str | None,
                   stored_final_seeds=(), data: dict[str, Any] | None = None) -> None:
    """Refuse (``UserError``, before anything is written) to continue a unit whose stored Optuna study was
    started by a spec that gives different results, or to lower the number of final seeds below the stored ones
    (``stored_final_seeds``, from the results store). ``data``: the loaded datasets by label (their source files'
    digests are part of the identity)."""
    import optuna

    remedy = ("give the study a new name (name = ... in the spec)" if url else
              f"rerun with --fresh to move {root} aside and start afresh, or give the study a new name")
    allowed = f"allowed changes: {', '.join(ALLOWED_CHANGES)}"
    names = set(optuna.study.get_all_study_names(storage))
    for unit in units:
        if unit.optuna_name not in names:
            continue
        attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(unit.optuna_name))
        old = attrs.get("identity")
        if old is None:  # started before identities were stored: only the whole spec's hash is known
            if attrs.get("spec_hash") not in (None, study.spec_hash):
                raise UserError(f"{unit}: the stored search was started by a different version of study "
                                f"{study.name!r}; {remedy} ({allowed})")
            continue
        new = unit_identity(study, unit, (data or {}).get(unit.data_key))
        if old.get("study") != new["study"]:
            raise UserError(f"{unit}: the storage already holds Optuna study {unit.optuna_name!r} of study "
                            f"{old.get('study')!r}; use one database (or dataset label) per study, or {remedy}")
        diff = _differences(old, new)
        if diff:
            raise UserError(f"{unit}: the spec of study {study.name!r} changed in a way that changes results "
                            f"({', '.join(diff)}); refusing to mix them: {remedy} ({allowed})")
    extra = sorted(set(stored_final_seeds) - set(study.final_seeds))
    if extra:
        raise UserError(f"study {study.name!r} has stored final runs for seeds {extra} beyond seeds = {study.seeds}; "
                        f"they would stay in the leaderboard: {remedy}")
