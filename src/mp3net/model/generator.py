"""The MP3net generator (paper §3.1 and figure 3; docs/networks.md#generator).

Each block quadruples the number of time frames M and adds an octave: the new top octave is made from the
top half of the input bands by a transposed conv with stride 2 in time and frequency, the existing octaves are
upsampled in time only, each branch gets its own 1×1 balancing conv (no activation), the two are concatenated
on frequency as [low, high] and upsampled in time once more.
"""

from __future__ import annotations

import torch
from torch import nn

from mp3net.config import ModelConfig
from mp3net.model.layers import (
    conv1,
    conv3,
    conv3_apply,
    conv_t3_apply,
    init_weights,
    lrelu_,
    pointwise,
    upsample3,
)

# Frames of context each side of a time tile, counted at the input of the tiled blocks. One block reaches
# 1.5 input frames to each side (two upsampling convs and two 3-tap convs); every later block adds a
# quarter of its predecessor's reach, so any number of tiled blocks stays below 2 frames;
# 2 is exact (tests/model).
TILE_HALO = 2


class GeneratorBlock(nn.Module):
    """One generator block: ``[B, cin, M, K]`` → ``[B, out, 4M, 2K]``."""

    def __init__(
        self, cin: int, mid: int, out: int, slope: float = 0.2, upsample: str = "transposed"
    ) -> None:
        super().__init__()
        self.slope = slope
        self.high_up = upsample3(cin, mid, (2, 2), upsample)  # top octave → new octave, twice the frames
        self.high_conv = conv3(mid, mid)
        self.low_up = upsample3(cin, mid, (2, 1), upsample)  # all existing octaves, twice the frames
        self.low_conv = conv3(mid, mid)
        self.high_balance = conv1(mid, mid)
        self.low_balance = conv1(mid, mid)
        self.up = upsample3(mid, out, (2, 1), upsample)
        self.conv = conv3(out, out)

    def new_octave(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, cin, M, K]`` → ``[B, mid, 2M, K]``: the new octave, from the top K/2 input bands only."""
        s = self.slope
        k = x.shape[-1]
        return pointwise(
            self.high_balance,
            lrelu_(conv3_apply(self.high_conv, lrelu_(conv_t3_apply(self.high_up, x[..., k // 2 :]), s)), s),
        )

    def old_octaves(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, cin, M, K]`` → ``[B, mid, 2M, K]``: the existing octaves, upsampled in time."""
        s = self.slope
        return pointwise(
            self.low_balance, lrelu_(conv3_apply(self.low_conv, lrelu_(conv_t3_apply(self.low_up, x), s)), s)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.slope
        y = torch.cat([self.old_octaves(x), self.new_octave(x)], dim=-1)  # [B, mid, 2M, 2K], low | high
        return lrelu_(conv3_apply(self.conv, lrelu_(conv_t3_apply(self.up, y), s)), s)


class Generator(nn.Module):
    """z ``[B, latent]`` → MDCT amplitudes ``[B, C, M, K]`` in (−1, 1).

    ``forward(z) = synthesize(head(z))``. :meth:`head` maps latents to the start tensor, :meth:`synthesize`
    is fully convolutional and accepts a start tensor of any time length, so several latents laid along
    time give a longer track.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.slope = cfg.leaky_slope
        self.dense_channels = cfg.dense_channels
        self.dense = nn.Linear(cfg.latent_dim, cfg.dense_channels * cfg.start_frames * cfg.start_bands)
        self.blocks = nn.ModuleList(
            GeneratorBlock(*cfg.block_channels(i), slope=cfg.leaky_slope, upsample=cfg.upsample)
            for i in range(cfg.n_blocks)
        )
        self.to_out = conv1(cfg.block_channels(cfg.n_blocks - 1)[2], cfg.channels)
        init_weights(self)

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """Dense → reshape → LReLU.

        Args:
            z: ``[B, latent]``, or ``[B, L, latent]`` for L start tiles laid along time.
        Returns:
            ``[B, ch, start_frames, start_bands]`` or ``[B, ch, L·start_frames, start_bands]``.
        """
        c, f, k = self.dense_channels, self.cfg.start_frames, self.cfg.start_bands
        if z.dim() == 2:
            h = self.dense(z).view(z.shape[0], c, f, k)
        elif z.dim() == 3:
            b, n = z.shape[:2]
            h = self.dense(z).view(b, n, c, f, k).permute(0, 2, 1, 3, 4).reshape(b, c, n * f, k)
        else:
            raise ValueError(f"z must be [B, latent] or [B, L, latent], got shape {tuple(z.shape)}")
        return lrelu_(h, self.slope)

    def _output(self, x: torch.Tensor) -> torch.Tensor:
        # the output layer and tanh run in float32 even under autocast (docs/networks.md#generator)
        dev = x.device.type
        if dev in ("cpu", "cuda") and torch.is_autocast_enabled(dev):
            with torch.autocast(dev, enabled=False):
                return torch.tanh_(pointwise(self.to_out, x.float()))
        return torch.tanh_(pointwise(self.to_out, x.float()))

    def _run(self, x: torch.Tensor, blocks: list[nn.Module]) -> torch.Tensor:
        for block in blocks:
            x = block(x)
        return self._output(x)

    def synthesize(
        self,
        x: torch.Tensor,
        tile_frames: int | None = None,
        tile_blocks: int = 2,
        halo: int = TILE_HALO,
        channels_last: bool | None = None,
        first_block: int = 0,
    ) -> torch.Tensor:
        """Blocks → 1×1 → tanh.

        Args:
            x: start tensor ``[B, ch, M0, start_bands]``, any M0.
            tile_frames: if given, the last ``tile_blocks`` blocks (the widest: most of the memory and memory
                traffic) run on time tiles of this many frames of their input, each with ``halo`` frames of
                context per side, so only one tile's activations are alive at a time. Interior results are
                exact: the output equals the untiled one up to float rounding (the conv kernels' blocking
                may depend on the tile's size).
            channels_last: run the activations in channels-last layout, oneDNN's fast CPU layout (2–3× faster
                than NCHW here, 1×1 convs become plain GEMMs; with autograd the convs take
                :mod:`mp3net.model.conv`'s fast weight gradient). Default: on for CPU. The values are the
                same up to float rounding.
            first_block: start at this block: ``x`` is then that block's input (per-block profiling, tests).
        Returns:
            ``[B, C, 4^n_blocks·M0, K]`` (``4^(n_blocks − first_block)·M0`` frames with ``first_block``).
        """
        if channels_last is None:
            channels_last = x.device.type == "cpu"
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        blocks = list(self.blocks)[first_block:]
        if not tile_frames:
            return self._run(x, blocks)
        tile_blocks = max(0, min(tile_blocks, len(blocks)))
        deep, wide = blocks[: len(blocks) - tile_blocks], blocks[len(blocks) - tile_blocks :]
        for block in deep:
            x = block(x)
        m = x.shape[2]
        if tile_frames >= m:
            return self._run(x, wide)
        scale = 4 ** len(wide)
        out = None
        for a in range(0, m, tile_frames):
            b = min(a + tile_frames, m)
            lo, hi = max(0, a - halo), min(m, b + halo)
            y = self._run(x[:, :, lo:hi], wide)[:, :, (a - lo) * scale : (b - lo) * scale]
            if out is None:
                out = y.new_empty(y.shape[0], y.shape[1], m * scale, y.shape[3])
            out[:, :, a * scale : b * scale] = y
            del y
        return out

    def forward(self, z: torch.Tensor, tile_frames: int | None = None) -> torch.Tensor:
        """``[B, latent]`` (or ``[B, L, latent]``) → ``[B, C, M, K]``, M = 4^n_blocks·start_frames(·L)."""
        return self.synthesize(self.head(z), tile_frames=tile_frames)

    @torch.inference_mode()
    def generate(self, z: torch.Tensor, tile_frames: int | None = 64, tile_blocks: int = 2) -> torch.Tensor:
        """Fast inference: ``forward`` without autograd, channels-last on CPU, the ``tile_blocks`` widest
        blocks in time tiles of ``tile_frames`` frames of their input (bounded memory for any length; 64
        frames = 16 tiles for the 95 s model keep each tile's activations in cache: the widest blocks ran
        at 151 GFLOP/s against 115 untiled and 134 with 256-frame tiles on an idle 2-core CPU, see
        benchmarks/README.md; on a heavily shared CPU larger tiles lose less to thread barriers).
        Returns a contiguous ``[B, C, M, K]`` float32 tensor."""
        return self.synthesize(self.head(z), tile_frames=tile_frames, tile_blocks=tile_blocks).contiguous()

    def block_shapes(self) -> list[tuple[str, tuple[int, int, int]]]:
        """(name, [channels, frames, bands]) after the head and every block, for one latent."""
        cfg = self.cfg
        shapes = [("head", (self.dense_channels, cfg.start_frames, cfg.start_bands))]
        for i in range(cfg.n_blocks):
            shapes.append(
                (
                    f"block {i}",
                    (
                        cfg.block_channels(i)[2],
                        cfg.start_frames * 4 ** (i + 1),
                        cfg.start_bands * 2 ** (i + 1),
                    ),
                )
            )
        shapes.append(("output", (cfg.channels, cfg.n_frames, cfg.n_bands)))
        return shapes
