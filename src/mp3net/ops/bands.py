"""Layout-keeping band split (used by D's octave split and its adjoint)."""

from __future__ import annotations

import torch


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether ``x`` ``[B, C, H, W]`` has its channels innermost (a slice along H or W counts); a
    one-channel tensor is both layouts at once and counts as neither."""
    return x.dim() == 4 and x.shape[1] > 1 and x.stride(1) == 1


class SplitBands(torch.autograd.Function):
    """Split ``[B, C, M, K]`` along the bands into contiguous pieces of the given widths, in the input's
    layout (channels-last stays channels-last), and back in the backward pass.

    Slicing with ``x[..., a:b]`` would do, but its backward builds an NCHW zero tensor per slice, which
    drags the next channels-last ops onto oneDNN's slow mixed-layout path. A missing piece's gradient is
    zeros."""

    @staticmethod
    def forward(ctx, x, widths):
        fmt = torch.channels_last if is_channels_last(x) else torch.contiguous_format
        ctx.fmt, ctx.widths = fmt, widths
        return tuple(p.contiguous(memory_format=fmt) for p in x.split(widths, dim=-1))

    @staticmethod
    def backward(ctx, *grads):
        ref = next(g for g in grads if g is not None)
        parts = [
            g.contiguous(memory_format=ctx.fmt)
            if g is not None
            else ref.new_zeros(*ref.shape[:-1], w).contiguous(memory_format=ctx.fmt)
            for g, w in zip(grads, ctx.widths, strict=True)
        ]
        return torch.cat(parts, dim=-1), None
