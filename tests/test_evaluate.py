"""mp3net.evaluate: Fréchet math, response to degradation, tonality, memorisation, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg
import soundfile as sf
import torch

from mp3net import evaluate as E
from mp3net.cli import main
from mp3net.synth import random_music

SR = 11008
CLIP = 3.0


@pytest.fixture(scope="module")
def music() -> list[torch.Tensor]:
    """32 clips of tonal four-voice piano music, 3 s each, in random keys."""
    return [torch.from_numpy(random_music(CLIP, seed=i, sample_rate=SR)) for i in range(32)]


@pytest.fixture(scope="module")
def feats(music):
    return E.clip_features(music, SR)


def _scipy_fd(mu1, s1, mu2, s2) -> float:
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


@pytest.mark.parametrize("rank", [12, 5])
def test_frechet_matches_scipy(rank):
    rng = np.random.default_rng(rank)
    d = 12
    A, B = rng.normal(size=(d, rank)), rng.normal(size=(d, d))
    s1, s2 = A @ A.T, B @ B.T + 0.1 * np.eye(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    ours = E.frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(_scipy_fd(mu1, s1, mu2, s2), rel=1e-6, abs=1e-8)
    assert abs(E.frechet_distance(mu1, s1, mu1, s1)) < 1e-7 * np.trace(s1) * d
    assert ours > 0


def test_features_shape_and_names(music):
    f = E.window_features(music[0], SR)
    assert f.shape[1] == E.N_FEATURES == len(E.FEATURE_NAMES)
    assert f.shape[0] >= 10 and torch.isfinite(f).all()
    mono = E.window_features(music[0][:1], SR)
    assert mono.shape == f.shape


def _noisy(c: torch.Tensor, snr_db: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return c + torch.randn(c.shape, generator=g) * torch.sqrt(c.pow(2).mean() / 10 ** (snr_db / 10))


def _lowpass(c: torch.Tensor, cutoff: float) -> torch.Tensor:
    X = torch.fft.rfft(c)
    X[..., torch.fft.rfftfreq(c.shape[-1], 1 / SR) > cutoff] = 0
    return torch.fft.irfft(X, c.shape[-1])


def _shuffle(c: torch.Tensor, frac: float, seg: int = 512) -> torch.Tensor:
    """Swap a fraction of 46 ms segments among themselves."""
    n = c.shape[-1] // seg
    x = c[:, : n * seg].reshape(c.shape[0], n, seg).clone()
    g = torch.Generator().manual_seed(0)
    k = int(round(frac * n))
    idx = torch.randperm(n, generator=g)[:k]
    x[:, idx] = x[:, idx[torch.randperm(k, generator=g)]]
    return x.reshape(c.shape[0], -1)


@pytest.mark.parametrize(
    "degrade, levels",
    [(_noisy, [30, 20, 10, 0]), (_lowpass, [4000, 2000, 1000, 500]), (_shuffle, [0.1, 0.3, 0.6, 1.0])],
    ids=["noise", "lowpass", "shuffle"],
)
def test_distance_grows_with_degradation(music, feats, degrade, levels):
    ref, test = feats[:16], music[16:]
    halves = E.feature_distance(ref, feats[16:])
    d = [E.feature_distance(ref, E.clip_features([degrade(c, lv) for c in test], SR)) for lv in levels]
    assert all(a < b for a, b in zip(d, d[1:], strict=False)), d
    assert halves < d[0], (halves, d)


def test_two_halves_near_zero(feats, music):
    halves = E.feature_distance(feats[:16], feats[16:])
    noise20 = E.feature_distance(feats[:16], E.clip_features([_noisy(c, 20) for c in music[16:]], SR))
    assert abs(halves) < 0.1 * noise20
    # without the finite-sample correction the same halves look much further apart
    assert E.feature_distance(feats[:16], feats[16:], extrapolate=False) > abs(halves)


def test_tonality_of_music_above_noise(music):
    g = torch.Generator().manual_seed(0)
    noise = [0.1 * torch.randn(2, int(CLIP * SR), generator=g) for _ in range(4)]
    t = torch.arange(int(CLIP * SR)) / SR
    sine = [0.5 * torch.sin(2 * torch.pi * 441.0 * t).repeat(2, 1)]
    tm, tn, ts = E.mean_tonality(music[:8], SR), E.mean_tonality(noise, SR), E.mean_tonality(sine, SR)
    assert tn < 0.15 < tm < ts
    assert ts > 0.8
    # both sides through the same noise layer: order kept
    assert E.mean_tonality(noise, SR, noised=True) < E.mean_tonality(music[:8], SR, noised=True)


def test_tonality_by_range_finds_where_the_tone_is():
    """A tone in one quarter of the band over noise low-passed out of it: only that quarter is tonal."""
    g = torch.Generator().manual_seed(0)
    n = int(CLIP * SR)
    t = torch.arange(n) / SR
    noise = 0.05 * torch.randn(2, n, generator=g)
    spec = torch.fft.rfft(noise)
    cut = spec.shape[-1] // 2
    low_noise = torch.fft.irfft(torch.cat([spec[..., :cut], 0 * spec[..., cut:]], -1), n)
    high_noise = noise - low_noise
    tone_high = 0.5 * torch.sin(2 * torch.pi * 0.43 * SR * t).repeat(2, 1)  # in the top quarter
    tone_low = 0.5 * torch.sin(2 * torch.pi * 0.07 * SR * t).repeat(2, 1)  # in the bottom quarter
    high = E.tonality_by_range([low_noise + tone_high], SR)
    low = E.tonality_by_range([high_noise + tone_low], SR)
    assert len(high) == len(low) == 4
    assert high[3] > 0.5 and max(high[:2]) < 0.2, high
    assert low[0] > 0.5 and max(low[2:]) < 0.2, low
    # one range is the full-band mean
    clips = [low_noise + tone_high, high_noise + tone_low]
    assert E.tonality_by_range(clips, SR, n_ranges=1)[0] == pytest.approx(E.mean_tonality(clips, SR))


def test_spectral_flux_tells_held_chords_from_noise(music):
    """Chords held and changed (the synth's music) have a sharp onset contrast; noise has none, a chord held
    for the whole clip changes little and has none either; noise laid over the music blurs its onsets."""
    g = torch.Generator().manual_seed(0)
    noise = [torch.randn(c.shape, generator=g) * 0.1 for c in music[:8]]
    t = torch.arange(int(CLIP * SR)) / SR
    chord = 0.1 * sum(torch.sin(2 * torch.pi * f * t) for f in (220.0, 277.2, 329.6, 440.0))
    held = [torch.stack([chord, chord])] * 4
    music_flux, music_onsets = E.spectral_flux(music[:8], SR)
    noise_flux, noise_onsets = E.spectral_flux(noise, SR)
    held_flux, held_onsets = E.spectral_flux(held, SR)
    assert music_onsets > 4 and noise_onsets < 1.5 and held_onsets < 2
    assert held_flux < 0.5 < music_flux
    blurred = [E.spectral_flux([_noisy(c, snr) for c in music[:8]], SR)[1] for snr in (20, 10)]
    assert music_onsets > blurred[0] > blurred[1] > noise_onsets


def test_valley_depth_tells_sustained_partials_from_noise_and_flicker(music):
    """A held note has deep valleys between its partials; noise has shallow ones, and so have tones that
    hop to new pitches every frame (each frame peaky, the pooled spectrum flat)."""
    g = torch.Generator().manual_seed(0)
    noise = [torch.randn(c.shape, generator=g) * 0.1 for c in music[:8]]
    t = torch.arange(int(CLIP * SR)) / SR
    note = sum(0.05 / k * torch.sin(2 * torch.pi * k * 330.0 * t) for k in range(1, 16))  # 15 partials
    frame = E.analysis_bands(SR)
    hopping = sum(  # 12 tones, each at a new random pitch every frame
        0.05 * torch.sin(2 * torch.pi * torch.cumsum(f.repeat_interleave(frame)[: len(t)], 0) / SR)
        for f in 200 + 4000 * torch.rand(12, len(t) // frame + 1, generator=g)
    )
    depth = {
        name: E.valley_depth(clips, SR)
        for name, clips in {
            "note": [torch.stack([note, note])] * 2,
            "noise": noise,
            "hopping": [torch.stack([hopping, hopping])] * 2,
        }.items()
    }
    assert depth["note"] > 8 and depth["noise"] < 2.5 and depth["hopping"] < 4, depth


def test_partial_spread_tells_music_in_many_keys_from_one_chord_and_from_noise(music):
    """Clips of music in random keys differ in their partials; one chord at many levels, and noise, do not."""
    g = torch.Generator().manual_seed(0)
    t = torch.arange(int(CLIP * SR)) / SR
    chord = sum(0.03 * torch.sin(2 * torch.pi * f * t) for f in (220.0, 277.2, 329.6, 440.0))
    same = [torch.stack([chord, chord]) * 10 ** (-db / 20) for db in range(0, 24, 3)]
    noise = [torch.randn(c.shape, generator=g) * 0.1 for c in music[:8]]
    spread = {
        "music": E.partial_spread(music[:8], SR),
        "one chord": E.partial_spread(same, SR),
        "noise": E.partial_spread(noise, SR),
    }
    assert spread["music"] > 3 and spread["one chord"] < 0.5 and spread["noise"] < 1, spread
    assert np.isnan(E.partial_spread(music[:1], SR))


def test_lines_held_by_every_clip_count_a_drone_under_music_not_the_music(music):
    """Music in random keys holds few lines in all of 8 clips; the same music with one drone under every clip
    holds the drone's partials in all of them; noise holds none."""
    t = torch.arange(music[0].shape[-1]) / SR
    drone = sum(0.05 * torch.sin(2 * torch.pi * f * t) for f in (233.0, 466.0, 699.0, 1165.0))
    droned = [c + drone for c in music[:8]]
    g = torch.Generator().manual_seed(0)
    noise = [torch.randn(c.shape, generator=g) * 0.1 for c in music[:8]]
    held = {
        "music": E.lines_held_by_every_clip(music[:8], SR),
        "droned": E.lines_held_by_every_clip(droned, SR),
        "noise": E.lines_held_by_every_clip(noise, SR),
    }
    assert held["music"] <= 2 and held["droned"] >= held["music"] + 3 and held["noise"] == 0, held
    assert np.isnan(E.lines_held_by_every_clip(music[:1], SR))


def test_memorisation_flags_copies(feats):
    real = feats[:24]
    copies = E.memorisation(real, real[:8])
    fresh = E.memorisation(real, feats[24:])
    assert copies["ratio"] == pytest.approx(0.0, abs=1e-9)
    assert copies["fake_share_below_real_p5"] == 1.0
    assert 0.5 < fresh["ratio"] < 3.0
    assert fresh["fake_share_below_real_p5"] < 0.5


def test_evaluate_cli_on_folders(tmp_path, music, capsys):
    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir()
    fake.mkdir()
    for i, c in enumerate(music[:12]):
        sf.write(real / f"r{i}.wav", c.numpy().T, SR)
    for i, c in enumerate(music[12:18]):
        sf.write(fake / f"f{i}.flac", _noisy(c, 10).numpy().T, SR)
    out = tmp_path / "m.json"
    assert (
        main(["evaluate", "--real", str(real), "--fake", str(fake), "--n", "8", "--json", str(out), "-q"])
        == 0
    )
    text = capsys.readouterr().out
    rows = (
        "tonality, un-noised MDCT",
        "within 0.0–",
        "Fréchet feature distance",
        "memorisation ratio",
        "onset",
    )
    for row in rows:
        assert row in text
    m = json.loads(out.read_text())
    assert m["n_real"] == 8 and m["n_fake"] == 6 and m["sample_rate"] == SR
    assert m["tonality_fake"] < m["tonality_real"]
    assert len(m["tonality_fake_by_range"]) == len(m["tonality_real_by_range"]) == 4
    assert m["fd"] > m["fd_real_halves"]
    assert m["onset_contrast_fake"] < m["onset_contrast_real"]  # the fakes are the music under noise


def test_evaluate_cli_bad_input(tmp_path, capsys):
    assert main(["evaluate", "--real", str(tmp_path / "nope"), "--fake", str(tmp_path), "--json", "-"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mp3net evaluate: error:") and "\n" not in err


def test_headline_takes_the_bark_error_in_absolute_value():
    from mp3net.evaluate import EvalReport

    rep = EvalReport(
        sample_rate=11008, n_real=2, n_fake=2, clip_seconds=3.0, tonality_real=0.4, tonality_fake=0.3,
        tonality_real_noised=0.3, tonality_fake_noised=0.2, fd=12.0, fd_real_halves=1.0, fd_plain=13.0,
        bark_db_real=[-30.0, -40.0, -50.0], bark_db_fake=[-31.0, -36.0, -50.0], hum_real=1.0, hum_fake=10.0,
    )  # fmt: skip
    head = rep.headline()
    assert head["bark_err_max_db"] == pytest.approx(4.0) and head["bark_err_mean_db"] == pytest.approx(5 / 3)
    assert (head["fd"], head["tonality_fake"], head["tonality_real"]) == (12.0, 0.3, 0.4)
    assert head["hum_db"] == pytest.approx(10.0)
