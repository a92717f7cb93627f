"""mp3net.analysis: the reduced spectrogram and the statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mp3net.analysis import SAMPLE_RATE, analyze_signal, reduced_spectrogram, signed_db, to_db


def test_reduced_spectrogram_folds_harmonics_onto_fundamental() -> None:
    F, N = 20, 128
    A = np.zeros((F, N))
    A[:, 20] = 1.0  # fundamental in bins [16, 32) survives untouched
    A[:, 40] = 0.5  # 2nd harmonic: top octave of 64 bins -> lands on bin 20
    A[:, 81] = 0.25  # 4th harmonic-ish in the top octave [64, 128) -> 40 -> 20
    R = reduced_spectrogram(A, keep_bins=32)
    assert R.shape == (F, 32)
    assert R[:, 20] == pytest.approx(np.full(F, 1.0 + 0.5 / 2 + 0.25 / 4))  # each fold averages a pair
    assert np.allclose(np.delete(R, 20, axis=1), 0)


def test_reduced_spectrogram_blurs_time_and_uses_magnitudes() -> None:
    A = np.zeros((2, 9, 64))
    A[0, 4, 40] = -2.0  # a click in the top octave: blurred over three frames, sign dropped
    R = reduced_spectrogram(A, keep_bins=32)
    assert R.shape == (2, 9, 32)
    assert np.allclose(R[0, 3:6, 20], [0.5 * 0.5, 0.5 * 1.0, 0.5 * 0.5])
    assert R[0].sum() == pytest.approx(2.0 * 0.5)
    assert np.allclose(R[1], 0)
    assert np.array_equal(reduced_spectrogram(A, keep_bins=64), np.abs(A))
    with pytest.raises(ValueError):
        reduced_spectrogram(A, keep_bins=24)


def test_db_helpers() -> None:
    assert to_db(np.array([1.0, 1e-3, 0.0])) == pytest.approx([120.0, 60.0, -20.0])
    s = signed_db(np.array([1.0, -1e-2, 1e-7, 0.0]))
    assert s == pytest.approx([100.0, -60.0, 0.0, 0.0])


def test_analyze_signal_statistics() -> None:
    t = np.arange(SAMPLE_RATE + 50) / SAMPLE_RATE
    tone = 0.5 * np.sin(2 * np.pi * (40.5 * 86.0) * t)[None]
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, (2, SAMPLE_RATE))
    a_tone, a_noise = analyze_signal(tone), analyze_signal(noise)
    assert a_tone.channels == 1 and a_noise.channels == 2
    assert a_tone.duration == pytest.approx(1.0 + 50 / SAMPLE_RATE)
    assert a_tone.A.shape == (1, 173 + 1, 128)  # 22066 samples padded to 173 blocks, +1 frame
    assert a_noise.A.shape == (2, 172 + 1, 128)
    assert a_tone.mean_tonality > 0.8 > 0.2 > a_noise.mean_tonality
    # a pure tone masks almost everything else; white noise is mostly above its own threshold
    assert a_tone.inaudible_share > 0.9
    assert a_noise.inaudible_share < a_tone.inaudible_share
    assert a_tone.frame_times[1] == pytest.approx(128 / SAMPLE_RATE)
    assert torch.isfinite(a_noise.threshold).all()
