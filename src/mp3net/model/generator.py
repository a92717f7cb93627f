"""The MP3net generator (paper §3.1 and figure 3; docs/networks.md#generator).

Each block quadruples the number of time frames M and adds an octave: the new top octave is made from the
top half of the input bands by a transposed conv with stride 2 in time and frequency, the existing octaves are
upsampled in time only, each branch gets its own 1×1 balancing conv (no activation), the two are concatenated
on frequency as [low, high] and upsampled in time once more.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch
from torch import nn

from mp3net import ops
from mp3net.config import ModelConfig
from mp3net.dsp.oscillator import bank_mdct, sine_bank_mdct
from mp3net.model.layers import Block, Conv1, Conv3, LeakyReLU, init_weights, unit_scale, upsample3
from mp3net.model.sampler import TableSampler
from mp3net.ops import ExecutionPlan, TileLevel

# Frames of context each side of a time tile, counted at the input of the tiled blocks. One block reaches
# 1.5 input frames to each side (two upsampling convs and two 3-tap convs); every later block adds a
# quarter of its predecessor's reach, so any number of tiled blocks stays below 2 frames;
# 2 is exact (tests/model).
TILE_HALO = 2


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


class OutputHead(Conv1, metaclass=abc.ABCMeta):
    """The generator's output layer: the last block's features → amplitudes, frame by frame.

    ``head(x, first)``: features ``[B, width, M, K]`` of the track frames ``first … first + M − 1`` →
    amplitudes ``[B, C, M, K]`` float32 in (−1, 1). Each output frame depends on its own input frame and its
    index only, so time tiles and the windows of a long track may run it on their own frames. It runs in
    float32 even under autocast (docs/networks.md#generator). A subclass of the 1×1 conv, so its weights
    are ``<name>.weight`` / ``<name>.bias`` in a state dict under :attr:`name`, the attribute of
    :class:`Generator` that holds it (the keys every saved model has).
    """

    name = "to_out"
    # frames per piece outside autograd: the float32 temporaries of a piece stay in the CPU's cache
    chunk_frames = 256

    def __init__(self, cfg: ModelConfig, width: int) -> None:
        super().__init__(width, self.conv_channels(cfg))
        self.cfg = cfg

    @staticmethod
    @abc.abstractmethod
    def conv_channels(cfg: ModelConfig) -> int:
        """The 1×1 conv's output channels."""

    def forward(self, x: torch.Tensor, first: int = 0) -> torch.Tensor:  # type: ignore[override]
        with ops.full_precision(x.device):
            B, _, M, K = x.shape
            if torch.is_grad_enabled() or M <= self.chunk_frames:
                return self.amplitudes(super().forward(x.float()), first)
            out = x.new_empty(B, M, K, self.cfg.channels, dtype=torch.float32).permute(0, 3, 1, 2)
            for a in range(0, M, self.chunk_frames):
                b = min(a + self.chunk_frames, M)
                out[:, :, a:b] = self.amplitudes(super().forward(x[:, :, a:b].float()), first + a)
            return out

    @abc.abstractmethod
    def amplitudes(self, y: torch.Tensor, first: int) -> torch.Tensor:
        """The conv's output ``[B, out_channels, M, K]`` → amplitudes ``[B, C, M, K]``."""

    def squash(self, y: torch.Tensor) -> torch.Tensor:
        """The conv's fresh output (overwritten) → tanh(y / unit), one unit or one per band
        (docs/networks.md#band-normalisation)."""
        unit = unit_scale(self.cfg, y.device)
        return ops.tanh_(y if isinstance(unit, float) and unit == 1 else y.div_(unit))


class LinearHead(OutputHead):
    """The paper's output: a 1×1 conv to the C channels and tanh, ``[B, width, M, K]`` → ``[B, C, M, K]``."""

    name = "to_out"

    @staticmethod
    def conv_channels(cfg: ModelConfig) -> int:
        return cfg.channels

    def amplitudes(self, y: torch.Tensor, first: int) -> torch.Tensor:
        return self.squash(y)


class BankHead(OutputHead):
    """An oscillator bank (docs/networks.md#oscillator-bank): a 1×1 conv to C·S amplitudes, channel c·S + s
    for oscillator s of channel c, tanh, then Σ_s a_s·cos Φ_s (:func:`mp3net.dsp.oscillator.bank_mdct`), whose
    phase depends on the track frame: ``[B, width, M, K]`` → ``[B, C, M, K]``."""

    name = "to_bank"

    @staticmethod
    def conv_channels(cfg: ModelConfig) -> int:
        return cfg.channels * cfg.bank_size

    def amplitudes(self, y: torch.Tensor, first: int) -> torch.Tensor:
        return bank_mdct(self.oscillators(y), first)

    def oscillators(self, y: torch.Tensor) -> torch.Tensor:
        """The conv's output ``[B, C·S, M, K]`` → oscillator amplitudes ``[B, C, S, M, K]``: squashed, then
        with ``model.bank_gate`` = ε > 0 through the quiet gate a³/(a² + ε²)
        (docs/networks.md#the-quiet-gate): near a for |a| ≫ ε, a³/ε² (silent) for |a| ≪ ε, smooth and odd, so
        a faint oscillator still gets a gradient to come back."""
        a = self.squash(y)
        eps = self.cfg.bank_gate
        if eps > 0:
            a2 = a.square()
            a = a * a2 / (a2 + eps * eps)
        return a.unflatten(1, (self.cfg.channels, self.cfg.bank_size))


class SineBankHead(BankHead):
    """A bank of whole sinusoids (docs/networks.md#sine-bank): the :class:`BankHead`'s conv and amplitudes,
    but each oscillator writes its coefficients into the bands beside its own as well
    (:func:`mp3net.dsp.oscillator.sine_bank_mdct`), so a drawn tone has no image a band away. Its weights
    are a ``BankHead``'s: a bank model starts a sine-bank one."""

    # its sum keeps 7 sides per band: shorter pieces keep a 3-hour track's peak memory as the bank's
    # (benchmarks/README.md#speed)
    chunk_frames = 64

    def amplitudes(self, y: torch.Tensor, first: int) -> torch.Tensor:
        return sine_bank_mdct(self.oscillators(y), first)


OUTPUT_HEADS: dict[str, type[OutputHead]] = {"linear": LinearHead, "bank": BankHead, "sines": SineBankHead}


class Generator(nn.Module):
    """z ``[B, latent]`` → MDCT amplitudes ``[B, C, M, K]`` in (−1, 1).

    ``forward(z)`` reads head → blocks → output head: :meth:`head` maps latents to the start tensor, the
    blocks are fully convolutional and accept a start tensor of any time length (several latents laid along
    time give a longer track), and the output head (:class:`LinearHead` or :class:`BankHead`, chosen by
    ``model.output``) turns the last block's features into amplitudes frame by frame. :meth:`generate` /
    :meth:`render` are the inference path (tiled by the device's :class:`~mp3net.ops.ExecutionPlan`).

    The output head is :attr:`output_head`; it is held under its own :attr:`OutputHead.name` (``to_out``,
    ``to_bank``), so the state-dict keys are those of every model saved before the heads were modules.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.dense_channels = cfg.dense_channels
        self.act = LeakyReLU(cfg.leaky_slope)
        self.sampler = TableSampler(cfg.latent_dim) if cfg.sampler == "table" else None
        self.dense = nn.Linear(cfg.latent_dim, cfg.dense_channels * cfg.start_frames * cfg.start_bands)
        self.blocks = nn.ModuleList(
            GeneratorBlock(*cfg.block_channels(i), slope=cfg.leaky_slope, upsample=cfg.upsample)
            for i in range(cfg.n_blocks)
        )
        head = OUTPUT_HEADS[cfg.output](cfg, cfg.block_channels(cfg.n_blocks - 1)[2])
        self.add_module(head.name, head)
        self._head_name = head.name
        init_weights(self)

    @property
    def cfg(self) -> ModelConfig:
        """The model config. Setting it reaches the output head, which reads its levels (``band_rms``) at each
        call: the level calibration swaps them in (:func:`mp3net.train.band_levels.calibrated_levels`)."""
        return self._cfg

    @cfg.setter
    def cfg(self, cfg: ModelConfig) -> None:
        self._cfg = cfg
        for module in self.children():
            if isinstance(module, OutputHead):
                module.cfg = cfg

    @property
    def output_head(self) -> OutputHead:
        """The output layer: last block's features ``[B, width, M, K]`` → amplitudes ``[B, C, M, K]``."""
        return self._modules[self._head_name]  # type: ignore[return-value]

    def latents(self, z: torch.Tensor) -> torch.Tensor:
        """Noise z ~ N(0, I) ``[..., latent]`` → the latents the dense layer reads ``[..., latent]``: the
        table sampler's (``model.sampler="table"``), else z itself."""
        return z if self.sampler is None else self.sampler(z)

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """Dense → reshape → LReLU, from latents (:meth:`latents` of the noise).

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

    def _tiled(
        self, x: torch.Tensor, blocks: list[nn.Module], tiles: Sequence[TileLevel], halo: int, first: int
    ) -> torch.Tensor:
        """Run ``blocks`` and the output head, the last ``tiles[0].blocks`` of them in time tiles of
        ``tiles[0].frames`` frames of their input (``halo`` frames of context per side), recursively.
        ``first``: the track frame of the output's frame 0."""
        if not tiles:
            for block in blocks:
                x = block(x)
            return self.output_head(x, first)
        level, inner = tiles[0], tiles[1:]
        n_wide = max(0, min(level.blocks, len(blocks)))
        deep, wide = blocks[: len(blocks) - n_wide], blocks[len(blocks) - n_wide :]
        for block in deep:
            x = block(x)
        m = x.shape[2]
        if level.frames >= m:
            return self._tiled(x, wide, inner, halo, first)
        scale = 4 ** len(wide)
        out = None
        for a in range(0, m, level.frames):
            b = min(a + level.frames, m)
            lo, hi = max(0, a - halo), min(m, b + halo)
            y = self._tiled(x[:, :, lo:hi], wide, inner, halo, first + lo * scale)
            y = y[:, :, (a - lo) * scale : (b - lo) * scale]
            if out is None:
                out = y.new_empty(y.shape[0], y.shape[1], m * scale, y.shape[3])
            out[:, :, a * scale : b * scale] = y
            del y
        assert out is not None
        return out

    def synthesize(
        self,
        x: torch.Tensor,
        tiles: Sequence[TileLevel] = (),
        halo: int = TILE_HALO,
        first_block: int = 0,
        plan: ExecutionPlan | None = None,
        first: int = 0,
    ) -> torch.Tensor:
        """Blocks → output head → amplitudes.

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
            first: the track frame of the output's first frame (a bank's phase runs with the track).
        Returns:
            ``[B, C, 4^n_blocks·M0, K]`` (``4^(n_blocks − first_block)·M0`` frames with ``first_block``).
        """
        x = (plan or ops.prepare_for(x.device)).layout(x)
        return self._tiled(x, list(self.blocks)[first_block:], tuple(tiles), halo, first)

    def forward(self, z: torch.Tensor, tile_frames: int | None = None) -> torch.Tensor:
        """Noise ``[B, latent]`` (or ``[B, L, latent]``) → ``[B, C, M, K]``, M = 4^n_blocks·start_frames(·L):
        :meth:`decode` of its :meth:`latents`."""
        return self.decode(self.latents(z), tile_frames)

    def decode(self, latents: torch.Tensor, tile_frames: int | None = None) -> torch.Tensor:
        """Latents ``[B, latent]`` (or ``[B, L, latent]``; a table's rows, past the sampler) →
        ``[B, C, M, K]``. ``tile_frames``: the two widest blocks in time tiles of that many frames (see
        :meth:`synthesize`)."""
        x = ops.prepare_for(latents.device).layout(self.head(latents))  # [B, ch, start_frames, start_bands]
        if tile_frames:
            return self.synthesize(x, [TileLevel(2, tile_frames)])
        for block in self.blocks:
            x = block(x)  # [B, width, 4·frames, 2·bands]
        return self.output_head(x)  # [B, C, M, K] float32

    @torch.no_grad()
    def render(
        self,
        x: torch.Tensor,
        plan: ExecutionPlan | None = None,
        dtype: torch.dtype | None = None,
        first: int = 0,
    ) -> torch.Tensor:
        """The inference path from a start tensor ``[B, ch, M0, start_bands]`` to a contiguous float32
        ``[B, C, 4^n_blocks·M0, K]``: no autograd, the plan's layout and time tiles (bounded memory for any
        length, cache-sized tiles on CPU), computed in ``dtype`` (bf16: under autocast; None: the ambient
        autocast state, e.g. the trainer's). ``first``: the track frame of the output's first frame (the
        windows of a long track, :func:`mp3net.generate.synthesize_tiles`)."""
        plan = plan or ops.prepare_for(x.device)
        with ops.autocast(x.device, dtype):
            tiles = plan.tiling(len(self.blocks))
            y = self._tiled(plan.layout(x), list(self.blocks), tiles, TILE_HALO, first)
        return y.contiguous()

    @torch.no_grad()
    def generate(
        self, z: torch.Tensor, plan: ExecutionPlan | None = None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """Inference from noise ``[B, latent]`` (or ``[B, L, latent]``) → float32 ``[B, C, M, K]``:
        :meth:`render` of the head's start tensor. The trainer's fakes and the benchmarks use it."""
        with ops.autocast(z.device, dtype):
            x = self.head(self.latents(z))
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
