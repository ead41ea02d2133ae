"""Finding and reading a study spec: a name looked up in ``studies/`` (then the shipped specs), or a path to a
``.toml`` file, read as UTF-8 TOML; each failure a one-line ``UserError``. ``study.load_study`` validates what is read.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from bench.errors import UnknownChoice, UserError


def study_dirs() -> list[Path]:
    """Where study names are looked up: ``studies/`` in the current directory, then the shipped specs (package
    data of ``bench.studies``, read with importlib.resources)."""
    from importlib.resources import files

    here = Path.cwd() / "studies"
    shipped = Path(str(files("bench.studies")))
    return [here] if shipped.resolve() == here.resolve() else [here, shipped]


def available_studies() -> list[str]:
    names = set()
    for d in study_dirs():
        if d.is_dir():
            names |= {p.stem for p in d.glob("*.toml")}
    return sorted(names)


def find_study(name_or_path: str) -> Path:
    """A study name found in ``studies/`` or a path to a ``.toml`` file."""
    path = Path(name_or_path)
    if name_or_path.endswith(".toml") or path.parent != Path(".") or "/" in name_or_path:
        if path.is_dir():
            _directory(name_or_path)
        if not path.is_file():
            raise UserError(f"study file {name_or_path!r} does not exist")
        return path
    for d in study_dirs():
        candidate = d / f"{name_or_path}.toml"
        if candidate.is_file():
            return candidate
    if path.is_dir():
        _directory(name_or_path)
    raise UnknownChoice("study", name_or_path, available_studies())


def _directory(name: str) -> None:
    """``--study`` names a directory (``runs/<study>/``, ``studies/``): say so, not "does not exist"."""
    specs = sorted(p.name for p in Path(name).glob("*.toml"))
    hint = f" holding {', '.join(specs[:5])}{', ...' if len(specs) > 5 else ''}" if specs else ""
    raise UserError(f"study {name!r} is a directory{hint}, not a study spec: give a .toml file or a study name")


def read_spec(path: Path) -> dict[str, Any]:
    """The TOML table of a spec file (not yet validated)."""
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not a study spec (not UTF-8 text: byte {err.start} is {err.object[err.start]:#04x})"
                        ) from None
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{path}: invalid TOML: {err}") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or err})") from None
