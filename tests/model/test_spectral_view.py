"""D's spectral view (docs/networks.md#spectral-discriminator): shapes, and that adding it leaves the MDCT
view as it was."""

from __future__ import annotations

import pytest
import torch

from mp3net import preset
from mp3net.config import ConfigError
from mp3net.model import Discriminator, SpectralDiscriminator


def _cfg(*extra: str):
    return preset("tiny").override(["train.loss=ns-r1", *extra]).model


def test_the_spectral_view_scores_each_clip_from_its_log_spectrogram():
    cfg = _cfg("model.d_spectral_channels=8", "model.d_spectral_fft=512")
    torch.manual_seed(0)
    spec = SpectralDiscriminator(cfg)
    x = 0.01 * torch.randn(3, cfg.channels, cfg.n_frames, cfg.n_bands)
    v = spec.view(x)
    # (M + 1)·N samples at hop 128 → 257 frames and 257 bins, both cut to even lengths
    assert v.shape == (3, cfg.channels, 256, 256) == (3, *spec.view_shape(cfg))
    score = spec(x)
    assert score.shape == (3, 1) and score.dtype == torch.float32
    torch.testing.assert_close(score, spec.score_view(v))
    # minibatch stddev: a clip among copies of itself has no spread to show, as one clip alone
    copies = x[1:2].expand(4, -1, -1, -1)
    torch.testing.assert_close(spec(copies), spec(x[1:2]).expand(4, 1), rtol=0, atol=2e-4)  # std √1e-8
    spread = spec(torch.cat([x, x[:1]]))[0] - spec(x[:1].expand(4, -1, -1, -1))[0]
    assert spread.abs() > 1e-3  # the same clip among others: its score moves


def test_adding_the_spectral_view_leaves_the_mdct_view_as_it_was():
    torch.manual_seed(3)
    plain = Discriminator(_cfg())
    torch.manual_seed(3)
    both = Discriminator(_cfg("model.d_spectral_channels=8"))
    assert plain.spectral is None and isinstance(both.spectral, SpectralDiscriminator)
    shared = {k: v for k, v in both.state_dict().items() if not k.startswith("spectral.")}
    assert shared.keys() == plain.state_dict().keys()
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in shared.items())
    x = 0.01 * torch.randn(2, 2, 512, 64)
    with torch.no_grad():
        torch.testing.assert_close(both(x), plain(x), rtol=0, atol=0)


@pytest.mark.parametrize("fft", [1000, 2, 65536])  # not a power of two; too short; too few hops in a clip
def test_the_window_must_be_a_power_of_two_with_hops_to_spare(fft):
    with pytest.raises(ConfigError, match="d_spectral_fft"):
        preset("tiny").override(["model.d_spectral_channels=8", f"model.d_spectral_fft={fft}"])


def test_the_spectral_view_needs_a_zero_centred_recipe():
    with pytest.raises(ConfigError, match="zero-centred"):
        preset("tiny").override(["model.d_spectral_channels=8", "train.loss=wgan-gp"])
    assert preset("tiny").override(["model.d_spectral_channels=8"]).model.d_spectral_channels == 8


def test_the_spread_input_shows_a_batch_that_draws_the_same_clip_everywhere():
    """With model.d_spectral_spread the first conv sees the batch's spread per bin as one more channel: a
    batch of copies scores as its clip alone does, and the weights of that channel matter only across
    different clips."""
    cfg = _cfg("model.d_spectral_channels=8", "model.d_spectral_fft=512", "model.d_spectral_spread=true")
    torch.manual_seed(0)
    spec = SpectralDiscriminator(cfg)
    assert spec.body[0].weight.shape[1] == cfg.channels + 1
    x = 0.01 * torch.randn(4, cfg.channels, cfg.n_frames, cfg.n_bands)
    with torch.no_grad():
        copies = spec(x[:1].expand(4, -1, -1, -1))
        mixed = spec(x)
        spec.body[0].weight[:, cfg.channels] = 0  # blind to the spread
        torch.testing.assert_close(spec(x[:1].expand(4, -1, -1, -1)), copies, rtol=0, atol=1e-4)
        assert (spec(x) - mixed).abs().max() > 1e-3
