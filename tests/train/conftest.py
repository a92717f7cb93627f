"""Shared fixtures of the training tests: a small prepared dataset of tonal notes and a fast config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mp3net import preset
from mp3net.config import Config
from mp3net.data import prepare

# the laptop preset made smaller still so a D+G iteration takes a fraction of a second on a busy 2-core CPU:
# 3 blocks (128 frames x 64 bands, 0.74 s clips), 32 channels at most, batch 4
FAST = [
    "model.n_blocks=3",
    "model.start_bands=8",
    "model.max_channels=32",
    "model.latent_dim=32",
    "model.d_dense=32",
    "train.batch_size=4",
    "train.log_every=2",
    "train.sample_every=0",
    "train.eval_every=0",  # tested on its own (test_loop)
    "train.num_workers=0",
    "train.n_samples=2",
    # the paper's network, recipe and widths, on which these tests' trajectories were calibrated (the laptop
    # preset's own network and recipe are tested with explicit overrides)
    "model.min_channels=0",
    "model.upsample=transposed",
    "model.output=linear",
    "model.band_norm=false",
    "train.loss=wgan-gp",
    "train.r1_gamma=1",
    "train.n_critic=2",
    "train.lr=1e-4",
    "train.betas=[0.5, 0.9]",
    "train.reg_every=1",
    "train.ema_half_life=0",
    "train.amp=off",  # float32 (bf16 training is tested on its own)
]


def fast_config(*extra: str) -> Config:
    return preset("tiny").override(FAST + list(extra))


def write_notes(folder: Path, n_files: int, seconds: float, sample_rate: int, seed: int = 0) -> None:
    """Piano-like notes: a few harmonics with decaying envelopes at random pitches, stereo."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    for k in range(n_files):
        x = np.zeros(n)
        note_len = 0.5
        for start in np.arange(0, seconds, note_len):
            f0 = 110 * 2 ** (rng.integers(0, 36) / 12)
            env = np.where(t >= start, np.exp(-(t - start) * 4.0), 0.0) * (t < start + 2 * note_len)
            for h, a in ((1, 1.0), (2, 0.4), (3, 0.2)):
                if h * f0 < sample_rate / 2:
                    x += a * env * np.sin(2 * np.pi * h * f0 * (t - start))
        x /= np.abs(x).max()
        sf.write(folder / f"notes{k}.flac", np.stack([x, 0.9 * x], axis=1) * 0.5, sample_rate)


@pytest.fixture(scope="session")
def notes_dataset(tmp_path_factory) -> Path:
    """A prepared dataset (tiny preset's rate) of 6 files × 4 s of tonal notes."""
    root = tmp_path_factory.mktemp("notes")
    sr = preset("tiny").model.sample_rate
    write_notes(root / "src", 6, 4.0, sr)
    m = fast_config().model
    prepare(root / "src", root / "ds", m.sample_rate, m.channels, m.clip_samples, progress=False)
    return root / "ds"


@pytest.fixture
def one_thread():
    """One torch thread for the test: the same arithmetic whatever the machine's load. With two threads,
    MKL adapts its thread count to the load, and a few Adam steps magnify the changed rounding of two
    trainers that should agree to the last bits."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
