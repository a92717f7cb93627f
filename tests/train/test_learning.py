"""Training learns: on tonal notes, the fakes' tonality rises clearly above the untrained generator's
(the behaviour of the paper's figure 5), measured on the EMA generator for fixed latents, un-noised."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import fast_config

from mp3net.data import prepare
from mp3net.dsp import tonality
from mp3net.train.gan import Trainer


@pytest.mark.slow
def test_training_lifts_fake_tonality(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same arithmetic, and so the same trajectory, on any load
    try:
        # pinned (not inherited from the tiny preset) so that the calibrated trajectory stays the same
        cfg = fast_config("model.base_channels=4", "train.batch_size=8", "train.lr=5e-4")
        sr = cfg.model.sample_rate
        rng = np.random.default_rng(0)
        src = tmp_path / "src"
        src.mkdir()
        t = np.arange(sr * 4) / sr
        for k in range(12):  # sustained notes around A3 with three harmonics
            f0 = 220.0 * (1 + 0.01 * k)
            x = sum(
                a * np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 6))
                for h, a in ((1, 1), (2, 0.5), (3, 0.25))
            )
            sf.write(src / f"s{k}.flac", np.stack([x, x], 1) / 2, sr)
        m = cfg.model
        prepare(src, tmp_path / "ds", m.sample_rate, m.channels, m.clip_samples, progress=False)

        tr = Trainer(cfg, tmp_path / "ds", tmp_path / "run", progress=False)
        z = torch.randn(32, m.latent_dim, generator=torch.Generator().manual_seed(1))

        def fake_tonality() -> float:
            with torch.no_grad():
                return float(tonality(tr.G_ema(z)).mean())

        untrained = fake_tonality()
        measured = []
        for _ in range(200):
            stats = tr.train_step()
            assert math_finite(stats["loss/d"])
            if tr.step >= 100 and tr.step % 25 == 0:
                measured.append(fake_tonality())
        tr.close()
        assert stats["tonality/real"] > 0.9
        trained = float(np.mean(measured))
        assert trained > 1.4 * untrained and trained > untrained + 0.05, (untrained, measured)
    finally:
        torch.set_num_threads(threads)


def math_finite(x: float) -> bool:
    return bool(np.isfinite(x))


@pytest.mark.slow
@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_fast_recipe_learns_the_spectral_envelope(tmp_path, amp):
    """The fast recipe (non-saturating + lazy R1, one D step per G step, β1 = 0, resize-conv, EMA in clips)
    on chorale-like music: the EMA generator's Bark-band levels, un-noised, approach the reals' in every
    band the music uses — an envelope the untrained generator's broadband output does not have. In float32
    and under bf16 autocast."""
    from mp3net import ops
    from mp3net.dsp import imdct
    from mp3net.evaluate import bark_levels, load_real_clips
    from mp3net.synth import random_music

    if amp == "bf16" and not ops.bf16_is_fast("cpu"):
        pytest.skip("this CPU has no native bf16 (AVX512_BF16 or AMX): emulated, 800 steps take too long")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = fast_config(
            "train.loss=ns-r1", "train.n_critic=1", "train.lr=5e-4", "train.betas=[0.0, 0.99]",
            "train.reg_every=4", "train.ema_half_life=200", "train.ema_rampup=0.1",
            "model.upsample=resize", "model.min_channels=8", f"train.amp={amp}",
        )  # fmt: skip
        m = cfg.model
        (tmp_path / "src").mkdir()
        for k in range(8):
            sf.write(
                tmp_path / "src" / f"m{k}.flac",
                random_music(8.0, seed=k, sample_rate=m.sample_rate).T,
                m.sample_rate,
            )
        prepare(tmp_path / "src", tmp_path / "ds", m.sample_rate, m.channels, m.clip_samples, progress=False)
        reals, sr = load_real_clips(tmp_path / "ds", 24, m.clip_samples, seed=0)
        target = bark_levels(reals, sr)
        used = target > target.max() - 50  # the bands the music uses (the rest is silence)
        z = torch.randn(24, m.latent_dim, generator=torch.Generator().manual_seed(1))

        def level_error(tr: Trainer) -> float:
            with torch.no_grad():
                fakes = list(imdct(tr.G_ema(z), trim=True))
            return float(np.abs(bark_levels(fakes, sr) - target)[used].mean())

        tr = Trainer(cfg, tmp_path / "ds", tmp_path / "run", progress=False)
        before = level_error(tr)
        errors = []
        for k in range(5 if amp == "off" else 4):  # bf16 passed at 800 steps wherever it ran
            tr.run(200 * (k + 1))
            errors.append(level_error(tr))
        tr.close()
        assert np.isfinite(tr.last["loss/d"])
        # one thread, so the same trajectory on any load of one machine; across CPUs the kernels differ and
        # so does the path (it overshoots first): where first calibrated 6.0 dB → 2.7 (fp32) and 2.3 (bf16)
        # at 800 steps, on Intel Sapphire Rapids fp32 6.0 → 3.7 at 800 and 1.8 at 1 000; hence the last two
        assert min(errors[-2:]) < 0.6 * before, (before, errors)
    finally:
        torch.set_num_threads(threads)
