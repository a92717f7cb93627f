"""The MP3net discriminator (paper §3.1–3.2; docs/networks.md#discriminator): the generator's blocks mirrored.

Each block halves the time resolution twice and removes the top octave: the top half of the bands is
downsampled in time and frequency and added onto the upper half of the lower octave.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mp3net import ops
from mp3net.config import ModelConfig
from mp3net.model.layers import (
    Block,
    Conv1,
    Conv3,
    LeakyReLU,
    init_weights,
    mbstd_group_size,
    minibatch_stddev,
    unit_scale,
)


class BlockActivations(NamedTuple):
    """The LeakyReLU results of one :class:`DiscriminatorBlock` forward, named after the conv before each;
    shapes for a block input ``[B, cin, M, K]``."""

    conv: torch.Tensor  # [B, cin, M, K]
    down: torch.Tensor  # [B, mid, M/2, K]
    low_conv: torch.Tensor  # [B, mid, M/2, K/2]
    low_down: torch.Tensor  # [B, out, M/4, K/2]
    high_conv: torch.Tensor  # [B, mid, M/2, K/2]
    high_down: torch.Tensor  # [B, out, M/4, K/4]


class Activations(NamedTuple):
    """The LeakyReLU results of a :meth:`Discriminator.record` pass: the input layer's, then each block's
    (in ``Discriminator.blocks`` order)."""

    input: torch.Tensor
    blocks: tuple[BlockActivations, ...]


class DiscriminatorBlock(Block):
    """One discriminator block: ``[B, cin, M, K]`` → ``[B, out, M/4, K/2]``.

    :meth:`record` is the forward pass that also returns its activations; :meth:`adjoint` takes them to
    backpropagate an input gradient.
    """

    def __init__(self, cin: int, mid: int, out: int, slope: float = 0.2) -> None:
        super().__init__()
        self.act = LeakyReLU(slope)
        self.conv = Conv3(cin, cin)
        self.down = Conv3(cin, mid, stride=(2, 1))
        self.high_conv = Conv3(mid, mid)
        self.high_down = Conv3(mid, out, stride=(2, 2))
        self.low_conv = Conv3(mid, mid)
        self.low_down = Conv3(mid, out, stride=(2, 1))
        # the balancing convs come last in D (paper §3.1), right before the octaves are summed
        self.high_balance = Conv1(out, out)
        self.low_balance = Conv1(out, out)

    def record(self, x: torch.Tensor) -> tuple[torch.Tensor, BlockActivations]:
        """``[B, cin, M, K]`` → (output ``[B, out, M/4, K/2]``, the block's activations)."""
        conv = self.act(self.conv(x))
        down = self.act(self.down(conv))
        k = down.shape[-1]
        y_low, y_high = ops.split_bands(down, [k // 2, k - k // 2])
        low_conv = self.act(self.low_conv(y_low))  # the lower K/2 bands: downsampled in time
        low_down = self.act(self.low_down(low_conv))
        high_conv = self.act(self.high_conv(y_high))  # the top K/2 bands: downsampled in time and frequency
        high_down = self.act(self.high_down(high_conv))
        low = self.low_balance(low_down)
        high = self.high_balance(high_down)
        # zero-pad the folded top octave on the low side: it lands on the upper half of the lower octave
        y = low + F.pad(high, (low.shape[-1] - high.shape[-1], 0))
        return y, BlockActivations(conv, down, low_conv, low_down, high_conv, high_down)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.record(x)[0]

    def adjoint(self, g: torch.Tensor, acts: BlockActivations) -> torch.Tensor:
        """Input gradient ``[B, cin, M, K]`` for an output gradient ``g`` ``[B, out, M/4, K/2]``, given the
        activations :meth:`record` returned. Differentiable in the weights; the activations enter only
        through their (constant) signs."""
        g_low = self.low_balance.adjoint(g)
        g_low = self.act.adjoint(g_low, acts.low_down)
        g_low = self.low_down.adjoint(g_low)
        g_low = self.act.adjoint(g_low, acts.low_conv)
        g_low = self.low_conv.adjoint(g_low)
        # the top octave was padded onto the upper bands: its gradient is theirs
        k, k_high = g.shape[-1], acts.high_down.shape[-1]
        g_high = self.high_balance.adjoint(ops.split_bands(g, [k - k_high, k_high])[1])
        g_high = self.act.adjoint(g_high, acts.high_down)
        g_high = self.high_down.adjoint(g_high)
        g_high = self.act.adjoint(g_high, acts.high_conv)
        g_high = self.high_conv.adjoint(g_high)
        g_y = self.act.adjoint(torch.cat([g_low, g_high], dim=-1), acts.down)
        g_y = self.down.adjoint(g_y)
        g_y = self.act.adjoint(g_y, acts.conv)
        return self.conv.adjoint(g_y)


class Discriminator(nn.Module):
    """Noised MDCT amplitudes ``[B, C, M, K]`` → score ``[B, 1]``, float32 (float64 for a float64 D):
    ``forward`` reads as :meth:`features` → :meth:`head`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        n = cfg.n_blocks
        self.act = LeakyReLU(cfg.leaky_slope)
        self.from_in = Conv1(cfg.channels, cfg.block_channels(n - 1)[2])
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
        """``[B, C, M, K]`` → ``[B, ch, M/4^n, K/2^n]`` (before the minibatch-stddev layer), in the layout of
        the device's :func:`mp3net.ops.prepare_for` plan."""
        x = ops.prepare_for(x.device).layout(x)
        x = self.act(self.from_in(self._unit(x)))
        for block in self.blocks:
            x = block(x)
        return x

    def record(self, x: torch.Tensor) -> tuple[torch.Tensor, Activations]:
        """:meth:`features` that also returns every LeakyReLU result (never checkpointed)."""
        x = ops.prepare_for(x.device).layout(x)
        x = first = self.act(self.from_in(self._unit(x)))
        blocks = []
        for block in self.d_blocks:
            x, acts = block.record(x)
            blocks.append(acts)
        return x, Activations(first, tuple(blocks))

    def _unit(self, x: torch.Tensor) -> torch.Tensor:
        """Amplitudes ``[B, C, M, K]`` → D's input u: divided by the data's level per band with band
        normalisation (docs/networks.md#band-normalisation), else as they are (the paper)."""
        unit = unit_scale(self.cfg, x.device)
        return x if isinstance(unit, float) and unit == 1 else x * unit

    @property
    def d_blocks(self) -> list[DiscriminatorBlock]:
        """The blocks, typed (``nn.ModuleList`` iterates as plain modules)."""
        return [b for b in self.blocks if isinstance(b, DiscriminatorBlock)]

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Features ``[B, ch, M/4^n, K/2^n]`` → score ``[B, 1]``: minibatch stddev, dense, score."""
        h = minibatch_stddev(h, self.cfg.mbstd_group)
        h = self.act(self.dense(h.flatten(1)))
        score = self.score(h)
        return score if score.dtype == torch.float64 else score.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def input_gradient(self, x: torch.Tensor, wrt_input: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and ∂ΣD/∂x for the gradient penalty, the gradient differentiable in D's weights; with
        ``wrt_input`` ∂ΣD/∂u instead, u = :meth:`_unit` (x) the tensor D's first conv sees.

        Equal to ``autograd.grad(D(x).sum(), x, create_graph=True)``, at lower cost. Every conv layer is
        followed by a LeakyReLU, which is piecewise linear: ∂D/∂x is a chain of transposed convolutions
        of the weights gated by the activation masks, and those masks do not vary with the weights. Autograd's
        double backward does not know this and backpropagates zeros through the whole forward graph (one
        full backward pass, a third of the penalty's cost); here the chain is written out so the penalty's
        backward only runs through it. The one non-linear layer, minibatch stddev, is left to autograd: when
        its groups hold more than one sample the features keep their graph, so its second-order term is
        included.

        Args:
            x: ``[B, C, M, K]``.
        Returns:
            (score ``[B, 1]``, gradient ``[B, C, M, K]``); the score is detached.
        """
        group = mbstd_group_size(x.shape[0], self.cfg.mbstd_group)
        graph = torch.is_grad_enabled()  # whether the result must be differentiable in the weights
        # with groups of one the head is linear in the features up to its own (constant) mask: no graph needed
        with torch.set_grad_enabled(graph and group > 1):
            h, acts = self.record(x.detach())
        if not h.requires_grad:
            h = h.detach().requires_grad_(True)
        with torch.enable_grad():  # ∂head/∂h by autograd, even when called without grad mode
            score = self.head(h)
            (g,) = torch.autograd.grad(score.sum(), h, create_graph=graph)
        for block, block_acts in zip(reversed(self.d_blocks), reversed(acts.blocks), strict=True):
            g = block.adjoint(g, block_acts)
        g = self.from_in.adjoint(self.act.adjoint(g, acts.input))  # ∂ΣD/∂u
        if not wrt_input:
            g = g * unit_scale(self.cfg, x.device)  # u is linear in x
        return score.detach(), g

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
