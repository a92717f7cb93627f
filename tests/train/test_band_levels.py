"""Band normalisation in training (docs/networks.md#band-normalisation): the levels are the data's, measured
once and saved with the run; a fine-tuning run keeps its source's."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from conftest import fast_config, write_notes

from mp3net.config import Config
from mp3net.data import prepare
from mp3net.dsp import mdct
from mp3net.model import Generator
from mp3net.train.band_levels import LEVEL_FLOOR, band_levels, calibrated_levels
from mp3net.train.gan import Trainer, train

SR, K = 11008, 64


def _tone_clips(freq: float, n: int = 8) -> list[torch.Tensor]:
    t = torch.arange(64 * K) / SR
    x = 0.1 * torch.sin(2 * math.pi * freq * t)
    return [torch.stack([x, 0.5 * x]) for _ in range(n)]


def test_the_levels_are_the_rms_per_band_with_a_floor():
    """A tone in band 10 (the middle of it): that band is the loudest, at the rms of its MDCT amplitudes
    over both channels and every frame, and every band far from it sits on the floor."""
    clips = _tone_clips((10.5) * SR / (2 * K))
    levels = band_levels(clips, K)
    assert len(levels) == K and int(np.argmax(levels)) == 10
    A = mdct(torch.stack(clips).double(), K)  # [8, 2, M, K]
    assert levels[10] == pytest.approx(float(A[..., 10].square().mean().sqrt()), rel=1e-9)
    assert min(levels) == pytest.approx(LEVEL_FLOOR * levels[10], rel=1e-6)
    assert band_levels(clips, K) == levels  # the same data, the same levels


def test_a_new_run_measures_its_data_and_saves_the_levels(notes_dataset, tmp_path):
    tr = Trainer(fast_config("model.band_norm=true"), notes_dataset, tmp_path / "r", progress=False)
    saved = Config.load(tmp_path / "r" / "config.json").model.band_rms
    assert saved == tr.cfg.model.band_rms == band_levels(tr.dataset, K)
    assert tr.G.cfg.band_rms == saved and tr.D.cfg.band_rms == saved
    tr.close()


def test_fine_tuning_keeps_the_source_levels(notes_dataset, tmp_path):
    """The source's weights are in its unit: a run started from it on other music keeps those levels, and
    so does that run when it resumes, where a fresh run on that music measures its own."""
    train(fast_config("model.band_norm=true"), notes_dataset, tmp_path / "src", steps=2, progress=False)
    source = Config.load(tmp_path / "src" / "config.json").model.band_rms
    write_notes(tmp_path / "other", 3, 2.0, SR, seed=7)
    m = fast_config().model
    other = tmp_path / "other-ds"
    prepare(tmp_path / "other", other, m.sample_rate, m.channels, m.clip_samples, progress=False)
    cfg = fast_config("model.band_norm=true")
    fresh = Trainer(cfg, other, tmp_path / "fresh", progress=False)
    assert fresh.cfg.model.band_rms != source
    fresh.close()
    tuned = train(cfg, other, tmp_path / "ft", steps=2, progress=False, init_from=tmp_path / "src")
    assert tuned.cfg.model.band_rms == source
    saved = json.loads((tmp_path / "ft" / "config.json").read_text())["model"]["band_rms"]
    assert tuple(saved) == source
    # resumed (on other data, from a config without levels): still the levels its weights are in
    again = train(cfg, notes_dataset, tmp_path / "ft", steps=3, progress=False)
    assert again.step == 3 and again.resumed_from is not None and again.cfg.model.band_rms == source


def test_calibration_gives_the_drawn_clips_the_datas_level_in_every_band():
    """docs/training.md#level-calibration: after it, G's samples have each band at its target level."""
    cfg = fast_config("model.band_norm=true").model
    target = tuple(0.02 * 10 ** (-k / 40) for k in range(cfg.n_bands))  # 30 dB down over the bands
    torch.manual_seed(0)
    G = Generator(dataclasses.replace(cfg, band_rms=target)).eval()
    with torch.no_grad():  # an untrained G draws ~75 dB below its unit: bring it near, as training does
        G.to_out.weight.mul_(10 ** (76 / 20))
    z = torch.randn(16, cfg.latent_dim, generator=torch.Generator().manual_seed(0))

    def drawn_db(levels) -> torch.Tensor:
        G.cfg = dataclasses.replace(cfg, band_rms=levels)
        with torch.no_grad():
            rms = G(z).double().square().mean(dim=(0, 1, 2)).sqrt()
        return 20 * torch.log10(rms / torch.tensor(target, dtype=torch.float64))

    before = drawn_db(target)
    assert float(before.abs().max()) > 3.0  # an untrained G is not at the data's levels
    levels = calibrated_levels(G, clips=16, seed=0)
    assert G.cfg.band_rms == target  # G is left as it was
    assert float(drawn_db(levels).abs().max()) < 0.1
    with pytest.raises(ValueError, match="band normalisation"):
        calibrated_levels(Generator(fast_config().model), clips=8)
