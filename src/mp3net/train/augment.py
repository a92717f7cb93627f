"""Augmentation of D's inputs for small datasets (docs/training.md#augmentation).

Reals and fakes alike get the same random transforms before the noise layer, so D never sees a
distribution that only one side has. Each transform is applied to a clip with probability ``p``; all three
leave the music's distribution nearly unchanged (music has no preferred start frame, level or side), so
even a large ``p`` does not leak into what G learns:

- time shift: a circular shift by a random number of frames;
- gain: a level change uniform in ±3 dB (amplitudes stay inside (−1, 1) up to 1.41×);
- L/R swap: the stereo channels exchanged.

Every transform is differentiable in the input, so G's gradient passes through.
"""

from __future__ import annotations

import torch

MAX_GAIN_DB = 3.0


def augment(A: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[B, C, M, K]`` → same shape; ``p`` = 0 returns ``A`` itself and draws nothing."""
    if p <= 0:
        return A
    b, c, m, _ = A.shape
    dev = A.device

    def coin() -> torch.Tensor:
        return torch.rand(b, generator=generator, device=dev) < p

    shift_on, gain_on, swap_on = coin(), coin(), coin()
    shifts = torch.randint(0, m, (b,), generator=generator, device=dev) * shift_on
    db = (torch.rand(b, generator=generator, device=dev) * 2 - 1) * MAX_GAIN_DB * gain_on
    # a circular time shift as a gather: frame (i − s) mod M of each clip
    idx = (torch.arange(m, device=dev).view(1, m) - shifts.view(b, 1)) % m
    out = A.gather(2, idx.view(b, 1, m, 1).expand_as(A))
    out = out * (10 ** (db / 20)).to(A.dtype).view(b, 1, 1, 1)
    if c == 2:
        out = torch.where(swap_on.view(b, 1, 1, 1), out.flip(1), out)
    return out
