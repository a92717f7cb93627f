"""mp3net.synth: the piano-like synthesizer and the built-in example signal."""

from __future__ import annotations

import numpy as np
import pytest

from mp3net.analysis import SAMPLE_RATE, analyze_signal
from mp3net.synth import example_signal


def test_example_signal() -> None:
    x = example_signal(seconds=2.0)
    assert x.shape == (2, 2 * SAMPLE_RATE) and x.dtype == np.float32
    assert np.abs(x).max() == pytest.approx(0.9, abs=1e-6)
    assert np.array_equal(x, example_signal(seconds=2.0))  # deterministic
    assert not np.allclose(x[0], x[1])  # panned stereo
    assert analyze_signal(x).mean_tonality > 0.3
