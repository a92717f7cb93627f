"""model.band_norm: the networks' unit per band (docs/networks.md#band-normalisation). With every band at
the same level it is exactly one scale: G's output layer scaled by that level, D's input by its inverse;
with levels that differ, G's output at initialisation follows them and D sees each band divided by its own."""

from dataclasses import replace

import pytest
import torch

from mp3net.config import ConfigError, preset
from mp3net.model import Discriminator, Generator

# the laptop preset's network with the paper's linear output (tanh of a 1×1 conv: its pre-tanh output is
# at hand) and the paper's unit; each test switches band normalisation on with its own levels
CFG = replace(preset("laptop").model, output="linear", band_norm=False)
K = CFG.n_bands


def pair(cls, levels: tuple[float, ...]):
    """A band-normalised network and a plain one with the same weights."""
    torch.manual_seed(0)
    normed = cls(replace(CFG, band_norm=True, band_rms=levels))
    plain = cls(CFG)
    plain.load_state_dict(normed.state_dict())
    return normed, plain


def test_equal_levels_are_one_scale():
    """Levels of 1/64 in every band: G is the plain G with its output conv scaled by 1/64 (tanh(y / 64)),
    D the plain D of 64·x; exact, as 64 is a power of two."""
    G, G1 = pair(Generator, (1 / 64,) * K)
    D, D1 = pair(Discriminator, (1 / 64,) * K)
    with torch.no_grad():
        G1.to_out.weight.div_(64)
        G1.to_out.bias.div_(64)
    z = torch.randn(2, CFG.latent_dim)
    x = 0.01 * torch.randn(2, CFG.channels, CFG.n_frames, K)
    with torch.no_grad():
        torch.testing.assert_close(G(z), G1(z))
        torch.testing.assert_close(D(x), D1(64 * x))


def test_the_generator_starts_at_the_levels_and_d_sees_each_band_over_its_level():
    """Levels falling 40 dB across the bands: G's rms per band at initialisation falls with them (tanh is
    near-linear there), and D scores x as the plain D scores x / level."""
    levels = tuple(float(v) for v in torch.logspace(-1, -3, K))
    G, G1 = pair(Generator, levels)
    D, D1 = pair(Discriminator, levels)
    z = torch.randn(8, CFG.latent_dim)
    with torch.no_grad():
        A, raw = G(z), torch.atanh(G1(z))  # the plain G's pre-tanh output is the unit-scale output
        rms, raw_rms = A.square().mean((0, 1, 2)).sqrt(), raw.square().mean((0, 1, 2)).sqrt()
        torch.testing.assert_close(rms / raw_rms, torch.tensor(levels), rtol=1e-2, atol=0)
        assert float(rms[0] / rms[-1]) > 50  # the 40 dB fall is there
        x = 0.01 * torch.randn(2, CFG.channels, CFG.n_frames, K)
        torch.testing.assert_close(D(x), D1(x / torch.tensor(levels)))


def test_band_norm_needs_its_levels_and_the_levels_must_fit():
    G, D = Generator(replace(CFG, band_norm=True)), Discriminator(replace(CFG, band_norm=True))  # `info`
    with pytest.raises(ValueError, match="band_rms"):
        G(torch.randn(1, CFG.latent_dim))
    with pytest.raises(ValueError, match="band_rms"):
        D(torch.zeros(1, CFG.channels, CFG.n_frames, K))
    for bad in [(0.1,) * (K - 1), (0.1,) * (K - 1) + (0.0,)]:
        with pytest.raises(ConfigError, match="band_rms"):
            replace(CFG, band_rms=bad).validate()
    cfg = preset("laptop").override(
        ["model.band_norm=true", "model.band_rms=[" + ",".join(["0.5"] * K) + "]"]
    )
    assert cfg.model.band_rms == (0.5,) * K


def test_the_per_band_unit_is_made_once_and_trains_after_inference():
    """G and D ask for the unit at every forward: the same tensor comes back, and one first made under
    inference mode (generating samples) can still be saved for backward when training goes on."""
    from mp3net.model.layers import unit_scale

    levels = tuple(float(v) for v in torch.logspace(-1.5, -3.5, K))
    cfg = replace(CFG, band_norm=True, band_rms=levels)
    G = Generator(cfg)
    with torch.inference_mode():
        G(torch.randn(1, CFG.latent_dim))
    assert unit_scale(cfg) is unit_scale(replace(cfg))
    G(torch.randn(2, CFG.latent_dim)).square().mean().backward()
    assert all(p.grad is not None for p in G.parameters())
    assert G.to_out.weight.grad.abs().sum() > 0
