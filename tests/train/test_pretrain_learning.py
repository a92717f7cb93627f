"""Pretraining learns notes on a small real-like set: random piano phrases played by a sampled piano
(FluidSynth and the FluidR3 GM SoundFont, installed by `make test`). The export's clips move towards the
reals' partial spread and onset contrast, measures that a drone (the same partials in every clip) and noise
(no partials, no onsets) cannot reach. 400 steps of a small network: a move, not the reals' figures."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import fast_config

from mp3net.data import prepare
from mp3net.evaluate import load_real_clips, partial_spread, spectral_flux
from mp3net.generate import generate, load_generator
from mp3net.train.pretrain import Pretrainer

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


def _phrase_midi(path: Path, seed: int, seconds: float) -> None:
    """A phrase of random chords and notes of C major, a new one every 0.25–0.5 s (music21 → MIDI)."""
    from music21 import chord, note, stream, tempo

    rng = np.random.default_rng(seed)
    s = stream.Stream([tempo.MetronomeMark(number=120)])
    scale = [0, 2, 4, 5, 7, 9, 11]
    t = 0.0
    while t < seconds:
        q = float(rng.choice([0.5, 1.0]))  # quarter lengths at 120 bpm: 0.25 or 0.5 s
        pitches = [36 + 12 * int(rng.integers(1, 4)) + scale[int(rng.integers(7))] for _ in range(3)]
        s.append(
            chord.Chord(pitches, quarterLength=q)
            if rng.random() < 0.5
            else note.Note(pitches[0], quarterLength=q)
        )
        t += q / 2
    s.write("midi", fp=str(path))


@pytest.fixture(scope="module")
def piano(tmp_path_factory) -> Path:
    if shutil.which("fluidsynth") is None or not SOUNDFONT.is_file():
        pytest.fail("FluidSynth and the FluidR3 GM SoundFont are missing: `make test` installs them")
    pytest.importorskip("music21")
    root = tmp_path_factory.mktemp("piano")
    (root / "src").mkdir()
    for k in range(6):
        midi = root / f"p{k}.mid"
        _phrase_midi(midi, k, 8.0)
        wav = root / "src" / f"p{k}.wav"
        cmd = ["fluidsynth", "-ni", "-q", "-F", str(wav), "-r", "22050", str(SOUNDFONT), str(midi)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    m = fast_config().model
    prepare(root / "src", root / "ds", m.sample_rate, m.channels, m.clip_samples, progress=False)
    return root / "ds"


@pytest.mark.slow
def test_pretraining_learns_the_notes_of_a_sampled_piano(piano, tmp_path):
    cfg = fast_config(
        "model.output=bank",
        "model.band_norm=true",
        "model.min_channels=16",
        "pretrain.clips=16",
        "pretrain.batch_size=8",
        "pretrain.steps=400",
        "pretrain.lr_decay_start=250",
        "pretrain.lr_decay_steps=150",
        "pretrain.ckpt_every=1000",
        "pretrain.eval_clips=0",
        "pretrain.ffts=[256, 1024]",
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic on any load
    try:
        t = Pretrainer(cfg, piano, tmp_path / "run", progress=False)
        t.save()
        untrained = _measures(tmp_path / "run", piano)
        t.run()
        trained = _measures(tmp_path / "run", piano)
    finally:
        torch.set_num_threads(threads)
    # measured (2026-12-07): spread 0.6 → 1.5 dB (reals 4.9), onset contrast 1.7 → 3.4 (reals 12.1)
    reals, why = trained["reals"], (untrained, trained)
    assert trained["spread"] > max(2 * untrained["spread"], 0.25 * reals["spread"]), why
    assert trained["onsets"] > 1.5 * untrained["onsets"], why


def _measures(run: Path, data: Path) -> dict:
    """The partial spread (dB) and onset contrast of 16 clips of the run's export, and of 16 real clips."""
    G, cfg = load_generator(run)
    fakes, sr = generate(G, list(range(16)), precision="fp32")
    reals, _ = load_real_clips(data, 16, cfg.model.clip_samples, seed=1)
    out = {}
    for name, clips in (("fakes", list(fakes)), ("reals", reals)):
        out[name] = {"spread": partial_spread(clips, sr), "onsets": spectral_flux(clips, sr)[1]}
    return {**out["fakes"], "reals": out["reals"]}
