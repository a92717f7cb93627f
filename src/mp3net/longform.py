"""Long-form measures: whether tracks of 30 s and more hang together like the music they learnt from
(`mp3net evaluate --long`, docs/long-tracks.md#long-form-measures).

`mp3net evaluate` compares 3 s clips; what makes a minute of music is above them: a key that holds, chords
that move at a pace, phrases that come back, and no machine beat. Each measure is computed per track on the
mono mix and averaged over the tracks:

- **key clarity**: in 8 s windows (1 s apart), the best correlation of the window's chroma with the 24
  Krumhansl-Kessler key profiles; the mean over windows (a clear key: ≈ 0.8, an even spread of pitch
  classes: ≈ 0).
- **key hold**: how long (s) that best key stays the same around a moment of the track, on average.
- **harmonic rhythm**: how far the chroma moves from one half second to the next, 1 − the correlation of
  the two chroma vectors, averaged over the track (a drone: 0).
- **self-similarity 4–16 s**: the chroma's mean correlation at lags of 4 to 16 s, and **repetition**,
  the highest of those lags' similarities above their median (phrases that come back after a fixed time).
- **pulse**: the spectral flux's autocorrelation at the anchors' spacing (and twice and three times it): a
  sound event every clip length scores near 1, music without a period there near 0.

How each behaves on reals, noise, drones and independent clips laid end to end: docs/evaluation.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

CHROMA_STEP = 0.5  # s: one chroma vector per half second
CHROMA_WINDOW = 0.37  # s: the STFT window under it (≥ 4 bins per semitone from 110 Hz at any rate)
CHROMA_FLOOR_DB = 50.0  # half seconds quieter than this below the track's loudest count as silence
KEY_WINDOW = 8.0  # s: chroma averaged over this to name a key
KEY_STEP = 1.0  # s: between key windows
LAGS = (4.0, 16.0)  # s: the self-similarity lags (phrases)
FLUX_STEP = 0.02  # s: the spectral flux's hop
FLUX_FLOOR_DB = 60.0  # levels further below the track's loudest bin count as this floor
PULSE_MULTIPLES = 3  # the pulse looks at 1, 2 and 3 times the anchors' spacing

# Krumhansl & Kessler (1982) probe-tone profiles, tonic first
MAJOR = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
MINOR = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)


def _mono(audio: torch.Tensor) -> torch.Tensor:
    """``[C, T]`` or ``[T]`` → ``[T]`` float64."""
    x = audio.double()
    return x.mean(0) if x.dim() == 2 else x


def chroma(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """``[C, T]`` → one chroma vector per ``CHROMA_STEP`` ``[F, 12]``, each the pitch classes' share of
    its energy (rows sum to 1); silent half seconds (``CHROMA_FLOOR_DB``) are rows of zeros."""
    from mp3net.evaluate import _chroma_matrix

    x = _mono(audio)
    n_fft = 1 << math.ceil(math.log2(CHROMA_WINDOW * sample_rate))
    per_step = 4  # STFT frames averaged into one chroma vector
    hop = max(1, round(CHROMA_STEP * sample_rate / per_step))
    if x.shape[-1] < n_fft:
        return torch.zeros(0, 12, dtype=torch.float64)
    win = torch.hann_window(n_fft, dtype=torch.float64)
    P = torch.stft(x, n_fft, hop, window=win, center=False, return_complex=True).abs().square().T  # [N, bins]
    n = P.shape[0] // per_step
    P = P[: n * per_step].reshape(n, per_step, -1).mean(1)
    c = P @ _chroma_matrix(n_fft, sample_rate)  # [F, 12]
    energy = c.sum(1)
    loud = energy > energy.max() * 10 ** (-CHROMA_FLOOR_DB / 10) if n else energy > 0
    return torch.where(loud[:, None], c / energy.clamp_min(1e-30)[:, None], torch.zeros_like(c))


def _profiles() -> torch.Tensor:
    """The 24 key profiles ``[24, 12]``, centred and unit-norm (a dot product is a Pearson correlation)."""
    rows = [torch.tensor(p, dtype=torch.float64).roll(k) for p in (MAJOR, MINOR) for k in range(12)]
    P = torch.stack(rows)
    P = P - P.mean(1, keepdim=True)
    return P / P.norm(dim=1, keepdim=True)


def key_windows(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Chroma ``[F, 12]`` → (clarity ``[W]``, key ``[W]`` in 0..23) of its ``KEY_WINDOW`` windows every
    ``KEY_STEP``; windows without sound are left out."""
    size, step = round(KEY_WINDOW / CHROMA_STEP), round(KEY_STEP / CHROMA_STEP)
    if c.shape[0] < size:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.long)
    w = c.unfold(0, size, step).mean(-1)  # [W, 12]
    w = w[w.sum(1) > 0]
    w = w - w.mean(1, keepdim=True)
    r = (w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)) @ _profiles().T  # [W, 24]
    clarity, key = r.max(1)
    return clarity, key


def key_hold(keys: torch.Tensor) -> float:
    """How long a key holds, in seconds: the length of the stretch of equal keys (windows ``KEY_STEP``
    apart) that a window lies in, averaged over the windows, so that the brief keys of a window straddling
    a modulation count little."""
    if keys.numel() == 0:
        return math.nan
    runs = torch.unique_consecutive(keys, return_counts=True)[1].double()
    return float((runs.square().sum() / runs.sum()) * KEY_STEP)


def _cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise correlation of ``[N, 12]`` pairs where both rows sound (others dropped): the cosine of the
    vectors less their mean, so that pitch classes sounding alike (noise) are not alike chords."""
    ok = (a.sum(1) > 0) & (b.sum(1) > 0)
    a, b = a[ok] - a[ok].mean(1, keepdim=True), b[ok] - b[ok].mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)


def harmonic_rhythm(c: torch.Tensor) -> float:
    """Mean 1 − correlation of successive chroma vectors ``[F, 12]``."""
    cos = _cosines(c[:-1], c[1:])
    return float((1 - cos).mean()) if cos.numel() else math.nan


def lag_similarity(c: torch.Tensor) -> torch.Tensor:
    """The chroma's mean correlation at every lag of ``LAGS`` ``[L]`` (NaN where the track is too
    short for a lag)."""
    lo, hi = (round(s / CHROMA_STEP) for s in LAGS)
    out = []
    for lag in range(lo, hi + 1):
        cos = _cosines(c[:-lag], c[lag:]) if c.shape[0] > lag else torch.zeros(0)
        out.append(float(cos.mean()) if cos.numel() else math.nan)
    return torch.tensor(out, dtype=torch.float64)


def spectral_flux(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """``[C, T]`` → the rise of the log spectrum every ``FLUX_STEP`` ``[N]``, summed over bins."""
    x = _mono(audio)
    hop = max(1, round(FLUX_STEP * sample_rate))
    n_fft = 1 << math.ceil(math.log2(4 * hop))
    if x.shape[-1] < n_fft + hop:
        return torch.zeros(0, dtype=torch.float64)
    win = torch.hann_window(n_fft, dtype=torch.float64)
    S = torch.stft(x, n_fft, hop, window=win, center=False, return_complex=True).abs()
    floor = float(S.square().max().clamp_min(1e-30)) * 10 ** (-FLUX_FLOOR_DB / 10)
    L = torch.log(S.square() + floor)  # leakage far below the music does not count as events
    return (L[:, 1:] - L[:, :-1]).clamp_min(0).sum(0)


def pulse(audio: torch.Tensor, sample_rate: int, period: float) -> float:
    """How much the spectral flux repeats every ``period`` seconds: its autocorrelation (the flux less its
    mean, over its variance) at 1, 2 and 3 times the period, averaged over the multiples the track holds
    twice; NaN when it holds none. Flux that never changes (a drone) has none: 0."""
    f = spectral_flux(audio, sample_rate)
    lags = [round(k * period / FLUX_STEP) for k in range(1, PULSE_MULTIPLES + 1)]
    lags = [lag for lag in lags if 0 < lag <= f.numel() // 2]
    if not lags:
        return math.nan
    f = f - f.mean()
    if float(f.std()) <= 1e-9 * float(f.abs().max().clamp_min(1e-30)) or float(f.std()) == 0:
        return 0.0
    f = f / f.std()
    return float(np.mean([float((f[:-lag] * f[lag:]).mean()) for lag in lags]))


@dataclass
class TrackMeasures:
    """The long-form measures of one track (module docstring)."""

    key_clarity: float
    key_hold: float
    harmonic_rhythm: float
    self_similarity: float
    repetition: float
    pulse: float


def track_measures(audio: torch.Tensor, sample_rate: int, period: float) -> TrackMeasures:
    """The measures of one track ``[C, T]``; ``period``: the anchors' spacing in seconds."""
    c = chroma(audio, sample_rate)
    clarity, keys = key_windows(c)
    S = lag_similarity(c)
    S = S[~S.isnan()]
    return TrackMeasures(
        key_clarity=float(clarity.mean()) if clarity.numel() else math.nan,
        key_hold=key_hold(keys),
        harmonic_rhythm=harmonic_rhythm(c),
        self_similarity=float(S.mean()) if S.numel() else math.nan,
        repetition=float(S.max() - S.median()) if S.numel() else math.nan,
        pulse=pulse(audio, sample_rate, period),
    )


MEASURES = tuple(TrackMeasures.__dataclass_fields__)
LABELS = {
    "key_clarity": "key clarity (best key-profile correlation, 8 s windows)",
    "key_hold": "key hold (s)",
    "harmonic_rhythm": "harmonic rhythm (chroma change per 0.5 s)",
    "self_similarity": "chroma self-similarity at 4-16 s",
    "repetition": "repetition (best 4-16 s lag above their median)",
    "pulse": "pulse at the anchors' spacing",
}


def mean_measures(tracks: Sequence[torch.Tensor], sample_rate: int, period: float) -> dict[str, float]:
    """Every measure's mean over ``tracks`` (NaNs left out)."""
    rows = [asdict(track_measures(t, sample_rate, period)) for t in tracks]
    return {k: float(np.nanmean([r[k] for r in rows])) if rows else math.nan for k in MEASURES}


@dataclass
class LongReport:
    """Real and generated tracks' measures (:func:`mean_measures`) and what was compared."""

    real: dict[str, float]
    fake: dict[str, float]
    n_real: int
    n_fake: int
    seconds: float
    period: float

    def table(self) -> str:
        lines = [
            f"{self.n_fake} generated and {self.n_real} real tracks of {self.seconds:.0f} s "
            f"(anchors every {self.period:.2f} s)",
            f"{'measure':<52} {'generated':>10} {'real':>10} {'ratio':>7}",
        ]
        for k in MEASURES:
            f, r = self.fake[k], self.real[k]
            ratio = f / r if r and math.isfinite(r) and abs(r) > 1e-9 else math.nan
            lines.append(f"{LABELS[k]:<52} {f:>10.3f} {r:>10.3f} {ratio:>7.2f}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def load_real_excerpts(
    data: str | Path, n: int, seconds: float, sample_rate: int, channels: int
) -> list[torch.Tensor]:
    """Up to ``n`` real excerpts ``[C, T]`` of ``seconds``, one from the start of each track at least that
    long (chosen with a fixed seed) of a prepared dataset or a folder of audio files, at ``sample_rate`` and
    ``channels``; a one-line error when no track is long enough."""
    from mp3net.audio import load_audio, resample, to_channels
    from mp3net.data import MANIFEST, ClipDataset, find_audio_files, load_manifest
    from mp3net.evaluate import _pick
    from mp3net.utils import MP3NetError

    root, want = Path(data), round(seconds * sample_rate)
    excerpts: list[np.ndarray] = []
    if (root / MANIFEST).exists():
        m = load_manifest(root)
        sr, ch = int(m["sample_rate"]), int(m["channels"])
        raw = math.ceil(seconds * sr)
        total = len(m["tracks"])
        if any(int(t["frames"]) >= raw for t in m["tracks"]):
            ds = ClipDataset(root, raw, sr, ch)  # its tracks: those at least an excerpt long
            for t in _pick(len(ds.tracks), n, 0):
                x = ds[ds.first_clip(t)].numpy()
                excerpts.append(resample(x, sr, sample_rate) if sr != sample_rate else x)
    elif root.is_dir():
        files = find_audio_files(root)
        for f in files:
            x, _ = load_audio(f, sample_rate=sample_rate, allow_silent=True)
            if x.shape[-1] >= want:
                excerpts.append(x)
        excerpts = [excerpts[i] for i in _pick(len(excerpts), n, 0)]
        total = len(files)
    else:
        raise MP3NetError(f"real data {root} is neither a prepared dataset nor a folder of audio files")
    if not excerpts:
        raise MP3NetError(
            f"none of the {total} tracks of {root} is {seconds:g} s long: choose a shorter --duration"
        )
    return [torch.from_numpy(np.ascontiguousarray(to_channels(x, channels)[:, :want])) for x in excerpts]


def evaluate_long(
    real: str | Path,
    fake: str | Path,
    n: int = 16,
    seconds: float = 30.0,
    sequence: str = "auto",
    device: str | None = None,
    progress: bool = False,
) -> LongReport:
    """``n`` tracks of ``seconds`` from the model ``fake`` (seeds 0..n−1, ``sequence`` as
    :func:`mp3net.generate.generate` takes it) against up to ``n`` real excerpts of the same length from
    ``real``, measured alike (:func:`mean_measures`) at the model's anchor spacing (its clip length)."""
    from mp3net import generate as gen

    G, cfg = gen.load_generator(fake, device)
    period = cfg.model.clip_samples / cfg.model.sample_rate
    fakes, sr = gen.generate(G, list(range(n)), duration=seconds, sequence=sequence, progress=progress)
    reals = load_real_excerpts(real, n, seconds, sr, cfg.model.channels)
    return LongReport(
        real=mean_measures(reals, sr, period),
        fake=mean_measures(list(fakes), sr, period),
        n_real=len(reals),
        n_fake=len(fakes),
        seconds=seconds,
        period=period,
    )
