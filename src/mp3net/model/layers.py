"""Layers shared by generator and discriminator (docs/networks.md#common-rules).

Every convolution is 3×3 (or 1×1 for the octave-balancing and output layers), has a bias, Glorot-uniform
weights and a zero bias; activations are LeakyReLU(0.2); there are no normalisation layers.

Padding is laid out so that shapes scale exactly: a stride-2 transposed conv (kernel 3, padding 1,
output_padding 1) doubles a length, a stride-2 conv (kernel 3, padding 1) halves it. With this layout the
centre tap of a frequency-upsampling transposed conv maps input band k to output band 2k, matching
paper eq. 23 (the new octave's even bands are the doubled frequencies of the top input octave).

The classes subclass PyTorch's own (same parameters, same state-dict keys); their ``forward`` hands the
maths to :mod:`mp3net.ops`, which picks the device-specific implementation. ``adjoint(g)`` is the input
gradient for an output gradient ``g``, differentiable in the weights (D's gradient-penalty chain).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from mp3net import ops
from mp3net.config import ModelConfig


def unit_scale(cfg: ModelConfig, device: torch.device | None = None) -> float | torch.Tensor:
    """How many of the networks' units an amplitude of 1 is: 1 (the paper), or with ``model.band_norm``
    ``[K]`` = 1 / the data's rms per band (docs/networks.md#band-normalisation). D multiplies its input by
    it, G divides its pre-tanh output by it. Read from ``cfg`` at each call, so the config stays the one
    place it is set."""
    if not cfg.band_norm:
        return 1.0
    if not cfg.band_rms:
        raise ValueError(
            "model.band_norm needs model.band_rms, the data's rms per band (training fills it in)"
        )
    return _band_unit(cfg.band_rms, torch.device(device or "cpu"))


@functools.lru_cache(maxsize=16)
def _band_unit(levels: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """``[K]`` 1 / levels on ``device``, made once: every forward of G and D asks for it, and a fresh host
    list copied to a GPU each time would stall the pipeline. A normal tensor even when first asked for
    under inference mode, so training may save it for backward."""
    with torch.inference_mode(False):
        return 1.0 / torch.tensor(levels, dtype=torch.float32, device=device)


def init_weights(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases for every conv and dense layer below ``module``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Conv3(nn.Conv2d):
    """3×3 conv, 'same' padding: ``[B, cin, H, W]`` → ``[B, cout, H/s, W/s]``; stride 2 halves an even
    length exactly."""

    def __init__(self, cin: int, cout: int, stride: tuple[int, int] = (1, 1)) -> None:
        super().__init__(cin, cout, 3, stride=stride, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.conv3(x, self.weight, self.bias, self.stride)

    def adjoint(self, g: torch.Tensor) -> torch.Tensor:
        """``[B, cout, H/s, W/s]`` → ``[B, cin, H, W]`` (bias plays no part)."""
        return ops.conv3_adjoint(g, self.weight, self.stride)


class ConvT3(nn.ConvTranspose2d):
    """3×3 transposed conv that multiplies each length by its stride (1 or 2) exactly:
    ``[B, cin, H, W]`` → ``[B, cout, s_h·H, s_w·W]``."""

    def __init__(self, cin: int, cout: int, stride: tuple[int, int]) -> None:
        output_padding = (stride[0] - 1, stride[1] - 1)
        super().__init__(cin, cout, 3, stride=stride, padding=1, output_padding=output_padding)

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        return ops.conv_t3(x, self.weight, self.bias, self.stride)


class ResizeConv3(nn.Conv2d):
    """Nearest-neighbour upsampling by ``stride`` followed by a 3×3 conv (stride 1, 'same' padding):
    ``[B, cin, H, W]`` → ``[B, cout, s_h·H, s_w·W]``. Every output pixel sees the same number of input taps,
    so it has no checkerboard (docs/training.md#upsampling)."""

    def __init__(self, cin: int, cout: int, stride: tuple[int, int]) -> None:
        super().__init__(cin, cout, 3, padding=1)
        self.scale = tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale != (1, 1):
            x = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return ops.conv3(x, self.weight, self.bias, (1, 1))


def upsample3(cin: int, cout: int, stride: tuple[int, int], mode: str = "transposed") -> nn.Module:
    """A layer that multiplies each spatial length by its stride (1 or 2) exactly, as ``mode`` says:
    "transposed" (:class:`ConvT3`, the paper's) or "resize" (:class:`ResizeConv3`)."""
    if mode == "transposed" or tuple(stride) == (1, 1):
        return ConvT3(cin, cout, stride)
    if mode == "resize":
        return ResizeConv3(cin, cout, stride)
    raise ValueError(f"unknown upsampling mode {mode!r}")


class Conv1(nn.Conv2d):
    """1×1 conv (octave balancing, input/output projections): ``[B, cin, H, W]`` → ``[B, cout, H, W]``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.conv1(x, self.weight, self.bias)

    def adjoint(self, g: torch.Tensor) -> torch.Tensor:
        """``[B, cout, H, W]`` → ``[B, cin, H, W]`` (bias plays no part)."""
        return ops.conv1_adjoint(g, self.weight)


class LeakyReLU(nn.Module):
    """In-place LeakyReLU, for fresh conv outputs only (:func:`mp3net.ops.lrelu_`)."""

    def __init__(self, slope: float = 0.2) -> None:
        super().__init__()
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.lrelu_(x, self.slope)

    def adjoint(self, g: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Input gradient for output gradient ``g``, given this layer's result ``act`` (same shape)."""
        return ops.lrelu_adjoint(g, act, self.slope)

    def extra_repr(self) -> str:
        return f"slope={self.slope}, inplace"


class Block(nn.Module):
    """A network block: subclasses define :meth:`body`, the block's layers one per line."""

    def body(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


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
    std = _group_std(x, group_size)  # [B/g, C, M, K] or None
    if std is None:
        feat = x.new_zeros(b, 1, m, k)
    else:
        g = b // std.shape[0]
        feat = std.mean(dim=(1, 2, 3)).to(x.dtype).repeat(g).view(b, 1, 1, 1).expand(b, 1, m, k)
    return torch.cat([x, feat], dim=1)


def _group_std(x: torch.Tensor, group_size: int) -> torch.Tensor | None:
    """√(var + 1e-8) over each minibatch-stddev group of ``x`` ``[B, C, M, K]`` → ``[B/g, C, M, K]`` (float32
    at least; sample b is in group b mod B/g), or None when the groups hold one sample."""
    b, c, m, k = x.shape
    g = mbstd_group_size(b, group_size)
    if g == 1:
        return None
    y = (x if x.dtype == torch.float64 else x.float()).reshape(g, b // g, c, m, k)
    return torch.sqrt((y - y.mean(dim=0, keepdim=True)).square().mean(dim=0) + 1e-8)
