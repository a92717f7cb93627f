"""mp3net.dsp.oscillator: the MDCT of a bank of steady tones at fixed offsets in every band."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mp3net.dsp import imdct, mdct
from mp3net.dsp.oscillator import (
    bank_cosines,
    bank_mdct,
    bank_offsets,
    bank_phase,
    bank_start_phase,
    sine_bank_mdct,
    sine_leak,
)

K = 64


def _peak_in_bands(x: np.ndarray) -> float:
    """The strongest frequency of ``x`` in band units (Nyquist = K bands)."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum)) / len(x) * 2 * K


def _cumulative_bank(amplitude: torch.Tensor, start_frame: int = 0) -> torch.Tensor:
    """The bank as first written (v0.1-lab): the phase as a float64 running sum of every frame's advance
    π(k + ½ + δ_s) from the track's start, a straightforward re-implementation to check the closed form."""
    B, C, S, M, K_ = amplitude.shape
    m = torch.arange(start_frame + 1, start_frame + M + 1, dtype=torch.float64)  # frames advanced so far
    k = torch.arange(K_, dtype=torch.float64)
    delta = bank_offsets(S).double()
    advance = math.pi * (k[None, None, :] + 0.5 + delta[:, None, None]) * m[None, :, None]  # [S, M, K]
    start = bank_start_phase(S, K_).double()[:, None, :]
    phase = torch.remainder(start + advance, 2 * math.pi).float()
    return torch.einsum("bcsmk,smk->bcmk", amplitude, torch.cos(phase))


@pytest.mark.parametrize("band", [5, 20])
def test_the_mdct_of_a_sinusoid_follows_the_oscillator_model(band):
    """The module's claim: band k of a steady sinusoid's MDCT is c·cos(π(k + ½ + δ)·m + θ) over frames."""
    delta = 0.27
    n = torch.arange(300 * K, dtype=torch.float64)
    x = torch.cos(math.pi * (band + 0.5 + delta) / K * n + 0.7)
    X = mdct(x[None].float(), K)[0, 8:-8, band].double()  # away from the edges
    m = torch.arange(len(X), dtype=torch.float64)
    basis = torch.stack(
        [torch.cos(math.pi * (band + 0.5 + delta) * m), torch.sin(math.pi * (band + 0.5 + delta) * m)], 1
    )
    coef = torch.linalg.lstsq(basis, X[:, None]).solution
    residual = X - (basis @ coef)[:, 0]
    assert residual.abs().max() < 1e-4 * X.abs().max()
    # a wrong advance does not fit
    wrong = torch.stack([torch.cos(math.pi * (band + 0.5) * m), torch.sin(math.pi * (band + 0.5) * m)], 1)
    coef = torch.linalg.lstsq(wrong, X[:, None]).solution
    assert (X - (wrong @ coef)[:, 0]).abs().max() > 0.1 * X.abs().max()


@pytest.mark.parametrize("band,s", [(10, 0), (10, 5), (37, 15), (3, 8)])
def test_a_held_bank_oscillator_is_a_tone_at_its_fixed_offset(band, s):
    S, M = 16, 512
    amplitude = torch.zeros(1, 1, S, M, K)
    amplitude[0, 0, s, :, band] = 0.1
    X = bank_mdct(amplitude)
    x = imdct(X, trim=True)[0, 0, 4 * K : -4 * K].numpy()
    assert _peak_in_bands(x) == pytest.approx(band + 0.5 + (s + 0.5) / S - 0.5, abs=0.01)
    # analysed again, the tone stays in its band
    energy = (mdct(torch.from_numpy(x)[None, : len(x) // K * K], K) ** 2).mean(1)[0]
    assert energy.argmax() == band


def test_bank_offsets_tile_the_band_evenly():
    d = bank_offsets(8)
    torch.testing.assert_close(d[1:] - d[:-1], torch.full((7,), 1 / 8))
    assert d.min() > -0.5 and d.max() < 0.5 and d.sum().abs() < 1e-6  # symmetric, off the edges


@pytest.mark.parametrize("S,M,first", [(4, 40, 0), (16, 300, 0), (16, 200, 12_345_677), (8, 70, 31)])
def test_bank_equals_the_running_sum_of_its_phase_advances(S, M, first):
    """The closed-form phase (one period of 4S frames, in integers) is the running sum of the advances, at
    the start of a track and hours into it (frame 12 345 677 is 20 h at the shipped model's rate)."""
    torch.manual_seed(0)
    amplitude = torch.randn(2, 3, S, M, K)
    torch.testing.assert_close(
        bank_mdct(amplitude, first), _cumulative_bank(amplitude, first), rtol=0, atol=2e-5
    )


def test_bank_phase_is_periodic_and_windows_join():
    S = 8
    frames = torch.arange(0, 200)
    torch.testing.assert_close(bank_phase(S, K, frames + 4 * S), bank_phase(S, K, frames), rtol=0, atol=1e-5)
    assert bank_cosines(S, K, 2, torch.device("cpu")).shape == (8 * S, K, 2, S)
    torch.manual_seed(0)
    amplitude = torch.randn(1, 2, S, 300, K)
    whole = bank_mdct(amplitude)
    parts = [bank_mdct(amplitude[:, :, :, a:b], first=a) for a, b in ((0, 100), (100, 131), (131, 300))]
    torch.testing.assert_close(torch.cat(parts, 2), whole, rtol=0, atol=1e-6)
    restarted = bank_mdct(amplitude[:, :, :, 100:])  # from frame 0's phase: a different sequence
    assert (restarted - whole[:, :, 100:]).abs().max() > 1e-3


def test_bank_start_phases_are_spread_and_the_layout_is_free():
    start = bank_start_phase(8, K)
    assert start.shape == (8, K) and torch.equal(start, bank_start_phase(8, K))
    assert len(torch.unique(start)) == 8 * K  # no two oscillators start in phase: no click at a track's start
    torch.manual_seed(0)
    a = torch.randn(2, 2 * 4, 40, K).contiguous(memory_format=torch.channels_last)  # a conv output
    X = bank_mdct(a.unflatten(1, (2, 4)), 5)
    torch.testing.assert_close(X, bank_mdct(a.contiguous().unflatten(1, (2, 4)), 5), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"\[B, C, S, M, K\]"):
        bank_mdct(torch.zeros(1, 2, 8, K))


def _sinusoid_residual(x: np.ndarray, freq_bands: float) -> float:
    """The energy of ``x`` left after its least-squares fit by one sinusoid at ``freq_bands`` (band units),
    relative to the energy of ``x``."""
    n = np.arange(len(x))
    w = math.pi * freq_bands / K
    basis = np.stack([np.cos(w * n), np.sin(w * n)], 1)
    coef = np.linalg.lstsq(basis, x, rcond=None)[0]
    return float(np.sum((x - basis @ coef) ** 2) / np.sum(x**2))


@pytest.mark.parametrize("band,s", [(10, 0), (10, 7), (37, 12), (3, 15), (60, 4)])
def test_a_sine_bank_oscillator_is_one_sinusoid_where_the_in_band_bank_adds_images(band, s):
    """The in-band bank writes only its own band's share of a tone: its inverse MDCT carries images a band
    away, at a few dB under the tone. The sine bank writes the tone's coefficients in 3 bands each side as
    well: what is left beside the sinusoid is under −35 dB (docs/networks.md#sine-bank)."""
    S, M = 16, 512
    amplitude = torch.zeros(1, 1, S, M, K)
    amplitude[0, 0, s, :, band] = 0.1
    freq = band + 0.5 + (s + 0.5) / S - 0.5
    residual = {}
    for f in (bank_mdct, sine_bank_mdct):
        x = imdct(f(amplitude).double(), trim=True)[0, 0, 8 * K : -8 * K].numpy()
        residual[f.__name__] = _sinusoid_residual(x, freq)
    assert residual["sine_bank_mdct"] < 3e-4
    assert residual["bank_mdct"] > 0.05


def test_sine_bank_is_the_in_band_bank_in_its_own_band_and_joins_windows():
    S = 8
    leak = sine_leak(S, K)
    torch.testing.assert_close(leak[:, :, 3], torch.ones(K, S, dtype=torch.complex128))
    assert leak[0, :, :3].abs().max() == 0 and leak[-1, :, 4:].abs().max() == 0  # no bands past the edges
    torch.manual_seed(0)
    amplitude = torch.randn(1, 2, S, 300, K)
    own = sine_bank_mdct(amplitude, reach=0)
    torch.testing.assert_close(own, bank_mdct(amplitude), rtol=0, atol=1e-5)
    whole = sine_bank_mdct(amplitude)
    parts = [sine_bank_mdct(amplitude[:, :, :, a:b], first=a) for a, b in ((0, 100), (100, 131), (131, 300))]
    torch.testing.assert_close(torch.cat(parts, 2), whole, rtol=0, atol=1e-5)
    # a band's neighbours hear it: one oscillator of band 20 sounds in bands 17..23 and nowhere else
    one = torch.zeros(1, 1, S, 64, K)
    one[0, 0, 3, :, 20] = 1.0
    heard = sine_bank_mdct(one).abs().amax(dim=(0, 1, 2)) > 0
    assert heard.nonzero().flatten().tolist() == list(range(17, 24))
