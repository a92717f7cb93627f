"""The MP3net discriminator (paper §3.1–3.2; docs/networks.md#discriminator): the generator's blocks mirrored.

Each block halves the time resolution twice and removes the top octave: the top half of the bands is
downsampled in time and frequency and added onto the upper half of the lower octave.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mp3net.config import ModelConfig
from mp3net.model.layers import (
    conv1,
    conv3,
    conv3_apply,
    conv_adjoint,
    init_weights,
    lrelu_,
    lrelu_adjoint,
    pointwise,
    split_bands,
)


class DiscriminatorBlock(nn.Module):
    """One discriminator block: ``[B, cin, M, K]`` → ``[B, out, M/4, K/2]``.

    Methods that take ``acts`` (a list) also append the LeakyReLU results they produce, in evaluation
    order; :meth:`adjoint` uses them to backpropagate an input gradient.
    """

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

    def _act(self, conv: nn.Conv2d, x: torch.Tensor, acts: list[torch.Tensor] | None) -> torch.Tensor:
        """LeakyReLU(conv(x)), recording the result."""
        x = lrelu_(conv3_apply(conv, x), self.slope)
        if acts is not None:
            acts.append(x)
        return x

    def top_octave(self, y_high: torch.Tensor, acts: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The top K/2 bands ``[B, mid, M/2, K/2]`` → ``[B, out, M/4, K/4]``: downsampled in time and
        frequency."""
        y = self._act(self.high_down, self._act(self.high_conv, y_high, acts), acts)
        return pointwise(self.high_balance, y)

    def lower_octaves(self, y_low: torch.Tensor, acts: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The lower K/2 bands ``[B, mid, M/2, K/2]`` → ``[B, out, M/4, K/2]``: downsampled in time."""
        y = self._act(self.low_down, self._act(self.low_conv, y_low, acts), acts)
        return pointwise(self.low_balance, y)

    def forward(self, x: torch.Tensor, acts: list[torch.Tensor] | None = None) -> torch.Tensor:
        y = self._act(self.down, self._act(self.conv, x, acts), acts)
        k = y.shape[-1]
        y_low, y_high = split_bands(y, [k // 2, k - k // 2])
        low, high = self.lower_octaves(y_low, acts), self.top_octave(y_high, acts)
        # zero-pad the folded top octave on the low side: it lands on the upper half of the lower octave
        return low + F.pad(high, (low.shape[-1] - high.shape[-1], 0))

    def adjoint(self, g: torch.Tensor, acts: list[torch.Tensor]) -> torch.Tensor:
        """Input gradient ``[B, cin, M, K]`` for an output gradient ``g`` ``[B, out, M/4, K/2]``, given the
        six activations :meth:`forward` recorded. Differentiable in the weights; the activations enter
        only through their (constant) signs."""
        s = self.slope
        a_conv, a_down, a_low, a_low_down, a_high, a_high_down = acts
        g_low = lrelu_adjoint(conv_adjoint(self.low_balance, g), a_low_down, s)
        g_low = conv_adjoint(self.low_conv, lrelu_adjoint(conv_adjoint(self.low_down, g_low), a_low, s))
        # the top octave was padded onto the upper bands: its gradient is theirs
        k, k_high = g.shape[-1], a_high_down.shape[-1]
        g_high = conv_adjoint(self.high_balance, split_bands(g, [k - k_high, k_high])[1])
        g_high = lrelu_adjoint(g_high, a_high_down, s)
        g_high = conv_adjoint(self.high_conv, lrelu_adjoint(conv_adjoint(self.high_down, g_high), a_high, s))
        g_y = lrelu_adjoint(torch.cat([g_low, g_high], dim=-1), a_down, s)
        return conv_adjoint(self.conv, lrelu_adjoint(conv_adjoint(self.down, g_y), a_conv, s))


def mbstd_group_size(batch: int, group_size: int) -> int:
    """The minibatch-stddev group in use: ``min(group_size, batch)`` reduced to a divisor of the batch."""
    g = max(1, min(group_size, batch))
    while batch % g:
        g -= 1
    return g


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
    g = mbstd_group_size(b, group_size)
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

    def features(self, x: torch.Tensor, acts: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``[B, C, M, K]`` → ``[B, ch, M/4^n, K/2^n]`` (before the minibatch-stddev layer). With a list,
        also appends every LeakyReLU result, in evaluation order."""
        x = lrelu_(pointwise(self.from_in, x), self.slope)
        if acts is not None:
            acts.append(x)
        for block in self.blocks:
            x = block(x, acts)
        return x

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Features ``[B, ch, M/4^n, K/2^n]`` → score ``[B, 1]``: minibatch stddev, dense, score."""
        h = minibatch_stddev(h, self.cfg.mbstd_group)
        h = lrelu_(self.dense(h.flatten(1)), self.slope)
        score = self.score(h)
        return score if score.dtype == torch.float64 else score.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def input_gradient(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and ∂ΣD/∂x for the gradient penalty, the gradient differentiable in D's weights.

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
        acts: list[torch.Tensor] = []
        graph = torch.is_grad_enabled()  # whether the result must be differentiable in the weights
        # with groups of one the head is linear in the features up to its own (constant) mask: no graph needed
        with torch.set_grad_enabled(graph and group > 1):
            h = self.features(x.detach(), acts)
        if not h.requires_grad:
            h = h.detach().requires_grad_(True)
        with torch.enable_grad():  # ∂head/∂h by autograd, even when called without grad mode
            score = self.head(h)
            (g,) = torch.autograd.grad(score.sum(), h, create_graph=graph)
        for i in reversed(range(len(self.blocks))):  # acts: the input layer's, then six per block
            g = self.blocks[i].adjoint(g, acts[1 + 6 * i : 7 + 6 * i])
        g = conv_adjoint(self.from_in, lrelu_adjoint(g, acts[0], self.slope))
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
