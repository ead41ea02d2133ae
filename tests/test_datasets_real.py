"""census-income and adult on the real files in $BENCH_DATA_DIR or ../shared/data (``realdata``; each test skipped
when its files are absent).

Census: the official training file (census-income.data.gz) and test file (census-income.test.gz); the paper
protocol needs both, ``split="random"`` pools whichever are present.
"""

from __future__ import annotations

import hashlib

import pytest
import torch
from realdata import real_data_dir

from bench import datasets
from bench.datasets import adult as adult_mod
from bench.datasets import census as census_mod
from bench.datasets import sources
from bench.errors import UserError

CENSUS_ROOT, ADULT_ROOT = real_data_dir("census-income-kdd"), real_data_dir("adult")
CENSUS_TEST = CENSUS_ROOT / "census-income-kdd" / "census-income.test.gz"
CENSUS_DATA = CENSUS_ROOT / "census-income-kdd" / "census-income.data.gz"
ADULT = ADULT_ROOT / "adult"
need_census = pytest.mark.skipif(not CENSUS_TEST.is_file(), reason=f"real census file absent: {CENSUS_TEST}")
need_census_pair = pytest.mark.skipif(
    not (CENSUS_TEST.is_file() and CENSUS_DATA.is_file()),
    reason=f"real census training and test files absent: {CENSUS_DATA}, {CENSUS_TEST}",
)
need_adult = pytest.mark.skipif(
    not (ADULT / "adult.data").is_file() or not (ADULT / "adult.test").is_file(),
    reason=f"real adult files absent: {ADULT}",
)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tensor-cache")


@pytest.fixture(autouse=True)
def isolated(cache_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(sources.CACHE_DIR_ENV, str(cache_dir))
    monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(sources.BASE_URL_ENV, (tmp_path / "no-server").as_uri())


def census_all_tasks():
    return datasets.load("census-income", data_dir=str(CENSUS_ROOT), split="random", tasks=list(census_mod.TASKS))


@need_census
def test_census_test_file_is_the_official_one():
    assert sources.file_sha256(CENSUS_TEST) in census_mod.FILES["test"].sha256
    frame = census_mod.parse_file(CENSUS_TEST)
    assert len(frame) == 99_762
    assert [c for c in census_mod.COLUMNS if c not in frame.columns] == []


@pytest.mark.skipif(not CENSUS_DATA.is_file(), reason=f"real census training file absent: {CENSUS_DATA}")
def test_census_training_file_is_accepted():
    """The official training file passes the loader's verification (rows and fields) and parses whole."""
    sources.verify(census_mod.FILES["data"], CENSUS_DATA, sources.file_sha256(CENSUS_DATA), CENSUS_DATA.as_uri())
    frame = census_mod.parse_file(CENSUS_DATA)
    assert len(frame) == 199_523
    assert [c for c in census_mod.COLUMNS if c not in frame.columns] == []


@need_census_pair
def test_census_rates_and_features_on_real_rows():
    data = census_all_tasks()  # split="random": both official files pooled, then re-split
    assert data.info["rows"] == {"data": 199_523, "test": 99_762}
    y = torch.cat([data.train.y, data.val.y, data.test.y])
    assert len(y) == 199_523 + 99_762
    assert (len(data.val), len(data.test)) == (44_893, 44_893)
    rates = dict(zip(data.task_names, y.mean(0).tolist(), strict=True))
    assert round(rates["income"], 3) == 0.062
    assert round(rates["never_married"], 3) == 0.433
    assert 0.1 < rates["education"] < 0.3  # Associates degree or higher
    # no feature column comes from education, marital status, the instance weight or the label
    sources_of_features = {n.split("=")[0].split(":")[0] for n in data.feature_names}
    strict = set(census_mod.NOMINAL) - set(census_mod.CODED_FROM_LABELS)  # the default feature protocol
    assert sources_of_features == set(census_mod.CONTINUOUS) | strict
    for banned in ("education", "marital_stat", "instance_weight", "income", "detailed_household", "tax_filer"):
        assert not any(n.startswith(banned) for n in data.feature_names), banned
    levels = [n.split("=", 1)[1] for n in data.feature_names if "=" in n]
    assert not any("never marr" in lv.lower() or "degree" in lv.lower() for lv in levels)


@need_census
def test_census_cache_hit_is_identical():
    first = census_all_tasks()
    second = census_all_tasks()
    assert second.info["cache"] == "hit"
    assert second.feature_names == first.feature_names
    assert torch.equal(second.test.x, first.test.x) and torch.equal(second.test.y, first.test.y)


@need_census_pair
def test_census_paper_protocol_on_the_real_pair():
    """MMoE paper, section 6: train on the training file, the test file split 1:1 into validation and test."""
    data = datasets.load("census-income", data_dir=str(CENSUS_ROOT), download=False)
    assert data.info["rows"] == {"data": 199_523, "test": 99_762}
    assert len(data.train) == 199_523
    assert (len(data.val), len(data.test)) == (49_881, 49_881)
    assert data.task_names == ["income", "never_married"]


@need_census
def test_census_paper_protocol_needs_the_data_file(tmp_path):
    """Only the test file at hand (a folder holding a link to it alone): the paper protocol names the missing
    training file and where it was looked for."""
    folder = tmp_path / census_mod.FOLDER
    folder.mkdir()
    (folder / CENSUS_TEST.name).symlink_to(CENSUS_TEST)
    with pytest.raises(UserError, match=r"census-income.data.gz not found in .*census-income"):
        datasets.load("census-income", data_dir=str(tmp_path), download=False)


@need_adult
def test_adult_real_counts():
    data = datasets.load("adult", data_dir=str(ADULT_ROOT))
    assert data.info["rows"] == {"data": 32_561, "test": 16_281}
    assert len(data.train) == 32_561 and len(data.val) + len(data.test) == 16_281
    positives = int(data.train.y[:, 0].sum())
    assert (32_561 - positives, positives) == (24_720, 7_841)
    assert data.info["positives"]["data"]["income"] == 7_841
    sources_of_features = {n.split("=")[0] for n in data.feature_names}
    assert sources_of_features.isdisjoint(adult_mod.EXCLUDED + adult_mod.CODED_FROM_LABELS)


@need_adult
def test_adult_official_test_format_matches_the_published_digest(tmp_path):
    """Rebuilding the official adult.test (note line, labels ending in '.') from the cleaned copy gives the
    official file's SHA-256, and both parse to the same rows."""
    lines = (ADULT / "adult.test").read_text().rstrip("\n").split("\n")
    official = "|1x3 Cross validator\n" + "\n".join(f"{line}." for line in lines) + "\n\n"
    path = tmp_path / "adult.test"
    path.write_text(official)
    assert hashlib.sha256(official.encode()).hexdigest() == adult_mod.FILES["test"].sha256[0]
    a, b = adult_mod.parse_file(path), adult_mod.parse_file(ADULT / "adult.test")
    assert len(a) == len(b) == 16_281
    assert a.drop("line").equals(b.drop("line"))


def test_the_real_data_tests_look_where_bench_looks(tmp_path, monkeypatch):
    # issue 28: a user turns these tests on by pointing $BENCH_DATA_DIR at their data, as for `bench` itself
    from realdata import SHARED

    (tmp_path / "mine" / "adult").mkdir(parents=True)
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "mine"))
    assert real_data_dir("adult") == tmp_path / "mine"
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "empty"))  # not there: ../shared/data, else named as looked in
    assert real_data_dir("adult") == (SHARED if (SHARED / "adult").is_dir() else tmp_path / "empty")
    monkeypatch.delenv("BENCH_DATA_DIR")
    assert real_data_dir("census-income-kdd") == SHARED
