"""A small piano-like additive synthesizer, to render scores (the demo's Bach chorales) to stereo audio.

Each note is a sum of partials f_k = k·f0·√(1 + B·k²) (string stiffness makes piano partials slightly
sharp: inharmonicity B grows towards the treble), each decaying exponentially, upper partials faster
and high notes faster than low ones, with two-stage decay (a fast "prompt" and a slow "aftersound"
part), a short hammer thump of filtered noise at the onset, velocity-dependent brightness, and a damper
release when the key is let go. Notes are panned by pitch as on a piano seen from the bench, and a
short decorrelated room reverb widens the stereo image.

Rendering is vectorised with numpy: a note is one ``[partials, samples]`` outer product, and identical
(pitch, length, velocity) notes, which fill chorales, are rendered once and cached.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Note:
    """A key press: ``start``, ``duration`` in seconds, MIDI ``pitch`` (60 = middle C), ``velocity`` 0–1."""

    start: float
    duration: float
    pitch: int
    velocity: float = 0.7


def midi_to_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69) / 12)


RELEASE = 0.12  # seconds of damper decay after the key is released
_VEL_LEVELS = 8  # velocities are quantised to this many steps so notes can be cached
_RINGS: dict[tuple[int, int, int], np.ndarray] = {}  # (pitch, velocity step, rate) -> longest ring so far


def _ring(pitch: int, vel_q: int, L: int, sample_rate: int) -> np.ndarray:
    """Mono waveform of a key held for ``L`` samples (no release): float32 ``[L]``.

    A held note does not depend on how long it will be held, so one ring per (pitch, velocity) serves
    every note: :func:`_render_note` cuts it and applies the damper.
    """
    vel = vel_q / (_VEL_LEVELS - 1)
    f0 = midi_to_hz(pitch)
    t = np.arange(L, dtype=np.float32) / np.float32(sample_rate)
    # inharmonicity grows with pitch (short stiff treble strings)
    B = 1e-4 * 2.0 ** ((pitch - 48) / 12)
    k = np.arange(1, 25, dtype=np.float64)
    fk = k * f0 * np.sqrt(1 + B * k * k)
    keep = fk < 0.45 * sample_rate
    k, fk = k[keep], fk[keep]
    # spectral envelope: softer hits are duller
    slope = 1.6 - 0.8 * vel
    amp = k**-slope * np.exp(-((fk / (2500 + 5000 * vel)) ** 2))
    amp[1::2] *= 0.8  # the hammer strikes near 1/8 of the string: even partials a little weaker
    # decay times: low notes ring longer, upper partials die faster
    t_slow = 6.0 * 2.0 ** (-(pitch - 40) / 18) / (1 + 0.15 * (k - 1))
    t_fast = 0.25 * t_slow
    rng = np.random.default_rng(pitch * 131 + vel_q)
    phase = rng.uniform(0, 2 * np.pi, len(k))
    f32 = np.float32
    env = f32(0.6) * np.exp(-t[None] / t_fast[:, None].astype(f32)) + f32(0.4) * np.exp(
        -t[None] / t_slow[:, None].astype(f32)
    )
    # phase in cycles wrapped per sample before sin, so float32 keeps it exact for long notes
    cyc = np.mod(fk[:, None] * (np.arange(L)[None] / sample_rate), 1.0).astype(f32)
    partials = np.sin(f32(2 * np.pi) * cyc + phase[:, None].astype(f32)) * env
    x = amp.astype(f32) @ partials
    # hammer: 2 ms linear attack and a short low-passed noise thump
    attack = min(L, int(0.002 * sample_rate))
    x[:attack] *= np.linspace(0, 1, attack, endpoint=False)
    n_th = min(L, int(0.03 * sample_rate))
    thump = rng.standard_normal(n_th)
    thump = np.convolve(thump, np.ones(8) / 8, mode="same") * np.exp(-np.arange(n_th) / (0.006 * sample_rate))
    x[:n_th] += 0.08 * vel * thump
    x *= 0.25 * (0.3 + 0.7 * vel) ** 1.5
    return x.astype(np.float32)


def _render_note(pitch: int, n_samples: int, vel_q: int, sample_rate: int) -> np.ndarray:
    """Mono waveform of one note held for ``n_samples`` plus the damper release, float32."""
    n_rel = int(RELEASE * sample_rate)
    L = n_samples + n_rel
    key = (pitch, vel_q, sample_rate)
    ring = _RINGS.get(key)
    if ring is None or len(ring) < L:
        if len(_RINGS) >= 512:
            _RINGS.clear()
        ring = _RINGS[key] = _ring(pitch, vel_q, 1 << max(14, (L - 1).bit_length()), sample_rate)
    x = ring[:L].copy()
    # damper: exponential release after the key is let go
    x[n_samples:] *= np.exp(-np.arange(n_rel) / (0.025 * sample_rate)).astype(np.float32)
    return x


def _room_ir(sample_rate: int, seconds: float, seed: int) -> np.ndarray:
    """A short exponentially decaying noise impulse response (RT60 ≈ ``seconds``), unit direct path."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    tail = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / n) * 0.03
    tail[: int(0.01 * sample_rate)] = 0  # pre-delay
    tail[0] = 1.0
    return tail


def _fft_convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    n = len(x) + len(h) - 1
    size = 1 << (n - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[: len(x)]


def render(
    notes: Iterable[Note], sample_rate: int = 22016, tail: float = 1.0, reverb: float = 0.6
) -> np.ndarray:
    """Render notes to a stereo waveform.

    Args:
        notes: the score; times in seconds.
        sample_rate: output rate in Hz.
        tail: seconds of silence/decay kept after the last note ends.
        reverb: room reverb time in seconds (0 = dry).
    Returns:
        ``[2, T]`` float32, peak-normalised to 0.99 (silent input gives zeros).
    """
    notes = list(notes)
    end = max((n.start + n.duration for n in notes), default=0.0)
    T = int((end + RELEASE + tail) * sample_rate) + 1
    out = np.zeros((2, T), dtype=np.float64)
    for n in notes:
        s = int(round(n.start * sample_rate))
        length = max(1, int(round(n.duration * sample_rate)))
        vq = int(round(np.clip(n.velocity, 0, 1) * (_VEL_LEVELS - 1)))
        x = _render_note(int(n.pitch), length, vq, sample_rate)
        x = x[: T - s]
        # pan by pitch: bass left, treble right (constant power)
        pan = np.clip((n.pitch - 21) / 87, 0, 1) * 0.6 + 0.2
        out[0, s : s + len(x)] += np.cos(pan * np.pi / 2) * x
        out[1, s : s + len(x)] += np.sin(pan * np.pi / 2) * x
    if reverb > 0 and T > 1:
        out = np.stack([_fft_convolve(out[c], _room_ir(sample_rate, reverb, seed=c)) for c in range(2)])
    peak = np.abs(out).max()
    if peak > 0:
        out *= 0.99 / peak
    return out.astype(np.float32)


def random_music(seconds: float, seed: int = 0, sample_rate: int = 22016, tempo: float = 90.0) -> np.ndarray:
    """Tonal four-voice music without a score: diatonic chords in a random major key, one per beat,
    voiced like a chorale (bass, tenor, alto, soprano). ``[2, T]`` float32; for tests and benchmarks."""
    rng = np.random.default_rng(seed)
    key = int(rng.integers(0, 12))
    scale = np.array([0, 2, 4, 5, 7, 9, 11])
    beat = 60.0 / tempo
    notes = []
    n_beats = int(np.ceil(seconds / beat))
    degree = 0
    for b in range(n_beats):
        degree = int(rng.choice([0, 3, 4, 5, 1])) if b % 4 else 0
        triad = [scale[(degree + i) % 7] + 12 * ((degree + i) // 7) for i in (0, 2, 4)]
        bass = 36 + key + triad[0]
        voices = [bass, 48 + key + triad[1], 55 + key + triad[2], 64 + key + triad[int(rng.integers(0, 3))]]
        for v, p in enumerate(voices):
            dur = beat * (2 if (v == 0 and b % 2 == 0) else 1)
            if v == 0 and b % 2:
                continue
            notes.append(Note(b * beat, dur * 0.95, int(p), float(rng.uniform(0.45, 0.8))))
    x = render(notes, sample_rate, tail=0.0)
    return x[:, : int(seconds * sample_rate)]


EXAMPLE_CHORDS = ((48, 60, 64, 67), (43, 59, 62, 67), (45, 60, 64, 69), (41, 60, 65, 69))  # I–V–vi–IV in C
EXAMPLE_MELODY = (76, 74, 72, 74, 76, 76, 76, 74, 74, 76, 79, 79, 76, 74, 72, 74)


def example_score(seconds: float = 8.0) -> list[Note]:
    """Four bars of I–V–vi–IV in C, a whole-bar chord under a melody of quarter notes, in ``seconds``."""
    beat = seconds / 16
    notes = []
    for bar, chord in enumerate(EXAMPLE_CHORDS):
        notes += [Note(bar * 4 * beat, 4 * beat, p, 0.5) for p in chord]
        notes += [Note((bar * 4 + i) * beat, beat, EXAMPLE_MELODY[bar * 4 + i], 0.7) for i in range(4)]
    return notes


def example_signal(seconds: float = 8.0, sample_rate: int = 22016) -> np.ndarray:
    """The built-in example (``mp3net analyze --example``): :func:`example_score` rendered, cut to
    ``seconds``. ``[2, seconds·sample_rate]`` float32, peak 0.9, deterministic."""
    x = render(example_score(seconds), sample_rate, tail=0.0)[:, : int(seconds * sample_rate)]
    return (0.9 * x / np.abs(x).max()).astype(np.float32)
