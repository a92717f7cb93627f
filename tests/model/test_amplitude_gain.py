"""model.amplitude_gain is a reparametrisation: a gain g equals gain 1 with D's input conv and G's output conv
rescaled by g (so it changes how fast Adam moves the function, not which functions the networks can draw)."""

from dataclasses import replace

import pytest
import torch

from mp3net.config import ConfigError, preset
from mp3net.model import Discriminator, Generator

GAIN = 64.0


def pair(cls, dtype=torch.float64):
    cfg = preset("tiny").model
    torch.manual_seed(0)
    with_gain = cls(replace(cfg, amplitude_gain=GAIN)).to(dtype)
    plain = cls(replace(cfg, amplitude_gain=1.0)).to(dtype)
    plain.load_state_dict(with_gain.state_dict())
    return cfg, with_gain, plain


def test_discriminator_gain_scales_its_input():
    cfg, D, D1 = pair(Discriminator)
    with torch.no_grad():
        D1.from_in.weight.mul_(GAIN)
    x = 0.01 * torch.randn(3, cfg.channels, cfg.n_frames, cfg.n_bands, dtype=torch.float64)
    torch.testing.assert_close(D(x), D1(x), rtol=1e-12, atol=1e-14)
    # and the gain is not the identity: without the rescaled conv the scores differ
    D1.from_in.weight.data.div_(GAIN)
    assert not torch.allclose(D(x), D1(x))


def test_generator_gain_divides_its_output():
    cfg, G, G1 = pair(Generator, torch.float32)  # G's output layer runs in float32
    with torch.no_grad():
        G1.to_out.weight.div_(GAIN)
        G1.to_out.bias.div_(GAIN)
    z = torch.randn(2, cfg.latent_dim)
    with torch.no_grad():
        out, ref = G(z), G1(z)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-9)
    assert out.abs().mean() > 1e-6
    assert out.abs().max() < 1  # still the tanh's range


@pytest.mark.parametrize("gain", [0.0, -1.0])
def test_gain_must_be_positive(gain):
    with pytest.raises(ConfigError, match="amplitude_gain"):
        replace(preset("tiny").model, amplitude_gain=gain).validate()


@pytest.mark.parametrize("power", [0.0, -0.5, 1.5])
def test_compression_power_must_be_in_0_1(power):
    with pytest.raises(ConfigError, match="d_compress"):
        replace(preset("tiny").model, d_compress=power).validate()
