"""mp3net.ops: the CPU training convolutions (the GEMM weight gradient against PyTorch's own, both autograd
functions against numerical gradients, in both layouts), the fast-path switch, bf16 autocast through the
fast path, bf16 detection and the execution plan."""

import pytest
import torch

from mp3net import ops
from mp3net.config import preset
from mp3net.model import Discriminator, Generator
from mp3net.ops import Conv3, Conv3Adjoint, conv3_weight_grad
from mp3net.ops import use_fast as use_fast_conv
from mp3net.utils import MP3NetError

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


# ---- the switch, precision and the execution plan


def test_switch_turns_the_fast_path_off_and_restores_it():
    x = torch.zeros(1, 4, 6, 6).contiguous(memory_format=CL)
    assert ops.fast_path and use_fast_conv(x)
    with ops.enabled(False):
        assert not use_fast_conv(x)
        assert not ops.prepare_for("cpu").channels_last
    assert ops.fast_path and use_fast_conv(x) and ops.prepare_for("cpu").channels_last
    assert not ops.prepare_for("meta").channels_last and ops.prepare_for("meta").cache_tile is None


def test_fast_and_plain_paths_agree_on_the_discriminator():
    cfg = preset("tiny").override(["model.band_norm=false"]).model
    torch.manual_seed(0)
    D = Discriminator(cfg).double()
    x = torch.rand(3, cfg.channels, cfg.n_frames, cfg.n_bands, dtype=torch.float64)
    results = []
    for fast in (True, False):
        with ops.enabled(fast):
            score, g = D.input_gradient(x)
            gp = (g.flatten(1).norm(dim=1) - 1).square().mean()
            grads = torch.autograd.grad(gp, list(D.parameters()), allow_unused=True)
        results.append((score, g, grads))
    (s1, g1, w1), (s2, g2, w2) = results
    torch.testing.assert_close(s1, s2, rtol=1e-12, atol=0)
    torch.testing.assert_close(g1, g2, rtol=0, atol=1e-12 * g2.abs().max().item())
    for a, b in zip(w1, w2, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("stride", [(1, 1), (2, 1), (2, 2)])
def test_conv3_functions_under_bf16_autocast(stride):
    # bf16 compute, parameter-dtype gradients, within bf16 tolerance of float32
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 32, 16, 12, generator=g).contiguous(memory_format=CL)
    w = (torch.randn(40, 32, 3, 3, generator=g) * 0.1).requires_grad_(True)
    b = torch.randn(40, generator=g).requires_grad_(True)
    go = torch.randn(2, 40, 16 // stride[0], 12 // stride[1], generator=g)
    xs = {}
    for amp in (False, True):
        xr = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            y = Conv3.apply(xr, w, b, stride)
            z = Conv3Adjoint.apply(y, w, stride)
        assert y.dtype == (torch.bfloat16 if amp else torch.float32)
        grads = torch.autograd.grad((y.float() * go).sum() + z.float().square().sum(), (xr, w, b))
        assert [t.dtype for t in grads] == [torch.float32] * 3
        xs[amp] = (y, z, *grads)
    for got, want in zip(xs[True], xs[False], strict=True):
        assert _rel(got, want) < 2e-2


def test_bf16_d_step_through_the_fast_path_matches_the_plain_path():
    cfg = preset("tiny").override(["model.band_norm=false"]).model
    torch.manual_seed(0)
    D = Discriminator(cfg)
    x = torch.rand(4, cfg.channels, cfg.n_frames, cfg.n_bands)
    grads = {}
    for fast, amp in ((True, True), (False, True), (True, False)):
        D.zero_grad(set_to_none=True)
        with ops.enabled(fast), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            _, g = D.input_gradient(x)
            loss = D(x).mean() + (g.float().flatten(1).norm(dim=1) - 1).square().mean()
        loss.backward()
        assert all(p.grad.dtype == torch.float32 for p in D.parameters() if p.grad is not None)
        grads[fast, amp] = torch.cat([p.grad.flatten() for p in D.parameters() if p.grad is not None])
    ref = grads[True, False]
    # bf16 moves the gradient by a few per cent on either path, and the two paths by as much
    assert _rel(grads[True, True], ref) < 0.1 and _rel(grads[False, True], ref) < 0.1
    assert _rel(grads[True, True], grads[False, True]) < 0.1


def test_bf16_generator_forward_backward():
    cfg = preset("tiny").override(["model.band_norm=false"]).model
    torch.manual_seed(0)
    G = Generator(cfg)
    z = torch.randn(2, cfg.latent_dim)
    ref = G(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = G(z)
    assert out.dtype == torch.float32 and _rel(out, ref) < 5e-2
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in G.parameters())


@pytest.mark.parametrize(
    "capability,flags,fast",
    [
        ("AVX512", {"avx512f", "avx512_bf16"}, True),
        ("AVX512", {"avx512f", "amx_bf16", "amx_tile"}, True),
        ("AVX512", {"avx512f"}, False),  # AVX-512 without bf16 arithmetic: emulated
        ("AVX2", {"avx2", "avx512_bf16"}, False),  # kernels restricted to AVX2
        ("DEFAULT", set(), False),
    ],
)
def test_bf16_is_fast_on_cpu(monkeypatch, capability, flags, fast):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(ops.precision, "cpu_flags", lambda: frozenset(flags))
    assert ops.bf16_is_fast("cpu") is fast
    assert ops.resolve_amp("auto", "cpu") is fast
    assert ops.resolve_amp("bf16", "cpu") and not ops.resolve_amp("off", "cpu")
    assert ops.resolve_precision("auto", "cpu") == (torch.bfloat16 if fast else torch.float32)
    assert ops.resolve_precision("fp32", "cpu") == torch.float32
    assert ops.resolve_precision("bf16", "cpu") == torch.bfloat16
    with pytest.raises(MP3NetError):
        ops.resolve_amp("fp16", "cpu")


def test_cpu_flags_read_proc_cpuinfo(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t: fpu\n")
    real_path = ops.precision.Path
    monkeypatch.setattr(ops.precision, "Path", lambda p: info if p == "/proc/cpuinfo" else real_path(p))
    assert ops.precision.cpu_flags() == {"fpu", "avx2", "avx512_bf16"}


def test_bf16_is_fast_on_other_devices(monkeypatch):
    assert not ops.bf16_is_fast("meta")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for major, fast in ((8, True), (9, True), (7, False)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None, m=major: (m, 0))
        assert ops.bf16_is_fast("cuda") is fast


def test_plan_tiling_nests_the_cache_tiles_inside_the_memory_tiles():
    plan = ops.prepare_for("cpu")
    levels = plan.tiling(6)
    assert [(t.blocks, t.frames) for t in levels] == [
        (5, ops.plan.TILE_OUT_FRAMES // 4**5),
        ops.plan.CPU_CACHE_TILE,
    ]
    assert len(ops.prepare_for("meta").tiling(6)) == 1
    x = torch.zeros(1, 3, 4, 4)
    assert plan.layout(x).is_contiguous(memory_format=CL)


def test_tanh_in_place_is_within_an_ulp_with_and_without_the_fast_path():
    x = torch.randn(3, 5, 7, 11) * 3
    ref = torch.tanh(x.double())
    for fast in (True, False):
        with ops.enabled(fast):
            y = x.clone()
            assert ops.tanh_(y) is y
        assert ((y.double() - ref).abs() <= 1.2e-7 * ref.abs().clamp_min(1e-30)).all()
    g = x.clone().requires_grad_(True)
    out = ops.tanh_(g * 1.0)  # under autograd: PyTorch's own in-place tanh, differentiable
    out.sum().backward()
    torch.testing.assert_close(g.grad, 1 - torch.tanh(x) ** 2)
