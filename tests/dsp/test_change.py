"""The pooled level change (docs/training.md#change-matching): steady grids are still, a step moves every bin
once, the floor hides changes deep below the peak."""

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
    E[:, :, 1] = 1e-9 * torch.rand(32).add(0.5)  # 90 dB below bin 0: jitters by several dB
    assert pooled_level_change(E, pool=4, floor_db=60.0).abs().max() < 1e-4
    assert pooled_level_change(E, pool=4, floor_db=120.0)[..., 1].max() > 0.5


def test_too_few_frames_is_an_error():
    with pytest.raises(ValueError, match="at least 16 frames"):
        pooled_level_change(torch.ones(15, 4), pool=8, floor_db=60.0)
