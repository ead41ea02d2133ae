"""census-income and adult on small generated files in the official formats: download from a file:// URL with
verification, the tensor cache, the split protocols, and every bad-input case (one-line UserError, nothing left
partial in the data directory or the cache)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import random
from pathlib import Path

import pytest
import torch

from bench import datasets
from bench.cli import main
from bench.datasets import adult as adult_mod
from bench.datasets import census as census_mod
from bench.datasets import sources
from bench.errors import UnknownChoice, UserError

EDUCATION = list(census_mod.EDUCATION_LEVELS)
MARITAL = ["Never married", "Married-civilian spouse present", "Divorced", "Widowed"]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A private tensor cache, no data-dir environment, and a base URL that cannot reach any network."""
    monkeypatch.setenv(sources.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(sources.BASE_URL_ENV, (tmp_path / "no-server").as_uri())


def census_line(rng: random.Random) -> str:
    fields = []
    for col in census_mod.COLUMNS:
        if col in census_mod.CONTINUOUS:
            fields.append(str(rng.randint(0, 90)))
        elif col == "education":
            fields.append(rng.choice(EDUCATION))
        elif col == "marital_stat":
            fields.append(rng.choice(MARITAL))
        elif col == "income":
            fields.append(rng.choice(["- 50000.", "- 50000.", "50000+."]))
        elif col == "instance_weight":
            fields.append(f"{rng.uniform(100, 3000):.2f}")
        else:
            fields.append(rng.choice([f"{col[:6]} a", f"{col[:6]} b", "Not in universe", "?"]))
    return ", ".join(fields)


def write_census(path: Path, n: int, seed: int = 0, edit=None) -> Path:
    """A gzipped census file in the official format (42 fields joined by ', ', no header)."""
    rng = random.Random(seed)
    lines = [census_line(rng) for _ in range(n)]
    if edit:
        edit(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


def adult_line(rng: random.Random, official_test: bool = False) -> str:
    label = rng.choice(["<=50K", "<=50K", ">50K"]) + ("." if official_test else "")
    return ", ".join([
        str(rng.randint(17, 90)), rng.choice(["Private", "State-gov", "?"]), str(rng.randint(20000, 400000)),
        rng.choice(["Bachelors", "HS-grad", "Masters"]), str(rng.randint(1, 16)),
        rng.choice(["Never-married", "Married-civ-spouse", "Divorced"]), rng.choice(["Sales", "Tech-support", "?"]),
        rng.choice(["Husband", "Own-child", "Not-in-family"]), rng.choice(["White", "Black"]),
        rng.choice(["Male", "Female"]), str(rng.choice([0, 0, 2174])), "0", str(rng.randint(10, 60)),
        rng.choice(["United-States", "Mexico", "?"]), label,
    ])


def write_adult(folder: Path, n_data: int = 80, n_test: int = 40, *, official_test: bool = True, edit=None):
    rng = random.Random(1)
    folder.mkdir(parents=True, exist_ok=True)
    data = [adult_line(rng) for _ in range(n_data)]
    test = [adult_line(rng, official_test) for _ in range(n_test)]
    if edit:
        edit(data, test)
    (folder / "adult.data").write_text("\n".join(data) + "\n\n")
    head = "|1x3 Cross validator\n" if official_test else ""
    (folder / "adult.test").write_text(head + "\n".join(test) + "\n\n")
    return folder


def cache_files(tmp_path: Path) -> list[Path]:
    root = tmp_path / "cache"
    return sorted(root.iterdir()) if root.exists() else []


def data_dir_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------- census


def test_census_paper_protocol_on_fixture(tmp_path):
    d = tmp_path / "data" / "census-income-kdd"
    write_census(d / "census-income.data.gz", 120, seed=1)
    write_census(d / "census-income.test.gz", 61, seed=2)
    data = datasets.load("census-income", data_dir=str(tmp_path / "data"))
    assert data.task_names == ["income", "never_married"]
    assert (len(data.train), len(data.val), len(data.test)) == (120, 31, 30)  # .test split 1:1
    assert data.info["cache"] == "miss"
    # excluded columns never become features, whatever the tasks
    sources_of_features = {name.split("=")[0].split(":")[0] for name in data.feature_names}
    assert sources_of_features.isdisjoint(census_mod.EXCLUDED + census_mod.CODED_FROM_LABELS)  # features="strict"
    assert set(census_mod.CONTINUOUS) <= sources_of_features
    # continuous columns standardised with training statistics: mean 0, std 1 on train only
    cont = [data.feature_names.index(c) for c in census_mod.CONTINUOUS]
    assert torch.allclose(data.train.x[:, cont].mean(0), torch.zeros(len(cont)), atol=1e-5)
    assert torch.allclose(data.train.x[:, cont].std(0, unbiased=False), torch.ones(len(cont)), atol=1e-4)
    # group 2 and a free task list share the cached tensors
    g2 = datasets.load("census-income", data_dir=str(tmp_path / "data"), group=2)
    assert g2.task_names == ["education", "never_married"] and g2.info["cache"] == "hit"
    one = datasets.load("census-income", data_dir=str(tmp_path / "data"), tasks="income")
    assert one.task_names == ["income"]
    assert torch.equal(one.train.y[:, 0], data.train.y[:, 0])
    # the nominal columns as embedded fields instead: same rows and labels, numeric columns only in x
    emb = datasets.load("census-income", data_dir=str(tmp_path / "data"), encoding="embedding", min_count=1)
    assert emb.info["cache"] == "miss" and emb.d_in == len(census_mod.CONTINUOUS)
    nominal = [c for c in census_mod.NOMINAL if c not in census_mod.CODED_FROM_LABELS]
    assert [f.name for f in emb.fields] == nominal and emb.train.cat.shape == (120, len(nominal))
    assert torch.equal(emb.test.y, data.test.y) and not data.fields


def test_census_labels_follow_the_definitions(tmp_path):
    path = write_census(tmp_path / "census-income.test.gz", 200)
    frame = census_mod.parse_file(path)
    assert len(frame) == 200
    college = {k for k, v in census_mod.EDUCATION_LEVELS.items() if v}
    assert "Associates degree-academic program" in college and "Some college but no degree" not in college
    assert frame["y_education"].to_list() == [float(e in college) for e in frame["education"]]
    assert frame["y_never_married"].to_list() == [float(m == "Never married") for m in frame["marital_stat"]]
    assert frame["y_income"].to_list() == [float(v == "50000+.") for v in frame["income"]]


def test_census_random_resplit_uses_the_files_present(tmp_path):
    write_census(tmp_path / "census-income.test.gz", 100)  # directly in the data dir, only the test file
    data = datasets.load("census-income", data_dir=str(tmp_path), split="random", val_fraction=0.2, test_fraction=0.1)
    assert (len(data.train), len(data.val), len(data.test)) == (70, 20, 10)
    assert data.info["rows"] == {"test": 100}
    again = datasets.load("census-income", data_dir=str(tmp_path), split="random", val_fraction=0.2,
                          test_fraction=0.1, cache=False)
    assert torch.equal(again.val.x, data.val.x)  # seeded
    other = datasets.load("census-income", data_dir=str(tmp_path), split="random", val_fraction=0.2,
                          test_fraction=0.1, seed=1, cache=False)
    assert not torch.equal(other.val.y, data.val.y) or not torch.equal(other.val.x, data.val.x)


def serve(tmp_path: Path, files: dict[str, Path]) -> Path:
    """A file:// 'server' with the UCI layout."""
    server = tmp_path / "server"
    for url_path, src in files.items():
        dest = server / url_path
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(src.read_bytes())
    return server


def test_census_download_and_verify_from_file_url(tmp_path, monkeypatch):
    train = write_census(tmp_path / "src" / "a.gz", 90, seed=3)
    test = write_census(tmp_path / "src" / "b.gz", 40, seed=4)
    server = serve(tmp_path, {"census-income-mld/census-income.data.gz": train,
                              "census-income-mld/census-income.test.gz": test})
    monkeypatch.setenv(sources.BASE_URL_ENV, server.as_uri())
    # the fixture stands in for the official files: .test verified by digest, .data by row/field counts
    digest = hashlib.sha256(test.read_bytes()).hexdigest()
    monkeypatch.setitem(census_mod.FILES, "test", dataclasses.replace(census_mod.FILES["test"], sha256=(digest,)))
    monkeypatch.setitem(census_mod.FILES, "data", dataclasses.replace(census_mod.FILES["data"], rows=90))
    root = tmp_path / "data"
    data = datasets.load("census-income", data_dir=str(root))
    assert data_dir_files(root) == [
        "census-income-kdd/census-income.data.gz", "census-income-kdd/census-income.test.gz"
    ]
    assert (root / "census-income-kdd" / "census-income.test.gz").read_bytes() == test.read_bytes()
    assert len(data.train) == 90 and len(data.val) + len(data.test) == 40
    # kept: a second load needs no server
    for f in server.rglob("*.gz"):
        f.unlink()
    assert datasets.load("census-income", data_dir=str(root), cache=False).d_in == data.d_in


def test_download_checksum_mismatch_keeps_nothing(tmp_path, monkeypatch):
    fake = write_census(tmp_path / "src" / "b.gz", 40)
    server = serve(tmp_path, {"census-income-mld/census-income.test.gz": fake})
    monkeypatch.setenv(sources.BASE_URL_ENV, server.as_uri())
    root = tmp_path / "data"
    with pytest.raises(UserError, match="checksum mismatch for census-income.test.gz") as err:
        sources.fetch(census_mod.FILES["test"], str(root))
    assert "\n" not in str(err.value) and "5ac4cacd" in str(err.value)
    assert data_dir_files(root) == []  # no file, no .part


def test_download_with_wrong_row_count_keeps_nothing(tmp_path, monkeypatch):
    short = write_census(tmp_path / "src" / "a.gz", 30)
    server = serve(tmp_path, {"census-income-mld/census-income.data.gz": short})
    monkeypatch.setenv(sources.BASE_URL_ENV, server.as_uri())
    root = tmp_path / "data"
    with pytest.raises(UserError, match=r"has 30 rows with 42 fields per row, expected 199,523 rows"):
        sources.fetch(census_mod.FILES["data"], str(root))
    assert data_dir_files(root) == []


def test_no_network_names_file_url_and_destination(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.BASE_URL_ENV, "http://127.0.0.1:9/ml/machine-learning-databases/")
    root = tmp_path / "data"
    with pytest.raises(UserError) as err:
        datasets.load("census-income", data_dir=str(root))
    msg = str(err.value)
    assert "census-income.data.gz" in msg
    assert "http://127.0.0.1:9/ml/machine-learning-databases/census-income-mld/census-income.data.gz" in msg
    assert str(root / "census-income-kdd" / "census-income.data.gz") in msg
    assert "\n" not in msg and data_dir_files(root) == []


def test_missing_file_without_download(tmp_path, monkeypatch):
    monkeypatch.delenv(sources.BASE_URL_ENV)
    with pytest.raises(UserError, match=r"census-income.data.gz not found in .*download it from https://archive"):
        datasets.load("census-income", data_dir=str(tmp_path), download=False)


def test_default_url_is_the_uci_archive(monkeypatch):
    monkeypatch.delenv(sources.BASE_URL_ENV)
    assert census_mod.FILES["data"].url == (
        "https://archive.ics.uci.edu/ml/machine-learning-databases/census-income-mld/census-income.data.gz"
    )
    assert adult_mod.FILES["test"].url == "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/adult.test"


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (lambda ls: ls.__setitem__(4, ls[4].rsplit(",", 1)[0]), r"census-income.test.gz:5: malformed row: expected 42"),
        (lambda ls: ls.__setitem__(2, ls[2] + ", extra"), r"census-income.test.gz:3: malformed row: .* found 43"),
        (lambda ls: ls.__setitem__(6, ls[6].rsplit(",", 1)[0] + ", 50000"), r":7: income label '50000' is neither"),
        (lambda ls: ls.__setitem__(1, "forty" + ls[1][ls[1].index(","):]), r":2: column age: 'forty' is not a number"),
        (lambda ls: ls.__setitem__(3, ls[3].replace(next(e for e in EDUCATION if e in ls[3]), "Kindergarten")),
         r":4: unknown education level 'Kindergarten'"),
    ],
)
def test_census_bad_rows_name_file_and_line(tmp_path, edit, pattern):
    write_census(tmp_path / "census-income.test.gz", 20, edit=edit)
    with pytest.raises(UserError, match=pattern) as err:
        datasets.load("census-income", data_dir=str(tmp_path), split="random")
    assert "\n" not in str(err.value)
    assert cache_files(tmp_path) == []  # nothing cached from a failed load


def test_census_bad_options(tmp_path):
    write_census(tmp_path / "census-income.test.gz", 20)
    opts = dict(data_dir=str(tmp_path), split="random")
    with pytest.raises(UnknownChoice, match="unknown task of dataset census-income 'salary'; valid choices: "
                                            "education, income, never_married"):
        datasets.load("census-income", tasks=["income", "salary"], **opts)
    with pytest.raises(UnknownChoice, match="census-income group '3'; valid choices: 1, 2"):
        datasets.load("census-income", group=3, **opts)
    with pytest.raises(UserError, match="either group or tasks"):
        datasets.load("census-income", group=2, tasks=["income"], **opts)
    with pytest.raises(UnknownChoice, match="census-income split 'kfold'"):
        datasets.load("census-income", data_dir=str(tmp_path), split="kfold")
    with pytest.raises(UserError, match="the test split is empty"):
        datasets.load("census-income", test_fraction=0.0, **opts)
    with pytest.raises(UserError, match="must each lie in"):
        datasets.load("census-income", val_fraction=0.6, test_fraction=0.5, **opts)
    assert cache_files(tmp_path) == []


def test_census_bad_gzip_and_empty_file(tmp_path):
    (tmp_path / "census-income.test.gz").write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match="not a valid gzip file"):
        datasets.load("census-income", data_dir=str(tmp_path), split="random")
    (tmp_path / "census-income.test.gz").write_bytes(gzip.compress(b"\n\n"))
    with pytest.raises(UserError, match="the file is empty"):
        datasets.load("census-income", data_dir=str(tmp_path), split="random")


# ---------------------------------------------------------------------------------------------- adult


@pytest.mark.parametrize("name, folder, write", [
    ("census-income", "census-income-kdd", "census"), ("adult", "adult", "adult"),
])
def test_feature_protocols(tmp_path, name, folder, write):
    """strict (the default) drops the columns coded from marital status, paper keeps them; the labels' own
    sources never reach the features; a protocol name outside the two is a one-line error listing them."""
    if write == "census":
        write_census(tmp_path / folder / "census-income.data.gz", 120, seed=1)
        write_census(tmp_path / folder / "census-income.test.gz", 61, seed=2)
        mod = census_mod
    else:
        write_adult(tmp_path / folder)
        mod = adult_mod

    def sources_of(data):
        return {n.split("=")[0].split(":")[0] for n in data.feature_names}

    strict = datasets.load(name, data_dir=str(tmp_path))
    paper = datasets.load(name, data_dir=str(tmp_path), features="paper")
    assert sources_of(strict).isdisjoint(mod.EXCLUDED + mod.CODED_FROM_LABELS)
    assert sources_of(paper).isdisjoint(mod.EXCLUDED)
    assert sources_of(paper) - sources_of(strict) == set(mod.CODED_FROM_LABELS)
    assert (strict.info["features"], paper.info["features"]) == ("strict", "paper")
    assert paper.info["excluded_columns"] == mod.EXCLUDED
    with pytest.raises(UnknownChoice, match=r"features 'all'; valid choices: paper, strict"):
        datasets.load(name, data_dir=str(tmp_path), features="all")


@pytest.mark.parametrize("official_test", [True, False])
def test_adult_reads_official_and_cleaned_test_file(tmp_path, official_test):
    write_adult(tmp_path / "adult", official_test=official_test)
    data = datasets.load("adult", data_dir=str(tmp_path))
    assert data.task_names == ["income", "never_married"]
    assert (len(data.train), len(data.val) + len(data.test)) == (80, 40)
    feats = {n.split("=")[0] for n in data.feature_names}
    assert feats.isdisjoint(adult_mod.EXCLUDED) and "workclass" in feats
    assert "workclass=?" in data.feature_names  # '?' kept as its own level


def test_adult_official_and_cleaned_give_the_same_labels(tmp_path):
    a = adult_mod.parse_file(write_adult(tmp_path / "a", official_test=True) / "adult.test")
    b = adult_mod.parse_file(write_adult(tmp_path / "b", official_test=False) / "adult.test")
    assert len(a) == len(b) == 40
    assert a["y_income"].to_list() == b["y_income"].to_list()
    assert a["line"][0] == 2 and b["line"][0] == 1  # the note line counts for line numbers


def test_adult_download_from_file_url(tmp_path, monkeypatch):
    src = write_adult(tmp_path / "src")
    server = serve(tmp_path, {"adult/adult.data": src / "adult.data", "adult/adult.test": src / "adult.test"})
    monkeypatch.setenv(sources.BASE_URL_ENV, server.as_uri())
    for key in ("data", "test"):
        digest = hashlib.sha256((src / f"adult.{key}").read_bytes()).hexdigest()
        monkeypatch.setitem(adult_mod.FILES, key, dataclasses.replace(adult_mod.FILES[key], sha256=(digest,)))
    data = datasets.load("adult", data_dir=str(tmp_path / "data"))
    assert data_dir_files(tmp_path / "data") == ["adult/adult.data", "adult/adult.test"]
    assert len(data.train) == 80


def test_adult_unseen_level_maps_to_unknown(tmp_path):
    def edit(data, test):
        test[0] = test[0].replace("United-States", "Atlantis").replace("Mexico", "Atlantis")

    write_adult(tmp_path / "adult", edit=edit)
    data = datasets.load("adult", data_dir=str(tmp_path), split="official")
    unknown = data.feature_names.index("native_country=<unknown>")
    assert data.train.x[:, unknown].sum() == 0
    assert data.val.x[:, unknown].sum() + data.test.x[:, unknown].sum() >= 1


def test_adult_bad_inputs(tmp_path):
    def edit(data, test):
        test[9] = test[9].replace("<=50K", "maybe").replace(">50K", "maybe")

    write_adult(tmp_path / "adult", edit=edit)
    # line 11: the note line comes first
    with pytest.raises(UserError, match=r"adult.test:11: income label 'maybe'"):
        datasets.load("adult", data_dir=str(tmp_path))
    with pytest.raises(UnknownChoice, match="unknown task of dataset adult 'education'"):
        datasets.load("adult", data_dir=str(tmp_path), tasks="income,education")
    assert cache_files(tmp_path) == []


def test_cli_bad_adult_file_exits_2_with_one_line(tmp_path, capsys):
    def edit(data, test):
        data[6] = data[6] + ", surplus"

    write_adult(tmp_path / "adult", edit=edit)
    code = main(["train", "--dataset", "adult", "--arch", "mmoe", "--data-dir", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "Traceback" not in err
    assert err.startswith("bench train: error: ") and f"{tmp_path / 'adult' / 'adult.data'}:7: malformed row" in err


def test_cli_missing_file_and_data_dir_misuse(tmp_path, capsys):
    code = main(["train", "--dataset", "adult", "--arch", "mmoe", "--data-dir", str(tmp_path),
                 "--data", "download=false", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "adult.data not found" in err and err.count("\n") == 0
    code = main(["train", "--dataset", "synthetic", "--arch", "mmoe", "--data-dir", str(tmp_path)])
    assert code == 2 and "--data-dir does not apply" in capsys.readouterr().err


def test_cli_trains_on_adult_fixture(tmp_path, capsys):
    write_adult(tmp_path / "adult", n_data=200, n_test=60)
    code = main(["train", "--dataset", "adult", "--arch", "shared_bottom", "--data-dir", str(tmp_path),
                 "--set", "max_epochs=1", "--accelerator", "cpu", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "never_married" in out and "income" in out
