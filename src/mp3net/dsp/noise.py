"""MDCT coefficients of noise with a drawn envelope (docs/networks.md#sines-and-noise).

The MDCT of broadband noise has coefficients of random sign in every band and frame; what a listener hears of
it is its envelope, the level per band and frame. :func:`noise_mdct` gives an amplitude ``a[m, k]`` that
envelope: X[m, k] = a[m, k] · ε[first + m, k, c], with ε = ±1 a fixed hash of the track frame, the band and
the channel. The signs depend on the frame's index only (any device, any tile, any window of a long track
draws the same ones), so the output stays a deterministic function of the latents, as the oscillators'.
"""

from __future__ import annotations

import torch

_MASK = 0xFFFFFFFF
# a 32-bit integer hash (two multiply-xorshift rounds): every product stays below 2**59, exact in int64
_MULTIPLIER = 0x45D9F3B


def _hash32(x: torch.Tensor) -> torch.Tensor:
    x = x & _MASK
    for _ in range(2):
        x = ((x ^ (x >> 16)) * _MULTIPLIER) & _MASK
    return x ^ (x >> 16)


def noise_signs(first: int, frames: int, n_bands: int, channels: int, device: torch.device) -> torch.Tensor:
    """ε ``[M, K, C]`` float32 in {−1, +1} for track frames ``first … first + M − 1``: one hash bit of
    (frame, band, channel) each, half of them −1."""
    m = torch.arange(first, first + frames, dtype=torch.int64, device=device)
    index = (m[:, None, None] * n_bands + torch.arange(n_bands, device=device)[:, None]) * channels
    index = index + torch.arange(channels, device=device)
    bit = (_hash32(index) >> 7) & 1
    return (2 * bit - 1).float()


def noise_mdct(amplitude: torch.Tensor, first: int = 0) -> torch.Tensor:
    """Noise with the envelope ``amplitude``.

    Args:
        amplitude: ``[B, C, M, K]`` float32 (signed: the sign only flips ε).
        first: the track frame of ``m = 0``.
    Returns:
        X ``[B, C, M, K]`` float32 = amplitude · ε.
    """
    if amplitude.dim() != 4:
        raise ValueError(f"amplitude must be [B, C, M, K], got shape {tuple(amplitude.shape)}")
    _, C, M, K = amplitude.shape
    return amplitude * noise_signs(first, M, K, C, amplitude.device).permute(2, 0, 1)
