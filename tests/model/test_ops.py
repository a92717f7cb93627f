"""The CPU training convolutions (mp3net.ops.conv): the GEMM weight gradient against PyTorch's own, and
both autograd functions against numerical gradients, in both layouts."""

import pytest
import torch

from mp3net.ops import Conv3, Conv3Adjoint, conv3_weight_grad
from mp3net.ops import use_fast as use_fast_conv

CL = torch.channels_last


def reference_weight_grad(x, go, stride):
    w = torch.zeros(go.shape[1], x.shape[1], 3, 3, dtype=x.dtype)
    return torch.ops.aten.convolution_backward(
        go, x, w, None, list(stride), [1, 1], [1, 1], False, [0, 0], 1, [False, True, False]
    )[1]


@pytest.mark.parametrize("stride", [(1, 1), (2, 1), (2, 2)])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("layout", [CL, torch.contiguous_format])
def test_weight_grad_matches_pytorch(stride, batch, layout):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 5, 12, 10, generator=g, dtype=torch.float64).contiguous(memory_format=layout)
    go = torch.randn(batch, 7, 12 // stride[0], 10 // stride[1], generator=g, dtype=torch.float64)
    got = conv3_weight_grad(x, go.contiguous(memory_format=layout), stride)
    want = reference_weight_grad(x, go, stride)
    assert got.shape == (7, 5, 3, 3)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_weight_grad_border_taps_see_the_padding():
    # an input that is one only in its last row and column: taps that read past it must see zeros
    x = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    x[..., -1, :] = 1
    x[..., :, -1] = 1
    go = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(conv3_weight_grad(x, go, (2, 2)), reference_weight_grad(x, go, (2, 2)))


@pytest.mark.parametrize("stride", [(1, 1), (2, 1), (2, 2)])
def test_conv3_function_gradients(stride):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 8, 6, generator=g, dtype=torch.float64).contiguous(memory_format=CL)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    x.requires_grad_(True), w.requires_grad_(True), b.requires_grad_(True)
    y = Conv3.apply(x, w, b, stride)
    torch.testing.assert_close(y, torch.nn.functional.conv2d(x, w, b, stride, 1))
    assert torch.autograd.gradcheck(lambda x, w, b: Conv3.apply(x, w, b, stride), (x, w, b))
    # the backward is made of differentiable operations: a second derivative exists and is right
    assert torch.autograd.gradgradcheck(lambda x, w, b: Conv3.apply(x, w, b, stride), (x, w, b))


@pytest.mark.parametrize("stride", [(1, 1), (2, 1), (2, 2)])
def test_conv3_adjoint_is_the_input_gradient(stride):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 8, 6, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    go = torch.randn(2, 4, 8 // stride[0], 6 // stride[1], generator=g, dtype=torch.float64)
    go = go.contiguous(memory_format=CL).requires_grad_(True)
    xr = x.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(torch.nn.functional.conv2d(xr, w, None, stride, 1), xr, go)
    torch.testing.assert_close(Conv3Adjoint.apply(go, w, stride), want)
    assert torch.autograd.gradcheck(lambda go, w: Conv3Adjoint.apply(go, w, stride), (go, w))


def test_fast_path_only_for_channels_last_cpu():
    x = torch.zeros(1, 4, 6, 6)
    assert not use_fast_conv(x)
    assert use_fast_conv(x.contiguous(memory_format=CL))
    assert use_fast_conv(x.contiguous(memory_format=CL)[..., :3])  # a slice along the bands
    assert not use_fast_conv(torch.zeros(1, 1, 6, 6))  # one channel: both layouts are the same
