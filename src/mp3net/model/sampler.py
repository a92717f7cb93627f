"""The table sampler: noise → a latent near the pretrained table (docs/training.md#the-sampler).

A pretrained generator decodes the latents of its table, one per training clip, sharply; what it draws
elsewhere depends on how far it is from them. A Gaussian fitted to the table puts most of its mass between
the clips, where G draws blends (hazy lines, soft onsets, the same pitches for every seed). The table
sampler stays on the table: a draw picks a table latent, walks part of the way towards one of its nearest
neighbours (a clip like it) and adds a small jitter scaled by the distance to that neighbour. It is a
mixture over the edges of the table's nearest-neighbour graph: every clip of the table is drawn, and no
draw falls between clips that are not alike. It measured better than an IMLE mapper, a Gaussian mixture
and the single Gaussian (docs/experiments.md#the-sampler).

The choice is read from z itself (z ~ N(0, I), so its first coordinates' normal CDFs are uniform): the
same z always gives the same latent, on every device.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

TABLE_NEIGHBOURS = 4  # a draw walks towards one of the k nearest table latents
TABLE_REACH = 0.5  # at most this share of the way: the midpoint of two alike clips at the farthest
TABLE_JITTER = 0.5  # the jitter's rms length, in units of the distance to the nearest neighbour


class TableSampler(nn.Module):
    """z ``[..., D]`` (D ≥ 4) → latents ``[..., D]`` near a table ``[n, D]``.

    With u = Φ(z) the normal CDF: row i = ⌊u₀·n⌋, neighbour j = ``neighbours[i, ⌊u₁·k⌋]``, and the latent
    ``table[i] + reach·u₂·(table[j] − table[i]) + jitter·nearest[i]/√(D−3)·z[3:]`` (the jitter lives in
    the last D − 3 coordinates, zero-padded in front).

    Buffers (all in the state dict, so an export carries them): ``table`` ``[n, D]``, ``neighbours``
    ``[n, k]`` (int64), ``nearest`` ``[n]`` (distance to the nearest other row), ``reach`` and ``jitter``
    (scalars). A fresh module has an empty table; :meth:`fit` or loading a state dict sizes it.
    """

    CHOICES = 3  # z's first coordinates choose the row, the neighbour and the walk; the rest is jitter

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.table: torch.Tensor
        self.neighbours: torch.Tensor
        self.nearest: torch.Tensor
        self.reach: torch.Tensor
        self.jitter: torch.Tensor
        if dim <= self.CHOICES:
            raise ValueError(f"the table sampler needs a latent of at least 4 dimensions, got {dim}")
        self.dim = dim
        self.register_buffer("table", torch.zeros(0, dim))
        self.register_buffer("neighbours", torch.zeros(0, 0, dtype=torch.long))
        self.register_buffer("nearest", torch.zeros(0))
        self.register_buffer("reach", torch.tensor(TABLE_REACH))
        self.register_buffer("jitter", torch.tensor(TABLE_JITTER))

    @torch.no_grad()
    def fit(self, latents: torch.Tensor, k: int = TABLE_NEIGHBOURS) -> TableSampler:
        """Hold ``latents`` ``[n, D]`` (n ≥ 2) and their ``min(k, n − 1)`` nearest neighbours."""
        z = latents.detach().float().to(self.table.device)
        n = z.shape[0]
        if n < 2 or z.shape[1] != self.dim:
            raise ValueError(
                f"the table sampler needs at least 2 latents of {self.dim} dims, got {tuple(z.shape)}"
            )
        d = torch.cdist(z.double(), z.double())
        d.fill_diagonal_(math.inf)
        dist, idx = d.topk(min(k, n - 1), dim=1, largest=False)  # ascending
        self.table, self.neighbours, self.nearest = z.clone(), idx, dist[:, 0].float()
        return self

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # the table's size is the export's: take the saved buffers' shapes before copying them
        for name in ("table", "neighbours", "nearest"):
            saved, mine = state_dict.get(prefix + name), getattr(self, name)
            if saved is not None:
                setattr(self, name, mine.new_empty(saved.shape))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        n, k = self.neighbours.shape
        if n == 0:
            raise RuntimeError("the table sampler holds no table: fit it or load an export")
        u = torch.special.ndtr(z[..., : self.CHOICES].float())
        i = (u[..., 0] * n).long().clamp(0, n - 1)
        j = self.neighbours[i, (u[..., 1] * k).long().clamp(0, k - 1)]
        a, b = self.table[i], self.table[j]
        walk = self.reach * u[..., 2:3] * (b - a)
        scale = self.jitter * self.nearest[i, None] / math.sqrt(self.dim - self.CHOICES)
        jitter = torch.nn.functional.pad(z[..., self.CHOICES :].float(), (self.CHOICES, 0)) * scale
        return (a + walk + jitter).to(z.dtype)
