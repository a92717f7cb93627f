"""How much a spectrum changes from one short step to the next
(docs/experiments.md#2026-12-02-change-matching).

A held chord keeps every bin's level steady and a chord change moves many bins at once; noise moves a
little everywhere all the time. The pooled level change below measures both, on any energy grid
``[..., T, K]`` (frames × bins): ``mp3net evaluate`` reads it off the analysis MDCT of audio, and the
change-matching loss off G's MDCT amplitudes.
"""

from __future__ import annotations

import torch

_LOG_FLOOR = 1e-10  # as evaluate's level floor; the floor_db clamp decides for any clip not near silence


def pooled_level_change(energy: torch.Tensor, pool: int, floor_db: float, lag: int = 1) -> torch.Tensor:
    """The absolute change per bin between ``pool``-frame means of ``energy`` ``lag`` steps apart, in dB
    (a click is a large change at lag 1 and none at lag 2; a chord change is large at both).

    Args:
        energy: ``[..., T, K]`` non-negative (squared amplitudes), ``T >= 2 * pool``.
        pool: frames per step; enough to average out a steady tone's MDCT phase fluctuation.
        floor_db: levels further below the loudest pooled bin of each ``[T, K]`` grid count as this
            floor, so changes deep in the noise floor do not count.
        lag: steps between the two means compared.

    Returns:
        ``[..., T // pool - lag, K]`` dB changes.
    """
    T = energy.shape[-2]
    if T // pool < lag + 1 or lag < 1:
        need = (lag + 1) * pool
        raise ValueError(f"pooled_level_change at lag {lag} needs at least {need} frames, got {T}")
    L = pooled_levels(energy, pool, floor_db)
    return (L[..., lag:, :] - L[..., :-lag, :]).abs()


def pooled_levels(energy: torch.Tensor, pool: int, floor_db: float) -> torch.Tensor:
    """The levels in dB of ``pool``-frame means of ``energy`` ``[..., T, K]``, floored ``floor_db``
    below the loudest pooled bin of each ``[T, K]`` grid. Returns ``[..., T // pool, K]``."""
    T, K = energy.shape[-2:]
    steps = T // pool
    E = energy[..., : steps * pool, :].reshape(*energy.shape[:-2], steps, pool, K).mean(-2)
    L = 10 * torch.log10(E + _LOG_FLOOR)
    peak = L.detach().amax(dim=(-2, -1), keepdim=True)
    return torch.maximum(L, peak - floor_db)
