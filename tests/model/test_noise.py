"""The noise layer (docs/psychoacoustics.md#noise-layer) and the generator → inverse MDCT round trip."""

from dataclasses import replace

import pytest
import torch

from mp3net.config import preset
from mp3net.dsp import PsychoacousticModel, imdct, mdct
from mp3net.model import Generator, NoiseLayer
from mp3net.synth import random_music


def music_like(cfg, frames: int, seed: int = 0) -> torch.Tensor:
    """MDCT of piano chords (:func:`mp3net.synth.random_music`) plus a little noise, ``[1, C, frames, K]``."""
    n = (frames - 1) * cfg.n_bands
    x = 0.5 * torch.from_numpy(
        random_music(n / cfg.sample_rate + 0.01, seed, cfg.sample_rate)[: cfg.channels, :n]
    )
    x = x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
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


def test_noise_on_a_given_psychoacoustic_model_is_seeded_and_scales_with_sigma():
    pm = PsychoacousticModel(22016, 128)
    x = torch.from_numpy(random_music(0.5, seed=0, sample_rate=22016)[0, : 85 * 128])
    A = mdct(x, 128)
    thr = pm.threshold(A)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    y1 = NoiseLayer(pm, 1 / 6)(A, generator=g1)
    y2 = NoiseLayer(pm, 1 / 6)(A, generator=g2)
    assert torch.equal(y1, y2)  # same generator seed, same noise
    z = (y1 - A) / thr
    assert abs(z.std().item() - 1 / 6) < 0.01
    assert abs(z.mean().item()) < 0.01
    y3 = NoiseLayer(pm, 0.5)(A, generator=torch.Generator().manual_seed(7), threshold=thr)
    assert torch.allclose((y3 - A), 3 * (y1 - A), atol=1e-6)
    B = mdct(x[: 10 * 128], 128).requires_grad_()
    NoiseLayer(pm)(B, generator=torch.Generator().manual_seed(0)).sum().backward()
    assert B.grad is not None and torch.isfinite(B.grad).all() and B.grad.abs().sum() > 0


def test_laptop_generator_imdct_round_trip_length():
    cfg = preset("laptop").model
    cfg = replace(cfg, band_rms=(0.01,) * cfg.n_bands)  # band normalisation's levels, as training fills in
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
