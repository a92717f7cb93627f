"""Configs: the recipe options round-trip through config.json, old files still load, bad values are errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mp3net.config import Config, ConfigError, preset

RECIPE = [
    "train.loss=rpgan-r1r2",
    "train.r1_gamma=0.5",
    "train.reg_every=8",
    "train.lr_g=3e-4",
    "train.lr_d=1e-4",
    "train.betas_g=[0.0, 0.99]",
    "train.betas_d=[0.1, 0.9]",
    "train.warmup_steps=50",
    "train.augment=0.3",
    "train.ema_half_life=2500",
    "train.ema_rampup=0.05",
    "model.upsample=resize",
    "model.min_channels=16",
    "train.change_match=0.5",
    "train.change_lags=[1, 2, 4]",
    "train.contrast_match=0.5",
    "train.contrast_width=3",
]


def test_recipe_options_round_trip_through_config_json(tmp_path):
    cfg = preset("tiny").override(RECIPE)
    cfg.save(tmp_path / "config.json")
    back = Config.load(tmp_path / "config.json")
    assert back == cfg
    assert back.train.betas_g == (0.0, 0.99) and isinstance(back.train.betas_d, tuple)
    assert back.train.adam("G") == (3e-4, (0.0, 0.99))
    assert back.train.adam("D") == (1e-4, (0.1, 0.9))
    assert back.train.change_lags == (1, 2, 4)
    assert (back.train.contrast_match, back.train.contrast_width) == (0.5, 3)


def test_unset_rates_and_betas_fall_back_to_the_shared_ones():
    tc = preset("95s").train
    assert tc.adam("G") == tc.adam("D") == (1e-4, (0.5, 0.9))
    tc = preset("95s").override(["train.lr=3e-4", "train.lr_d=null"]).train
    assert tc.adam("D") == (3e-4, (0.5, 0.9))


def test_a_config_written_before_the_recipe_options_still_loads(tmp_path):
    d = preset("tiny").to_dict()
    for key in ("loss", "r1_gamma", "reg_every", "lr_g", "lr_d", "betas_g", "betas_d", "warmup_steps"):
        del d["train"][key]
    for key in ("augment", "ema_half_life", "ema_rampup"):
        del d["train"][key]
    for key in (
        "upsample",
        "min_channels",
        "amplitude_gain",
        "d_compress",
        "d_pooled_channels",
        "d_pooled_frames",
    ):
        del d["model"][key]
    (tmp_path / "old.json").write_text(json.dumps(d))
    cfg = Config.load(tmp_path / "old.json")
    assert cfg.train.loss == "wgan-gp" and cfg.model.upsample == "transposed" and cfg.model.min_channels == 0
    assert (
        cfg.model.amplitude_gain == 1.0 and cfg.model.d_compress == 1.0 and cfg.model.d_pooled_channels == 0
    )
    assert cfg.model.block_channels(3) == (16, 8, 4)  # the same network as before


def test_a_pretraining_config_written_before_latent_init_keeps_random_latents_and_the_log_distance(tmp_path):
    d = preset("tiny").to_dict()
    del (
        d["pretrain"]["latent_init"],
        d["pretrain"]["envelope"],
        d["pretrain"]["mid_side"],
        d["train"]["anchor"],
    )
    (tmp_path / "old.json").write_text(json.dumps(d))
    cfg = Config.load(tmp_path / "old.json")
    assert cfg.pretrain.latent_init == "random" and cfg.pretrain.envelope == 0.0 and cfg.train.anchor == 0.0
    assert (
        preset("tiny").pretrain.latent_init == "pca" and preset("tiny").pretrain.envelope == 1.0
    )  # new runs
    with pytest.raises(ConfigError, match="envelope"):
        preset("tiny").override(["pretrain.envelope=-1"])
    with pytest.raises(ConfigError, match="latent_init"):
        preset("tiny").override(["pretrain.latent_init=zeros"])


def test_the_paper_recipe_stays_the_default_of_the_big_presets():
    for name in ("95s", "5s"):
        tc = preset(name).train
        assert (tc.loss, tc.n_critic, tc.lr, tc.betas, tc.reg_every) == ("wgan-gp", 2, 1e-4, (0.5, 0.9), 1)
        assert preset(name).model.upsample == "transposed"


@pytest.mark.parametrize(
    "item",
    [
        "train.loss=hinge",
        "train.reg_every=0",
        "train.augment=1.5",
        "model.upsample=bilinear",
        "model.d_pooled_channels=-1",
        "train.betas_g=[1]",
        "train.eval_every=-1",
        "train.eval_clips=1",
        "train.change_match=-1",
        "train.change_lags=[0]",
        "train.change_lags=[]",
        "train.change_lags=2",
        "train.contrast_match=-1",
        "train.contrast_width=0",
    ],
)
def test_bad_recipe_values_are_config_errors(item):
    with pytest.raises(ConfigError):
        preset("tiny").override([item])


@pytest.mark.parametrize(
    "items,match",
    [
        (["train.mode_seeking=-1"], "mode_seeking"),
        (["train.mode_seeking=1", "train.batch_size=1"], "batch_size must be >= 2"),
        (["train.mode_seeking=1", "model.d_spectral_fft=1000"], "d_spectral_fft"),
        (["model.output=bank", "model.bank_size=0"], "bank_size"),
        (["train.partial_change_match=-1"], "partial_change_match"),
        (["train.partial_change_frames=0"], "partial_change_frames"),
        (["train.partial_change_match=1", "train.partial_change_frames=100"], "two segments must fit"),
        (["train.partial_change_match=1", "model.d_spectral_fft=1000"], "d_spectral_fft"),
    ],
)
def test_bad_mode_seeking_and_bank_values_are_config_errors(items, match):
    preset("tiny").override(["train.mode_seeking=1", "model.output=bank", "model.bank_size=4"])
    preset("tiny").override(["model.d_spectral_fft=1000"])  # unused without the view or mode seeking
    with pytest.raises(ConfigError, match=match):
        preset("tiny").override(items)


@pytest.mark.parametrize("frames", [3, 0, 64])  # not a divisor of 512 frames; none; fewer than 16 steps left
def test_the_pooled_branch_needs_its_frames_to_tile_the_clip(frames):
    preset("tiny").override(["model.d_pooled_channels=8", "model.d_pooled_frames=32"])
    with pytest.raises(ConfigError, match="d_pooled_frames"):
        preset("tiny").override(["model.d_pooled_channels=8", f"model.d_pooled_frames={frames}"])


def test_min_channels_floors_every_block():
    m = preset("tiny").override(["model.min_channels=16"]).model
    assert all(min(m.block_channels(i)) >= 16 for i in range(m.n_blocks))
    assert m.block_channels(0) == preset("tiny").model.block_channels(0)


def test_the_tiny_preset_trains_with_the_fast_recipe_and_width_at_the_detail_end():
    cfg = preset("tiny")
    tc, m = cfg.train, cfg.model
    assert (tc.loss, tc.n_critic, tc.betas[0], tc.reg_every) == ("ns-r1", 1, 0.0, 8)
    assert tc.ema_half_life > 0 and m.upsample == "resize"
    assert m.block_channels(m.n_blocks - 1) == (16, 16, 16)  # was (16, 8, 4)


def test_the_first_shipped_models_config_still_builds_its_network():
    """The config.json of the model shipped before the recipe options (kept in tests/fixtures) loads and
    builds the network its weights were saved from: 561 618 generator parameters in 68 tensors."""
    from mp3net.model import Generator

    cfg = Config.load(Path(__file__).parent / "fixtures" / "tiny-chorales-2026-11-config.json")
    G = Generator(cfg.model)
    assert sum(p.numel() for p in G.parameters()) == 561_618 and len(G.state_dict()) == 68
    assert (cfg.model.upsample, cfg.model.min_channels, cfg.model.amplitude_gain) == ("transposed", 0, 1.0)
