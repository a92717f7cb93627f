"""The generator's oscillator and oscillator-bank outputs (docs/networks.md#oscillator-output)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mp3net.config import ConfigError, ModelConfig, preset
from mp3net.dsp.oscillator import start_phase
from mp3net.model import Generator
from mp3net.model.generator import MAX_DELTA


def _tiny(**kw) -> ModelConfig:
    return (
        preset("tiny").override(["model.output=oscillator"] + [f"model.{k}={v}" for k, v in kw.items()]).model
    )


def test_output_is_amplitudes_in_range_with_one_extra_drawing_channel():
    cfg = _tiny()
    torch.manual_seed(0)
    G = Generator(cfg)
    assert G.to_osc.out_channels == cfg.channels + 1
    with torch.no_grad():
        A = G(torch.randn(3, cfg.latent_dim))
    assert A.shape == (3, cfg.channels, cfg.n_frames, cfg.n_bands) and A.dtype == torch.float32
    assert A.abs().max() < 1
    # amplitudes 0.1 and no offset: every band's oscillator at its centre, from the start phase
    y = torch.zeros(1, cfg.channels + 1, 4, cfg.n_bands)
    y[:, : cfg.channels] = 0.1
    A0, _ = G.oscillate(y)
    k = torch.arange(cfg.n_bands)
    torch.testing.assert_close(A0[0, 0, 0], 0.1 * torch.cos(start_phase(cfg.n_bands) + torch.pi * (k + 0.5)))
    # the output layer: tanh of the amplitude channels (over the gain), the offsets raw
    features = torch.randn(1, G.to_osc.in_channels, 4, cfg.n_bands)
    raw = G.to_osc(features)
    drawn = G._output(features)
    torch.testing.assert_close(
        drawn[:, : cfg.channels], torch.tanh(raw[:, : cfg.channels] / cfg.amplitude_gain)
    )
    torch.testing.assert_close(drawn[:, cfg.channels :], raw[:, cfg.channels :])


def test_a_held_drawing_is_a_held_partial():
    """Constant amplitude and offset: |X| of each band is a steady sinusoidal pattern whose rms over
    any 32 frames is the same (a held partial), not a decaying or drifting one."""
    cfg = _tiny()
    G = Generator(cfg)
    y = torch.zeros(1, cfg.channels + 1, 512, cfg.n_bands)
    y[:, : cfg.channels] = 0.05
    y[:, -1] = 0.4  # δ = ½·tanh(0.4)
    A, _ = G.oscillate(y)
    rms = A[0, 0].reshape(16, 32, -1).pow(2).mean(1).sqrt()  # [16 windows, K]
    assert (rms.std(0) / rms.mean(0)).max() < 0.1
    assert MAX_DELTA * torch.tanh(torch.tensor(40.0)) <= 0.5


def test_phase_runs_on_across_a_split_track():
    """Two halves of a drawing oscillated one after the other equal the whole oscillated at once."""
    cfg = _tiny()
    G = Generator(cfg)
    torch.manual_seed(1)
    y = torch.randn(2, cfg.channels + 1, 300, cfg.n_bands)
    whole, _ = G.oscillate(y)
    first, phase = G.oscillate(y[:, :, :100])
    second, _ = G.oscillate(y[:, :, 100:], phase)
    torch.testing.assert_close(torch.cat([first, second], 2), whole, rtol=0, atol=1e-6)
    restarted, _ = G.oscillate(y[:, :, 100:])  # without the carried phase the second half is different
    assert (restarted - whole[:, :, 100:]).abs().max() > 1e-3


def test_each_band_is_drawn_from_its_own_band():
    """The output layer and the oscillators work band by band (the phase runs along time only), so the
    octave structure of the blocks reaches the amplitudes unchanged."""
    cfg = _tiny()
    G = Generator(cfg)
    features = torch.randn(1, G.to_osc.in_channels, 16, cfg.n_bands, requires_grad=True)
    A, _ = G.oscillate(G._output(features))
    A[..., 5].square().sum().backward()
    assert features.grad is not None
    assert features.grad[..., 5].abs().sum() > 0
    assert features.grad[..., :5].abs().max() == 0 and features.grad[..., 6:].abs().max() == 0


def test_linear_plus_oscillator_starts_as_the_linear_output_and_adds_the_oscillators():
    lin = dataclasses.replace(_tiny(), output="linear")
    mix = dataclasses.replace(_tiny(), output="linear+oscillator")
    torch.manual_seed(0)
    G_lin = Generator(lin)
    G_mix = Generator(mix)
    G_mix.load_state_dict(G_lin.state_dict(), strict=False)
    z = torch.randn(2, lin.latent_dim)
    with torch.no_grad():
        torch.testing.assert_close(G_mix(z), G_lin(z), rtol=0, atol=0)  # the oscillators start silent
        C = mix.channels
        G_mix.to_osc.weight[:C].normal_()
        features = torch.randn(1, G_mix.to_out.in_channels, 8, mix.n_bands)
        y = G_mix._output(features)
        assert y.shape[1] == 2 * C + 1
        A, _ = G_mix.oscillate(y)
        osc, _ = G_mix.oscillate(torch.cat([torch.zeros_like(y[:, :C]), y[:, C:]], 1))
        torch.testing.assert_close(A, y[:, :C] + osc)  # the sum of the linear output and the oscillators
        assert osc.abs().max() > 0


def test_linear_plus_bank_starts_as_the_linear_output_and_adds_the_bank():
    lin = dataclasses.replace(_tiny(), output="linear")
    mix = dataclasses.replace(_tiny(), output="linear+bank", bank_size=4)
    torch.manual_seed(0)
    G_lin = Generator(lin)
    G_mix = Generator(mix)
    G_mix.load_state_dict(G_lin.state_dict(), strict=False)
    assert G_mix.to_bank.out_channels == mix.channels * 4
    z = torch.randn(2, lin.latent_dim)
    with torch.no_grad():
        torch.testing.assert_close(G_mix(z), G_lin(z), rtol=0, atol=0)  # the bank starts silent
        C = mix.channels
        G_mix.to_bank.weight.normal_()
        features = torch.randn(1, G_mix.to_out.in_channels, 8, mix.n_bands)
        y = G_mix._output(features)
        assert y.shape[1] == C + 4 * C
        A, _ = G_mix.oscillate(y)
        bank, _ = G_mix.oscillate(torch.cat([torch.zeros_like(y[:, :C]), y[:, C:]], 1))
        torch.testing.assert_close(A, y[:, :C] + bank)
        assert bank.abs().max() > 0


def test_bank_draws_each_band_from_its_own_band_and_its_phase_runs_on():
    cfg = _tiny(output="bank", bank_size=4)
    G = Generator(cfg)
    features = torch.randn(1, G.to_bank.in_channels, 16, cfg.n_bands, requires_grad=True)
    A, _ = G.oscillate(G._output(features))
    A[..., 5].square().sum().backward()
    assert features.grad[..., 5].abs().sum() > 0
    assert features.grad[..., :5].abs().max() == 0 and features.grad[..., 6:].abs().max() == 0
    torch.manual_seed(1)
    y = torch.randn(2, cfg.channels * 4, 300, cfg.n_bands)
    whole, _ = G.oscillate(y)
    first, phase = G.oscillate(y[:, :, :100])
    second, _ = G.oscillate(y[:, :, 100:], phase)
    torch.testing.assert_close(torch.cat([first, second], 2), whole, rtol=0, atol=1e-5)


def test_linear_is_the_default_and_a_bad_mode_is_a_config_error():
    assert ModelConfig().output == "linear"
    assert preset("95s").model.output == "linear"
    with pytest.raises(ConfigError, match="model.output"):
        preset("tiny").override(["model.output=polar"]).model.validate()
    with pytest.raises(ConfigError, match="model.bank_size"):
        preset("tiny").override(["model.output=bank", "model.bank_size=0"]).model.validate()
