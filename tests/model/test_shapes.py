"""Shapes and parameter counts of every preset, built on the meta device (no memory, no compute)."""

import pytest
import torch

from mp3net.config import preset
from mp3net.model import Discriminator, Generator

PAPER_PARAMS = {"95s": 59e6, "5s": 64e6}  # paper §4.2.1 / §4.2.2: G and D each


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name", ["95s", "5s", "tiny"])
def test_shapes_on_meta(name):
    cfg = preset(name).override(["model.band_norm=false"]).model
    with torch.device("meta"):
        G, D = Generator(cfg), Discriminator(cfg)
        x = G(torch.empty(3, cfg.latent_dim))
        assert x.shape == (3, cfg.channels, cfg.n_frames, cfg.n_bands)
        assert D(x).shape == (3, 1)
        assert D(x).dtype == torch.float32
        # several latents laid along time: a longer track from the same fully convolutional body
        assert G(torch.empty(2, 3, cfg.latent_dim)).shape == (2, cfg.channels, 3 * cfg.n_frames, cfg.n_bands)


def test_paper_output_shapes():
    assert preset("95s").model.n_frames == 16384 and preset("95s").model.n_bands == 128
    assert preset("5s").model.n_frames == 1024 and preset("5s").model.n_bands == 128


def test_block_shapes_match_forward():
    cfg = preset("95s").model
    with torch.device("meta"):
        G, D = Generator(cfg), Discriminator(cfg)
        h = G.head(torch.empty(1, cfg.latent_dim))
        got = [tuple(h.shape[1:])]
        for b in G.blocks:
            h = b(h)
            got.append(tuple(h.shape[1:]))
        x = torch.empty(1, cfg.channels, cfg.n_frames, cfg.n_bands)
        h = D.from_in(x)
        dgot = [tuple(h.shape[1:])]
        for b in D.blocks:
            h = b(h)
            dgot.append(tuple(h.shape[1:]))
    assert got == [s for _, s in G.block_shapes()[:-1]]
    assert dgot == [s for _, s in D.block_shapes()[: len(dgot)]]
    # the 95 s generator's table in docs/networks.md#channel-rule
    assert got[1:] == [
        (512, 16, 4),
        (512, 64, 8),
        (512, 256, 16),
        (256, 1024, 32),
        (64, 4096, 64),
        (16, 16384, 128),
    ]


@pytest.mark.parametrize("name", ["95s", "5s"])
def test_param_counts_match_paper(name):
    cfg = preset(name).override(["model.band_norm=false"]).model
    with torch.device("meta"):
        G, D = Generator(cfg), Discriminator(cfg)
    for net in (G, D):
        assert abs(n_params(net) / PAPER_PARAMS[name] - 1) < 0.01, (name, type(net).__name__, n_params(net))


def test_tiny_forward_range_and_dtype():
    cfg = preset("tiny").override(["model.band_norm=false"]).model
    torch.manual_seed(0)
    G, D = Generator(cfg), Discriminator(cfg)
    x = G(torch.randn(2, cfg.latent_dim))
    assert x.shape == (2, cfg.channels, cfg.n_frames, cfg.n_bands) and x.dtype == torch.float32
    assert torch.isfinite(x).all() and x.abs().max() < 1
    assert D(x).shape == (2, 1)


@pytest.mark.slow  # 0.42 TFLOP: ~1.5 s on an idle 2-core CPU
def test_5s_forward_batch1_in_range():
    cfg = preset("5s").model
    torch.manual_seed(0)
    G = Generator(cfg)
    with torch.inference_mode():
        # scale the output layer up so tanh saturates: the range check then means something
        G.to_out.weight.mul_(1e6)  # Glorot init leaves the raw output near 1e-6
        x = G(torch.randn(1, cfg.latent_dim))
    assert x.shape == (1, 2, 1024, 128)
    assert x.abs().max() > 0.9 and (x.abs() <= 1).all() and torch.isfinite(x).all()
