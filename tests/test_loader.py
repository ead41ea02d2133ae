import torch

from bench.datasets import BatchLoader, Split


def split(n=10):
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1)
    return Split(x, x.clone())


def test_batches_cover_every_row_once_with_a_partial_last_batch():
    loader = BatchLoader(split(10), 4)
    batches = list(loader)
    assert len(loader) == 3 and [len(b[0]) for b in batches] == [4, 4, 2]
    assert torch.cat([b[0] for b in batches]).flatten().tolist() == list(range(10))


def test_shuffle_is_seeded_per_epoch_and_keeps_rows_aligned():
    a, b = BatchLoader(split(), 3, shuffle=True, seed=5), BatchLoader(split(), 3, shuffle=True, seed=5)
    e0a, e1a = torch.cat([x for x, _, _ in a]), torch.cat([x for x, _, _ in a])
    e0b = torch.cat([x for x, _, _ in b])
    assert torch.equal(e0a, e0b)  # same seed, same order
    assert not torch.equal(e0a, e1a)  # a new permutation each epoch
    assert sorted(e0a.flatten().tolist()) == list(range(10))
    for x, _, y in BatchLoader(split(), 3, shuffle=True, seed=1):
        assert torch.equal(x, y)  # features and labels permuted together
    other = torch.cat([x for x, _, _ in BatchLoader(split(), 3, shuffle=True, seed=6)])
    assert not torch.equal(e0a, other)


def test_batches_are_views_of_device_tensors_not_per_sample_items():
    s = split(8)
    x, _, _ = next(iter(BatchLoader(s, 4)))
    assert x.data_ptr() == s.x.data_ptr()  # unshuffled batches are slices, no copy


def test_categorical_codes_and_missing_labels_travel_with_their_rows():
    x = torch.arange(10, dtype=torch.float32).unsqueeze(1)
    y = torch.where(x % 3 == 0, torch.nan, x)  # every third label missing
    cat = torch.arange(10).unsqueeze(1).repeat(1, 2) * torch.tensor([1, 100])
    for xb, cb, yb in BatchLoader(Split(x, y, cat), 4, shuffle=True, seed=2):
        assert cb.dtype == torch.int64 and cb.shape == (len(xb), 2)
        assert torch.equal(cb[:, 0], xb[:, 0].long()) and torch.equal(cb[:, 1], 100 * xb[:, 0].long())
        assert torch.equal(torch.isnan(yb[:, 0]), xb[:, 0] % 3 == 0)  # the mask is the row's own
