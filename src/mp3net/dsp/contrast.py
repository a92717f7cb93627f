"""How sharply a held spectrum peaks across frequency (docs/experiments.md#2026-12-02-contrast-matching).

A held chord is a few partials with deep valleys between them; noise fills the valleys. Averaged over a
short step (as :func:`mp3net.dsp.pooled_levels` does), a partial that holds still keeps its peak, while
peaks that flicker from frame to frame average out to a flat level: so the depth of each bin below the
loudest bin near it, on pooled levels, is large only where partials are both discrete and sustained.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mp3net.dsp.change import pooled_levels


def pooled_level_contrast(energy: torch.Tensor, pool: int, floor_db: float, width: int) -> torch.Tensor:
    """Each pooled bin's level below the loudest bin within ``width`` bins of it, in dB (<= 0; 0 at a
    local peak, strongly negative in the valleys between partials).

    Args:
        energy: ``[..., T, K]`` non-negative (squared amplitudes), ``T >= pool``, ``K > width``.
        pool: frames per step (:func:`mp3net.dsp.pooled_levels`).
        floor_db: levels further below each ``[T, K]`` grid's loudest pooled bin count as this floor,
            so the valleys of near-silence do not count as deep.
        width: bins on each side that a peak rules over (about half a partial spacing).

    Returns:
        ``[..., T // pool, K]`` contrasts in dB.
    """
    T, K = energy.shape[-2:]
    if T < pool or width < 1 or K <= width:
        raise ValueError(
            f"pooled_level_contrast needs >= {pool} frames and more than {width} bins, got {T} x {K}"
        )
    L = pooled_levels(energy, pool, floor_db)
    flat = L.reshape(-1, 1, K)
    local_max = F.max_pool1d(flat, 2 * width + 1, stride=1, padding=width).reshape(L.shape)
    return L - local_max
