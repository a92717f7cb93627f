"""The pooled level contrast (docs/experiments.md#2026-12-02-contrast-matching): held partials give deep
valleys, flicker and noise give shallow ones, the floor caps the depth of near-silence."""

import pytest
import torch

from mp3net.dsp import pooled_level_contrast


def test_held_partials_are_peaks_with_deep_valleys_between_them():
    E = torch.full((2, 32, 16), 1e-3)
    E[..., 4] = E[..., 10] = 1.0  # two held partials, 30 dB above the valleys
    c = pooled_level_contrast(E, pool=8, floor_db=60.0, width=2)
    assert c.shape == (2, 4, 16)
    assert c[..., [4, 10]].abs().max() < 1e-4  # a peak is its own local maximum
    assert torch.allclose(c[..., [2, 3, 5, 6, 8, 9, 11, 12]], torch.tensor(-30.0), atol=1e-3)
    assert torch.allclose(c[..., [0, 1, 7, 13, 14, 15]], torch.tensor(0.0), atol=1e-4)  # no peak in reach


def test_peaks_that_flicker_from_frame_to_frame_average_out():
    g = torch.Generator().manual_seed(0)
    held, flicker = torch.full((1, 64, 32), 1e-3), torch.full((1, 64, 32), 1e-3)
    held[..., ::4] = 1.0
    bins = torch.randint(0, 32, (64, 8), generator=g)  # as many peaks per frame, at new places each frame
    flicker[0].scatter_(1, bins, 1.0)
    deep = pooled_level_contrast(held, pool=8, floor_db=60.0, width=2).mean()
    shallow = pooled_level_contrast(flicker, pool=8, floor_db=60.0, width=2).mean()
    assert deep < -18.0 and shallow > -8.0  # per frame both are about equally peaky
    per_frame = pooled_level_contrast(flicker, pool=1, floor_db=60.0, width=2).mean()
    assert per_frame < -12.0


def test_valleys_deeper_than_the_floor_count_as_the_floor():
    E = torch.full((1, 8, 8), 1e-9)  # 90 dB below the partial
    E[..., 3] = 1.0
    c = pooled_level_contrast(E, pool=8, floor_db=60.0, width=2)
    assert c.min() == pytest.approx(-60.0, abs=1e-3)


@pytest.mark.parametrize("shape,width", [((4, 16), 2), ((8, 2), 2), ((8, 16), 0)])
def test_too_small_a_grid_or_width_is_an_error(shape, width):
    with pytest.raises(ValueError, match="pooled_level_contrast"):
        pooled_level_contrast(torch.ones(shape), pool=8, floor_db=60.0, width=width)
