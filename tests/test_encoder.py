"""The feature encoder (architectures.layers.FeatureEncoder) and the vocabularies behind it
(datasets.preprocess): embedding = one-hot x weight, out-of-vocabulary and hashed levels."""

import zlib

import polars as pl
import pytest
import torch
import torch.nn.functional as F

from bench.architectures.layers import FeatureEncoder
from bench.datasets import preprocess
from bench.datasets.preprocess import CategoricalEncoding
from bench.errors import UserError
from bench.training.system import param_groups


def test_embedding_equals_one_hot_times_weight():
    torch.manual_seed(0)
    sizes, dim = [4, 3], 5
    enc = FeatureEncoder(2, sizes, dim)
    x = torch.randn(6, 2)
    cat = torch.tensor([[0, 2], [3, 1], [1, 0], [2, 2], [3, 0], [0, 1]])
    out = enc(x, cat)
    assert out.shape == (6, 2 + 2 * dim)
    w = enc.table.weight  # (7, 5): rows 0..3 field 0, rows 4..6 field 1
    onehot = torch.cat([F.one_hot(cat[:, 0], 4), F.one_hot(cat[:, 1], 3)], 1).float()  # (6, 7)
    blocks = [onehot[:, :4] @ w[:4], onehot[:, 4:] @ w[4:]]  # per field: onehot(c_j) @ E_j
    torch.testing.assert_close(out, torch.cat([x, *blocks], 1), rtol=0, atol=0)


def test_encoder_without_fields_is_the_identity_and_table_is_not_decayed():
    enc = FeatureEncoder(3, [], 8)
    x = torch.randn(4, 3)
    assert enc(x, torch.zeros(4, 0, dtype=torch.int64)) is x and enc.d_out == 3
    enc = FeatureEncoder(3, [10], 8)
    decay, no_decay = param_groups(torch.nn.ModuleDict({"encoder": enc}), 0.1)
    assert [p is enc.table.weight for p in no_decay["params"]] == [True] and not decay["params"]


def frames(train_levels, val_levels):
    n = {"train": len(train_levels), "val": len(val_levels)}
    out = {s: pl.DataFrame({"c": lv, "v": [0.0] * n[s]}) for s, lv in (("train", train_levels), ("val", val_levels))}
    out["test"] = out["val"]
    return out


def test_vocabulary_from_training_split_with_rare_and_unseen_levels_out_of_vocabulary():
    train = ["a"] * 3 + ["b"] * 2 + ["c"] + [None] * 2
    enc = preprocess.encode_features(
        frames(train, ["a", "b", "c", "zz", None]), ["v"], ["c"], CategoricalEncoding("embedding", min_count=2)
    )
    (field,) = enc.fields
    # kept: <missing>, a, b (>= 2 training rows) -> codes 1..3 in sorted order; c (1 row) and unseen zz -> 0
    assert (field.size, field.levels, field.hashed) == (4, 3, False)
    assert enc.cat["val"][:, 0].tolist() == [2, 3, 0, 0, 1]
    assert enc.cat["train"][:, 0].tolist() == [2, 2, 2, 3, 3, 0, 1, 1]
    assert enc.names == ["v"] and enc.groups[-1] == {"name": "c", "kind": "embedding", "field": 0}
    # the rare level trains the out-of-vocabulary row; an unseen one reads it
    assert (enc.cat["train"] == 0).sum() == 1


def test_large_fields_are_hashed_into_buckets_in_every_split_alike():
    train = [f"u{i}" for i in range(50)] * 2
    enc = preprocess.encode_features(
        frames(train, ["u3", "never-seen"]), ["v"], ["c"], CategoricalEncoding("embedding", min_count=1, hash_buckets=7)
    )
    (field,) = enc.fields
    assert (field.size, field.levels, field.hashed) == (7, 50, True)
    expect = [zlib.crc32(s.encode()) % 7 for s in ["u3", "never-seen"]]
    assert enc.cat["val"][:, 0].tolist() == expect
    assert enc.cat["train"][3, 0].item() == expect[0]
    assert int(enc.cat["train"].max()) < 7


def test_auto_rule_keeps_small_columns_one_hot():
    train = ["a", "b"] * 5
    rule = CategoricalEncoding("auto", onehot_max=2, min_count=1)
    small = preprocess.encode_features(frames(train, ["a"]), ["v"], ["c"], rule)
    assert not small.fields and small.names == ["v", "c=a", "c=b", "c=<unknown>"]
    wide = preprocess.encode_features(frames(train + ["z"], ["a"]), ["v"], ["c"], rule)  # 3 levels > 2
    assert [f.name for f in wide.fields] == ["c"] and wide.names == ["v"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "dense"}, "valid choices: auto, embedding, onehot"),
        ({"min_count": 0}, "min_count must be >= 1"),
        ({"hash_buckets": 1}, "hash_buckets must be 0"),
    ],
)
def test_bad_encoding_options_are_one_line_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        CategoricalEncoding(**kwargs)


def test_embedding_dim_is_searched_only_on_data_with_embedded_fields():
    from bench.spec.space import ENCODER_SPACE, Param, default_space, with_encoder_space

    space = default_space("mmoe")
    assert "embedding_dim" not in space
    assert with_encoder_space(space, True)["embedding_dim"] == ENCODER_SPACE["embedding_dim"]
    assert "embedding_dim" not in with_encoder_space({**space, "embedding_dim": Param(value=4)}, False)
    assert with_encoder_space({**space, "embedding_dim": Param(value=4)}, True)["embedding_dim"] == Param(value=4)
