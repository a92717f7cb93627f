"""Analysis of an audio signal as MP3net sees it: MDCT amplitudes, masking threshold, tonality, and the
figures of the paper (figure 1: MDCT amplitudes and spectrogram, figure 2: one block's spectrum with
the absolute and masking thresholds, figure 6: the octave-folded "reduced spectrogram").

Signals are float32 ``[C, T]`` numpy arrays at :data:`SAMPLE_RATE`; MDCT amplitudes are ``[C, F, N]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures only go to files

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from mp3net.dsp import PsychoacousticModel, mdct  # noqa: E402
from mp3net.utils import atomic_write  # noqa: E402

SAMPLE_RATE = 22016  # docs/mdct.md#parameters: 128 bands × 172 blocks/s
N_BANDS = 128
DB_OFFSET = 120.0  # docs/psychoacoustics.md#calibration: |A| = 1 ↔ 120 dB
MAX_PLOT_FRAMES = 4000  # longer signals are decimated for the images (the statistics use every frame)


@dataclass
class Analysis:
    """MDCT and psychoacoustic quantities of one signal."""

    A: torch.Tensor  # [C, F, N] MDCT amplitudes (float32)
    threshold: torch.Tensor  # [C, F, N] masking threshold amplitudes
    tonality: torch.Tensor  # [C, F]
    quiet: torch.Tensor  # [N] absolute threshold amplitude per bin
    sample_rate: int
    n_samples: int  # signal length before padding to a multiple of N

    @property
    def channels(self) -> int:
        return self.A.shape[0]

    @property
    def duration(self) -> float:
        return self.n_samples / self.sample_rate

    @property
    def mean_tonality(self) -> float:
        """The paper's quality metric: mean τ over blocks and channels, in [0, 1]."""
        return float(self.tonality.mean())

    @property
    def inaudible_share(self) -> float:
        """Share of MDCT coefficients with |A| below the masking threshold."""
        return float((self.A.abs() < self.threshold).float().mean())

    @property
    def frame_times(self) -> np.ndarray:
        """Centre of each frame in seconds: frame m spans samples [(m-1)N, (m+1)N) of the signal."""
        return np.arange(self.A.shape[1]) * self.A.shape[2] / self.sample_rate


def analyze_signal(
    x: np.ndarray | torch.Tensor, sample_rate: int = SAMPLE_RATE, n_bands: int = N_BANDS
) -> Analysis:
    """MDCT (zero-padded to a multiple of N), masking threshold and tonality of ``[C, T]`` audio."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    if x.dim() == 1:
        x = x[None]
    T = x.shape[-1]
    x = torch.nn.functional.pad(x, (0, (-T) % n_bands))
    pm = PsychoacousticModel(sample_rate, n_bands)
    A = mdct(x, n_bands)
    return Analysis(
        A=A,
        threshold=pm.threshold(A),
        tonality=pm.tonality(A),
        quiet=torch.sqrt(pm.quiet @ pm.W_inv),
        sample_rate=sample_rate,
        n_samples=T,
    )


def reduced_spectrogram(A: torch.Tensor | np.ndarray, keep_bins: int = 32) -> np.ndarray:
    """The octave-folded spectrogram of paper §6 (figure 6).

    Works on magnitudes |A| (signed amplitudes would cancel when blurred). The top octave (bins
    [K/2, K)) is blurred — a [¼, ½, ¼] kernel over time, then pairs of bins averaged, which halves its
    frequencies — and added onto the octave below (bins [K/4, K/2)), so the 2nd harmonic lands on its
    fundamental; this repeats until ``keep_bins`` bins remain. The same fold as the discriminator's
    (docs/networks.md#discriminator-block).

    Args:
        A: ``[..., F, N]`` amplitudes; N / keep_bins must be a power of two.
    Returns:
        ``[..., F, keep_bins]`` non-negative magnitudes covering 0 .. keep_bins·Δf Hz.
    """
    S = np.abs(np.asarray(A, dtype=np.float64))
    K = S.shape[-1]
    if keep_bins < 2 or K % keep_bins or (K // keep_bins) & (K // keep_bins - 1):
        raise ValueError(f"N={K} must be keep_bins={keep_bins} times a power of two")
    while K > keep_bins:
        high = S[..., K // 2 : K]
        padded = np.concatenate([high[..., :1, :], high, high[..., -1:, :]], axis=-2)
        blurred = 0.25 * padded[..., :-2, :] + 0.5 * padded[..., 1:-1, :] + 0.25 * padded[..., 2:, :]
        halved = 0.5 * (blurred[..., 0::2] + blurred[..., 1::2])  # [..., F, K/4]
        S = S[..., : K // 2].copy()
        S[..., K // 4 :] += halved
        K //= 2
    return S


def to_db(A: torch.Tensor | np.ndarray, floor_db: float = -20.0) -> np.ndarray:
    """Amplitudes → dB SPL (|A| = 1 ↔ 120 dB, docs/psychoacoustics.md#calibration), floor ``floor_db``."""
    a = np.abs(np.asarray(A, dtype=np.float64))
    return np.maximum(20.0 * np.log10(np.maximum(a, 1e-30)) + DB_OFFSET, floor_db)


def signed_db(A: torch.Tensor | np.ndarray, range_db: float = 100.0) -> np.ndarray:
    """sign(A)·(level above a floor ``range_db`` below |A| = 1), in [-range_db, range_db]: keeps the
    oscillating sign of MDCT amplitudes visible while compressing their dynamic range."""
    a = np.asarray(A, dtype=np.float64)
    level = 20.0 * np.log10(np.maximum(np.abs(a), 1e-30)) + range_db
    return np.sign(a) * np.clip(level, 0.0, range_db)


def _decimate(frames: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    step = max(1, math.ceil(frames.shape[0] / MAX_PLOT_FRAMES))
    return frames[::step], times[::step]


def _extent(times: np.ndarray, f_top: float, hop: float) -> tuple[float, float, float, float]:
    return (float(times[0]) - hop / 2, float(times[-1]) + hop / 2, 0.0, f_top)


def _save(fig: plt.Figure, path: Path) -> Path:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path


def _channel_names(C: int) -> list[str]:
    return ["left", "right"] if C == 2 else ["mono"] if C == 1 else [f"channel {c}" for c in range(C)]


def plot_mdct_signed(an: Analysis, path: Path, title: str = "") -> Path:
    """(a) MDCT amplitudes A_k(m), signed dB grey scale (white positive, black negative)."""
    C, _, N = an.A.shape
    hop = N / an.sample_rate
    fig, axes = plt.subplots(C, 1, figsize=(11, 3.2 * C + 0.6), squeeze=False, sharex=True)
    for c, ax in enumerate(axes[:, 0]):
        img, t = _decimate(signed_db(an.A[c].numpy()), an.frame_times)
        im = ax.imshow(
            img.T,
            origin="lower",
            aspect="auto",
            cmap="gray",
            vmin=-100,
            vmax=100,
            extent=_extent(t, an.sample_rate / 2, hop),
            interpolation="nearest",
        )
        ax.set_ylabel("frequency (Hz)")
        ax.set_title(f"MDCT amplitudes, {_channel_names(C)[c]}" + (f" — {title}" if title else ""))
        fig.colorbar(im, ax=ax, label="sign(A)·(dB re |A|=1 + 100)")
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    return _save(fig, path)


def plot_spectrogram(an: Analysis, path: Path, title: str = "") -> Path:
    """(b) MDCT spectrogram 20·log10|A| + 120 dB (paper figure 1) with a colour map."""
    C, _, N = an.A.shape
    hop = N / an.sample_rate
    db = to_db(an.A.numpy())
    vmax = float(np.percentile(db, 99.9))
    fig, axes = plt.subplots(C, 1, figsize=(11, 3.2 * C + 0.6), squeeze=False, sharex=True)
    for c, ax in enumerate(axes[:, 0]):
        img, t = _decimate(db[c], an.frame_times)
        im = ax.imshow(
            img.T,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=max(vmax - 90.0, -20.0),
            vmax=vmax,
            extent=_extent(t, an.sample_rate / 2, hop),
            interpolation="nearest",
        )
        ax.set_ylabel("frequency (Hz)")
        ax.set_title(f"MDCT spectrogram, {_channel_names(C)[c]}" + (f" — {title}" if title else ""))
        fig.colorbar(im, ax=ax, label="dB SPL (|A| = 1 ↔ 120 dB)")
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    return _save(fig, path)


def loudest_frame(an: Analysis) -> int:
    """Index of the frame with the most energy (summed over channels)."""
    return int((an.A**2).sum(dim=(0, 2)).argmax())


def plot_frame_threshold(an: Analysis, path: Path, frame: int | None = None, channel: int = 0) -> Path:
    """(c) One block's spectrum with the absolute threshold and the masking threshold (paper figure 2)."""
    m = loudest_frame(an) if frame is None else frame
    N = an.A.shape[-1]
    df = an.sample_rate / (2 * N)
    f = (np.arange(N) + 0.5) * df
    a = an.A[channel, m].numpy()
    thr = an.threshold[channel, m].numpy()
    fig, ax = plt.subplots(figsize=(10, 4.8))
    ax.bar(
        f,
        to_db(a, floor_db=-40),
        width=df * 0.9,
        bottom=0.0,
        color="tab:blue",
        alpha=0.55,
        label="|A_k| (MDCT amplitude)",
    )
    audible = np.abs(a) >= thr
    ax.plot(
        f[audible], to_db(a[audible], floor_db=-40), "o", ms=3, color="tab:blue", label="audible coefficient"
    )
    ax.plot(
        f,
        to_db(an.quiet.numpy()),
        color="tab:green",
        lw=1.5,
        label="absolute threshold (eq. 9)",
        drawstyle="steps-mid",
    )
    ax.plot(
        f, to_db(thr), color="tab:red", lw=2, label="masking threshold (eq. 10-12)", drawstyle="steps-mid"
    )
    ax.set_xscale("log")
    ax.set_xlim(df / 2, an.sample_rate / 2)
    ax.set_ylim(-20, max(110.0, float(to_db(a).max()) + 5))
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("level (dB SPL)")
    ax.set_title(
        f"block {m} at t = {an.frame_times[m]:.2f} s, {_channel_names(an.channels)[channel]}; "
        f"tonality τ = {float(an.tonality[channel, m]):.2f}, {int(audible.sum())}/{N} coefficients audible"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_reduced(an: Analysis, path: Path, keep_bins: int = 32, title: str = "") -> Path:
    """(d) The octave-folded reduced spectrogram (paper §6, figure 6), channels summed."""
    N = an.A.shape[-1]
    keep_bins = min(keep_bins, N)
    R = reduced_spectrogram(an.A, keep_bins).sum(axis=0)  # [F, keep_bins]
    # MDCT magnitudes flicker from block to block with the phase: show an RMS over ~46 ms (8 blocks)
    kernel = np.ones(8) / 8
    R = np.sqrt(np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 0, R**2))
    db = to_db(R)
    vmax = float(np.percentile(db, 99.9))
    df = an.sample_rate / (2 * N)
    img, t = _decimate(db, an.frame_times)
    fig, ax = plt.subplots(figsize=(11, 4))
    im = ax.imshow(
        img.T,
        origin="lower",
        aspect="auto",
        cmap="viridis",
        vmin=max(vmax - 60.0, -20.0),
        vmax=vmax,
        extent=_extent(t, keep_bins * df, N / an.sample_rate),
        interpolation="nearest",
    )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("folded frequency (Hz)")
    folds = int(round(math.log2(N / keep_bins)))
    ax.set_title(
        f"Reduced spectrogram: top octave blurred and folded down {folds}×" + (f" — {title}" if title else "")
    )
    fig.colorbar(im, ax=ax, label="dB")
    fig.tight_layout()
    return _save(fig, path)


def write_figures(
    an: Analysis, out_dir: Path, stem: str, title: str = "", frame: int | None = None
) -> list[Path]:
    """All four figures as ``<stem>_{mdct,spectrogram,threshold,reduced}.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    return [
        plot_mdct_signed(an, out_dir / f"{stem}_mdct.png", title),
        plot_spectrogram(an, out_dir / f"{stem}_spectrogram.png", title),
        plot_frame_threshold(an, out_dir / f"{stem}_threshold.png", frame),
        plot_reduced(an, out_dir / f"{stem}_reduced.png", title=title),
    ]


def example_signal(seconds: float = 8.0, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """A piano-like chord sequence (I–V–vi–IV in C with a melody on top), float32 stereo ``[2, T]``.

    Each note is a sum of slightly sharp partials f_k = k·f0·√(1 + B·k²) decaying exponentially, upper
    partials faster; notes are panned by pitch. Deterministic for a given seed.
    """
    rng = np.random.default_rng(seed)
    T = int(seconds * sample_rate)
    t_all = np.arange(T) / sample_rate
    out = np.zeros((2, T))
    chords = [[48, 60, 64, 67], [43, 59, 62, 67], [45, 60, 64, 69], [41, 60, 65, 69]]
    melody = [76, 74, 72, 74, 76, 76, 76, 74, 74, 76, 79, 79, 76, 74, 72, 74]
    beat = seconds / 16
    notes = []
    for bar in range(4):
        chord = chords[bar % 4]
        notes += [(bar * 4 * beat, 4 * beat, p, 0.5) for p in chord]
        notes += [((bar * 4 + i) * beat, beat, melody[bar * 4 + i], 0.7) for i in range(4)]
    for start, length, pitch, vel in notes:
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        i0 = int(start * sample_rate)
        n = min(T - i0, int((length + 0.3) * sample_rate))
        t = t_all[:n]
        B = 1e-4 * 2 ** ((pitch - 60) / 12)
        tone = np.zeros(n)
        for k in range(1, 13):
            fk = k * f0 * math.sqrt(1 + B * k * k)
            if fk > 0.45 * sample_rate:
                break
            decay = 1.5 + 0.6 * k + f0 / 300
            tone += np.exp(-decay * t) * np.sin(2 * math.pi * fk * t + rng.uniform(0, 2 * math.pi)) / k
        release = np.clip((length - t) / 0.1 + 1, 0, 1)  # damper after the key is let go
        tone *= vel * release * np.minimum(1.0, t / 0.003)
        pan = np.clip((pitch - 36) / 60, 0, 1)
        out[0, i0 : i0 + n] += math.cos(pan * math.pi / 2) * tone
        out[1, i0 : i0 + n] += math.sin(pan * math.pi / 2) * tone
    out += 1e-3 * rng.standard_normal(out.shape)  # a little room noise
    return (0.9 * out / np.abs(out).max()).astype(np.float32)
