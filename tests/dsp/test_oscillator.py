"""mp3net.dsp.oscillator: the MDCT of steady tones, a bank of oscillators at fixed offsets in every band."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mp3net.dsp import imdct, mdct
from mp3net.dsp.oscillator import bank_mdct, bank_offsets, bank_phase, bank_start_phase

K = 64


def _peak_in_bands(x: np.ndarray) -> float:
    """The strongest frequency of ``x`` in band units (Nyquist = K bands)."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum)) / len(x) * 2 * K


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


def test_bank_offsets_tile_the_band_evenly():
    d = bank_offsets(8)
    torch.testing.assert_close(d[1:] - d[:-1], torch.full((7,), 1 / 8))
    assert d.min() > -0.5 and d.max() < 0.5 and d.sum().abs() < 1e-6  # symmetric, off the edges


def test_bank_is_the_sum_of_its_oscillators():
    """Each oscillator of the bank follows the module's model at its offset and start phase,
    a_s · cos(Φ₀[s, k] + π(k + ½ + δ_s)·(m + 1)), and the bank adds them per channel; ``first`` reads the
    frames of a track from its frame ``first`` on."""
    torch.manual_seed(0)
    S, M = 4, 40
    amplitude = torch.randn(2, 3, S, M, K)
    start = bank_start_phase(S, K).double()  # [S, K]
    delta = bank_offsets(S).double()
    k = torch.arange(K, dtype=torch.float64)
    for first in (0, 7, 1000):
        m = torch.arange(first, first + M, dtype=torch.float64)
        phase = start[:, None, :] + math.pi * (k + 0.5 + delta[:, None, None]) * (m[:, None] + 1)  # [S, M, K]
        ref = (amplitude.double() * torch.cos(phase)).sum(2).float()
        torch.testing.assert_close(bank_mdct(amplitude, first), ref, rtol=0, atol=1e-5)


def test_bank_phase_continues_across_windows_and_starts_spread():
    torch.manual_seed(0)
    S = 8
    amplitude = torch.randn(1, 2, S, 300, K)
    whole = bank_mdct(amplitude)
    first = bank_mdct(amplitude[:, :, :, :100])
    second = bank_mdct(amplitude[:, :, :, 100:], 100)
    torch.testing.assert_close(torch.cat([first, second], 2), whole, rtol=0, atol=1e-5)
    start = bank_start_phase(S, K)
    assert len(torch.unique(start)) == S * K  # no two oscillators start in phase: no click at a track's start
    with pytest.raises(ValueError, match=r"\[B, C, S, M, K\]"):
        bank_mdct(torch.zeros(1, 2, 8, K))


def test_bank_phase_is_exact_at_any_frame():
    """Frame 2^40 (≈ 200 years at 172 frames/s) lands where the closed form in integers says, and the bank
    reads it there."""
    S = 4
    frames = torch.tensor([0, 999, 2**40 + 3], dtype=torch.int64)
    phase = bank_phase(S, K, frames).double()  # [3, K, S]
    k, s = torch.arange(K), torch.arange(S)
    # π(k + ½ + δ_s)·(m + 1) = (2π / 4S)·((m + 1)(2kS + 2s + 1) mod 4S), in Python's exact integers
    turns = torch.tensor(
        [
            [[((int(m) + 1) * (2 * int(kk) * S + 2 * int(ss) + 1)) % (4 * S) for ss in s] for kk in k]
            for m in frames
        ],
        dtype=torch.float64,
    )
    expected = bank_start_phase(S, K).double().t() + turns * (2 * math.pi / (4 * S))
    diff = torch.remainder(phase - expected + math.pi, 2 * math.pi) - math.pi
    assert diff.abs().max() < 1e-5
    amplitude = torch.ones(1, 1, S, 1, K)
    torch.testing.assert_close(
        bank_mdct(amplitude, 2**40 + 3)[0, 0, 0], torch.cos(phase[2]).sum(-1).float(), rtol=0, atol=1e-5
    )
