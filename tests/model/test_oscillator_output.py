"""The generator's output heads (docs/networks.md#oscillator-bank): LinearHead (the paper's) and BankHead
(the shipped model's), one interface, the saved models' state-dict keys, the shipped model's audio."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from mp3net import generate as gen
from mp3net.config import Config, ConfigError, ModelConfig, preset
from mp3net.dsp.oscillator import SINE_REACH, bank_offsets, bank_start_phase
from mp3net.model import Generator
from mp3net.model.generator import BankHead, LinearHead, SineBankHead

FIXTURE = Path(__file__).parents[1] / "fixtures" / "tiny-chorales-2026-11-config.json"
# the bank model shipped until the sine bank (tiny-chorales at 3026894), an export of the in-band bank
BANK_MODEL = Path(__file__).parents[1] / "fixtures" / "tiny-chorales-bank"

# The bank model shipped until the sine bank (tiny-chorales), seed 3, 30 s in fp32 in windows of 16 start
# frames, computed by the code before the heads were modules (a float64 running phase, the bank as one
# tensor): per channel, the rms and the sum of 16 equal segments. Float rounding moves them by < 1e-5.
SHIPPED_RMS = [
    [0.1224944, 0.169835, 0.1981313, 0.2189, 0.2733237, 0.2903256, 0.2307167, 0.3716692]
    + [0.262448, 0.3074676, 0.15988, 0.1554833, 0.1616676, 0.1624798, 0.1641839, 0.2046359],
    [0.1496943, 0.172903, 0.221321, 0.2514016, 0.262989, 0.263018, 0.2382568, 0.3934304]
    + [0.3136093, 0.3215271, 0.2096499, 0.2377551, 0.1922924, 0.1525554, 0.1687537, 0.2044751],
]
SHIPPED_SUM = [
    [1.25106, 0.20979, 6.50089, -6.63697, 2.27981, -5.65249, -5.60709, 16.84257]
    + [6.7841, -1.10838, 1.27812, -1.62141, -1.682, 1.34849, -2.07854, 2.22508],
    [3.01095, 0.02406, 0.71182, 1.81582, 0.43272, 1.03932, -0.11317, -6.99835]
    + [2.39669, 0.57001, -2.09372, -1.40191, 4.03204, 0.80211, -0.67039, -3.06257],
]


def _cfg(output: str = "bank", **kw) -> ModelConfig:
    base = preset("tiny").model
    return dataclasses.replace(base, output=output, band_norm=False, band_rms=(), **kw)


@pytest.mark.parametrize(
    "output,head,key",
    [("linear", LinearHead, "to_out"), ("bank", BankHead, "to_bank"), ("sines", SineBankHead, "to_bank")],
)
def test_one_head_under_the_saved_keys(output, head, key):
    cfg = _cfg(output, bank_size=4)
    torch.manual_seed(0)
    G = Generator(cfg)
    assert isinstance(G.output_head, head) and getattr(G, key) is G.output_head
    assert {k for k in G.state_dict() if not k.startswith(("dense.", "blocks."))} == {
        f"{key}.weight",
        f"{key}.bias",
    }
    with torch.no_grad():
        A = G(torch.randn(3, cfg.latent_dim))
    assert A.shape == (3, cfg.channels, cfg.n_frames, cfg.n_bands) and A.dtype == torch.float32
    assert torch.isfinite(A).all() and A.abs().max() < (1 if output == "linear" else 4)


def test_the_linear_head_is_the_papers_conv_and_tanh():
    cfg = _cfg("linear")
    G = Generator(cfg)
    x = torch.randn(2, G.to_out.in_channels, 8, cfg.n_bands)
    with torch.no_grad():
        raw = torch.nn.functional.conv2d(x, G.to_out.weight, G.to_out.bias)
        torch.testing.assert_close(G.output_head(x, first=123), torch.tanh(raw))


def test_the_bank_head_sums_its_oscillators():
    """Σ_s tanh(y_s·r_k)·cos(Φ₀ + π(k + ½ + δ_s)(m + 1)) written out, at a frame hours into a track."""
    cfg = _cfg("bank", bank_size=4)
    cfg = dataclasses.replace(cfg, band_norm=True, band_rms=tuple(0.01 * (k + 1) for k in range(cfg.n_bands)))
    G = Generator(cfg)
    x = torch.randn(1, G.to_bank.in_channels, 8, cfg.n_bands)
    first = 1_000_003
    with torch.no_grad():
        y = torch.nn.functional.conv2d(x, G.to_bank.weight, G.to_bank.bias).view(1, cfg.channels, 4, 8, -1)
        a = torch.tanh(y * torch.tensor(cfg.band_rms))
        m = torch.arange(first + 1, first + 9, dtype=torch.float64)[:, None]
        k = torch.arange(cfg.n_bands, dtype=torch.float64)
        ref = sum(
            a[:, :, s]
            * torch.cos(
                torch.remainder(
                    bank_start_phase(4, cfg.n_bands)[s].double()
                    + math.pi * (k + 0.5 + float(bank_offsets(4)[s])) * m,
                    2 * math.pi,
                ).float()
            )
            for s in range(4)
        )
        torch.testing.assert_close(G.output_head(x, first), ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("output,reach", [("linear", 0), ("bank", 0), ("sines", SINE_REACH)])
def test_each_band_is_drawn_from_its_own_bands_and_pieces_join(output, reach):
    """The heads work frame by frame and band by band (the sine bank: a band and the ``reach`` bands either
    side, where its tones sound), so inference may run them in pieces of frames: the pieces equal one pass."""
    cfg = _cfg(output, bank_size=4)
    G = Generator(cfg)
    features = torch.randn(1, G.output_head.in_channels, 16, cfg.n_bands, requires_grad=True)
    A = G.output_head(features, 7)
    A[..., 10].square().sum().backward()
    assert features.grad is not None
    heard = features.grad.abs().amax(dim=(0, 1, 2)) > 0
    assert heard.nonzero().flatten().tolist() == list(range(10 - reach, 11 + reach))
    x = torch.randn(2, G.output_head.in_channels, 300, cfg.n_bands).contiguous(
        memory_format=torch.channels_last
    )
    with torch.no_grad():
        whole = G.output_head(x, 5)
        G.output_head.chunk_frames = 64  # pieces of 64 frames: 5 of them
        pieces = G.output_head(x, 5)
    torch.testing.assert_close(pieces, whole, rtol=0, atol=1e-6)


def test_the_quiet_gate_keeps_drawn_partials_and_silences_faint_ones():
    """a³/(a² + ε²): near a for |a| ≫ ε, under (a/ε)²·|a| for |a| ≪ ε, odd, still a gradient at |a| ≪ ε."""
    head = SineBankHead(_cfg("sines", bank_size=4, bank_gate=1e-3), 8)
    a = torch.tensor([0.5, -0.05, 1e-2, -1e-4])  # oscillators 0-3 of channel 0
    y = torch.zeros(1, 8, 1, 1)
    y[0, :4, 0, 0] = torch.atanh(a)  # squash(y) = a: no band unit
    y.requires_grad_(True)
    g = head.oscillators(y * 1)[0, 0, :, 0, 0]  # squash writes over its input
    assert torch.equal(g.sign(), a.sign())
    torch.testing.assert_close(g[:2], a[:2], rtol=1e-3, atol=0)  # |a| ≥ 50 ε: within (ε/a)²
    assert g[2] / a[2] > 0.98 and g[3].abs() < 1e-2 * a[3].abs()  # 10 ε kept, ε/10 silenced
    g[3].backward()
    assert y.grad[0, 3] != 0  # a faint oscillator can come back
    ungated = SineBankHead(_cfg("sines", bank_size=4), 8)
    x = y.detach()
    torch.testing.assert_close(ungated.oscillators(x.clone())[0, 0, :, 0, 0], torch.tanh(x[0, :4, 0, 0]))


def test_a_gated_bank_has_the_same_weights_and_silences_a_faint_oscillator_in_every_band_it_reaches():
    """``model.bank_gate``: no new parameters (an ungated model's weights load); a faint oscillator's
    coefficients fall by about (a/ε)² while a loud one's stay."""
    torch.manual_seed(0)
    plain = Generator(_cfg("sines", bank_size=4))
    gated = Generator(_cfg("sines", bank_size=4, bank_gate=1e-3))
    gated.load_state_dict(plain.state_dict())
    y = torch.zeros(1, 8, 64, plain.cfg.n_bands)
    y[:, 1, :, 20] = math.atanh(0.3)  # channel 0, oscillator 1 of band 20: loud
    y[:, 2, :, 40] = math.atanh(1e-4)  # channel 0, oscillator 2 of band 40: faint
    heads = (plain.output_head, gated.output_head)
    loud = [head.amplitudes(y.clone(), 0)[0, 0, :, 18:23].abs().amax() for head in heads]
    faint = [head.amplitudes(y.clone(), 0)[0, 0, :, 38:43].abs().amax() for head in heads]
    assert loud[1] / loud[0] > 0.999
    assert faint[1] / faint[0] < 2e-2


@pytest.mark.parametrize("bad", ["model.bank_gate=-0.1", "model.bank_gate=1.0"])
def test_a_gate_out_of_range_or_on_the_linear_head_is_a_config_error(bad):
    with pytest.raises(ConfigError):
        preset("laptop").override([bad])
    with pytest.raises(ConfigError, match="oscillator bank"):
        preset("laptop").override(["model.output=linear", "model.bank_gate=0.001"])


def test_the_fixture_configs_linear_model_loads_under_its_keys():
    cfg = Config.from_dict(json.loads(FIXTURE.read_text()))
    G = Generator(cfg.model)
    assert isinstance(G.output_head, LinearHead)
    G.load_state_dict({k: torch.zeros_like(v) for k, v in G.state_dict().items()})  # to_out.weight, ...


def test_the_bank_model_draws_what_it_drew_before_the_heads_were_modules():
    """An export of the in-band bank still loads as one and draws exactly what it drew."""
    G, cfg = gen.load_generator(str(BANK_MODEL))
    assert isinstance(G.output_head, BankHead) and not isinstance(G.output_head, SineBankHead)
    n = round(30 * cfg.model.sample_rate)
    _, positions = gen.track_plan(G, 30.0)
    z = gen.seed_anchor_sets(G, [3], positions)[0][None]
    w = torch.cat(list(gen.synthesize_tiles(G, z, n, tile_out_frames=4096, precision="fp32")), -1)[0]
    segments = w[:, : n // 16 * 16].reshape(2, 16, -1)
    torch.testing.assert_close(
        segments.square().mean(-1).sqrt(), torch.tensor(SHIPPED_RMS), rtol=0, atol=1e-5
    )
    torch.testing.assert_close(segments.sum(-1), torch.tensor(SHIPPED_SUM), rtol=0, atol=2e-3)
