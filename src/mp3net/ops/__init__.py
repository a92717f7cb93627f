"""Device-specific kernels behind one switch, and the device/layout/precision choices of a run.

The layer classes of :mod:`mp3net.model.layers` call the functions here; each picks an implementation:

* the **fast path** (:data:`fast_path`, on by default): for channels-last CPU tensors, 3×3 convs and
  transposed convs that need gradients take :mod:`mp3net.ops.conv`'s autograd functions (oneDNN's
  channels-last forward and input gradient, a GEMM weight gradient), 1×1 convs and their adjoints run as
  one GEMM over the pixels, and :func:`prepare_for` lays CPU activations out channels-last and tiles the
  generator's widest blocks for the cache;
* the **plain path**: PyTorch's own modules' maths in PyTorch's default layout, for every other device,
  for NCHW tensors, and everywhere with the switch off (for debugging, like StyleGAN2-ADA's
  ``conv2d_gradfix``). Both give the same values up to float rounding.

Switch it with ``mp3net.ops.fast_path = False`` or, scoped, ``with mp3net.ops.enabled(False): ...``.
Under bf16 autocast both paths compute in bf16 (:func:`bf16_is_fast`, :func:`resolve_amp`).

How a training loop uses this layer (no device branches of its own):

* ``amp = resolve_amp(cfg.train.amp, device)``, then ``torch.autocast(device.type, torch.bfloat16)``
  around forwards when ``amp``;
* fakes for the D step: ``G.generate(z)`` (no autograd; the device plan's layout and time tiles; under
  the loop's autocast), the G step's fakes ``G(z)``; D converts its input to the plan's layout itself
  (``D.features``), so no ``.contiguous(memory_format=...)`` is needed. The plan is
  :func:`prepare_for(device) <prepare_for>`; the networks call it themselves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from mp3net.ops.bands import SplitBands, is_channels_last
from mp3net.ops.conv import Conv3, Conv3Adjoint, conv3_weight_grad
from mp3net.ops.plan import ExecutionPlan, TileLevel, configure_process, prepare_for
from mp3net.ops.precision import PRECISIONS, bf16_is_fast, cpu_has_fast_bf16, resolve_amp, resolve_precision

fast_path: bool = True

__all__ = [
    "fast_path",
    "enabled",
    "use_fast",
    "conv3",
    "conv3_adjoint",
    "conv_t3",
    "conv1",
    "conv1_adjoint",
    "lrelu_",
    "lrelu_adjoint",
    "tanh_",
    "split_bands",
    "Conv3",
    "Conv3Adjoint",
    "SplitBands",
    "conv3_weight_grad",
    "ExecutionPlan",
    "TileLevel",
    "prepare_for",
    "configure_process",
    "bf16_is_fast",
    "cpu_has_fast_bf16",
    "resolve_amp",
    "resolve_precision",
    "PRECISIONS",
    "full_precision",
    "autocast",
]


@contextlib.contextmanager
def enabled(on: bool = True) -> Iterator[None]:
    """Turn the fast path on or off inside a ``with`` block (restored afterwards)."""
    global fast_path
    before, fast_path = fast_path, bool(on)
    try:
        yield
    finally:
        fast_path = before


def use_fast(x: torch.Tensor) -> bool:
    """Whether ``x`` ``[B, C, H, W]`` takes the fast path: switch on, a CPU tensor, channels-last."""
    return fast_path and x.device.type == "cpu" and is_channels_last(x)


def _output_padding(stride: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(s - 1 for s in stride)


def conv3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride) -> torch.Tensor:
    """3×3 conv, padding 1: ``[B, C, H, W]`` → ``[B, O, H/s, W/s]``."""
    if use_fast(x) and torch.is_grad_enabled():
        return Conv3.apply(x, weight, bias, tuple(stride))
    return F.conv2d(x, weight, bias, stride, 1)


def conv3_adjoint(g: torch.Tensor, weight: torch.Tensor, stride) -> torch.Tensor:
    """The input gradient of :func:`conv3` for an output gradient ``g`` ``[B, O, H/s, W/s]`` →
    ``[B, C, H, W]``, differentiable in the weights: the transposed conv with the same weights."""
    if use_fast(g):
        return Conv3Adjoint.apply(g, weight, tuple(stride))
    return F.conv_transpose2d(g, weight, stride=stride, padding=1, output_padding=_output_padding(stride))


def conv_t3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride) -> torch.Tensor:
    """3×3 transposed conv that multiplies each length by its stride: ``[B, C, H, W]`` → ``[B, O, sH, sW]``
    (``weight`` ``[C, O, 3, 3]``). The transposed conv is the adjoint of a conv with the same weights, so
    the fast path reuses :class:`Conv3Adjoint`."""
    if use_fast(x) and torch.is_grad_enabled():
        y = Conv3Adjoint.apply(x, weight, tuple(stride))
        return y if bias is None else y + bias.view(1, -1, 1, 1).to(y.dtype)
    return F.conv_transpose2d(x, weight, bias, stride, 1, _output_padding(stride))


def conv1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """1×1 conv ``[B, C, H, W]`` → ``[B, O, H, W]``. On the fast path one GEMM over the pixels (an
    ``addmm``): PyTorch's CPU convolution sends 1×1 kernels to a slow im2col path."""
    if use_fast(x):
        w = weight.view(weight.shape[0], weight.shape[1])
        return F.linear(x.permute(0, 2, 3, 1), w, bias).permute(0, 3, 1, 2)
    return F.conv2d(x, weight, bias)


def conv1_adjoint(g: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The input gradient of :func:`conv1`: ``W^T g``, ``[B, O, H, W]`` → ``[B, C, H, W]``, one GEMM."""
    o, c = weight.shape[:2]
    w = weight.view(o, c)
    if use_fast(g):
        return F.linear(g.permute(0, 2, 3, 1), w.t()).permute(0, 3, 1, 2)
    b, _, h, wd = g.shape
    return torch.matmul(w.t().to(g.dtype), g.reshape(b, o, h * wd)).view(b, c, h, wd)


def lrelu_(x: torch.Tensor, slope: float) -> torch.Tensor:
    """In-place LeakyReLU. Used only on fresh conv outputs: conv backward needs its input, not its output,
    and LeakyReLU's backward (and double backward, for the gradient penalty) is computed from its result,
    so in place is safe under autograd and saves one activation-sized tensor per layer."""
    return F.leaky_relu_(x, slope)


def lrelu_adjoint(g: torch.Tensor, act: torch.Tensor, slope: float) -> torch.Tensor:
    """LeakyReLU's input gradient: ``g`` where the activation's result ``act`` is positive, ``slope·g``
    elsewhere (PyTorch's own rule, one fused kernel).

    ``act`` enters as a constant (detached): the activation is piecewise linear, so this gradient does not
    depend on it, and autograd must not send zeros back into the forward graph through it. Only its sign
    matters, so under autocast it is cast to ``g``'s dtype exactly."""
    return torch.ops.aten.leaky_relu_backward(g, act.detach().to(g.dtype), slope, True)


def tanh_(x: torch.Tensor) -> torch.Tensor:
    """In-place tanh, for fresh tensors only (the generator's output heads). Outside autograd, a float32
    CPU tensor on the fast path takes NumPy's vectorised kernel: within 1 ulp of the exact value, like
    PyTorch's, and about 7× faster than PyTorch 2.13's on an AVX-512 CPU (benchmarks/README.md)."""
    if fast_path and x.device.type == "cpu" and x.dtype == torch.float32 and not x.requires_grad:
        a = x.numpy()
        np.tanh(a, out=a)
        return x
    return x.tanh_()


def split_bands(x: torch.Tensor, widths: list[int]) -> tuple[torch.Tensor, ...]:
    """``[B, C, M, K]`` → pieces ``[B, C, M, w]`` for the widths (summing to K). The fast path keeps the
    layout (:class:`SplitBands`); the plain path slices."""
    if use_fast(x):
        return SplitBands.apply(x, widths)
    return tuple(x.split(widths, dim=-1))


def full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """A context in which autocast is off for ``device``'s type (layers that must run in float32)."""
    if device.type in ("cpu", "cuda", "xpu", "mps") and torch.is_autocast_enabled(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device`` (float32: autocast off); None leaves the ambient state alone."""
    if dtype is None or device.type not in ("cpu", "cuda", "xpu", "mps"):
        return contextlib.nullcontext()
    if dtype == torch.float32:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)
