"""Building blocks shared by generator and discriminator (docs/networks.md#common-rules).

Every convolution is 3×3 (or 1×1 for the octave-balancing and output layers), has a bias, Glorot-uniform
weights and a zero bias; activations are LeakyReLU(0.2); there are no normalisation layers.

Padding is laid out so that shapes scale exactly: a stride-2 transposed conv (kernel 3, padding 1,
output_padding 1) doubles a length, a stride-2 conv (kernel 3, padding 1) halves it. With this layout the
centre tap of a frequency-upsampling transposed conv maps input band k to output band 2k, matching
paper eq. 23 (the new octave's even bands are the doubled frequencies of the top input octave).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mp3net.model.conv import Conv3, Conv3Adjoint, use_fast_conv


def init_weights(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases for every conv and dense layer below ``module``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def conv3(cin: int, cout: int, stride: tuple[int, int] = (1, 1)) -> nn.Conv2d:
    """3×3 conv, 'same' padding; stride 2 halves the (even) length exactly."""
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


def conv_t3(cin: int, cout: int, stride: tuple[int, int]) -> nn.ConvTranspose2d:
    """3×3 transposed conv that multiplies each spatial length by its stride (1 or 2) exactly."""
    output_padding = tuple(s - 1 for s in stride)
    return nn.ConvTranspose2d(cin, cout, 3, stride=stride, padding=1, output_padding=output_padding)


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
        if use_fast_conv(x) and torch.is_grad_enabled():
            return Conv3.apply(x, self.weight, self.bias, (1, 1))
        return self._conv_forward(x, self.weight, self.bias)


def upsample3(cin: int, cout: int, stride: tuple[int, int], mode: str = "transposed") -> nn.Module:
    """A layer that multiplies each spatial length by its stride (1 or 2) exactly, as ``mode`` says:
    "transposed" (3-tap transposed conv, the paper's), "kernel4" (4 taps along each stride-2 axis: the
    kernel divisible by the stride) or "resize" (:class:`ResizeConv3`)."""
    if mode == "transposed" or tuple(stride) == (1, 1):
        return conv_t3(cin, cout, stride)
    if mode == "kernel4":
        kernel = tuple(4 if s == 2 else 3 for s in stride)
        return nn.ConvTranspose2d(cin, cout, kernel, stride=stride, padding=1)
    if mode == "resize":
        return ResizeConv3(cin, cout, stride)
    raise ValueError(f"unknown upsampling mode {mode!r}")


def conv1(cin: int, cout: int) -> nn.Conv2d:
    """1×1 conv (octave balancing, input/output projections)."""
    return nn.Conv2d(cin, cout, 1)


def lrelu_(x: torch.Tensor, slope: float) -> torch.Tensor:
    """In-place LeakyReLU. Used only on fresh conv outputs: conv backward needs its input, not its output,
    and LeakyReLU's backward (and double backward, for the gradient penalty) is computed from its result,
    so in place is safe under autograd and saves one activation-sized tensor per layer."""
    return F.leaky_relu_(x, slope)


def pointwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Apply a 1×1 conv. On channels-last input it is one GEMM over the pixels (an ``addmm``): PyTorch's CPU
    convolution sends 1×1 kernels to a slow im2col path, several times slower than the matmul."""
    if x.dim() == 4 and x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last):
        w = conv.weight.view(conv.out_channels, conv.in_channels)
        return F.linear(x.permute(0, 2, 3, 1), w, conv.bias).permute(0, 3, 1, 2)
    return conv(x)


def conv3_apply(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Apply a 3×3 conv; a channels-last CPU input that needs gradients takes :class:`Conv3` (fast
    backward on CPU, see :mod:`mp3net.model.conv`)."""
    if use_fast_conv(x) and torch.is_grad_enabled():
        return Conv3.apply(x, conv.weight, conv.bias, conv.stride)
    return conv(x)


def conv_t3_apply(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a 3×3 transposed conv; a channels-last CPU input that needs gradients takes
    :class:`Conv3Adjoint` (the transposed conv is the adjoint of a conv with the same weights)."""
    if not isinstance(conv, nn.ConvTranspose2d) or conv.kernel_size != (3, 3):
        return conv(x)
    if use_fast_conv(x) and torch.is_grad_enabled():
        y = Conv3Adjoint.apply(x, conv.weight, conv.stride)
        return y if conv.bias is None else y + conv.bias.view(1, -1, 1, 1)
    return conv(x)


def conv_adjoint(conv: nn.Conv2d, g: torch.Tensor) -> torch.Tensor:
    """The input gradient of ``conv`` for an output gradient ``g``, as a differentiable function of the
    weights: the transposed convolution with the same weights (bias plays no part).

    For the convs built here (3×3 with padding 1, or 1×1; stride 1 or 2 on even lengths) the adjoint
    restores the input's length exactly: ``[B, out, H/s, W/s]`` → ``[B, in, H, W]``.
    """
    if conv.kernel_size == (1, 1):
        # a 1×1 adjoint is one GEMM per sample: W^T [in, out] @ g [out, H·W]
        w = conv.weight.view(conv.out_channels, conv.in_channels)
        b, c, h, wd = g.shape
        if g.is_contiguous(memory_format=torch.channels_last) and c > 1:
            return F.linear(g.permute(0, 2, 3, 1), w.t()).permute(0, 3, 1, 2)
        return torch.matmul(w.t(), g.reshape(b, c, h * wd)).view(b, conv.in_channels, h, wd)
    if use_fast_conv(g):
        return Conv3Adjoint.apply(g, conv.weight, conv.stride)
    output_padding = tuple(s - 1 for s in conv.stride)
    return F.conv_transpose2d(
        g, conv.weight, stride=conv.stride, padding=conv.padding, output_padding=output_padding
    )


def lrelu_adjoint(g: torch.Tensor, act: torch.Tensor, slope: float) -> torch.Tensor:
    """LeakyReLU's input gradient: ``g`` where the activation's result ``act`` is positive, ``slope·g``
    elsewhere (PyTorch's own rule, one fused kernel).

    ``act`` enters as a constant (detached): the activation is piecewise linear, so this gradient does not
    depend on it, and autograd must not send zeros back into the forward graph through it."""
    return torch.ops.aten.leaky_relu_backward(g, act.detach(), slope, True)


class SplitBands(torch.autograd.Function):
    """Split ``[B, C, M, K]`` along the bands into contiguous pieces of the given widths, in the input's
    layout (channels-last stays channels-last), and back in the backward pass.

    Slicing with ``x[..., a:b]`` would do, but its backward builds an NCHW zero tensor per slice, which
    drags the next channels-last ops onto oneDNN's slow mixed-layout path. A missing piece's gradient is
    zeros."""

    @staticmethod
    def forward(ctx, x, widths):  # noqa: D102
        channels_last = x.dim() == 4 and x.shape[1] > 1 and x.stride(1) == 1
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        ctx.fmt, ctx.widths = fmt, widths
        return tuple(p.contiguous(memory_format=fmt) for p in x.split(widths, dim=-1))

    @staticmethod
    def backward(ctx, *grads):  # noqa: D102
        ref = next(g for g in grads if g is not None)
        parts = [
            g.contiguous(memory_format=ctx.fmt)
            if g is not None
            else ref.new_zeros(*ref.shape[:-1], w).contiguous(memory_format=ctx.fmt)
            for g, w in zip(grads, ctx.widths, strict=True)
        ]
        return torch.cat(parts, dim=-1), None


def split_bands(x: torch.Tensor, widths: list[int]) -> tuple[torch.Tensor, ...]:
    """``[B, C, M, K]`` → pieces ``[B, C, M, w]`` for the widths (summing to K), layout kept
    (:class:`SplitBands`)."""
    return SplitBands.apply(x, widths)
