"""mp3net.dsp.oscillator: the MDCT of steady tones, one oscillator per band or a bank of them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mp3net.dsp import imdct, mdct
from mp3net.dsp.oscillator import (
    bank_mdct,
    bank_offsets,
    bank_start_phase,
    oscillator_mdct,
    oscillator_phase,
    start_phase,
)

K = 64


def _peak_in_bands(x: np.ndarray) -> float:
    """The strongest frequency of ``x`` in band units (Nyquist = K bands)."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum)) / len(x) * 2 * K


@pytest.mark.parametrize("band,delta", [(10, 0.0), (10, 0.3), (10, -0.4), (37, 0.5), (3, -0.2)])
def test_a_held_oscillator_is_a_tone_at_its_frequency(band, delta):
    M = 512
    amplitude = torch.zeros(1, 1, M, K)
    amplitude[..., band] = 0.1
    X, _ = oscillator_mdct(amplitude, torch.full((1, 1, M, K), delta), start_phase(K))
    x = imdct(X, trim=True)[0, 0, 4 * K : -4 * K].numpy()
    assert _peak_in_bands(x) == pytest.approx(band + 0.5 + delta, abs=0.02)
    # analysed again, the tone stays in its band
    energy = (mdct(torch.from_numpy(x)[None, : len(x) // K * K], K) ** 2).mean(1)[0]
    assert energy.argmax() == band
    assert energy[band] > 100 * torch.cat([energy[:band], energy[band + 1 :]]).max()


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


def test_phase_continues_across_windows():
    torch.manual_seed(0)
    delta = 0.5 * torch.rand(2, 1, 300, K) - 0.25
    whole, end = oscillator_phase(delta, start_phase(K))
    first, mid = oscillator_phase(delta[:, :, :128], start_phase(K))
    second, end2 = oscillator_phase(delta[:, :, 128:], mid)
    joined = torch.cat([first, second], 2)
    # phases wrap at 2π: compare on the circle
    torch.testing.assert_close(torch.cos(joined), torch.cos(whole), rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.cos(end2), torch.cos(end), rtol=0, atol=1e-5)


def test_phase_is_exact_over_hours():
    """A held δ = ¼ over 2^22 frames (≈ 6.8 hours at 172 frames/s) lands where the closed form says."""
    M = 2**22
    delta = torch.full((1, 1, M, 4), 0.25)
    phase, end = oscillator_phase(delta, torch.zeros(4))
    k = torch.arange(4, dtype=torch.float64)
    m = torch.tensor([1, 1000, M], dtype=torch.float64)  # frames 0, 999 and the last, counted from 1
    # π(k + ¾)·m modulo 2π, exactly: (π/4)·((4k + 3)·m mod 8)
    expected = (math.pi / 4) * torch.remainder((4 * k + 3)[None, :] * m[:, None], 8)
    got = phase[0, 0, [0, 999, M - 1]].double()
    diff = torch.remainder(got - expected + math.pi, 2 * math.pi) - math.pi
    assert diff.abs().max() < 1e-5
    assert end.dtype == torch.float64 and torch.equal(end[0, 0, 0].float(), phase[0, 0, -1])


def test_gradient_reaches_amplitude_and_frequency():
    amplitude = torch.full((1, 2, 16, K), 0.05, requires_grad=True)
    delta = torch.zeros(1, 1, 16, K, requires_grad=True)
    X, _ = oscillator_mdct(amplitude, delta, start_phase(K))
    X.pow(2).sum().backward()
    assert amplitude.grad.abs().sum() > 0 and delta.grad.abs().sum() > 0
    assert delta.grad.dtype == torch.float32


def test_start_phase_is_spread_and_fixed():
    phase = start_phase(K)
    assert torch.equal(phase, start_phase(K))
    assert phase.min() >= 0 and phase.max() < 2 * math.pi
    assert len(torch.unique((phase / (2 * math.pi) * 8).floor())) == 8  # every eighth of the circle used


def test_bad_delta_shape_is_an_error():
    with pytest.raises(ValueError, match=r"\[B, 1, M, K\]"):
        oscillator_phase(torch.zeros(1, 2, 8, K), start_phase(K))


@pytest.mark.parametrize("band,s", [(10, 0), (10, 5), (37, 15), (3, 8)])
def test_a_held_bank_oscillator_is_a_tone_at_its_fixed_offset(band, s):
    S, M = 16, 512
    amplitude = torch.zeros(1, 1, S, M, K)
    amplitude[0, 0, s, :, band] = 0.1
    X, _ = bank_mdct(amplitude, bank_start_phase(S, K))
    x = imdct(X, trim=True)[0, 0, 4 * K : -4 * K].numpy()
    assert _peak_in_bands(x) == pytest.approx(band + 0.5 + (s + 0.5) / S - 0.5, abs=0.01)


def test_bank_offsets_tile_the_band_evenly():
    d = bank_offsets(8)
    torch.testing.assert_close(d[1:] - d[:-1], torch.full((7,), 1 / 8))
    assert d.min() > -0.5 and d.max() < 0.5 and d.sum().abs() < 1e-6  # symmetric, off the edges


def test_bank_is_the_sum_of_its_oscillators():
    """Each oscillator of the bank is the single-oscillator model at its offset and start phase, and the
    bank adds them per channel."""
    torch.manual_seed(0)
    S, M = 4, 40
    amplitude = torch.randn(2, 3, S, M, K)
    start = bank_start_phase(S, K)
    X, end = bank_mdct(amplitude, start)
    ref = sum(
        oscillator_mdct(
            amplitude[:, :, s], torch.full((1, 1, M, K), float(bank_offsets(S)[s])), start[s, 0, 0]
        )[0]
        for s in range(S)
    )
    torch.testing.assert_close(X, ref, rtol=0, atol=1e-5)
    assert end.shape == (S, 1, 1, K)


def test_bank_phase_continues_across_windows_and_starts_spread():
    torch.manual_seed(0)
    S = 8
    amplitude = torch.randn(1, 2, S, 300, K)
    whole, _ = bank_mdct(amplitude, bank_start_phase(S, K))
    first, mid = bank_mdct(amplitude[:, :, :, :100], bank_start_phase(S, K))
    second, _ = bank_mdct(amplitude[:, :, :, 100:], mid)
    torch.testing.assert_close(torch.cat([first, second], 2), whole, rtol=0, atol=1e-5)
    start = bank_start_phase(S, K)
    assert len(torch.unique(start)) == S * K  # no two oscillators start in phase: no click at a track's start
    with pytest.raises(ValueError, match=r"\[B, C, S, M, K\]"):
        bank_mdct(torch.zeros(1, 2, 8, K), start)
