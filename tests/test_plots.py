"""mp3net.plots: every figure draws from its data, without pyplot, and saves as a PNG."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from mp3net import plots
from mp3net.analysis import SAMPLE_RATE, analyze_signal, signed_db, to_db
from mp3net.synth import example_signal


def _image_data(fig) -> list[np.ndarray]:
    return [np.asarray(ax.images[0].get_array()) for ax in fig.axes if ax.images]


def test_mdct_and_spectrogram_figures_show_the_amplitudes_per_channel() -> None:
    A = torch.randn(2, 30, 128, generator=torch.Generator().manual_seed(0)) * 0.01
    m, s = plots.mdct_figure(A, SAMPLE_RATE, "x"), plots.spectrogram_figure(A, SAMPLE_RATE, "x")
    for fig, scale in ((m, signed_db), (s, to_db)):
        images = _image_data(fig)
        assert len(images) == 2  # one panel per channel (plus a colour bar each)
        for c in range(2):
            assert np.allclose(images[c], scale(A[c].double().numpy()).T)
    titles = [ax.get_title() for ax in m.axes if ax.images]
    assert "left" in titles[0] and "right" in titles[1]


def test_write_figures_and_tonality_curve_are_pngs(tmp_path) -> None:
    an = analyze_signal(example_signal(seconds=1.0))
    paths = plots.write_figures(an, tmp_path, "ex", title="example")
    assert [p.name for p in paths] == [
        "ex_mdct.png",
        "ex_spectrogram.png",
        "ex_threshold.png",
        "ex_reduced.png",
    ]
    for p in paths:
        img = mpimg.imread(p)
        assert img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0.01
    curve = {"step": [1, 2, 3], "fake": [0.1, 0.2, 0.3], "real": [0.7, 0.7, 0.72]}
    fig = plots.tonality_curve_figure(curve, "run")
    assert np.allclose(fig.axes[0].lines[0].get_ydata(), [10, 20, 30])
    assert np.allclose(fig.axes[1].lines[0].get_ydata(), [70, 70, 72])
    assert plots.save_png(fig, tmp_path / "t.png").stat().st_size > 1000
    assert plots.png_bytes(fig).startswith(b"\x89PNG")


def test_spectrogram_row_has_one_panel_per_clip_on_one_colour_scale():
    from mp3net.plots import spectrogram_row_figure

    quiet, loud = torch.full((2, 16, 8), 1e-4), torch.full((2, 16, 8), 1e-1)
    fig = spectrogram_row_figure([quiet, loud], "two clips")
    axes = fig.get_axes()
    assert len(axes) == 2
    a, b = (ax.get_images()[0] for ax in axes)
    assert a.get_clim() == b.get_clim()
    assert a.get_array().max() == pytest.approx(-80, abs=0.1) and b.get_array().max() == pytest.approx(
        -20, abs=0.1
    )


def test_long_window_row_draws_a_tone_as_one_line_at_its_frequency():
    import math

    from mp3net.dsp import mdct
    from mp3net.plots import long_window_row_figure

    sr, k = 11008, 64
    t = torch.arange(255 * k, dtype=torch.float64) / sr
    tone = mdct((0.1 * torch.sin(2 * math.pi * 1000 * t)).expand(2, -1), k)  # [2, 256, 64]
    fig = long_window_row_figure([tone, 0.5 * tone], sr, title="tones")
    axes = fig.get_axes()
    assert len(axes) == 2
    a, b = (ax.get_images()[0].get_array() for ax in axes)  # [bins up to 2.75 kHz, frames]
    assert a.shape[0] == int(2750 * 1024 / sr)
    assert int(a[:, a.shape[1] // 2].argmax()) == round(1000 * 1024 / sr)
    # one colour scale for the row: the half-amplitude tone is 6 dB lower
    assert float(a.max() - b.max()) == pytest.approx(20 * math.log10(2), abs=0.1)
