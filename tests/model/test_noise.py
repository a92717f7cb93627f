"""The noise layer (docs/psychoacoustics.md#noise-layer) and the generator → inverse MDCT round trip."""

import pytest
import torch

from mp3net.config import preset
from mp3net.dsp import imdct, mdct
from mp3net.model import Generator, NoiseLayer


def music_like(cfg, frames: int, seed: int = 0) -> torch.Tensor:
    """MDCT of a few decaying tones plus a little noise, ``[1, C, frames, K]``."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange((frames - 1) * cfg.n_bands) / cfg.sample_rate
    x = 0.01 * torch.randn(cfg.channels, t.numel(), generator=g)
    for f in (220.0, 330.0, 1250.0):
        x = x + 0.2 * torch.sin(2 * torch.pi * f * t) * torch.exp(-t)
    return mdct(x, cfg.n_bands)[None].float()


@pytest.mark.parametrize("sigma", [1 / 6, 1 / 2])
def test_noise_std_is_sigma_times_threshold(sigma):
    cfg = preset("tiny").model
    layer = NoiseLayer(cfg, sigma)
    A = music_like(cfg, 8)
    thr = layer.threshold(A)
    g = torch.Generator().manual_seed(0)
    many = A.expand(4000, *A.shape[1:])  # 4000 independent draws in one call
    draws = layer(many, generator=g) - many  # [4000, C, 8, K]
    std = draws.std(dim=0)
    # per element, 4000 draws: the std estimate is good to ~1.1 %; pooled over all elements far better
    assert ((std / (sigma * thr)) - 1).abs().mean() < 0.02
    assert ((std / (sigma * thr)) - 1).abs().max() < 0.06
    assert abs((draws / thr).std().item() / sigma - 1) < 0.02
    assert draws.mean(dim=0).abs().div(sigma * thr).mean() < 0.05  # zero-mean


def test_noise_is_fresh_and_threshold_is_in_graph():
    cfg = preset("tiny").model
    layer = NoiseLayer(cfg, 1 / 6)
    A = music_like(cfg, 4).requires_grad_(True)
    assert not torch.equal(layer(A), layer(A))
    g = torch.Generator().manual_seed(3)
    (grad_in_graph,) = torch.autograd.grad(layer(A, generator=g).sum(), A)
    g = torch.Generator().manual_seed(3)
    thr = layer.threshold(A).detach()
    (grad_detached,) = torch.autograd.grad(layer(A, generator=g, threshold=thr).sum(), A)
    # with a stopped threshold dA~/dA = 1; the in-graph threshold adds its own derivative
    assert torch.allclose(grad_detached, torch.ones_like(A))
    assert (grad_in_graph - grad_detached).abs().max() > 1e-3


def test_noise_zero_sigma_is_identity():
    cfg = preset("tiny").model
    A = music_like(cfg, 4)
    assert torch.equal(NoiseLayer(cfg, 0.0)(A), A)


def test_tiny_generator_imdct_round_trip_length():
    cfg = preset("tiny").model
    G = Generator(cfg)
    with torch.no_grad():
        A = G(torch.randn(2, cfg.latent_dim))
    wav = imdct(A, trim=True)
    assert wav.shape == (2, cfg.channels, cfg.clip_samples)
    assert imdct(A).shape == (2, cfg.channels, (cfg.n_frames + 1) * cfg.n_bands)
    # the clip's own MDCT has the generator's frame count again
    assert mdct(wav, cfg.n_bands).shape == A.shape


@pytest.mark.parametrize("name", ["95s", "5s"])
def test_generator_imdct_length_on_meta(name):
    cfg = preset(name).model
    with torch.device("meta"):
        shape = Generator(cfg)(torch.empty(1, cfg.latent_dim)).shape
    wav = imdct(torch.zeros(shape), trim=True)  # a real tensor of the generator's output shape
    assert wav.shape == (1, cfg.channels, cfg.clip_samples)
    assert wav.shape[-1] == (cfg.n_frames - 1) * cfg.n_bands
    assert abs(cfg.clip_seconds - {"95s": 95.25, "5s": 5.95}[name]) < 0.01
