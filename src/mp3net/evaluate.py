"""Compare generated and real audio: tonality, a Fréchet distance on hand-made audio features, memorisation.

Everything here works on waveforms ``[C, T]`` at one sample rate, and reals and fakes go through exactly
the same path (the original compared un-noised fakes with noised reals; we do not):

* **Tonality** (paper eq. 13, the paper's figure-5 metric): the un-noised MDCT of the waveform with
  86 Hz bands (N = sample_rate / 172, the paper's band width), τ per frame and channel, averaged over
  frames, channels and clips. The same tonality after the noise layer (docs/psychoacoustics.md#noise-layer,
  its default σ, a fixed noise seed) is reported beside it, again for both sides alike, and so is τ within
  each quarter of the bins (:func:`tonality_by_range`): one flatness over all bins cannot tell a noise floor
  where the reals are nearly silent from missing partials.

* **Fréchet audio-feature distance (FD)**: no embedding network can be downloaded here, so each
  clip is cut into half-overlapping windows of ``WINDOW_FRAMES`` MDCT frames (≈0.37 s) and each window
  is described by a 67-dimensional vector:

  ====================  ====  ======================================================================
  feature               dims  what it captures
  ====================  ====  ======================================================================
  band level mean         24  mean over frames of log10 Bark-band intensity (timbre, spectral balance)
  band level std          24  std over frames of the same (dynamics, note attacks and decays per band)
  chroma                  12  pitch-class energy share from a long-window spectrum (harmony)
  spectral flux            3  mean, std and lag-1 autocorrelation of the onset strength (positive
                              frame-to-frame increase of the log band levels; rhythm, continuity)
  tonality                 2  mean and std of τ over frames (tones vs noise)
  stereo width             1  log10 of side / mid energy
  loudness                 1  log10 of the window's total MDCT intensity
  ====================  ====  ======================================================================

  Features are standardised per dimension with the mean and std of the **reference** (real) windows,
  then FD = ‖μ_r − μ_f‖² + Tr(Σ_r + Σ_f − 2(Σ_r Σ_f)^½) (Heusel et al. 2017) on the windows, its
  finite-sample bias removed by extrapolating FD over random subsets of clips to infinitely many clips
  (FD∞, Chong & Forsyth 2020; the plain value is in the JSON as ``fd_plain``). It grows monotonically with
  added noise, low-pass filtering and time-shuffled frames and is ≈0 for two halves of one set of real
  clips (``tests/test_evaluate.py``). The table reports that real-halves distance as the noise floor:
  with few clips (tens) per side, differences between pieces (keys, tempi) keep it well above 0.

* **Memorisation**: each clip is summarised by the mean of its standardised window features; for every
  fake clip the Euclidean distance to its nearest real clip is compared with the real clips'
  leave-one-out nearest-neighbour distances. A ratio well below 1, or many fakes closer to a real clip
  than almost any two reals are to each other, means copies of the training set.

* **Partial spread** (:func:`partial_spread`): how much the partials differ from clip to clip, the mean
  over pairs of clips of the difference of their :func:`~mp3net.dsp.spectral.spectral_detail` (the
  time-averaged long-window log spectrum minus its envelope; docs/experiments.md#2026-12-05-mode-seeking).
  Real chords differ from clip to clip; partials drawn at the same frequencies whatever the latent, and
  noise, which has none, give a small spread.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mp3net.dsp import PsychoacousticModel, mdct, pooled_level_change, pooled_level_contrast, tonality
from mp3net.dsp.spectral import audio_log_spectrogram, mid_side, spectral_detail
from mp3net.model import NoiseLayer


def _single_thread(fn: Callable) -> Callable:
    """Run on one thread: these small tensors gain nothing from threads, and on a busy machine
    oversubscribed thread pools made them 10-20x slower."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        n = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(n)

    return wrapper


WINDOW_FRAMES = 64  # MDCT frames per feature window: 0.37 s at the paper's 172 frames/s
WINDOW_HOP = 32  # windows overlap by half: more windows per clip for the covariance estimate
FEATURE_NAMES = (
    [f"band{j}_mean" for j in range(24)]
    + [f"band{j}_std" for j in range(24)]
    + [f"chroma{j}" for j in range(12)]
    + ["flux_mean", "flux_std", "flux_ac1", "tonality_mean", "tonality_std", "stereo_width", "loudness"]
)
N_FEATURES = len(FEATURE_NAMES)
_LOG_FLOOR = 1e-10  # intensity floor for log levels: -20 dB re |A| = 1 ↔ 120 dB is 1e-14; 1e-10 is 20 dB SPL


def analysis_bands(sample_rate: int) -> int:
    """N for analysis: the paper's 86 Hz band width (172 blocks/s), rounded to an even number ≥ 16."""
    return max(16, 2 * round(sample_rate / 172 / 2))


def _pad_to_multiple(x: torch.Tensor, n: int) -> torch.Tensor:
    return torch.nn.functional.pad(x, (0, (-x.shape[-1]) % n))


def clip_mdct(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """``[C, T]`` waveform → ``[C, F, N]`` un-noised MDCT amplitudes with 86 Hz bands (float64)."""
    n = analysis_bands(sample_rate)
    return mdct(_pad_to_multiple(audio.to(torch.float64), n), n)


# ---------------------------------------------------------------------------------------------------
# tonality


def _range_means(
    clips: Sequence[torch.Tensor], sample_rate: int, n_ranges: int, noise: NoiseLayer | None, seed: int
) -> list[float]:
    """Mean τ over clips, frames and channels within each of ``n_ranges`` equal parts of the bins (low to
    high), of un-noised or ``noise``-layered MDCTs; frames digitally silent within a range are left out."""
    edges = np.linspace(0, analysis_bands(sample_rate), n_ranges + 1).round().astype(int)
    gen = torch.Generator().manual_seed(seed)
    totals, counts = np.zeros(n_ranges), np.zeros(n_ranges)
    for clip in clips:
        A = clip_mdct(clip, sample_rate)
        if noise is not None:
            A = noise(A, generator=gen)
        for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
            part = A[..., lo:hi]
            live = (part * part).sum(-1) > 0
            totals[i] += float(tonality(part)[live].sum())
            counts[i] += int(live.sum())
    return (totals / np.maximum(counts, 1)).tolist()


@_single_thread
def mean_tonality(
    clips: Sequence[torch.Tensor], sample_rate: int, noised: bool = False, sigma: float = 1 / 6, seed: int = 0
) -> float:
    """Mean τ (eq. 13) over clips, frames and channels of un-noised (or, with ``noised``, noise-layered)
    MDCTs. Each clip is ``[C, T]``. Frames of digital silence are left out (their τ is undefined)."""
    noise = (
        NoiseLayer(PsychoacousticModel(sample_rate, analysis_bands(sample_rate)), sigma) if noised else None
    )
    return _range_means(clips, sample_rate, 1, noise, seed)[0]


@_single_thread
def tonality_by_range(clips: Sequence[torch.Tensor], sample_rate: int, n_ranges: int = 4) -> list[float]:
    """Mean τ (eq. 13) over clips, frames and channels, computed separately within each of ``n_ranges``
    equal parts of the un-noised MDCT's bins, low to high. Each clip is ``[C, T]``.

    The full-band τ of :func:`mean_tonality` is one flatness over all bins, so a noise floor in a range
    where the reals are nearly silent moves it as much as missing partials do; this tells them apart.
    """
    return _range_means(clips, sample_rate, n_ranges, None, 0)


# ---------------------------------------------------------------------------------------------------
# features


def _chroma_matrix(n_fft: int, sample_rate: int) -> torch.Tensor:
    """``[n_fft//2+1, 12]`` weights: each FFT bin between 55 Hz and 5 kHz goes to its pitch class."""
    f = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft
    M = torch.zeros(len(f), 12, dtype=torch.float64)
    ok = (f >= 55.0) & (f <= min(5000.0, sample_rate / 2))
    pc = torch.round(12 * torch.log2(f[ok] / 440.0)).long() % 12  # 0 = A
    M[ok.nonzero().squeeze(1), pc] = 1.0
    return M


def window_features(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Audio-feature vectors of one clip.

    Args:
        audio: ``[C, T]`` waveform (mono or stereo).
        sample_rate: its rate in Hz.
    Returns:
        ``[W, N_FEATURES]`` float64, one row per full window of ``WINDOW_FRAMES`` MDCT frames (a clip
        shorter than one window gives one row from what it has).
    """
    n = analysis_bands(sample_rate)
    audio = audio.to(torch.float64)
    if audio.dim() == 1:
        audio = audio[None]
    A = clip_mdct(audio, sample_rate)  # [C, F, N]
    F = A.shape[1]
    wf = min(WINDOW_FRAMES, F)
    hop = min(WINDOW_HOP, wf)
    n_win = (F - wf) // hop + 1
    A = A.unfold(1, wf, hop).transpose(-1, -2)  # [C, W, f, N]
    pm = PsychoacousticModel(sample_rate, n)
    I = pm.band_intensity(A).sum(0)  # [W, f, 24], channels summed
    level = torch.log10(I + _LOG_FLOOR)
    flux = (level[:, 1:] - level[:, :-1]).clamp_min(0).mean(-1)  # [W, f-1] onset strength
    fc = flux - flux.mean(-1, keepdim=True)
    ac1 = (fc[:, 1:] * fc[:, :-1]).mean(-1) / (fc.pow(2).mean(-1) + 1e-12)
    tau = tonality(A).mean(0)  # [W, f]
    # stereo width from the MDCT (linear, so mid/side of amplitudes = MDCT of mid/side signals)
    if A.shape[0] >= 2:
        mid, side = mid_side(A[None, :2])[0]
        width = torch.log10((side**2).sum((-1, -2)) + _LOG_FLOOR) - torch.log10(
            (mid**2).sum((-1, -2)) + _LOG_FLOOR
        )
    else:
        width = torch.full((n_win,), -10.0, dtype=torch.float64)
    loud = torch.log10((A**2).sum((0, -1)).mean(-1) + _LOG_FLOOR)
    # chroma from a Hann-windowed spectrum of each window's samples (≈2.7 Hz resolution at 0.37 s)
    seg, x = wf * n, audio.mean(0)
    x = torch.nn.functional.pad(x, (0, max(0, (n_win - 1) * hop * n + seg - x.shape[-1])))
    x = x.unfold(0, seg, hop * n)[:n_win]
    P = torch.fft.rfft(x * torch.hann_window(seg, dtype=torch.float64), dim=-1).abs() ** 2
    chroma = P @ _chroma_matrix(seg, sample_rate)
    chroma = chroma / (chroma.sum(-1, keepdim=True) + 1e-20)
    return torch.cat(
        [
            level.mean(1),
            level.std(1),
            chroma,
            flux.mean(-1, keepdim=True),
            flux.std(-1, keepdim=True),
            ac1[:, None],
            tau.mean(-1, keepdim=True),
            tau.std(-1, keepdim=True),
            width[:, None],
            loud[:, None],
        ],
        dim=-1,
    )


@_single_thread
def clip_features(clips: Sequence[torch.Tensor], sample_rate: int) -> list[torch.Tensor]:
    """Window features of each clip: a list of ``[W_i, N_FEATURES]``."""
    return [window_features(c, sample_rate) for c in clips]


# ---------------------------------------------------------------------------------------------------
# Fréchet distance


@_single_thread
def frechet_distance(
    mu1: np.ndarray | torch.Tensor,
    sigma1: np.ndarray | torch.Tensor,
    mu2: np.ndarray | torch.Tensor,
    sigma2: np.ndarray | torch.Tensor,
) -> float:
    """‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2(Σ1Σ2)^½) for Gaussians N(μ1, Σ1), N(μ2, Σ2).

    Tr((Σ1Σ2)^½) is computed as Σ √λ of the symmetric PSD matrix Σ1^½ Σ2 Σ1^½ (same eigenvalues as
    Σ1Σ2), which stays real and stable when the covariances are singular.
    """
    m1, m2, s1, s2 = (torch.as_tensor(np.asarray(v), dtype=torch.float64) for v in (mu1, mu2, sigma1, sigma2))
    w, V = torch.linalg.eigh((s1 + s1.T) / 2)
    r1 = (V * w.clamp_min(0).sqrt()) @ V.T
    m = r1 @ s2 @ r1
    tr_covmean = float(torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum())
    diff = m1 - m2
    return float(diff @ diff + s1.trace() + s2.trace() - 2 * tr_covmean)


@dataclass
class FeatureScaler:
    """Per-dimension standardisation fitted on the reference windows (constant dimensions kept at 0)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> FeatureScaler:
        std = X.std(0)
        return cls(X.mean(0), np.where(std > 1e-9, std, 1.0))

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean) / self.std


def _stack(feats: Sequence[torch.Tensor]) -> np.ndarray:
    return torch.cat(list(feats)).numpy()


@_single_thread
def feature_distance(
    ref: Sequence[torch.Tensor], other: Sequence[torch.Tensor], extrapolate: bool = True, seed: int = 0
) -> float:
    """Fréchet distance between two sets of window features (lists from :func:`clip_features`),
    standardised with the statistics of ``ref``.

    The plain estimate is biased upwards by roughly (a/n_ref + b/n_other) with finite sample counts, which
    with ~67 dimensions and a few hundred windows is far from negligible. With ``extrapolate`` the
    distance is computed on random subsets of 50–100 % of the clips of both sets and the linear fit FD(1/n) is
    extrapolated to infinitely many windows (the "FD∞" of Chong & Forsyth 2020), so two halves of one
    dataset come out near 0.
    """
    scale = FeatureScaler.fit(_stack(ref))
    R, O = [scale(f.numpy()) for f in ref], [scale(f.numpy()) for f in other]

    def fd(a: list[np.ndarray], b: list[np.ndarray]) -> float:
        x, y = torch.from_numpy(np.concatenate(a)), torch.from_numpy(np.concatenate(b))
        return frechet_distance(x.mean(0), torch.cov(x.T), y.mean(0), torch.cov(y.T))

    if not extrapolate:
        return fd(R, O)
    # subsample whole clips: windows of one clip are correlated, so the bias scales with 1/clips
    rng = np.random.default_rng(seed)
    inv_n, values = [], []
    for frac in np.linspace(0.5, 1.0, 6):
        for _ in range(4 if frac < 1 else 1):
            nr, no = max(1, round(frac * len(R))), max(1, round(frac * len(O)))
            a = [R[i] for i in rng.choice(len(R), nr, replace=False)]
            b = [O[i] for i in rng.choice(len(O), no, replace=False)]
            inv_n.append(1.0 / nr + 1.0 / no)
            values.append(fd(a, b))
    slope, intercept = np.polyfit(np.array(inv_n), np.array(values), 1)
    return float(intercept)


# ---------------------------------------------------------------------------------------------------
# memorisation


@_single_thread
def memorisation(real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor]) -> dict[str, float]:
    """Nearest-real-clip distances of fakes versus real-to-real nearest distances (leave-one-out).

    Returns medians of both, their ratio (≈1 healthy, ≪1 copying), and the share of fakes closer to a
    real clip than the 5th percentile of the real-to-real nearest distances.
    """
    scale = FeatureScaler.fit(_stack(real))
    R = np.stack([scale(f.numpy()).mean(0) for f in real])
    Fk = np.stack([scale(f.numpy()).mean(0) for f in fake])
    d_rr = np.sqrt(((R[:, None] - R[None]) ** 2).sum(-1))
    np.fill_diagonal(d_rr, np.inf)
    nn_real = d_rr.min(1)
    nn_fake = np.sqrt(((Fk[:, None] - R[None]) ** 2).sum(-1)).min(1)
    real_med = float(np.median(nn_real))
    p5 = float(np.percentile(nn_real, 5))
    return {
        "fake_to_real_nearest_median": float(np.median(nn_fake)),
        "real_to_real_nearest_median": real_med,
        "ratio": float(np.median(nn_fake) / real_med) if real_med > 0 else math.inf,
        "fake_share_below_real_p5": float((nn_fake < p5).mean()),
    }


# ---------------------------------------------------------------------------------------------------
# spectral level and hum

HUM_PERIODS = (2, 4, 8)  # frames: the periods G's stride-2 time upsamplings imprint on the output


def bark_levels(clips: Sequence[torch.Tensor], sample_rate: int) -> np.ndarray:
    """Mean level per Bark band in dB ``[24]`` over clips ``[C, T]``: the band intensities of the
    psychoacoustic model (paper eq. 10) averaged over channels, frames and clips."""
    n = analysis_bands(sample_rate)
    pm = PsychoacousticModel(sample_rate, n)
    total = None
    for c in clips:
        A = clip_mdct(c.to(torch.float64).reshape(-1, c.shape[-1]), sample_rate)
        mean = pm.band_intensity(A).mean(dim=(0, 1))  # [24]
        total = mean if total is None else total + mean
    if total is None:
        raise ValueError("bark_levels needs at least one clip")
    return 10 * np.log10(total.numpy() / len(clips) + 1e-20)


def hum_share(clips: Sequence[torch.Tensor], sample_rate: int, periods: Sequence[int] = HUM_PERIODS) -> float:
    """Mean share of the frame-to-frame modulation energy at the given periods: per clip, the log energy
    of each MDCT frame (mean removed) → power spectrum over frames → the power at 1/p cycles per frame
    for each p, over the total. Upsampling checkerboards show as peaks at these periods."""
    shares = []
    for c in clips:
        A = clip_mdct(c.to(torch.float64).reshape(-1, c.shape[-1]), sample_rate)  # [C, F, N]
        e = torch.log10(A.square().sum(-1).mean(0) + _LOG_FLOOR)  # [F]
        P = torch.fft.rfft(e - e.mean()).abs().square()
        f = e.shape[0]
        bins = sorted({round(f / p) for p in periods if round(f / p) < P.shape[0]})
        shares.append(float(P[bins].sum() / P[1:].sum().clamp_min(1e-30)))
    return float(np.mean(shares))


FLUX_POOL = 8  # frames (≈ 46 ms at 172 frames/s): averages out a steady tone's MDCT phase fluctuation
FLUX_FLOOR_DB = 60.0  # levels further below the clip's loudest pooled bin count as this floor


def spectral_flux(
    clips: Sequence[torch.Tensor], sample_rate: int, pool: int = FLUX_POOL, floor_db: float = FLUX_FLOOR_DB
) -> tuple[float, float]:
    """How steady the spectrum is, and how sharply it changes: per clip ``[C, T]``, the MDCT energy
    (channels averaged) pooled over ``pool`` frames, in dB floored ``floor_db`` below the clip's peak; the
    mean absolute change per bin between consecutive pooled frames. Returns its median over all frames and
    clips (dB; low while notes are held) and its 99th percentile over that median (the onset contrast:
    high when a few frames change the whole spectrum at once, as chord changes do; ≈ 1 for noise)."""
    changes = []
    for c in clips:
        E = clip_mdct(c.to(torch.float64).reshape(-1, c.shape[-1]), sample_rate).square().mean(0)  # [F, N]
        if E.shape[0] < 4 * pool:
            continue
        change = pooled_level_change(E, pool, floor_db)  # [F / pool - 1, N]
        changes.append(change[1:-1].mean(-1).numpy())  # the edge frames see the padding
    if not changes:
        raise ValueError(f"spectral_flux needs clips of at least {4 * pool} frames")
    flux = np.concatenate(changes)
    median = float(np.median(flux))
    return median, float(np.percentile(flux, 99) / median) if median > 0 else math.nan


# window of partial_spread's spectrum at 11 008 Hz (≈ 10.8 Hz bins, D's spectral view), scaled with the rate
PARTIAL_FFT_11K = 1024


def partial_spread(clips: Sequence[torch.Tensor], sample_rate: int) -> float:
    """How much the partials of clips ``[C, T]`` differ from clip to clip, dB: per clip, the
    :func:`~mp3net.dsp.spectral.spectral_detail` of its time-averaged log spectrogram (channels averaged,
    a window of about 10.8 Hz bins); then the mean absolute difference over bins, averaged over all pairs
    of clips. Needs 2 clips (nan with fewer)."""
    if len(clips) < 2:
        return math.nan
    n_fft = 2 ** round(math.log2(PARTIAL_FFT_11K * sample_rate / 11008))
    details = []
    for c in clips:
        x = c.to(torch.float64).reshape(1, -1, c.shape[-1])
        details.append(spectral_detail(audio_log_spectrogram(x, n_fft).mean(dim=(1, 2)))[0])
    d = torch.stack(details)  # [N, F]
    i, j = torch.triu_indices(len(d), len(d), 1)
    return float(20 * (d[i] - d[j]).abs().mean())


COMMON_CLIPS = 8  # clips whose held lines are compared (the demo's seeds 0–7)
COMMON_TOLERANCE_HZ = 3.0


def clip_spectrum_db(clip: torch.Tensor) -> np.ndarray:
    """The power spectrum of a clip ``[C, T]`` in dB, one Hann window over the whole clip, channels averaged:
    ``[T // 2 + 1]``, bin i at i · sample_rate / T Hz. A note held through the clip is one narrow line."""
    x = clip.to(torch.float64).mean(0)
    power = torch.fft.rfft(x * torch.hann_window(x.shape[-1], dtype=torch.float64)).abs().square().numpy()
    return 10 * np.log10(power + 1e-20)


def held_lines(clip: torch.Tensor, sample_rate: int) -> np.ndarray:
    """Frequencies (Hz) of the lines a clip ``[C, T]`` holds: the peaks of its power spectrum (one Hann window
    over the whole clip, channels averaged) that are the maximum of ±30 bins and stand 15 dB above the median
    of ±100 bins (the clip's edges of 100 bins left out)."""
    from scipy.ndimage import maximum_filter1d, median_filter

    db = clip_spectrum_db(clip)
    n = clip.shape[-1]
    peak = (maximum_filter1d(db, 61, mode="nearest") == db) & (
        db - median_filter(db, 201, mode="nearest") > 15
    )
    peak[:100] = peak[-100:] = False
    return np.flatnonzero(peak) * sample_rate / n


def lines_held_by_every_clip(clips: Sequence[torch.Tensor], sample_rate: int) -> float:
    """How many of the first clip's :func:`held_lines` every one of the first ``COMMON_CLIPS`` clips holds
    too (within ``COMMON_TOLERANCE_HZ``): real music changes its chords from clip to clip (a few at most), a
    drone or a comb drawn whatever the latent is in all. nan with fewer than 2 clips."""
    lines = [held_lines(c, sample_rate) for c in clips[:COMMON_CLIPS]]
    if len(lines) < 2:
        return math.nan
    held = [
        f for f in lines[0] if all(len(o) and np.abs(o - f).min() <= COMMON_TOLERANCE_HZ for o in lines[1:])
    ]
    return float(len(held))


VALLEY_WIDTH = 2  # bins (±172 Hz at 86 Hz bands) a peak rules over


def valley_depth(
    clips: Sequence[torch.Tensor],
    sample_rate: int,
    pool: int = FLUX_POOL,
    floor_db: float = FLUX_FLOOR_DB,
    width: int = VALLEY_WIDTH,
) -> float:
    """How discrete and sustained the partials are: per clip ``[C, T]``, the MDCT energy (channels
    averaged) pooled over ``pool`` frames and floored as :func:`spectral_flux`'s, and each bin's level below
    the loudest bin within ``width`` bins (:func:`mp3net.dsp.pooled_level_contrast`). Returns its mean over
    all bins, steps and clips as a positive dB depth: large for held chords, small for noise and for peaks
    that flicker from frame to frame (they average out in the pool)."""
    depths = []
    for c in clips:
        E = clip_mdct(c.to(torch.float64).reshape(-1, c.shape[-1]), sample_rate).square().mean(0)  # [F, N]
        if E.shape[0] >= pool:
            depths.append(-float(pooled_level_contrast(E, pool, floor_db, width).mean()))
    if not depths:
        raise ValueError(f"valley_depth needs clips of at least {pool} frames")
    return float(np.mean(depths))


# ---------------------------------------------------------------------------------------------------
# report


@dataclass
class EvalReport:
    sample_rate: int
    n_real: int
    n_fake: int
    clip_seconds: float
    tonality_real: float
    tonality_fake: float
    tonality_real_noised: float
    tonality_fake_noised: float
    fd: float
    fd_real_halves: float
    fd_plain: float
    memorisation: dict[str, float] = field(default_factory=dict)
    bark_db_real: list[float] = field(default_factory=list)
    bark_db_fake: list[float] = field(default_factory=list)
    hum_real: float = math.nan
    hum_fake: float = math.nan
    tonality_real_by_range: list[float] = field(default_factory=list)
    tonality_fake_by_range: list[float] = field(default_factory=list)
    flux_real_db: float = math.nan
    flux_fake_db: float = math.nan
    onset_contrast_real: float = math.nan
    onset_contrast_fake: float = math.nan
    valley_db_real: float = math.nan
    valley_db_fake: float = math.nan
    partial_spread_real: float = math.nan
    partial_spread_fake: float = math.nan
    common_lines_real: float = math.nan
    common_lines_fake: float = math.nan

    @property
    def bark_error_db(self) -> np.ndarray:
        """Fake minus real mean level per Bark band, dB ``[24]``."""
        return np.asarray(self.bark_db_fake) - np.asarray(self.bark_db_real)

    @property
    def hum_db(self) -> float:
        """Fakes' modulation energy at the upsampling periods against the reals', dB (0 = as real)."""
        return 10 * math.log10(self.hum_fake / self.hum_real) if self.hum_real > 0 else math.nan

    def headline(self) -> dict[str, float]:
        """The figures a training curve follows: FD, tonality of fakes and reals, the Bark-band level error's
        mean and worst band (absolute, dB), the hum (dB), the onset contrast, the valley depth and the
        partial spread of fakes and reals."""
        err = np.abs(self.bark_error_db)
        return {
            "fd": self.fd,
            "tonality_fake": self.tonality_fake,
            "tonality_real": self.tonality_real,
            "bark_err_mean_db": float(err.mean()),
            "bark_err_max_db": float(err.max()),
            "hum_db": self.hum_db,
            "onset_contrast_fake": self.onset_contrast_fake,
            "onset_contrast_real": self.onset_contrast_real,
            "valley_db_fake": self.valley_db_fake,
            "valley_db_real": self.valley_db_real,
            "partial_spread_fake": self.partial_spread_fake,
            "partial_spread_real": self.partial_spread_real,
        }

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def rows(self) -> list[tuple[str, str, str]]:
        m = self.memorisation
        rows = [
            ("clips (real / fake)", f"{self.n_real}", f"{self.n_fake}"),
            ("tonality, un-noised MDCT", f"{self.tonality_real:.1%}", f"{self.tonality_fake:.1%}"),
            *self._range_rows(),
            (
                "tonality, after noise layer",
                f"{self.tonality_real_noised:.1%}",
                f"{self.tonality_fake_noised:.1%}",
            ),
            ("Fréchet feature distance", f"{self.fd_real_halves:.3f} (halves)", f"{self.fd:.3f}"),
            (
                "nearest-real distance, median",
                f"{m.get('real_to_real_nearest_median', math.nan):.3f}",
                f"{m.get('fake_to_real_nearest_median', math.nan):.3f}",
            ),
            ("memorisation ratio (≈1 fine, ≪1 copies)", "", f"{m.get('ratio', math.nan):.3f}"),
            ("fakes closer than real 5th pct", "", f"{m.get('fake_share_below_real_p5', math.nan):.1%}"),
        ]
        if self.bark_db_real:
            err = np.abs(self.bark_error_db)
            rows.append(("Bark-band level error, mean / max", "", f"{err.mean():.1f} / {err.max():.1f} dB"))
            rows.append(("hum (modulation at upsampling periods)", "", f"{self.hum_db:+.1f} dB"))
        if not math.isnan(self.flux_real_db):
            rows.append(
                (
                    "spectral change per 46 ms, median",
                    f"{self.flux_real_db:.2f} dB",
                    f"{self.flux_fake_db:.2f} dB",
                )
            )
            rows.append(
                (
                    "onset contrast (99th pct / median)",
                    f"{self.onset_contrast_real:.1f}",
                    f"{self.onset_contrast_fake:.1f}",
                )
            )
        if not math.isnan(self.valley_db_real):
            rows.append(
                (
                    "valley depth between held partials",
                    f"{self.valley_db_real:.1f} dB",
                    f"{self.valley_db_fake:.1f} dB",
                )
            )
        if not math.isnan(self.partial_spread_real):
            rows.append(
                (
                    "partial spread between clips",
                    f"{self.partial_spread_real:.1f} dB",
                    f"{self.partial_spread_fake:.1f} dB",
                )
            )
        if not math.isnan(self.common_lines_real):
            rows.append(
                (
                    f"lines held by all of {COMMON_CLIPS} clips",
                    f"{self.common_lines_real:.0f}",
                    f"{self.common_lines_fake:.0f}",
                )
            )
        return rows

    def _range_rows(self) -> list[tuple[str, str, str]]:
        """One row per frequency range of :func:`tonality_by_range`, named by its edges in kHz."""
        n = len(self.tonality_real_by_range)
        if not n or len(self.tonality_fake_by_range) != n:
            return []
        edges = np.linspace(0, self.sample_rate / 2000, n + 1)
        return [
            (f"  tonality within {lo:.1f}–{hi:.1f} kHz", f"{r:.1%}", f"{f:.1%}")
            for lo, hi, r, f in zip(
                edges[:-1], edges[1:], self.tonality_real_by_range, self.tonality_fake_by_range, strict=True
            )
        ]

    def table(self) -> str:
        rows = [("metric", "real", "fake"), *self.rows()]
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        lines = [f"{a:<{w0}}  {b:>{w1}}  {c}" for a, b, c in rows]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines)


def headline_text(head: dict[str, float]) -> str:
    """One line of :meth:`EvalReport.headline`'s figures, fakes against reals, as training prints them."""
    return (
        f"FD {head['fd']:.0f}, tonality {head['tonality_fake']:.1%} (reals {head['tonality_real']:.1%}), "
        f"Bark-band error {head['bark_err_mean_db']:.1f} / {head['bark_err_max_db']:.1f} dB, onset contrast "
        f"{head['onset_contrast_fake']:.1f} (reals {head['onset_contrast_real']:.1f}), valley depth "
        f"{head['valley_db_fake']:.1f} dB (reals {head['valley_db_real']:.1f}), partial spread "
        f"{head['partial_spread_fake']:.1f} dB (reals {head['partial_spread_real']:.1f})"
    )


def evaluate_clips(
    real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor], sample_rate: int
) -> EvalReport:
    """All metrics for lists of ``[C, T]`` clips at one sample rate (real = reference/training set)."""
    if len(real) < 2 or len(fake) < 1:
        from mp3net.utils import MP3NetError

        raise MP3NetError(f"need at least 2 real and 1 fake clip, got {len(real)} and {len(fake)}")
    fr, ff = clip_features(real, sample_rate), clip_features(fake, sample_rate)
    order = np.random.default_rng(0).permutation(len(fr))  # random halves, not first/second tracks
    half = len(fr) // 2
    (flux_real, onset_real), (flux_fake, onset_fake) = (spectral_flux(c, sample_rate) for c in (real, fake))
    fr_a, fr_b = [fr[i] for i in order[:half]], [fr[i] for i in order[half:]]
    return EvalReport(
        sample_rate=sample_rate,
        n_real=len(real),
        n_fake=len(fake),
        clip_seconds=float(np.mean([c.shape[-1] for c in fake]) / sample_rate),
        tonality_real=mean_tonality(real, sample_rate),
        tonality_fake=mean_tonality(fake, sample_rate),
        tonality_real_noised=mean_tonality(real, sample_rate, noised=True),
        tonality_fake_noised=mean_tonality(fake, sample_rate, noised=True),
        tonality_real_by_range=tonality_by_range(real, sample_rate),
        tonality_fake_by_range=tonality_by_range(fake, sample_rate),
        fd=feature_distance(fr, ff),
        fd_real_halves=feature_distance(fr_a, fr_b),
        fd_plain=feature_distance(fr, ff, extrapolate=False),
        memorisation=memorisation(fr, ff),
        bark_db_real=bark_levels(real, sample_rate).tolist(),
        bark_db_fake=bark_levels(fake, sample_rate).tolist(),
        hum_real=hum_share(real, sample_rate),
        hum_fake=hum_share(fake, sample_rate),
        flux_real_db=flux_real,
        flux_fake_db=flux_fake,
        onset_contrast_real=onset_real,
        onset_contrast_fake=onset_fake,
        valley_db_real=valley_depth(real, sample_rate),
        valley_db_fake=valley_depth(fake, sample_rate),
        partial_spread_real=partial_spread(real, sample_rate),
        partial_spread_fake=partial_spread(fake, sample_rate),
        common_lines_real=lines_held_by_every_clip(real, sample_rate),
        common_lines_fake=lines_held_by_every_clip(fake, sample_rate),
    )


# ---------------------------------------------------------------------------------------------------
# loading clips


def _pick(n_total: int, n: int, seed: int) -> list[int]:
    """``n`` distinct indices of ``range(n_total)`` drawn with a fixed seed (all of them if fewer)."""
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(n_total, size=min(n, n_total), replace=False).tolist())


def load_real_clips(
    data: str | Path,
    n: int,
    clip_samples: int | None = None,
    sample_rate: int | None = None,
    channels: int | None = None,
    seed: int = 0,
) -> tuple[list[torch.Tensor], int]:
    """``n`` random clips of a prepared dataset (``manifest.json``) or of a folder of audio files.

    Args:
        clip_samples: clip length at ``sample_rate`` (default 3 s).
        sample_rate, channels: convert to these (default: the data's own).
    Returns:
        ``(clips [C, T] float32, sample_rate)``.
    """
    from mp3net.audio import load_audio, resample, to_channels
    from mp3net.data import MANIFEST, ClipDataset, find_audio_files
    from mp3net.utils import MP3NetError

    root = Path(data)
    if (root / MANIFEST).exists():
        from mp3net.data import load_manifest

        m = load_manifest(root)
        sr_data, ch_data = int(m["sample_rate"]), int(m["channels"])
        sr = sample_rate or sr_data
        want = clip_samples or 3 * sr
        raw = math.ceil(want * sr_data / sr)
        ds = ClipDataset(root, raw, sr_data, ch_data)
        clips = []
        for i in _pick(len(ds), n, seed):
            x = ds[i].numpy()
            x = resample(x, sr_data, sr) if sr != sr_data else x
            x = to_channels(x, channels) if channels else x
            clips.append(torch.from_numpy(np.ascontiguousarray(x[:, :want])))
        return clips, sr
    if not root.is_dir():
        raise MP3NetError(f"real data {root} is neither a prepared dataset nor a folder of audio files")
    files = find_audio_files(root)
    if not files:
        raise MP3NetError(f"no audio files under {root}")
    rate = sample_rate  # None: the first file's rate
    pieces: list[torch.Tensor] = []
    for f in files:
        x, sr_f = load_audio(f, sample_rate=rate, channels=channels, allow_silent=True)
        rate = rate or sr_f
        want = clip_samples or 3 * rate
        for a in range(0, x.shape[-1] - want + 1, want):
            pieces.append(torch.from_numpy(np.ascontiguousarray(x[:, a : a + want])))
    assert rate is not None  # files is not empty
    if not pieces:
        raise MP3NetError(
            f"no file under {root} is at least one clip ({(clip_samples or 3 * rate) / rate:.2f} s) long"
        )
    return [pieces[i] for i in _pick(len(pieces), n, seed)], int(rate)


def load_fake_clips(
    fake: str | Path, n: int, device: str | None = None, seed: int = 0, progress: bool = False
) -> tuple[list[torch.Tensor], int]:
    """Generated clips: the audio files of a folder (one clip each), or ``n`` clips (seeds 0..n-1) of a
    model (anything :func:`mp3net.generate.load_generator` accepts)."""
    from mp3net.audio import load_audio
    from mp3net.data import find_audio_files
    from mp3net.utils import MP3NetError

    path = Path(fake)
    is_model = not path.exists() or any((path / m).exists() for m in ("config.json", "export", "checkpoints"))
    files = find_audio_files(path) if path.is_dir() and not is_model else []
    if files:
        clips, rate = [], None
        for f in [files[i] for i in _pick(len(files), n, seed)]:
            x, sr_f = load_audio(f, sample_rate=rate, allow_silent=True)
            rate = rate or sr_f
            clips.append(torch.from_numpy(x))
        assert rate is not None  # files is not empty
        return clips, rate
    from mp3net import generate as gen

    try:
        G, _ = gen.load_generator(fake, device)
    except MP3NetError as e:
        if path.is_dir():
            raise MP3NetError(f"{path} holds neither audio files nor a model ({e})") from None
        raise
    audio, sr = gen.generate(G, list(range(n)), progress=progress)
    return list(audio), sr


def evaluate(
    real: str | Path, fake: str | Path, n: int = 100, device: str | None = None, progress: bool = False
) -> EvalReport:
    """Load ``n`` fake clips (files or a model) and ``n`` real clips of the same length, rate and channels,
    and compute every metric."""
    from mp3net.audio import resample, to_channels

    fakes, sr = load_fake_clips(fake, n, device, progress=progress)
    channels = fakes[0].shape[0]
    clip = int(np.median([f.shape[-1] for f in fakes]))
    reals, sr_r = load_real_clips(real, n, clip_samples=clip, sample_rate=sr, channels=channels)
    if sr_r != sr:
        fakes = [torch.from_numpy(resample(f.numpy(), sr, sr_r)) for f in fakes]
        sr = sr_r
    fakes = [torch.from_numpy(to_channels(f.numpy(), channels)) for f in fakes]
    return evaluate_clips(reals, fakes, sr)
