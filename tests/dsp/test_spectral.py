"""mp3net.dsp.spectral: the long-window log spectrogram of MDCT amplitudes."""

from __future__ import annotations

import math

import pytest
import torch

from mp3net.dsp import mdct
from mp3net.dsp.spectral import (
    ENVELOPE_BANDS,
    ENVELOPE_FRAMES,
    LOG_FLOOR,
    audio_log_spectrogram,
    log_envelope,
    log_power,
    log_spectrogram,
    mid_side,
    partial_similarity,
    power_spectrogram,
    spectral_detail,
)

SR, K, N_FFT = 11008, 64, 1024


def _tone(freq: float, amplitude: float = 0.1, samples: int = 511 * K) -> torch.Tensor:
    t = torch.arange(samples, dtype=torch.float64) / SR
    return amplitude * torch.sin(2 * math.pi * freq * t)


@pytest.mark.parametrize("freq", [220.0, 441.0, 1999.0])
def test_a_tone_is_one_line_at_its_frequency_and_level(freq):
    A = mdct(_tone(freq).view(1, 1, -1), K)  # [1, 1, 512, 64]
    v = log_spectrogram(A, N_FFT)
    assert v.shape == (1, 1, (513 * K) // (N_FFT // 4) + 1, N_FFT // 2 + 1)
    mid = v[0, 0, v.shape[2] // 2]  # away from the clip's ends
    assert float(mid.argmax()) * SR / N_FFT == pytest.approx(freq, abs=SR / N_FFT)
    # a sinusoid of amplitude a under an n-sample Hann window peaks at |S| ≈ a·n/4 (−1.4 dB at most off-bin)
    assert float(mid.max()) == pytest.approx(0.5 * math.log10((0.1 * N_FFT / 4) ** 2), abs=1.5 / 20)


def test_a_held_partial_stands_out_where_noise_of_the_same_band_energy_does_not():
    """What D's spectral view is for: in the MDCT a tone and noise with the same energy per band look alike,
    in the long window the tone is a line 20 dB and more above the rest of its band (noise: about 6 dB)."""
    A_tone = mdct(_tone(441.0).view(1, 1, -1), K).float()
    noise = torch.randn(A_tone.shape, generator=torch.Generator().manual_seed(0))
    A_noise = (
        noise * A_tone.square().mean(2, keepdim=True).sqrt() / noise.square().mean(2, keepdim=True).sqrt()
    )
    torch.testing.assert_close(A_noise.square().mean(2), A_tone.square().mean(2), rtol=1e-4, atol=1e-12)
    band = slice(5 * N_FFT // (2 * K), 6 * N_FFT // (2 * K))  # MDCT band 5 (430–516 Hz), the tone's

    def peak_over_median_db(A: torch.Tensor) -> float:
        v = log_spectrogram(A, N_FFT)[0, 0, 20:-20, band]
        return float(20 * (v.max(-1).values - v.median(-1).values).mean())

    assert peak_over_median_db(A_tone) > 20.0
    assert peak_over_median_db(A_noise) < 10.0


def test_silence_sits_on_the_floor_with_a_finite_gradient():
    A = torch.zeros(2, 2, 64, K, requires_grad=True)
    v = log_spectrogram(A, 256)
    assert torch.allclose(v, torch.full_like(v, 0.5 * math.log10(LOG_FLOOR)))
    v.sum().backward()
    assert torch.isfinite(A.grad).all()


def test_spectral_detail_ignores_level_and_envelope_but_sees_partials():
    """Two clips that differ only in level, or by a smooth tilt of the spectrum, have the same detail; a
    partial moved by 80 Hz does not. (Loud enough that LOG_FLOOR plays no part.)"""
    gen = torch.Generator().manual_seed(0)
    noise = 1e-2 * torch.randn(1, 1, 200 * K, generator=gen, dtype=torch.float64)
    base = noise + _tone(440.0, 0.1, 200 * K)
    moved = noise + _tone(520.0, 0.1, 200 * K)
    s = audio_log_spectrogram(torch.cat([base, 4 * base, moved]), N_FFT).mean(dim=(1, 2))  # [3, F]
    tilt = torch.linspace(0, 0.5, s.shape[1], dtype=s.dtype)  # 10 dB across the spectrum
    d = spectral_detail(torch.cat([s, s[:1] + tilt]))
    assert (d[0] - d[1]).abs().mean() < 1e-3 and (d[0] - d[3]).abs().mean() < 1e-3
    assert (d[0] - d[2]).abs().mean() > 0.02
    assert ((s[0] - s[1]).abs().mean() - math.log10(4)).abs() < 1e-3  # the raw spectra differ by 12 dB


def test_the_mdct_view_is_the_audio_view_of_the_inverse_mdct():
    from mp3net.dsp import imdct

    A = mdct(_tone(300.0).view(1, 1, -1), K)
    torch.testing.assert_close(log_spectrogram(A, N_FFT), audio_log_spectrogram(imdct(A), N_FFT))


def test_partial_similarity_matches_lines_and_ignores_level_and_envelope():
    """Chords as spectrograms: the same chord 12 dB louder and through a tilted envelope is the same
    partials (similarity near 1); another chord is not (near 0), nor the chord held for half the clip only."""
    gen = torch.Generator().manual_seed(0)
    n, half = 32 * (N_FFT // 4), 16 * (N_FFT // 4)
    noise = 1e-4 * torch.randn(1, 1, n, generator=gen, dtype=torch.float64)

    def chord(freqs, gain=1.0):
        return sum(_tone(f, 0.05 * gain, n) for f in freqs).view(1, 1, -1) + noise

    a, b = chord((262.0, 330.0, 392.0)), chord((294.0, 370.0, 440.0))
    late = torch.cat([torch.zeros(half, dtype=torch.float64), chord((262.0, 330.0, 392.0))[0, 0, :half]])
    spec = audio_log_spectrogram(torch.cat([a, 4 * a, b, late.view(1, 1, -1) + noise]), N_FFT).mean(1)
    spec[1] += torch.linspace(0, -1.5, spec.shape[-1], dtype=spec.dtype)  # a 30 dB tilt
    S = partial_similarity(spec[:1], spec)[0]
    assert S[0] == pytest.approx(1.0, abs=1e-5)
    assert S[1] > 0.8  # not 1: 12 dB up from the noise floor deepens the gaps between the lines
    assert S[2] < 0.2 and S[3] < 0.75


def test_the_envelope_keeps_a_regions_level_and_drops_where_in_it_a_partial_lies():
    a = power_spectrogram(mdct(_tone(430.0).view(1, 1, -1), K), N_FFT)
    b = power_spectrogram(mdct(_tone(470.0).view(1, 1, -1), K), N_FFT)  # the same 172 Hz block
    t, f = a.shape[2:]
    assert log_envelope(a).shape == (1, 1, t // ENVELOPE_FRAMES, ENVELOPE_BANDS)
    assert float((log_power(a) - log_power(b)).abs().max()) > 2.0  # 40 dB apart in some bins
    width = f // ENVELOPE_BANDS
    block = int(430.0 * N_FFT / SR) // width
    assert block == int(470.0 * N_FFT / SR) // width
    mid = slice(2, -2)  # away from the clip's ends
    ea, eb = log_envelope(a)[0, 0, mid, block], log_envelope(b)[0, 0, mid, block]
    assert torch.allclose(ea, eb, atol=0.5 / 20)
    # the level of the block: the mean power of the bins it covers, not the mean of their logs
    frame = t // ENVELOPE_FRAMES // 2
    mean = a[
        0, 0, frame * ENVELOPE_FRAMES : (frame + 1) * ENVELOPE_FRAMES, block * width : (block + 1) * width
    ]
    assert float(log_envelope(a)[0, 0, frame, block]) == pytest.approx(
        float(log_power(mean.mean())), abs=1e-4
    )
    louder = log_envelope(4.0 * a)[0, 0, mid, block]  # 6 dB up (off the floor)
    assert torch.allclose(louder, ea + 0.5 * math.log10(4.0), atol=1e-4)


def test_mid_side_is_the_half_sum_and_half_difference_and_keeps_mono():
    A = torch.randn(2, 2, 8, 4)
    ms = mid_side(A)
    assert torch.allclose(ms[:, 0], (A[:, 0] + A[:, 1]) / 2) and torch.allclose(
        ms[:, 1], (A[:, 0] - A[:, 1]) / 2
    )
    assert torch.equal(mid_side(A[:, :1]), A[:, :1])
