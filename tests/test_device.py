"""Device-generic tests: the networks, the input-gradient chain, bf16 autocast and generation on the device
named by ``MP3NET_TEST_DEVICE`` (default cpu). ``benchmarks/bench_device.py --device cuda`` runs them with
``-m device`` on a GPU; a requested device that is absent fails the tests, it does not skip them."""

from __future__ import annotations

import copy
import dataclasses
import os

import pytest
import torch

from mp3net import generate as gen
from mp3net.config import preset
from mp3net.model import Discriminator, Generator, NoiseLayer
from mp3net.train.losses import d_loss

pytestmark = pytest.mark.device


@pytest.fixture(scope="module")
def device():
    name = os.environ.get("MP3NET_TEST_DEVICE", "cpu")
    try:
        dev = torch.device(name)
        torch.empty(1, device=dev)
    except (RuntimeError, AssertionError) as e:
        pytest.fail(f"MP3NET_TEST_DEVICE={name}: device not usable: {str(e).splitlines()[0]}")
    # exact float32 on a GPU: TF32 convolutions and matmuls would loosen every comparison below
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield dev
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture(scope="module")
def cfg():
    """The laptop preset's network (the shipped model's), its band levels falling 40 dB over the bands."""
    m = preset("laptop").model
    return dataclasses.replace(m, band_rms=tuple(float(v) for v in torch.logspace(-1, -3, m.n_bands)))


def _models(cfg, device):
    torch.manual_seed(0)
    return Generator(cfg).to(device), Discriminator(cfg).to(device)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm())


def test_generator_on_device(cfg, device):
    G, _ = _models(cfg, device)
    z = torch.randn(2, cfg.latent_dim, device=device)
    with torch.no_grad():
        x, again = G(z), G(z)
    assert x.device.type == device.type and x.dtype == torch.float32
    assert x.shape == (2, cfg.channels, cfg.n_frames, cfg.n_bands)
    assert torch.isfinite(x).all() and x.abs().max() < 1 and torch.equal(x, again)
    # the inference path (the device plan's tiles) gives the same values
    h = G.head(torch.randn(1, 3, cfg.latent_dim, device=device))
    with torch.no_grad():
        full = G.synthesize(h)
    torch.testing.assert_close(G.render(h, dtype=torch.float32), full, rtol=0, atol=1e-5 * full.abs().max())


def test_input_gradient_on_device(cfg, device):
    _, D = _models(cfg, device)
    x = torch.rand(3, cfg.channels, cfg.n_frames, cfg.n_bands, device=device)
    ref = copy.deepcopy(D)
    xr = x.clone().requires_grad_(True)
    (g_ref,) = torch.autograd.grad(ref(xr).sum(), xr, create_graph=True)
    gp_ref = (g_ref.flatten(1).norm(dim=1) - 1).square().mean()
    w_ref = torch.autograd.grad(gp_ref, list(ref.parameters()), allow_unused=True)
    _, g = D.input_gradient(x)
    gp = (g.flatten(1).norm(dim=1) - 1).square().mean()
    w = torch.autograd.grad(gp, list(D.parameters()), allow_unused=True)
    assert _rel(g, g_ref) < 1e-4
    flat = [torch.cat([t.flatten() for t in ts if t is not None]) for ts in (w, w_ref)]
    assert _rel(*flat) < 1e-3


def test_bf16_d_step_on_device(cfg, device):
    G, D = _models(cfg, device)
    noise = NoiseLayer(cfg).to(device)
    real = torch.rand(4, cfg.channels, cfg.n_frames, cfg.n_bands, device=device) * 0.1
    fake = G.generate(torch.randn(4, cfg.latent_dim, device=device))
    grads = {}
    for amp in (False, True):
        Dc = copy.deepcopy(D)
        g = torch.Generator(device=device).manual_seed(0)
        rn, fn = noise(real, generator=g), noise(fake, generator=g)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss, _ = d_loss(Dc, rn, fn, 3.0, 0.1, g, backward=True)
        assert torch.isfinite(loss)
        assert all(p.grad.dtype == torch.float32 for p in Dc.parameters() if p.grad is not None)
        grads[amp] = torch.cat([p.grad.flatten() for p in Dc.parameters() if p.grad is not None])
    # bf16 keeps 8 significant bits: through D, its penalty chain and the backward the gradient agrees
    # with float32's to about 10 % (a broken cast gives O(1))
    assert torch.isfinite(grads[True]).all() and _rel(grads[True], grads[False]) < 0.2


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_generate_on_device(cfg, device, precision):
    G, _ = _models(cfg, device)
    G.eval()
    a, sr = gen.generate(G, [0, 1], duration=2 * cfg.clip_seconds, batch_size=2, precision=precision)
    b, _ = gen.generate(G, [0, 1], duration=2 * cfg.clip_seconds, batch_size=2, precision=precision)
    assert a.device.type == "cpu" and a.shape == (2, cfg.channels, round(2 * cfg.clip_seconds * sr))
    assert torch.isfinite(a).all() and torch.equal(a, b)
