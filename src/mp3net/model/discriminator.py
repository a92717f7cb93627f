"""The MP3net discriminator (SPEC §4, paper §3.1–3.2): the generator's blocks mirrored.

Each block halves the time resolution twice and removes the top octave: the top half of the bands is
downsampled in time and frequency and added onto the upper half of the lower octave.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mp3net.config import ModelConfig
from mp3net.model.layers import conv1, conv3, init_weights, lrelu_, pointwise


class DiscriminatorBlock(nn.Module):
    """One discriminator block: ``[B, cin, M, K]`` → ``[B, out, M/4, K/2]``."""

    def __init__(self, cin: int, mid: int, out: int, slope: float = 0.2) -> None:
        super().__init__()
        self.slope = slope
        self.conv = conv3(cin, cin)
        self.down = conv3(cin, mid, stride=(2, 1))
        self.high_conv = conv3(mid, mid)
        self.high_down = conv3(mid, out, stride=(2, 2))
        self.low_conv = conv3(mid, mid)
        self.low_down = conv3(mid, out, stride=(2, 1))
        # the balancing convs come last in D (paper §3.1), right before the octaves are summed
        self.high_balance = conv1(out, out)
        self.low_balance = conv1(out, out)

    def top_octave(self, y: torch.Tensor) -> torch.Tensor:
        """``[B, mid, M/2, K]`` → ``[B, out, M/4, K/4]``: top K/2 bands, downsampled in time and frequency."""
        s = self.slope
        k = y.shape[-1]
        return pointwise(
            self.high_balance, lrelu_(self.high_down(lrelu_(self.high_conv(y[..., k // 2 :]), s)), s)
        )

    def lower_octaves(self, y: torch.Tensor) -> torch.Tensor:
        """``[B, mid, M/2, K]`` → ``[B, out, M/4, K/2]``: the lower K/2 bands, downsampled in time."""
        s = self.slope
        k = y.shape[-1]
        return pointwise(
            self.low_balance, lrelu_(self.low_down(lrelu_(self.low_conv(y[..., : k // 2]), s)), s)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.slope
        y = lrelu_(self.down(lrelu_(self.conv(x), s)), s)
        low, high = self.lower_octaves(y), self.top_octave(y)
        # zero-pad the folded top octave on the low side: it lands on the upper half of the lower octave
        return low + F.pad(high, (low.shape[-1] - high.shape[-1], 0))


def minibatch_stddev(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """Grouped minibatch standard deviation (ProGAN), appended as one extra channel.

    Samples are split into groups of ``g = min(group_size, B)`` (reduced to the largest divisor of B, so any
    batch works); sample b belongs to group b mod (B/g). Per group: the standard deviation over the group of
    every element, √(var + 1e-8), averaged over C, M, K → one scalar per sample. A group of one sample has no
    spread: the feature is 0 (batch 1 included).

    Args:
        x: ``[B, C, M, K]``.
    Returns:
        ``[B, C + 1, M, K]``.
    """
    b, c, m, k = x.shape
    g = max(1, min(group_size, b))
    while b % g:
        g -= 1
    if g == 1:
        feat = x.new_zeros(b, 1, m, k)
    else:
        y = (x if x.dtype == torch.float64 else x.float()).reshape(g, b // g, c, m, k)
        var = (y - y.mean(dim=0, keepdim=True)).square().mean(dim=0)  # [B/g, C, M, K]
        std = torch.sqrt(var + 1e-8).mean(dim=(1, 2, 3))  # [B/g]
        feat = std.to(x.dtype).repeat(g).view(b, 1, 1, 1).expand(b, 1, m, k)
    return torch.cat([x, feat], dim=1)


class Discriminator(nn.Module):
    """Noised MDCT amplitudes ``[B, C, M, K]`` → score ``[B, 1]``, float32 (float64 for a float64 D)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.slope = cfg.leaky_slope
        n = cfg.n_blocks
        self.from_in = conv1(cfg.channels, cfg.block_channels(n - 1)[2])
        # D block j mirrors G block n-1-j: (in, mid, out)_D = (out, mid, in)_G
        self.blocks = nn.ModuleList()
        for i in reversed(range(n)):
            g_in, mid, g_out = cfg.block_channels(i)
            self.blocks.append(DiscriminatorBlock(g_out, mid, g_in, slope=cfg.leaky_slope))
        ch = cfg.dense_channels
        self.dense = nn.Linear((ch + 1) * cfg.start_frames * cfg.start_bands, cfg.d_dense)
        self.score = nn.Linear(cfg.d_dense, 1)
        init_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, M, K]`` → ``[B, ch, M/4^n, K/2^n]`` (before the minibatch-stddev layer)."""
        x = lrelu_(pointwise(self.from_in, x), self.slope)
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = minibatch_stddev(self.features(x), self.cfg.mbstd_group)
        h = lrelu_(self.dense(h.flatten(1)), self.slope)
        score = self.score(h)
        return score if score.dtype == torch.float64 else score.float()

    def block_shapes(self) -> list[tuple[str, tuple[int, int, int]]]:
        """(name, [channels, frames, bands]) after the input conv and every block, for one sample."""
        cfg = self.cfg
        n = cfg.n_blocks
        shapes = [("input 1x1", (cfg.block_channels(n - 1)[2], cfg.n_frames, cfg.n_bands))]
        for j in range(n):
            g = n - 1 - j
            shapes.append(
                (
                    f"block {j} (mirrors G {g})",
                    (cfg.block_channels(g)[0], cfg.start_frames * 4**g, cfg.start_bands * 2**g),
                )
            )
        ch = cfg.dense_channels
        shapes.append(("mbstd", (ch + 1, cfg.start_frames, cfg.start_bands)))
        shapes.append(("dense", (cfg.d_dense, 1, 1)))
        shapes.append(("score", (1, 1, 1)))
        return shapes
