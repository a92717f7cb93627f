"""The MP3net generator (paper §3.1 and figure 3; docs/networks.md#generator).

Each block quadruples the number of time frames M and adds an octave: the new top octave is made from the
top half of the input bands by a transposed conv with stride 2 in time and frequency, the existing octaves are
upsampled in time only, each branch gets its own 1×1 balancing conv (no activation), the two are concatenated
on frequency as [low, high] and upsampled in time once more.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mp3net import ops
from mp3net.config import ModelConfig
from mp3net.dsp.oscillator import bank_mdct, bank_start_phase, oscillator_mdct, start_phase
from mp3net.model.layers import Block, Conv1, Conv3, LeakyReLU, init_weights, unit_scale, upsample3
from mp3net.ops import ExecutionPlan, TileLevel

# Frames of context each side of a time tile, counted at the input of the tiled blocks. One block reaches
# 1.5 input frames to each side (two upsampling convs and two 3-tap convs); every later block adds a
# quarter of its predecessor's reach, so any number of tiled blocks stays below 2 frames;
# 2 is exact (tests/model).
TILE_HALO = 2
# the oscillator output's frequency offset δ = MAX_DELTA·tanh(y) keeps each band's tone inside the band's
# own frequency range (docs/networks.md#oscillator-output)
MAX_DELTA = 0.5


class GeneratorBlock(Block):
    """One generator block: ``[B, cin, M, K]`` → ``[B, out, 4M, 2K]``."""

    def __init__(
        self, cin: int, mid: int, out: int, slope: float = 0.2, upsample: str = "transposed"
    ) -> None:
        super().__init__()
        self.act = LeakyReLU(slope)
        self.high_up = upsample3(cin, mid, (2, 2), upsample)  # top octave → new octave, twice the frames
        self.high_conv = Conv3(mid, mid)
        self.low_up = upsample3(cin, mid, (2, 1), upsample)  # all existing octaves, twice the frames
        self.low_conv = Conv3(mid, mid)
        self.high_balance = Conv1(mid, mid)
        self.low_balance = Conv1(mid, mid)
        self.up = upsample3(mid, out, (2, 1), upsample)
        self.conv = Conv3(out, out)

    def new_octave(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, cin, M, K]`` → ``[B, mid, 2M, K]``: the new octave, from the top K/2 input bands only."""
        x = x[..., x.shape[-1] // 2 :]
        x = self.act(self.high_up(x))
        x = self.act(self.high_conv(x))
        return self.high_balance(x)

    def old_octaves(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, cin, M, K]`` → ``[B, mid, 2M, K]``: the existing octaves, upsampled in time."""
        x = self.act(self.low_up(x))
        x = self.act(self.low_conv(x))
        return self.low_balance(x)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.old_octaves(x), self.new_octave(x)], dim=-1)  # [B, mid, 2M, 2K], low | high
        y = self.act(self.up(y))
        return self.act(self.conv(y))


class Generator(nn.Module):
    """z ``[B, latent]`` → MDCT amplitudes ``[B, C, M, K]`` in (−1, 1).

    ``forward(z) = synthesize(head(z))``. :meth:`head` maps latents to the start tensor, :meth:`synthesize`
    is fully convolutional and accepts a start tensor of any time length, so several latents laid along
    time give a longer track. :meth:`generate` / :meth:`render` are the inference path (tiled by the
    device's :class:`~mp3net.ops.ExecutionPlan`).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.dense_channels = cfg.dense_channels
        self.act = LeakyReLU(cfg.leaky_slope)
        self.dense = nn.Linear(cfg.latent_dim, cfg.dense_channels * cfg.start_frames * cfg.start_bands)
        self.blocks = nn.ModuleList(
            GeneratorBlock(*cfg.block_channels(i), slope=cfg.leaky_slope, upsample=cfg.upsample)
            for i in range(cfg.n_blocks)
        )
        width, C = cfg.block_channels(cfg.n_blocks - 1)[2], cfg.channels
        # the linear output's amplitudes; the oscillators' amplitudes and one frequency offset per band
        self.to_out = Conv1(width, C) if "linear" in cfg.output else None
        self.to_osc = Conv1(width, C + 1) if "oscillator" in cfg.output else None
        # the bank's amplitudes, channel c·S + s for oscillator s of channel c
        self.to_bank = Conv1(width, C * cfg.bank_size) if "bank" in cfg.output else None
        init_weights(self)
        if self.to_out is not None and self.to_osc is not None:
            with torch.no_grad():  # silent oscillators: the sum starts as the linear output alone
                self.to_osc.weight[:C].zero_()
        if self.to_out is not None and self.to_bank is not None:
            with torch.no_grad():
                self.to_bank.weight.zero_()

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
        return self.act(h)

    @torch.no_grad()
    def fold_latent_gaussian(self, mean: torch.Tensor, scale: torch.Tensor) -> None:
        """Make z ~ N(0, I) draw what ``mean + scale @ z`` drew before: the head's dense layer is linear in
        z, so W·(μ + L·z) + b = (W·L)·z + (W·μ + b) is exact (docs/training.md#autoencoder-pretraining).

        Args:
            mean: μ ``[latent]``; scale: L ``[latent, latent]`` (e.g. the Cholesky factor of a covariance).
        """
        W, b = self.dense.weight, self.dense.bias  # [out, latent], [out]
        mean, scale = mean.to(W), scale.to(W)
        b.add_(W @ mean)
        W.copy_(W @ scale)

    def _output(self, x: torch.Tensor) -> torch.Tensor:
        """The output layers, frame by frame (so time tiles may run them): the amplitudes ``[B, C, M, K]``
        of a linear output; for oscillators their amplitudes and the raw offsets, ``[B, C + 1, M, K]``, for
        a bank its amplitudes ``[B, C·S, M, K]``, after the linear amplitudes if there are both
        (:meth:`oscillate` finishes it)."""
        # the output layer and tanh in float32 even under autocast (docs/networks.md#generator)
        with ops.full_precision(x.device):
            x, C = x.float(), self.cfg.channels
            parts = []
            if self.to_out is not None:
                parts.append(self._amplitude(self.to_out(x)))
            if self.to_osc is not None:
                y = self.to_osc(x)
                parts += [self._amplitude(y[:, :C]), y[:, C:]]  # the offsets δ stay raw until oscillate
            if self.to_bank is not None:
                parts.append(self._amplitude(self.to_bank(x)))
            return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def _amplitude(self, y: torch.Tensor) -> torch.Tensor:
        """Unit-scale output ``[B, C', M, K]`` → amplitudes tanh(y / unit), one unit or one per band."""
        unit = unit_scale(self.cfg, y.device)
        return torch.tanh(y if isinstance(unit, float) and unit == 1 else y / unit)

    def oscillate(
        self, y: torch.Tensor, phase: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The frame-by-frame output ``y`` of consecutive frames → amplitudes ``[B, C, M, K]``, and the
        phase to continue from (None for a linear output, which is already the amplitudes).

        An oscillator output's phase runs over the whole track (docs/networks.md#oscillator-output):
        ``phase`` is where the previous frames left it, None at a track's first frame.
        """
        if self.to_osc is None and self.to_bank is None:
            return y, None
        C = self.cfg.channels
        linear, y = (y[:, :C], y[:, C:]) if self.to_out is not None else (None, y)
        with ops.full_precision(y.device):
            if self.to_osc is not None:
                delta = MAX_DELTA * torch.tanh(y[:, C:])
                start = start_phase(y.shape[-1], y.device) if phase is None else phase
                A, end = oscillator_mdct(y[:, :C], delta, start)
            else:
                B, _, M, K = y.shape
                S = self.cfg.bank_size
                start = bank_start_phase(S, K, y.device) if phase is None else phase
                A, end = bank_mdct(y.reshape(B, C, S, M, K), start)
            return (A if linear is None else linear + A), end

    def _tiled(self, x: torch.Tensor, blocks: list[nn.Module], tiles: Sequence[TileLevel], halo: int):
        """Run ``blocks`` and the output layer, the last ``tiles[0].blocks`` of them in time tiles of
        ``tiles[0].frames`` frames of their input (``halo`` frames of context per side), recursively."""
        if not tiles:
            for block in blocks:
                x = block(x)
            return self._output(x)
        level, inner = tiles[0], tiles[1:]
        n_wide = max(0, min(level.blocks, len(blocks)))
        deep, wide = blocks[: len(blocks) - n_wide], blocks[len(blocks) - n_wide :]
        for block in deep:
            x = block(x)
        m = x.shape[2]
        if level.frames >= m:
            return self._tiled(x, wide, inner, halo)
        scale = 4 ** len(wide)
        out = None
        for a in range(0, m, level.frames):
            b = min(a + level.frames, m)
            lo, hi = max(0, a - halo), min(m, b + halo)
            y = self._tiled(x[:, :, lo:hi], wide, inner, halo)[:, :, (a - lo) * scale : (b - lo) * scale]
            if out is None:
                out = y.new_empty(y.shape[0], y.shape[1], m * scale, y.shape[3])
            out[:, :, a * scale : b * scale] = y
            del y
        return out

    def synthesize(
        self,
        x: torch.Tensor,
        tiles: Sequence[TileLevel] = (),
        halo: int = TILE_HALO,
        first_block: int = 0,
        plan: ExecutionPlan | None = None,
    ) -> torch.Tensor:
        """Blocks → output layer → amplitudes (through the oscillators, if the output has them).

        Args:
            x: start tensor ``[B, ch, M0, start_bands]``, any M0.
            tiles: time tiles, outermost first: level ``TileLevel(n, f)`` runs the last n blocks (the
                widest: most of the memory and memory traffic) on time tiles of f frames of their input,
                each with ``halo`` frames of context per side, so only one tile's activations are alive at a
                time. Interior results are exact: the output equals the untiled one up to float rounding
                (the conv kernels' blocking may depend on the tile's size).
            first_block: start at this block: ``x`` is then that block's input (per-block profiling, tests).
            plan: the device's execution plan (default :func:`mp3net.ops.prepare_for` of ``x``'s device);
                its layout is applied to ``x``.
        Returns:
            ``[B, C, 4^n_blocks·M0, K]`` (``4^(n_blocks − first_block)·M0`` frames with ``first_block``).
        """
        x = (plan or ops.prepare_for(x.device)).layout(x)
        return self.oscillate(self._tiled(x, list(self.blocks)[first_block:], tuple(tiles), halo))[0]

    def forward(self, z: torch.Tensor, tile_frames: int | None = None) -> torch.Tensor:
        """``[B, latent]`` (or ``[B, L, latent]``) → ``[B, C, M, K]``, M = 4^n_blocks·start_frames(·L).
        ``tile_frames``: the two widest blocks in time tiles of that many frames (see :meth:`synthesize`)."""
        tiles = (TileLevel(2, tile_frames),) if tile_frames else ()
        return self.synthesize(self.head(z), tiles)

    @torch.no_grad()
    def render(
        self, x: torch.Tensor, plan: ExecutionPlan | None = None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """The inference path from a start tensor ``[B, ch, M0, start_bands]`` to a contiguous float32
        ``[B, C, 4^n_blocks·M0, K]``: no autograd, the plan's layout and time tiles (bounded memory for any
        length, cache-sized tiles on CPU), computed in ``dtype`` (bf16: under autocast; None: the ambient
        autocast state, e.g. the trainer's)."""
        return self.oscillate(self.render_frames(x, plan, dtype))[0].contiguous()

    @torch.no_grad()
    def render_frames(
        self, x: torch.Tensor, plan: ExecutionPlan | None = None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """:meth:`render` up to the frame-by-frame output (float32), before :meth:`oscillate`: what a long
        track's windows compute (:func:`mp3net.generate.synthesize_tiles`)."""
        plan = plan or ops.prepare_for(x.device)
        with ops.autocast(x.device, dtype):
            return self._tiled(plan.layout(x), list(self.blocks), plan.tiling(len(self.blocks)), TILE_HALO)

    @torch.no_grad()
    def generate(
        self, z: torch.Tensor, plan: ExecutionPlan | None = None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """Inference ``[B, latent]`` (or ``[B, L, latent]``) → float32 ``[B, C, M, K]``: :meth:`render` of
        the head's start tensor. The trainer's fakes, ``mp3net generate`` and the benchmarks use it."""
        with ops.autocast(z.device, dtype):
            x = self.head(z)
        return self.render(x, plan, dtype)

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
