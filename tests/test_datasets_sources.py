"""Data-directory resolution, the tensor cache (keys, atomic writes, unreadable files) and download plumbing."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import polars as pl
import pytest
import torch

from bench import datasets
from bench.datasets import sources
from bench.datasets.sources import OfficialFile
from bench.errors import UserError


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(sources.BASE_URL_ENV, (tmp_path / "server").as_uri())


def csv(tmp_path: Path, n: int = 120, seed: int = 0) -> Path:
    rng = random.Random(seed)
    path = tmp_path / "t.csv"
    pl.DataFrame({
        "a": [rng.random() for _ in range(n)], "c": [rng.choice("xyz") for _ in range(n)],
        "y": [rng.randint(0, 1) for _ in range(n)],
    }).write_csv(path)
    return path


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sources.resolve_data_dir("") == tmp_path / "xdg" / "mtl-bench"
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(tmp_path / "env"))
    assert sources.resolve_data_dir("") == tmp_path / "env"
    assert sources.resolve_data_dir(str(tmp_path / "opt")) == tmp_path / "opt"
    monkeypatch.delenv(sources.CACHE_DIR_ENV)
    assert sources.tensor_cache_dir() == tmp_path / "xdg" / "mtl-bench" / "tensors"


def test_env_data_dir_is_used_by_loaders(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(UserError, match=f"adult.data not found in {tmp_path}"):
        datasets.load("adult", download=False)


def test_cache_hit_miss_and_key(tmp_path):
    path = csv(tmp_path)
    first = datasets.load("table", path=str(path), labels={"y": "binary"})
    second = datasets.load("table", path=str(path), labels={"y": "binary"})
    assert (first.info["cache"], second.info["cache"]) == ("miss", "hit")
    assert torch.equal(first.train.x, second.train.x) and second.feature_names == first.feature_names
    assert second.info["sources"]["file0"]["sha256"] == sources.file_sha256(path)
    # another option or another file content: another key
    assert datasets.load("table", path=str(path), labels={"y": "binary"}, seed=1).info["cache"] == "miss"
    csv(tmp_path, seed=5)
    assert datasets.load("table", path=str(path), labels={"y": "binary"}).info["cache"] == "miss"
    assert datasets.load("table", path=str(path), labels={"y": "binary"}, cache=False).info["cache"] == "off"
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(files) == 3 and all(f.startswith("table-") and f.endswith(".pt") for f in files)


def test_unreadable_cache_is_rebuilt(tmp_path):
    path = csv(tmp_path)
    first = datasets.load("table", path=str(path), labels={"y": "binary"})
    (cached,) = (tmp_path / "cache").iterdir()
    cached.write_bytes(cached.read_bytes()[:100])  # truncated
    with pytest.warns(UserWarning, match="ignoring unreadable data cache"):
        again = datasets.load("table", path=str(path), labels={"y": "binary"})
    assert again.info["cache"] == "miss" and torch.equal(again.val.x, first.val.x)
    assert datasets.load("table", path=str(path), labels={"y": "binary"}).info["cache"] == "hit"


def test_cache_write_failure_leaves_nothing(tmp_path, monkeypatch):
    path = csv(tmp_path)

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(sources.torch, "save", broken_save)
    with pytest.warns(UserWarning, match="could not write the data cache"):
        data = datasets.load("table", path=str(path), labels={"y": "binary"})
    assert len(data.train) > 0
    assert list((tmp_path / "cache").iterdir()) == []


def test_cache_is_loaded_with_weights_only(tmp_path):
    datasets.load("table", path=str(csv(tmp_path)), labels={"y": "binary"})
    (cached,) = (tmp_path / "cache").iterdir()
    payload = torch.load(cached, weights_only=True)
    splits = ("train", "val", "test")
    assert set(payload) == {"meta", "binary_columns"} | {f"{s}_{k}" for s in splits for k in ("x", "x01", "y", "cat")}
    assert payload["train_x01"].dtype == torch.uint8 and payload["binary_columns"].sum() == 4  # c=x,y,z,<unknown>


def test_generic_download_and_verification(tmp_path):
    body = "".join(f"{i}, a, b\n" for i in range(7))
    (tmp_path / "server" / "sub").mkdir(parents=True)
    (tmp_path / "server" / "sub" / "f.txt").write_text(body)
    spec = OfficialFile("f.txt", "folder", "sub/f.txt", rows=7, fields=3)
    got = sources.fetch(spec, str(tmp_path / "data"))
    assert got == tmp_path / "data" / "folder" / "f.txt" and got.read_text() == body
    assert sources.fetch(spec, str(tmp_path / "data")) == got  # present: no download
    bad = dataclasses.replace(spec, name="g.txt", rows=8)
    (tmp_path / "server" / "sub" / "f.txt").rename(tmp_path / "server" / "sub" / "g.txt")
    with pytest.raises(UserError, match="has 7 rows with 3 fields per row, expected 8 rows of 3 fields"):
        sources.fetch(dataclasses.replace(bad, url_path="sub/g.txt"), str(tmp_path / "data"))
    missing = dataclasses.replace(spec, name="h.txt", url_path="sub/h.txt")
    with pytest.raises(UserError, match=r"could not download h.txt from file://.*sub/h.txt .*put it at .*h.txt"):
        sources.fetch(missing, str(tmp_path / "data"))
    assert sorted(p.name for p in (tmp_path / "data" / "folder").iterdir()) == ["f.txt"]


def test_unwritable_data_dir_is_a_user_error(tmp_path):
    (tmp_path / "afile").write_text("a file where the data directory should be")
    spec = OfficialFile("f.txt", "folder", "sub/f.txt", rows=1, fields=1)
    with pytest.raises(UserError, match=r"cannot store f.txt in .*afile/folder .*download .*sub/f.txt by hand"):
        sources.fetch(spec, str(tmp_path / "afile"))
