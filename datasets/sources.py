"""Where data files come from and where preprocessed tensors are kept.

* The data directory: the loader option ``data_dir`` (``bench train --data-dir``), else ``$BENCH_DATA_DIR``,
  else the per-user cache ``$XDG_CACHE_HOME/mtl-bench`` (``~/.cache/mtl-bench``). An official file is looked for
  at ``<dir>/<folder>/<name>`` and at ``<dir>/<name>``.
* A missing official file is downloaded from its UCI location (base URL ``$BENCH_UCI_BASE_URL`` or
  ``UCI_BASE_URL``; ``file://`` works too), verified (SHA-256 where the digest is known, else the documented
  row and field counts) and only then moved into place. Nothing partial is ever left in the data directory.
* Preprocessed tensors are cached in ``$BENCH_CACHE_DIR`` (default ``~/.cache/mtl-bench/tensors``), keyed by
  the source files' SHA-256, the options and the preprocessing code, written atomically (temp file + rename)
  and read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.errors import UserError
from bench.hashing import config_hash

from .base import Field, MTLData, Split, Task

UCI_BASE_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/"
BASE_URL_ENV = "BENCH_UCI_BASE_URL"
DATA_DIR_ENV = "BENCH_DATA_DIR"
CACHE_DIR_ENV = "BENCH_CACHE_DIR"
DOWNLOAD_TIMEOUT_S = 60.0


def user_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "mtl-bench"


def resolve_data_dir(data_dir: str = "") -> Path:
    """The data directory: the option, else ``$BENCH_DATA_DIR``, else the per-user cache directory."""
    if data_dir:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV, "")
    return Path(env).expanduser() if env else user_cache_root()


def tensor_cache_dir() -> Path:
    env = os.environ.get(CACHE_DIR_ENV, "")
    return Path(env).expanduser() if env else user_cache_root() / "tensors"


@dataclass(frozen=True)
class OfficialFile:
    """One official data file: where it lives locally and remotely, and how to verify it.

    ``sha256`` lists the accepted digests (the official file and documented clean copies); where it is empty,
    a download is verified by its row count (non-blank lines not starting with ``|``) and fields per row.
    """

    name: str
    folder: str
    url_path: str
    rows: int
    fields: int
    sha256: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        base = os.environ.get(BASE_URL_ENV, "") or UCI_BASE_URL
        return base.rstrip("/") + "/" + self.url_path.lstrip("/")


def locate(spec: OfficialFile, root: Path) -> Path | None:
    for candidate in (root / spec.folder / spec.name, root / spec.name):
        if candidate.is_file():
            return candidate
    return None


def fetch(spec: OfficialFile, data_dir: str = "", *, download: bool = True) -> Path:
    """The local path of an official file, downloading and verifying it first when it is missing."""
    root = resolve_data_dir(data_dir)
    found = locate(spec, root)
    if found is not None:
        return found
    target = root / spec.folder / spec.name
    if not download:
        raise UserError(
            f"{spec.name} not found in {root}; download it from {spec.url} and put it at {target} "
            f"(or point --data-dir / ${DATA_DIR_ENV} at a folder holding it)"
        )
    return download_file(spec, target)


def download_file(spec: OfficialFile, target: Path) -> Path:
    """Download ``spec`` to a temp file beside ``target``, verify it, then rename it into place."""
    url = spec.url
    where = f"download {url} by hand and put it at {target}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{spec.name}.", suffix=".part")
    except OSError as err:
        raise UserError(f"cannot store {spec.name} in {target.parent} ({err.strerror or err}); {where}") from None
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        print(f"downloading {url} -> {target}", file=sys.stderr)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        verify(spec, tmp, digest.hexdigest(), url)
        os.replace(tmp, target)
    except urllib.error.URLError as err:
        reason = getattr(err, "reason", err)
        raise UserError(f"could not download {spec.name} from {url} ({reason}); {where}") from None
    except (OSError, TimeoutError) as err:
        raise UserError(f"could not download {spec.name} from {url} ({err}); {where}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def verify(spec: OfficialFile, path: Path, digest: str, url: str) -> None:
    """Raise ``UserError`` unless a downloaded file is the official one."""
    if spec.sha256:
        if digest not in spec.sha256:
            raise UserError(
                f"checksum mismatch for {spec.name} downloaded from {url}: sha256 {digest}, "
                f"expected {' or '.join(spec.sha256)}; the file was not kept"
            )
        return
    from .preprocess import count_records

    rows, fields = count_records(path)
    if rows != spec.rows or fields != {spec.fields}:
        found = ", ".join(str(f) for f in sorted(fields)) or "none"
        raise UserError(
            f"{spec.name} downloaded from {url} has {rows:,} rows with {found} fields per row, expected "
            f"{spec.rows:,} rows of {spec.fields} fields; the file was not kept"
        )


_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) within the process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def code_digest(*modules) -> str:
    """A digest of the preprocessing code, so a changed loader never reads a stale cache."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def cached(
    name: str,
    options: dict[str, Any],
    sources: dict[str, Path],
    build: Callable[[], MTLData],
    *,
    code: str,
    use_cache: bool = True,
) -> MTLData:
    """``build()``'s data, from the tensor cache when the same sources, options and code were seen before."""
    hashes = {label: file_sha256(path) for label, path in sources.items()}
    key = config_hash({"name": name, "options": options, "sources": hashes, "code": code})
    path = tensor_cache_dir() / f"{name}-{key}.pt"
    if use_cache and path.is_file():
        data = read_cache(path)
        if data is not None:
            data.info["cache"] = "hit"
            return data
    data = build()
    data.info.update(sources={label: {"path": str(p), "sha256": hashes[label]} for label, p in sources.items()})
    data.info["cache_key"] = key
    if use_cache:
        write_cache(data, path)
    data.info["cache"] = "miss" if use_cache else "off"
    return data


def write_cache(data: MTLData, path: Path) -> None:
    """Save tensors + JSON metadata to a temp file in the cache folder, then rename: never a partial file."""
    payload: dict[str, Any] = {
        "meta": json.dumps(
            {
                "name": data.name,
                "tasks": [[t.name, t.kind, t.n_classes] for t in data.tasks],
                "feature_names": data.feature_names,
                "info": data.info,
                "fields": [[f.name, f.size, f.levels, f.hashed] for f in data.fields],
            }
        )
    }
    # 0/1 columns (one-hot levels, missing indicators) stored as uint8: a quarter of the bytes on disk
    splits = [getattr(data, s) for s in ("train", "val", "test")]
    flags = torch.stack([((sp.x == 0) | (sp.x == 1)).all(0) for sp in splits]).all(0)  # (d,)
    payload["binary_columns"] = flags
    for split_name, split in zip(("train", "val", "test"), splits, strict=True):
        payload[f"{split_name}_x01"] = split.x[:, flags].to(torch.uint8)
        payload[f"{split_name}_x"] = split.x[:, ~flags].contiguous()
        payload[f"{split_name}_y"] = split.y.contiguous()
        payload[f"{split_name}_cat"] = split.cat.contiguous()
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        tmp = Path(tmp_name)
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        warnings.warn(f"could not write the data cache {path}: {err}", stacklevel=3)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def read_cache(path: Path) -> MTLData | None:
    """The cached data, or None when the file cannot be read (it is then rebuilt and overwritten)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        meta = json.loads(payload["meta"])
        flags = payload["binary_columns"].tolist()
        # runs of equal flags [(is_01, start, stop)]: one slice copy per run (encoders group columns in blocks)
        cuts = [0] + [i for i in range(1, len(flags)) if flags[i] != flags[i - 1]] + [len(flags)]
        runs = [(flags[a], a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]
        splits = {}
        for s in ("train", "val", "test"):
            parts = {True: payload[f"{s}_x01"], False: payload[f"{s}_x"]}
            x = torch.empty(len(parts[False]), len(flags), dtype=torch.float32)
            used = {True: 0, False: 0}
            for is01, a, b in runs:
                x[:, a:b] = parts[is01][:, used[is01] : used[is01] + b - a]
                used[is01] += b - a
            splits[s] = Split(x, payload[f"{s}_y"], payload[f"{s}_cat"])
        return MTLData(
            name=meta["name"],
            tasks=[Task(n, kind, n_classes) for n, kind, n_classes in meta["tasks"]],
            feature_names=meta["feature_names"],
            info=meta["info"],
            fields=[Field(name, size, levels, hashed) for name, size, levels, hashed in meta["fields"]],
            **splits,
        )
    except Exception as err:  # a truncated or foreign file: rebuild
        warnings.warn(f"ignoring unreadable data cache {path}: {err}", stacklevel=3)
        return None
