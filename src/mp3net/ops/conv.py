"""3×3 convolutions that train fast on CPU: D's and G's convs, G's transposed convs, and the adjoints in
D's gradient-penalty chain.

oneDNN on an AVX2 CPU is fastest in channels-last layout for a convolution and for its input gradient
(1.2–2× over NCHW), but its channels-last weight gradient is 2–4× slower than NCHW's. These autograd
functions keep the activations channels-last and compute the weight gradient themselves, as nine GEMMs
over the pixels, one per kernel tap (:func:`conv3_weight_grad`), which beats both of oneDNN's weight
gradients here except on the thinnest layers, where oneDNN's channels-last one is kept.

They are used only for channels-last CPU tensors with the fast path on (:func:`mp3net.ops.use_fast`);
everything else takes PyTorch's own convolution. Both functions are differentiable once; their backward
is written with differentiable operations, so a second derivative still works (slowly), though the
gradient penalty does not need one (see :meth:`mp3net.model.Discriminator.input_gradient`). Under CPU
autocast they compute in bf16 and return the weight gradients in the parameters' dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# below this many channels on either side, oneDNN's own channels-last weight gradient beats the GEMMs
GEMM_MIN_CHANNELS = 24


def _gram(a: torch.Tensor, b: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """``a^T b`` for tall ``a`` ``[P, O]`` and ``b`` ``[P, C]`` (rows contiguous), at least in float32 (bf16
    products are summed in float32). With few columns, MKL runs such a product 15–20 % faster as a batch of
    ``chunk``-row products summed afterwards."""
    acc = torch.promote_types(a.dtype, torch.float32)
    p = a.shape[0]
    n = p // chunk
    if n < 4 or min(a.shape[1], b.shape[1]) > 128:
        return (a.t() @ b).to(acc)
    m = n * chunk
    out = torch.bmm(a[:m].view(n, chunk, -1).transpose(1, 2), b[:m].view(n, chunk, -1)).sum(0, dtype=acc)
    return out if m == p else out + (a[m:].t() @ b[m:]).to(acc)


def _phase(x: torch.Tensor, ph: int, pw: int, stride: tuple[int, int], rows: int, cols: int) -> torch.Tensor:
    """One stride phase of ``x`` ``[B, H, W, C]`` zero-padded by one on every side:
    ``out[b, i, j] = x_pad[b, s_h·i + ph, s_w·j + pw]``, ``[B, rows, cols, C]`` (zeros past ``x_pad``).
    Only the border is zero-filled: the interior is one strided copy."""
    sh, sw = stride
    b, h, w, c = x.shape
    out = x.new_empty(b, rows, cols, c)
    i0, j0 = int(ph == 0), int(pw == 0)  # x_pad's first row/column is padding
    i1, j1 = min(rows, (h - ph) // sh + 1), min(cols, (w - pw) // sw + 1)
    out[:, :i0].zero_()
    out[:, i1:].zero_()
    out[:, i0:i1, :j0].zero_()
    out[:, i0:i1, j1:].zero_()
    out[:, i0:i1, j0:j1] = x[:, sh * i0 + ph - 1 :: sh, sw * j0 + pw - 1 :: sw][:, : i1 - i0, : j1 - j0]
    return out


def _zero_extend(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """``[B, H, W, C]`` → ``[B, rows, cols, C]``, zeros after the last row and column."""
    b, h, w, c = x.shape
    out = x.new_empty(b, rows, cols, c)
    out[:, h:].zero_()
    out[:, :h, w:].zero_()
    out[:, :h, :w] = x
    return out


def conv3_weight_grad(x: torch.Tensor, go: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    """Weight gradient of a 3×3 convolution (padding 1): ``Σ_b,i,j go[b,o,i,j] · x_pad[b,c,s·i+kh,s·j+kw]``.

    The padded input is split into its stride phases (rows and columns ≡ kh mod s); in each phase a kernel
    tap is a constant offset into the flattened pixels once the output gradient is padded to the phase's
    width with zero columns (and rows, between samples). So every tap is one GEMM
    ``[O, P] @ [P, C]`` on contiguous matrices, with no im2col copy.

    Args:
        x: ``[B, C, H, W]`` input (any layout; channels-last avoids a copy).
        go: ``[B, O, H/s_h, W/s_w]`` output gradient.
        stride: (s_h, s_w), each 1 or 2.
    Returns:
        ``[O, C, 3, 3]`` (channels-last strides).
    """
    if stride == (1, 1):
        return _weight_grad_stride1(x, go)
    sh, sw = stride
    b, c = x.shape[:2]
    o, ho, wo = go.shape[1:]
    dh, dw = 2 // sh, 2 // sw  # the largest tap shift inside a phase
    # one spare row per sample so the last tap's flat slice stays inside the sample's block
    rows, cols = ho + dh + 1, wo + dw
    x_nhwc = x.permute(0, 2, 3, 1)
    phases = {
        (ph, pw): _phase(x_nhwc, ph, pw, stride, rows, cols).view(b * rows * cols, c)
        for ph in range(sh)
        for pw in range(sw)
    }
    g = _zero_extend(go.permute(0, 2, 3, 1), rows, cols).view(b * rows * cols, o)
    n = g.shape[0] - (dh + 1) * cols  # the last sample's spare rows hold only zeros of g: skip them
    taps = []
    for kh in range(3):
        for kw in range(3):
            off = (kh // sh) * cols + kw // sw
            taps.append(_gram(g[:n], phases[(kh % sh, kw % sw)][off : off + n]))
    return torch.stack(taps, dim=1).view(o, 3, 3, c).permute(0, 3, 1, 2)


def _weight_grad_stride1(x: torch.Tensor, go: torch.Tensor) -> torch.Tensor:
    """:func:`conv3_weight_grad` for stride 1, without padded copies: in the unpadded flattened pixels
    (row length W) tap (kh, kw) is the shift (kh−1)·W + kw − 1. The GEMM runs over the output pixels whose
    shifted row exists; those of its pixels whose shifted column falls off the row's edge (column 0 for
    kw = 0, column W−1 for kw = 2) read the neighbouring row's edge pixel instead of the zero padding, and
    that one-pixel-per-row term is subtracted with a small GEMM."""
    b, c, h, w = x.shape
    o = go.shape[1]
    xf = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
    gf = go.permute(0, 2, 3, 1).reshape(b, h * w, o)
    taps: list[torch.Tensor] = []
    for kh in range(3):
        lo, hi = max(0, 1 - kh) * w, min(h, h + 1 - kh) * w  # output rows whose row i + kh − 1 exists
        for kw in range(3):
            d = (kh - 1) * w + kw - 1
            # the range's first (kw = 0) or last (kw = 2) pixel would index outside x: it is an edge pixel
            a, z = lo + (kw == 0), hi - (kw == 2)
            tap: torch.Tensor | None = None
            for i in range(b):
                t = _gram(gf[i, a:z], xf[i, a + d : z + d])
                if kw != 1:  # the remaining edge pixels of the range, one per row
                    first = lo + w if kw == 0 else lo + w - 1
                    last = hi if kw == 0 else hi - 1
                    t = t - (gf[i, first:last:w].t() @ xf[i, first + d : last + d : w]).to(t.dtype)
                tap = t if tap is None else tap + t
            assert tap is not None  # b ≥ 1
            taps.append(tap)
    return torch.stack(taps, dim=1).view(o, 3, 3, c).permute(0, 3, 1, 2)


def _weight_grad(
    x: torch.Tensor, go: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int]
) -> torch.Tensor:
    if min(weight.shape[0], weight.shape[1]) >= GEMM_MIN_CHANNELS:
        return conv3_weight_grad(x, go, stride)
    return torch.ops.aten.convolution_backward(
        go, x, weight, None, list(stride), [1, 1], [1, 1], False, [0, 0], 1, [False, True, False]
    )[1]


def _output_padding(stride: tuple[int, int]) -> tuple[int, int]:
    return (stride[0] - 1, stride[1] - 1)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a Function computes in: CPU autocast's (bf16) for float32 inputs under autocast, else
    the input's own (float64 stays float64, as autocast leaves it)."""
    if x.dtype == torch.float32 and torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu")
    return x.dtype


def _cast(t: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if t is None else t.to(dtype)


class Conv3(torch.autograd.Function):
    """``y = conv2d(x, W, b, stride, padding=1)`` for a 3×3 ``W``; ``[B, C, H, W]`` → ``[B, O, H/s, W/s]``.

    Under CPU autocast the inputs and weights are cast to the autocast dtype here (autocast does not look
    inside a Function) and the weight and bias gradients go back in the parameters' dtype."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride):
        dt = _compute_dtype(x)
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        x = x.to(dt).contiguous(memory_format=torch.channels_last)
        w = weight.to(dt)
        ctx.save_for_backward(x, w)
        ctx.stride = stride
        with torch.autocast("cpu", enabled=False):
            return F.conv2d(x, w, _cast(bias, dt), stride, 1)

    @staticmethod
    def backward(ctx, go):
        x, weight = ctx.saved_tensors
        s = ctx.stride
        x_dt, w_dt, b_dt = ctx.dtypes
        gx = gw = gb = None
        with torch.autocast("cpu", enabled=False):
            go = go.to(x.dtype).contiguous(memory_format=torch.channels_last)
            if ctx.needs_input_grad[0]:
                gx = F.conv_transpose2d(go, weight, stride=s, padding=1, output_padding=_output_padding(s))
                gx = gx.to(x_dt)
            if ctx.needs_input_grad[1]:
                gw = _weight_grad(x, go, weight, s).to(w_dt)
            if b_dt is not None and ctx.needs_input_grad[2]:
                gb = go.sum(dim=(0, 2, 3), dtype=torch.promote_types(go.dtype, torch.float32)).to(b_dt)
        return gx, gw, gb, None


class Conv3Adjoint(torch.autograd.Function):
    """The input gradient of :class:`Conv3` as a function of (g, W): the transposed convolution
    ``[B, O, H/s, W/s]`` → ``[B, C, H, W]``. Its own gradients are a convolution (for g) and a weight
    gradient with the roles of the two activations swapped (for W). Autocast as in :class:`Conv3`."""

    @staticmethod
    def forward(ctx, g, weight, stride):
        dt = _compute_dtype(g)
        ctx.dtypes = (g.dtype, weight.dtype)
        g = g.to(dt).contiguous(memory_format=torch.channels_last)
        w = weight.to(dt)
        ctx.save_for_backward(g, w)
        ctx.stride = stride
        with torch.autocast("cpu", enabled=False):
            return F.conv_transpose2d(g, w, stride=stride, padding=1, output_padding=_output_padding(stride))

    @staticmethod
    def backward(ctx, gg):
        g, weight = ctx.saved_tensors
        s = ctx.stride
        g_dt, w_dt = ctx.dtypes
        g_g = g_w = None
        with torch.autocast("cpu", enabled=False):
            gg = gg.to(g.dtype).contiguous(memory_format=torch.channels_last)
            if ctx.needs_input_grad[0]:
                g_g = F.conv2d(gg, weight, None, s, 1).to(g_dt)
            if ctx.needs_input_grad[1]:
                g_w = _weight_grad(gg, g, weight, s).to(w_dt)
        return g_g, g_w, None
