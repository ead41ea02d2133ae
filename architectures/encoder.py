"""The input side of an architecture on data with categorical fields: ``FeatureEncoder`` (numeric columns plus
one embedding per field -> the ``(B, d)`` input of any architecture) and ``Encoded`` (an architecture behind one;
``registry.create`` builds it when the data have fields).

Part of the shared vocabulary of ``layers`` (which re-exports both names): a module of its own because the
encoder is the one layer that reads the data's fields rather than hidden units, and the optimisers and populations
of ``bench.training`` treat its table apart (sparse rows, no weight decay).

Shape letters as in ``layers``: B batch, d features, F categorical fields, e embedding width.
"""

from __future__ import annotations

import torch
from torch import nn


class FeatureEncoder(nn.Module):
    """Numeric columns as they are, each categorical field through its own embedding table:

        enc(x, c) = [x, E_1[c_1], ..., E_F[c_F]]     (B, d) + F x (B, e) -> (B, d + F e)

    The F tables are held as one ``nn.Embedding(sum_j V_j, e)``; field j's rows start at
    ``offset_j = V_1 + ... + V_{j-1}``, so one lookup of ``c + offsets`` serves every field (one kernel, one
    gradient tensor). ``E_j[c]`` equals ``onehot(c, V_j) @ E_j``: an embedding is a one-hot column block times
    a weight matrix, without materialising the one-hot block. Codes are those of ``bench.datasets.Field``
    (0: the out-of-vocabulary row). Rows drawn ``N(0, 1)`` (``nn.Embedding``'s default), the scale of the
    standardised numeric columns beside them. ``no_weight_decay``: the table is never decayed; with Adam's L2
    the decay of a row no batch touched would be a full-size normalised step towards zero every step.

    ``sets`` > 1 (STEM: shared plus task-specific embeddings) keeps that many independent embeddings of every field
    in the same table, set j's rows after set j-1's, and returns one encoding per set, ``(sets, B, d + F e)``, the
    numeric columns repeated: still one lookup (``rows``) and one sparse gradient.

    The width e is global (``embedding_dim``, searched over {4, 8, 16} on data with fields), not per field: one
    table of one width is what makes a batch one lookup and one sparse gradient, which ``LazyAdam`` and a
    population's ``StackedAdam`` (one lazily updated table per member) update row by row. Per-field widths would
    need one table per width (several lazy tables in both optimisers) or a table of the largest width with
    columns masked per field (the memory and lookups of the largest width, for fewer parameters in name only).
    A small field is better kept one-hot (``encoding="auto"``: at most ``onehot_max`` levels), where a width
    would have nothing to tune.
    """

    def __init__(self, d_numeric: int, sizes: list[int], dim: int, sets: int = 1) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {dim}")
        if any(v < 1 for v in sizes):
            raise ValueError(f"every categorical field needs at least one embedding row, got sizes {sizes}")
        if sets < 1:
            raise ValueError(f"an encoder needs at least one set of embeddings, got {sets}")
        self.d_numeric, self.sizes, self.dim, self.sets = d_numeric, list(sizes), dim, sets
        self.d_out = d_numeric + len(sizes) * dim
        self.table = nn.Embedding(max(1, sets * sum(sizes)), dim)  # set j's rows follow set j-1's
        offsets = torch.tensor([0, *sizes[:-1]], dtype=torch.int64).cumsum(0) if sizes else torch.zeros(0)
        self.register_buffer("offsets", offsets.to(torch.int64), persistent=False)
        # (sets, 1): where each set's rows start in the table
        starts = torch.arange(sets, dtype=torch.int64).unsqueeze(1) * sum(sizes)
        self.register_buffer("starts", starts, persistent=False)

    def no_weight_decay(self) -> set[str]:
        return {"table"}

    def rows(self, cat: torch.Tensor) -> torch.Tensor:
        """The table rows a batch looks up: ``(..., F)`` codes -> ``(..., F)`` rows with one set, ``(..., sets F)``
        with several (set-major)."""
        rows = cat + self.offsets  # (..., F)
        if self.sets == 1:
            return rows
        return (rows.unsqueeze(-2) + self.starts).flatten(-2)  # (..., sets, F) -> (..., sets F)

    def forward(self, x: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        if not self.sizes:
            return x
        emb = self.table(self.rows(cat))  # (B, F) -> (B, F, e), or (B, sets F, e)
        if self.sets == 1:
            return torch.cat([x, emb.flatten(-2)], dim=-1)  # (B, d + F e)
        emb = emb.unflatten(1, (self.sets, len(self.sizes))).flatten(-2).transpose(0, 1)  # (sets, B, F e)
        return torch.cat([x.expand(self.sets, *x.shape), emb], dim=-1)  # (sets, B, d + F e)

    def extra_repr(self) -> str:
        return f"d_numeric={self.d_numeric}, sizes={self.sizes}, dim={self.dim}, sets={self.sets}"


class Encoded(nn.Module):
    """An architecture behind a ``FeatureEncoder``: ``forward(x, cat) = net(encoder(x, cat))``; with
    ``with_aux=True`` (an architecture with an auxiliary loss, ``has_aux_loss``) also that loss."""

    def __init__(self, encoder: FeatureEncoder, net: nn.Module) -> None:
        super().__init__()
        self.encoder, self.net = encoder, net
        self.has_aux_loss = bool(getattr(net, "has_aux_loss", False))
        self.funnel_loss = bool(getattr(net, "funnel_loss", False))

    def forward(self, x: torch.Tensor, cat: torch.Tensor, with_aux: bool = False, joint: bool = False):
        h = self.encoder(x, cat)
        kw = {"joint": True} if joint else {}  # a funnel architecture's entire-space view (funnel.py)
        return self.net(h, with_aux=True, **kw) if with_aux else self.net(h, **kw)
