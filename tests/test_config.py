"""Configs: the recipe options round-trip through config.json, old files still load (retired fields at their
neutral values silently, others with one line naming the tag), bad values are errors, the presets."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from mp3net.config import (
    CONFIG_VERSION,
    PRESET_ALIASES,
    RETIRED_FIELDS,
    RETIRED_TAG,
    RETIRED_VALUES,
    Config,
    ConfigError,
    preset,
)

FIXTURES = Path(__file__).parent / "fixtures"
SHIPPED = Path(__file__).parents[1] / "src" / "mp3net" / "pretrained" / "tiny-chorales" / "config.json"

RECIPE = [
    "train.loss=ns-r1",
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
]


def test_recipe_options_round_trip_through_config_json(tmp_path):
    cfg = preset("tiny").override(RECIPE)
    cfg.save(tmp_path / "config.json")
    back = Config.load(tmp_path / "config.json")
    assert back == cfg
    assert back.train.betas_g == (0.0, 0.99) and isinstance(back.train.betas_d, tuple)
    assert back.train.adam("G") == (3e-4, (0.0, 0.99))
    assert back.train.adam("D") == (1e-4, (0.1, 0.9))


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
    for key in ("upsample", "min_channels"):
        del d["model"][key]
    (tmp_path / "old.json").write_text(json.dumps(d))
    cfg = Config.load(tmp_path / "old.json")
    assert cfg.train.loss == "wgan-gp" and cfg.model.upsample == "transposed" and cfg.model.min_channels == 0
    assert cfg.model.block_channels(3) == (16, 8, 4)  # the same network as before


def test_a_pretraining_config_written_before_latent_init_keeps_random_latents_and_the_log_distance(tmp_path):
    d = preset("tiny").to_dict()
    del (
        d["pretrain"]["latent_init"],
        d["pretrain"]["envelope"],
        d["pretrain"]["mid_side"],
        d["train"]["anchor"],
        d["pretrain"]["lr_decay_start"],
        d["pretrain"]["lr_decay_steps"],
        d["pretrain"]["run_clips"],
    )
    (tmp_path / "old.json").write_text(json.dumps(d))
    cfg = Config.load(tmp_path / "old.json")
    assert cfg.pretrain.latent_init == "random" and cfg.pretrain.envelope == 0.0 and cfg.train.anchor == 0.0
    assert cfg.pretrain.lr_decay_steps == 0  # no decay: the recipe it was written with
    assert cfg.pretrain.run_clips == 1  # its table: single clips
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
        "model.output=oscillators",
        "model.bank_size=0",
        "train.betas_g=[1]",
        "train.eval_every=-1",
        "train.eval_clips=1",
        "train.anchor=-1",
    ],
)
def test_bad_recipe_values_are_config_errors(item):
    with pytest.raises(ConfigError):
        preset("tiny").override([item])


def _v1(cfg: Config) -> dict:
    """``cfg`` as a version-1 file wrote it: every retired field present at its neutral value."""
    d = cfg.to_dict()
    d["version"] = 1
    for section, fields in RETIRED_FIELDS.items():
        for name, neutral in fields.items():
            d[section][name] = 16 if neutral is None else neutral
    return d


def test_a_version_1_config_with_retired_fields_at_their_neutral_values_loads_silently():
    cfg = preset("laptop")
    back = Config.from_dict(_v1(cfg))
    assert back.version == CONFIG_VERSION and back.model == cfg.model and back.train == cfg.train
    assert not hasattr(back.model, "d_compress") and not hasattr(back.train, "mode_seeking")


@pytest.mark.parametrize(
    "section,name,value",
    [("model", "d_compress", 0.5), ("model", "amplitude_gain", 64.0), ("model", "d_spectral_channels", 8)]
    + [("model", "d_pooled_channels", 16), ("train", "mode_seeking", 1.0), ("train", "grad_checkpoint", True)]
    + [
        ("train", "change_match", 0.5),
        ("train", "contrast_match", 1.0),
        ("train", "partial_change_match", 2),
    ],
)
def test_a_retired_field_in_use_is_a_one_line_error_naming_the_field_and_the_tag(section, name, value):
    d = _v1(preset("laptop"))
    d[section][name] = value
    with pytest.raises(ConfigError) as e:
        Config.from_dict(d)
    msg = str(e.value)
    assert f"{section}.{name}={value}" in msg and RETIRED_TAG in msg and "\n" not in msg
    with pytest.raises(ConfigError, match=RETIRED_TAG):  # and as an override
        preset("laptop").override([f"{section}.{name}={json.dumps(value)}"])


def test_a_field_retired_later_names_the_tag_that_reads_it():
    """``model.band_weights`` was retired after v0.1-lab: false loads silently, true names v0.2-lab."""
    d = preset("laptop").to_dict()
    d["model"]["band_weights"] = False
    assert Config.from_dict(d).model == preset("laptop").model
    d["model"]["band_weights"] = True
    with pytest.raises(ConfigError, match="git checkout v0.2-lab") as e:
        Config.from_dict(d)
    assert "model.band_weights=True" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("key", list(RETIRED_VALUES))
def test_retired_values_of_kept_fields_are_one_line_errors_naming_the_tag(key):
    section, name = key.split(".")
    for value in RETIRED_VALUES[key]:
        d = _v1(preset("laptop"))
        d[section][name] = value
        with pytest.raises(ConfigError, match=RETIRED_TAG):
            Config.from_dict(d)
        with pytest.raises(ConfigError, match=RETIRED_TAG):
            preset("laptop").override([f"{key}={value}"])


def test_a_config_version_from_the_future_is_a_clear_error():
    d = preset("laptop").to_dict()
    d["version"] = CONFIG_VERSION + 1
    with pytest.raises(ConfigError, match="version"):
        Config.from_dict(d)


def test_the_old_preset_names_are_aliases_of_the_renamed_presets():
    for old, new in PRESET_ALIASES.items():
        assert preset(old) == preset(new)
    with pytest.raises(ConfigError, match="laptop"):
        preset("huge")


def test_the_default_preset_builds_the_shipped_models_network_and_table():
    """`mp3net pretrain` with no --preset and no -o: the shipped model's network (its model section, apart
    from the levels calibrated at export) and table size. When the default recipe changes, the shipped model
    is re-made with it."""
    from mp3net.config import DEFAULT_PRESET

    shipped, default = Config.load(SHIPPED), preset(DEFAULT_PRESET)
    a, b = dict(shipped.model.__dict__), dict(default.model.__dict__)
    for export_only in ("band_rms", "sampler"):  # calibrated levels and the sampler an export draws through
        a.pop(export_only), b.pop(export_only)
    assert a == b
    assert shipped.pretrain.clips == default.pretrain.clips
    assert default.train.amp == "auto"
    assert default.pretrain.lr_decay_steps > 0 and default.pretrain.envelope > 0 and default.pretrain.mid_side


def test_min_channels_floors_every_block():
    m = preset("tiny").override(["model.min_channels=16"]).model
    assert all(min(m.block_channels(i)) >= 16 for i in range(m.n_blocks))
    assert m.block_channels(0) == preset("tiny").model.block_channels(0)


def test_the_laptop_preset_trains_with_the_fast_recipe_and_width_at_the_detail_end():
    cfg = preset("laptop")
    tc, m = cfg.train, cfg.model
    assert (tc.loss, tc.n_critic, tc.betas[0], tc.reg_every, tc.r1_gamma) == ("ns-r1", 1, 0.0, 8, 100.0)
    assert tc.ema_half_life > 0 and m.upsample == "resize" and m.output == "sines" and m.band_norm
    assert m.block_channels(m.n_blocks - 1) == (32, 32, 32)  # was (16, 8, 4)


def test_the_first_shipped_models_config_still_builds_its_network():
    """The config.json of the model shipped before the recipe options (kept in tests/fixtures) loads and
    builds the network its weights were saved from: 561 618 generator parameters in 68 tensors."""
    from mp3net.model import Generator

    cfg = Config.load(FIXTURES / "tiny-chorales-2026-11-config.json")
    G = Generator(cfg.model)
    assert sum(p.numel() for p in G.parameters()) == 561_618 and len(G.state_dict()) == 68
    assert (cfg.model.upsample, cfg.model.min_channels, cfg.model.output) == ("transposed", 0, "linear")


def test_unit_levels_fill_only_what_training_has_not_measured():
    m = preset("laptop").model
    assert m.band_norm and not m.band_rms
    filled = m.with_unit_levels()
    assert filled.band_rms == (1.0,) * m.n_bands and m.band_rms == ()  # a copy
    measured = dataclasses.replace(m, band_rms=(0.5,) * m.n_bands)
    assert measured.with_unit_levels() is measured
    plain = preset("paper-5s").model
    assert plain.with_unit_levels() is plain
