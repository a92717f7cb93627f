"""mp3net.dsp.noise: noise of fixed random signs under a drawn envelope."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mp3net.dsp import imdct
from mp3net.dsp.noise import noise_mdct, noise_signs

K = 64
CPU = torch.device("cpu")


def test_signs_are_fair_and_unrelated_across_frames_bands_and_channels():
    e = noise_signs(0, 2048, K, 2, CPU)
    assert e.shape == (2048, K, 2) and set(e.unique().tolist()) == {-1.0, 1.0}
    assert abs(e.mean()) < 0.01
    for lagged in (e[1:] * e[:-1], e[:, 1:] * e[:, :-1], e[..., 0] * e[..., 1], e[64:] * e[:-64]):
        assert abs(lagged.mean()) < 0.01  # no repeat a frame, a band, a channel or a bank period away


def test_signs_depend_on_the_track_frame_only():
    """A window of a long track, hours in, draws the same signs as the whole track."""
    whole = noise_signs(1_000_000, 300, K, 2, CPU)
    torch.testing.assert_close(noise_signs(1_000_100, 50, K, 2, CPU), whole[100:150], rtol=0, atol=0)
    a = torch.rand(1, 2, 300, K)
    torch.testing.assert_close(noise_mdct(a[:, :, 100:], 1_000_100), noise_mdct(a, 1_000_000)[:, :, 100:])


@pytest.mark.parametrize("band", [6, 30])
def test_an_envelope_in_one_band_is_noise_in_that_band(band):
    """A held amplitude in band k sounds noise across band k's frequencies (no line), its level the
    amplitude's: the spectrum's energy lies within a band of band k, with no bin standing out."""
    a = torch.zeros(1, 1, 400, K)
    a[..., band] = 0.5
    x = imdct(noise_mdct(a, 17), trim=True)[0, 0].double().numpy()
    x2 = imdct(noise_mdct(2 * a, 17), trim=True)[0, 0].double().numpy()
    assert np.sqrt(np.mean(x2**2) / np.mean(x**2)) == pytest.approx(2.0, rel=1e-4)
    power = np.abs(np.fft.rfft(x)) ** 2
    freq = np.arange(len(power)) / (len(power) - 1) * K  # band units
    inside = (freq > band - 1) & (freq < band + 2)
    assert power[inside].sum() > 0.95 * power.sum()
    own = power[(freq > band + 0.1) & (freq < band + 0.9)]
    # noise: the strongest of thousands of bins stands ~10 dB over their mean; a held line would stand 30+
    assert own.max() < 30 * own.mean()


def test_noise_mdct_checks_its_shape():
    with pytest.raises(ValueError, match=r"\[B, C, M, K\]"):
        noise_mdct(torch.zeros(2, 3, 4))
