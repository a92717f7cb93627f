"""The table sampler: noise → a latent near the pretrained table (docs/training.md#the-sampler).

A pretrained generator decodes the latents of its table, one per training clip, sharply; what it draws
elsewhere depends on how far it is from them. A Gaussian fitted to the table puts most of its mass between
the clips, where G draws blends (hazy lines, soft onsets, the same pitches for every seed). The table
sampler stays on the table: a draw picks a table latent, walks part of the way towards one of its nearest
neighbours (a clip like it) and adds a small jitter scaled by the distance to that neighbour. It is a
mixture over the edges of the table's nearest-neighbour graph: every clip of the table is drawn, and no
draw falls between clips that are not alike. It measured better than an IMLE mapper, a Gaussian mixture
and the single Gaussian (docs/experiments.md#the-sampler).

Long tracks walk the table (:meth:`TableSampler.walk`, docs/long-tracks.md#the-walk): the table holds runs
of consecutive clips (``successor``), so the next clip's latent is drawn from what followed this clip, or a
clip like it, in the recordings: a nonparametric model of latent sequences, p(next | now) = the successors of
``now`` and of its nearest neighbours.

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
# a walk's chance of taking the clip that followed this one in its recording, where one did; otherwise it
# takes what followed one of the clip's nearest neighbours (docs/long-tracks.md#the-walk)
WALK_FOLLOW = 0.5


class TableSampler(nn.Module):
    """z ``[..., D]`` (D ≥ 4) → latents ``[..., D]`` near a table ``[n, D]``.

    With u = Φ(z) the normal CDF: row i = ⌊u₀·n⌋, neighbour j = ``neighbours[i, ⌊u₁·k⌋]``, and the latent
    ``table[i] + reach·u₂·(table[j] − table[i]) + jitter·nearest[i]/√(D−3)·z[3:]`` (the jitter lives in
    the last D − 3 coordinates, zero-padded in front).

    Buffers (all in the state dict, so an export carries them): ``table`` ``[n, D]``, ``neighbours``
    ``[n, k]`` (int64), ``nearest`` ``[n]`` (distance to the nearest other row), ``successor`` ``[n]``
    (int64: the row of the clip that followed this one in its recording, −1 where none is in the table;
    an export without it has none), ``reach``, ``jitter`` and ``follow`` (scalars). A fresh module has an
    empty table; :meth:`fit` or loading a state dict sizes it.
    """

    CHOICES = 3  # z's first coordinates choose the row, the neighbour and the walk; the rest is jitter

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.table: torch.Tensor
        self.neighbours: torch.Tensor
        self.nearest: torch.Tensor
        self.reach: torch.Tensor
        self.jitter: torch.Tensor
        self.successor: torch.Tensor
        self.follow: torch.Tensor
        if dim <= self.CHOICES:
            raise ValueError(f"the table sampler needs a latent of at least 4 dimensions, got {dim}")
        self.dim = dim
        self.register_buffer("table", torch.zeros(0, dim))
        self.register_buffer("neighbours", torch.zeros(0, 0, dtype=torch.long))
        self.register_buffer("nearest", torch.zeros(0))
        self.register_buffer("reach", torch.tensor(TABLE_REACH))
        self.register_buffer("jitter", torch.tensor(TABLE_JITTER))
        self.register_buffer("successor", torch.zeros(0, dtype=torch.long))
        self.register_buffer("follow", torch.tensor(WALK_FOLLOW))

    @torch.no_grad()
    def fit(
        self, latents: torch.Tensor, k: int = TABLE_NEIGHBOURS, successor: torch.Tensor | None = None
    ) -> TableSampler:
        """Hold ``latents`` ``[n, D]`` (n ≥ 2), their ``min(k, n − 1)`` nearest neighbours and the rows that
        follow them, ``successor`` ``[n]`` (−1: none; default none at all)."""
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
        nxt = torch.full((n,), -1, dtype=torch.long) if successor is None else successor.long().cpu()
        if nxt.shape != (n,) or bool(((nxt < -1) | (nxt >= n)).any()):
            raise ValueError(f"successor must be {n} rows in [-1, {n}), got {tuple(nxt.shape)}")
        self.successor = nxt.to(self.table.device)
        return self

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # the table's size is the export's: take the saved buffers' shapes before copying them
        table = state_dict.get(prefix + "table")
        if table is not None and prefix + "successor" not in state_dict:  # exported before walks: none
            state_dict[prefix + "successor"] = torch.full((table.shape[0],), -1, dtype=torch.long)
            state_dict.setdefault(prefix + "follow", torch.tensor(WALK_FOLLOW))
        for name in ("table", "neighbours", "nearest", "successor"):
            saved, mine = state_dict.get(prefix + name), getattr(self, name)
            if saved is not None:
                setattr(self, name, mine.new_empty(saved.shape))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def walks(self) -> bool:
        """Whether the table knows which clip follows which (:func:`mp3net.data.table_runs`)."""
        return bool((self.successor >= 0).any())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        n, k = self.neighbours.shape
        if n == 0:
            raise RuntimeError("the table sampler holds no table: fit it or load an export")
        u = torch.special.ndtr(z[..., : self.CHOICES].float())
        return self.draw((u[..., 0] * n).long().clamp(0, n - 1), z)

    def draw(self, i: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Rows ``i`` ``[...]`` → their latents ``[..., D]``: the walk towards a neighbour and the jitter that
        :meth:`forward` gives them, read from z ``[..., D]``."""
        k = self.neighbours.shape[1]
        u = torch.special.ndtr(z[..., : self.CHOICES].float())
        j = self.neighbours[i, (u[..., 1] * k).long().clamp(0, k - 1)]
        a, b = self.table[i], self.table[j]
        walk = self.reach * u[..., 2:3] * (b - a)
        scale = self.jitter * self.nearest[i, None] / math.sqrt(self.dim - self.CHOICES)
        jitter = torch.nn.functional.pad(z[..., self.CHOICES :].float(), (self.CHOICES, 0)) * scale
        return (a + walk + jitter).to(z.dtype)

    def walk_rows(self, z: torch.Tensor) -> torch.Tensor:
        """z ``[..., P, D]`` (one draw per clip of a track) → the table rows of a walk ``[..., P]``.

        Row 0 as :meth:`forward` picks it. Then from row r, with u = Φ(z[t, 0]): where r has a successor and
        u < ``follow``, that successor; otherwise the successor of one of r's nearest neighbours that has
        one (chosen by u rescaled); where none has, a row picked as :meth:`forward` picks it.
        """
        n, k = self.neighbours.shape
        if n == 0:
            raise RuntimeError("the table sampler holds no table: fit it or load an export")
        u = torch.special.ndtr(z[..., 0].float())  # [..., P]
        rows = [(u[..., 0] * n).long().clamp(0, n - 1)]
        alike_next = self.successor[self.neighbours]  # [n, k]: what followed each neighbour
        options = (alike_next >= 0).sum(1)  # [n]
        # each row's neighbours' successors, those that exist first (in neighbour order): the jump takes one
        # of the first options[r]
        first = torch.sort((alike_next < 0).long(), dim=1, stable=True).indices
        alike_next = alike_next.gather(1, first)
        follow = self.follow.to(u.dtype)
        for t in range(1, z.shape[-2]):
            r, ut = rows[-1], u[..., t]
            own = self.successor[r]
            jump_u = torch.where(own >= 0, ((ut - follow) / (1 - follow).clamp_min(1e-6)).clamp(0, 1), ut)
            m = options[r]
            pick = (jump_u * m.clamp(min=1)).long().clamp(max=k - 1)  # the ⌊jump_u·m⌋-th that exists
            jumped = alike_next[r, pick]
            anew = (ut * n).long().clamp(0, n - 1)
            nxt = torch.where(m > 0, jumped, anew)
            rows.append(torch.where((own >= 0) & (ut < follow), own, nxt))
        return torch.stack(rows, dim=-1)

    def walk(self, z: torch.Tensor) -> torch.Tensor:
        """z ``[..., P, D]`` → the latents ``[..., P, D]`` of a walk (:meth:`walk_rows`), each drawn near its
        row as :meth:`forward` draws (:meth:`draw`)."""
        return self.draw(self.walk_rows(z), z).to(z.dtype)
