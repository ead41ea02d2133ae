"""Modules split for readability (issue 29) keep the import paths callers use: each name is re-exported by its old
module, as the same object."""

from __future__ import annotations

import pytest

MOVED = [
    ("bench.architectures.layers", "bench.architectures.encoder", ["FeatureEncoder", "Encoded"]),
    ("bench.datasets.preprocess", "bench.datasets.feature_encoding",
     ["CategoricalEncoding", "FeatureEncoding", "Encoded", "encode_features", "bucket", "MISSING_LEVEL",
      "UNKNOWN_LEVEL", "ENCODINGS"]),
    ("bench.datasets.table", "bench.datasets.table_files",
     ["encode_file", "NUMERIC_RULE", "read_table", "resolve_paths", "check_row_widths", "as_numbers", "locate_row",
      "numbers_in_text", "LINE", "FILE"]),
    ("bench.datasets.table", "bench.datasets.table_labels",
     ["parse_labels", "parse_observed_if", "encode_label", "observed_where", "funnel_of", "FLOAT32_MAX"]),
    ("bench.spec.study", "bench.spec.sections",
     ["DatasetSpec", "Budget", "Published", "parse_published", "LABEL_RE", "MAX_SEEDS", "MAX_REPEATS",
      "MAX_REPLICATES"]),
    ("bench.spec.study", "bench.spec.tuner",
     ["startup_trials", "sampler_kwargs", "optuna_class", "grid_size", "SAMPLERS", "PRUNERS"]),
    ("bench.spec.study", "bench.spec.lookup", ["find_study", "available_studies", "study_dirs"]),
]


@pytest.mark.parametrize(("old", "new", "names"), MOVED, ids=[f"{o}<-{n}" for o, n, _ in MOVED])
def test_old_paths_re_export_the_moved_names(old, new, names):
    import importlib

    old_module, new_module = importlib.import_module(old), importlib.import_module(new)
    for name in names:
        assert getattr(old_module, name) is getattr(new_module, name), f"{old}.{name}"


def test_the_table_cache_key_covers_every_module_of_the_loader():
    """A change to any module that turns a table into tensors must change the table's cache key."""
    import sys
    from unittest import mock

    from bench.datasets import sources, table

    seen = []
    with mock.patch.object(sources, "code_digest", side_effect=lambda *mods: seen.extend(mods) or "x"):
        table.code_digest()
    names = {m.__name__ for m in seen}
    assert {"bench.datasets.table", "bench.datasets.table_files", "bench.datasets.table_labels",
            "bench.datasets.preprocess", "bench.datasets.feature_encoding", "bench.datasets.sources"} <= names
    assert sys.modules["bench.datasets.table"] in seen
