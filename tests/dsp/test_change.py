"""The pooled level change (docs/experiments.md#2026-12-02-change-matching): steady grids are still, a step
moves every bin once, the floor hides changes deep below the peak."""

import math

import pytest
import torch

from mp3net.dsp import pooled_level_change


def test_a_held_grid_is_still_and_a_level_step_moves_every_bin_once():
    E = torch.ones(2, 64, 16)
    E[:, 32:] = 100.0  # +20 dB from frame 32 on
    change = pooled_level_change(E, pool=8, floor_db=60.0)
    assert change.shape == (2, 7, 16)
    assert torch.allclose(change[:, 3], torch.full((2, 16), 20.0))  # pooled steps 3 → 4 straddle frame 32
    assert change[:, [0, 1, 2, 4, 5, 6]].abs().max() < 1e-4


def test_the_step_is_the_pooled_mean_not_the_frames():
    E = torch.ones(1, 32, 4)
    E[:, 1::2] = 3.0  # a frame-to-frame flicker (an MDCT's phase on a steady tone) averages out in a pool
    assert pooled_level_change(E, pool=2, floor_db=60.0).abs().max() < 1e-4
    assert pooled_level_change(E, pool=1, floor_db=60.0).min() > 4.0  # 10·log10(3) per frame


def test_levels_below_the_floor_do_not_count():
    E = torch.ones(1, 32, 2)
    E[:, :, 1] = 1e-7 * torch.tensor([1.0, 4.0]).repeat_interleave(4).repeat(4)  # 70 dB down, 6 dB steps
    assert pooled_level_change(E, pool=4, floor_db=60.0).abs().max() < 1e-4
    deep = pooled_level_change(E, pool=4, floor_db=120.0)[..., 1]
    assert deep.min() == pytest.approx(10 * math.log10(4), rel=1e-3)


def test_too_few_frames_is_an_error():
    with pytest.raises(ValueError, match="at least 16 frames"):
        pooled_level_change(torch.ones(15, 4), pool=8, floor_db=60.0)


def test_a_second_lag_tells_a_click_from_a_held_change():
    held, click = torch.ones(1, 64, 4), torch.ones(1, 64, 4)
    held[:, 32:] = 100.0  # +20 dB from frame 32 on
    click[:, 32:40] = 100.0  # +20 dB for one pooled step only
    for E in (held, click):  # at lag 1 both move by 20 dB: the click twice
        assert pooled_level_change(E, pool=8, floor_db=60.0).max() == pytest.approx(20.0)
    assert pooled_level_change(held, pool=8, floor_db=60.0, lag=2).max() == pytest.approx(20.0)
    lag2 = pooled_level_change(click, pool=8, floor_db=60.0, lag=2)
    assert lag2.shape == (1, 6, 4) and lag2[:, 3].abs().max() < 1e-4  # steps 3 and 5: before and after
