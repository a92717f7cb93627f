"""Long-form measures (mp3net evaluate --long): each separates a progression from a drone and from the same
progression cut into shuffled pieces, and the pulse finds an event every anchor spacing."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mp3net import longform as lf
from mp3net.cli import main as cli_main

SR = 11008


def _tones(freqs: list[float], seconds: float) -> torch.Tensor:
    """Partials (and two overtones each) for ``seconds``, with 20 ms fades."""
    t = torch.arange(int(seconds * SR), dtype=torch.float64) / SR
    x = sum(0.5**h * torch.sin(2 * math.pi * f * (h + 1) * t) for f in freqs for h in range(3))
    return x * (t * 50).clamp(max=1) * ((seconds - t) * 50).clamp(max=1)


def _triad(root: int) -> list[float]:
    return [440 * 2 ** ((root + k - 69) / 12) for k in (0, 4, 7)]


def progression(seconds: float = 48.0, seed: int = 0) -> torch.Tensor:
    """I-IV-V-I in C, then F♯, then E♭ (16 s each), chords of 0.5-1.5 s: ``[1, T]``."""
    g = torch.Generator().manual_seed(seed)
    parts, t, i = [], 0.0, 0
    while t < seconds:
        d = 0.5 + float(torch.rand(1, generator=g))
        key = (60, 66, 63)[int(t // 16) % 3]
        parts.append(_tones(_triad(key + (0, 5, 7, 0)[i % 4]), d))
        t, i = t + d, i + 1
    return 0.1 * torch.cat(parts)[None, : int(seconds * SR)]


def shuffled(x: torch.Tensor, piece: float = 1.0) -> torch.Tensor:
    n = int(piece * SR)
    order = torch.randperm(x.shape[-1] // n, generator=torch.Generator().manual_seed(1)).tolist()
    return torch.cat([x[..., i * n : (i + 1) * n] for i in order], -1)


def test_each_measure_separates_a_progression_from_a_drone_and_from_shuffled_pieces():
    prog = lf.track_measures(progression(), SR, 3.0)
    drone = lf.track_measures(0.1 * _tones([261.6], 48.0)[None], SR, 3.0)
    mixed = lf.track_measures(shuffled(progression()), SR, 3.0)
    assert prog.key_clarity > 0.85 and prog.key_clarity > max(drone.key_clarity, mixed.key_clarity) + 0.1
    assert drone.key_hold > 35 and 9 < prog.key_hold < 17 and mixed.key_hold < 0.5 * prog.key_hold
    assert drone.harmonic_rhythm < 0.01 < 0.2 < prog.harmonic_rhythm < mixed.harmonic_rhythm - 0.1
    assert drone.self_similarity > 0.99 and prog.self_similarity > mixed.self_similarity + 0.05
    assert prog.repetition > 0.25 and max(drone.repetition, mixed.repetition) < 0.15


def test_the_pulse_finds_an_event_every_anchor_spacing():
    x = progression()
    clicked = x.clone()
    g = torch.Generator().manual_seed(3)
    for a in range(0, x.shape[-1], 3 * SR):  # a burst of noise every 3 s
        clicked[..., a : a + 200] += 0.3 * torch.randn(200, generator=g, dtype=torch.float64)
    assert lf.pulse(clicked, SR, 3.0) > 0.6
    assert abs(lf.pulse(x, SR, 3.0)) < 0.1  # chords of random lengths: no period
    assert lf.pulse(0.1 * _tones([261.6], 48.0)[None], SR, 3.0) == pytest.approx(0.0, abs=0.05)
    assert math.isnan(lf.pulse(x[..., : 5 * SR], SR, 3.0))  # not two periods long


def test_evaluate_long_compares_a_model_with_real_excerpts(tmp_path, capsys):
    """On the shipped model and real excerpts of a prepared dataset made here (long enough for 12 s)."""
    import soundfile as sf

    from mp3net.config import preset
    from mp3net.data import prepare

    m = preset("laptop").model
    src = tmp_path / "src"
    src.mkdir()
    for k in range(3):
        sf.write(src / f"p{k}.wav", progression(14.0, seed=k)[0].numpy(), SR)
    sf.write(src / "short.wav", progression(5.0)[0].numpy(), SR)
    prepare(src, tmp_path / "ds", m.sample_rate, m.channels, m.clip_samples, progress=False)
    out = tmp_path / "long.json"
    args = ["evaluate", "--long", "--real", str(tmp_path / "ds"), "--fake", "pretrained", "-q"]
    assert cli_main(args + ["--n", "2", "--duration", "12", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["n_fake"] == 2 and report["n_real"] == 2 and report["seconds"] == 12
    assert report["real"]["key_clarity"] > 0.7  # the progression's keys
    assert set(report["fake"]) == set(lf.MEASURES)
    assert "pulse at the anchors' spacing" in capsys.readouterr().out
    assert cli_main(args + ["--duration", "20"]) == 1  # no real track is 20 s long
    assert "choose a shorter --duration" in capsys.readouterr().err
    assert cli_main(args + ["--duration", "5"]) == 1
    assert "at least 10 s" in capsys.readouterr().err
