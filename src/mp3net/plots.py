"""Every figure of the package: MDCT amplitudes, MDCT spectrogram, a block's spectrum against its
thresholds (paper figures 1 and 2), the reduced spectrogram (figure 6) and the tonality curves of training
(figure 5); ``mp3net analyze``, ``mp3net generate --spectrogram``, the training logger and the demo all
draw with these.

Figures are built as bare :class:`matplotlib.figure.Figure` objects (no pyplot, so no global figure
registry to leak into and no display backend); ``save_png`` writes one atomically. The quantities plotted
come from :mod:`mp3net.analysis`. MDCT amplitudes are ``[C, F, N]``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from mp3net.analysis import Analysis, analyze_signal, loudest_frame, reduced_spectrogram, signed_db, to_db
from mp3net.utils import atomic_write

MAX_PLOT_FRAMES = 4000  # longer signals are decimated for the images (the statistics use every frame)
DPI = 110


def save_png(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write ``fig`` as a PNG (atomically) and return the path."""
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    return path


def png_bytes(fig: Figure, dpi: int = 80) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _decimate(frames: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    step = max(1, math.ceil(frames.shape[0] / MAX_PLOT_FRAMES))
    return frames[::step], times[::step]


def _extent(times: np.ndarray, f_top: float, hop: float) -> tuple[float, float, float, float]:
    return (float(times[0]) - hop / 2, float(times[-1]) + hop / 2, 0.0, f_top)


def _frame_times(A: torch.Tensor | np.ndarray, sample_rate: int) -> np.ndarray:
    """Centre of each frame in seconds: frame m spans samples [(m-1)N, (m+1)N) of the signal."""
    return np.arange(A.shape[-2]) * A.shape[-1] / sample_rate


def _channel_names(C: int) -> list[str]:
    return ["left", "right"] if C == 2 else ["mono"] if C == 1 else [f"channel {c}" for c in range(C)]


def _as_numpy(A: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(A, torch.Tensor):
        return A.detach().to("cpu", torch.float64).numpy()
    return np.asarray(A, dtype=np.float64)


def _time_frequency_figure(
    img: np.ndarray, sample_rate: int, what: str, title: str, colorbar: str, **imshow
) -> Figure:
    """One panel per channel of a ``[C, F, N]`` image over time (x) and frequency (y)."""
    C, _, N = img.shape
    hop = N / sample_rate
    times = _frame_times(img, sample_rate)
    fig = Figure(figsize=(11, 3.2 * C + 0.6))
    axes = fig.subplots(C, 1, squeeze=False, sharex=True)
    for c, ax in enumerate(axes[:, 0]):
        frames, t = _decimate(img[c], times)
        im = ax.imshow(
            frames.T,
            origin="lower",
            aspect="auto",
            extent=_extent(t, sample_rate / 2, hop),
            interpolation="nearest",
            **imshow,
        )
        ax.set_ylabel("frequency (Hz)")
        ax.set_title(f"{what}, {_channel_names(C)[c]}" + (f" — {title}" if title else ""))
        fig.colorbar(im, ax=ax, label=colorbar)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    return fig


def mdct_figure(A: torch.Tensor | np.ndarray, sample_rate: int, title: str = "") -> Figure:
    """MDCT amplitudes A_k(m) ``[C, F, N]``, signed dB grey scale (white positive, black negative)."""
    return _time_frequency_figure(
        signed_db(_as_numpy(A)),
        sample_rate,
        "MDCT amplitudes",
        title,
        "sign(A)·(dB re |A|=1 + 100)",
        cmap="gray",
        vmin=-100,
        vmax=100,
    )


def spectrogram_figure(A: torch.Tensor | np.ndarray, sample_rate: int, title: str = "") -> Figure:
    """MDCT spectrogram 20·log10|A| + 120 dB of ``[C, F, N]`` amplitudes (paper figure 1)."""
    db = to_db(_as_numpy(A))
    vmax = float(np.percentile(db, 99.9))
    return _time_frequency_figure(
        db,
        sample_rate,
        "MDCT spectrogram",
        title,
        "dB SPL (|A| = 1 ↔ 120 dB)",
        cmap="magma",
        vmin=max(vmax - 90.0, -20.0),
        vmax=vmax,
    )


def frame_threshold_figure(an: Analysis, frame: int | None = None, channel: int = 0) -> Figure:
    """One block's spectrum with the absolute threshold and the masking threshold (paper figure 2)."""
    m = loudest_frame(an) if frame is None else frame
    N = an.A.shape[-1]
    df = an.sample_rate / (2 * N)
    f = (np.arange(N) + 0.5) * df
    a = an.A[channel, m].numpy()
    thr = an.threshold[channel, m].numpy()
    fig = Figure(figsize=(10, 4.8))
    ax = fig.subplots()
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
    return fig


def reduced_figure(an: Analysis, keep_bins: int = 32, title: str = "") -> Figure:
    """The octave-folded reduced spectrogram (paper §6, figure 6), channels summed."""
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
    fig = Figure(figsize=(11, 4))
    ax = fig.subplots()
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
    return fig


def tonality_curve_figure(curve: dict[str, list[float]], title: str = "") -> Figure:
    """Paper figure 5: tonality of generated (left) and real (right) clips over D iterations.

    ``curve`` holds equally long lists ``step``, ``fake`` and ``real`` (τ in [0, 1]).
    """
    fig = Figure(figsize=(10, 3.4))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, colour in ((axes[0], "fake", "tab:orange"), (axes[1], "real", "tab:blue")):
        ax.plot(curve["step"], [100 * v for v in curve[key]], ".-", color=colour, ms=3, lw=1)
        ax.set_xlabel("discriminator iteration")
        ax.set_title(f"tonality of {'generated' if key == 'fake' else 'real'} clips")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean tonality τ (%)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def write_figures(
    an: Analysis, out_dir: str | Path, stem: str, title: str = "", frame: int | None = None
) -> list[Path]:
    """All four analysis figures as ``<stem>_{mdct,spectrogram,threshold,reduced}.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    return [
        save_png(mdct_figure(an.A, an.sample_rate, title), out_dir / f"{stem}_mdct.png"),
        save_png(spectrogram_figure(an.A, an.sample_rate, title), out_dir / f"{stem}_spectrogram.png"),
        save_png(frame_threshold_figure(an, frame), out_dir / f"{stem}_threshold.png"),
        save_png(reduced_figure(an, title=title), out_dir / f"{stem}_reduced.png"),
    ]


def write_spectrogram(
    x: np.ndarray | torch.Tensor, sample_rate: int, n_bands: int, path: str | Path, title: str = ""
) -> Path:
    """The MDCT spectrogram of ``[C, T]`` audio as a PNG (``mp3net generate --spectrogram``, the demo)."""
    return save_png(spectrogram_figure(analyze_signal(x, sample_rate, n_bands).A, sample_rate, title), path)


def _thumbnail_row(images: Sequence[np.ndarray], title: str, vmin: float, vmax: float) -> Figure:
    """``[T, F]`` dB images side by side, time → right, frequency ↑, on one colour scale."""
    fig = Figure(figsize=(3 * len(images), 2.2))
    axes = fig.subplots(1, len(images), squeeze=False)[0]
    for ax, db in zip(axes, images, strict=True):
        ax.imshow(db.T, origin="lower", aspect="auto", cmap="magma", vmin=vmin, vmax=vmax)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_ylabel(title, fontsize=8)
    fig.tight_layout(pad=0.2)
    return fig


def spectrogram_row_figure(amplitudes: Sequence[torch.Tensor], title: str = "") -> Figure:
    """Thumbnails side by side: the log power (dB, mean over channels) of MDCT amplitudes ``[C, F, N]``
    per clip, time → right, frequency ↑, one shared colour scale so levels compare across clips."""
    images = [10 * np.log10(np.square(_as_numpy(A).astype(np.float64)).mean(0) + 1e-10) for A in amplitudes]
    return _thumbnail_row(images, title, vmin=-90, vmax=-10)


def long_window_row_figure(
    amplitudes: Sequence[torch.Tensor],
    sample_rate: int,
    n_fft: int = 1024,
    f_max: float = 2750.0,
    title: str = "",
) -> Figure:
    """Thumbnails side by side, as :func:`spectrogram_row_figure`, of the long-window log spectrogram of MDCT
    amplitudes ``[C, F, N]`` (:func:`mp3net.dsp.spectral.log_spectrogram`, the view of D's spectral
    discriminator; mean power over channels) up to ``f_max`` Hz, where single partials are lines. Colours
    span 70 dB under each row's loudest bin."""
    from mp3net.dsp.spectral import log_spectrogram

    images = []
    for A in amplitudes:
        v = log_spectrogram(torch.as_tensor(A)[None], n_fft)[0]  # [C, T, F], dB / 20
        power = torch.pow(10.0, 2 * v.double()).mean(0)  # [T, F]
        images.append(10 * np.log10(power[:, : int(f_max * n_fft / sample_rate)].numpy()))
    top = max(float(db.max()) for db in images)
    return _thumbnail_row(images, title, vmin=top - 70, vmax=top)


PITCH_CLASSES = ("A", "A♯", "B", "C", "C♯", "D", "D♯", "E", "F", "F♯", "G", "G♯")  # longform.chroma's order


def long_track_figure(
    audio: torch.Tensor, sample_rate: int, title: str = "", n_fft: int = 1024, f_max: float = 2750.0
) -> Figure:
    """A long track ``[C, T]`` in two panels over its whole length: the log spectrogram (``n_fft`` window on
    the mono mix, up to ``f_max`` Hz, 70 dB of colour under the loudest bin: a held partial is a line) and
    the chromagram (:func:`mp3net.longform.chroma`, each half second's pitch classes over its strongest)."""
    from mp3net.dsp.spectral import audio_power_spectrogram
    from mp3net.longform import CHROMA_STEP, chroma

    x = torch.as_tensor(audio).double()
    mono = x.mean(0) if x.dim() == 2 else x
    hop = n_fft // 4
    power = audio_power_spectrogram(mono[None, None], n_fft)[0, 0].T  # [F, N]
    db = 10 * np.log10(power[: int(f_max * n_fft / sample_rate)].numpy() + 1e-12)
    times = np.arange(db.shape[1]) * hop / sample_rate
    db, times = _decimate(db.T, times)
    seconds = mono.shape[-1] / sample_rate
    fig = Figure(figsize=(12, 4.6))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2.2, 1]})
    vmax = float(db.max())
    top.imshow(
        db.T,
        origin="lower",
        aspect="auto",
        cmap="magma",
        vmin=vmax - 70,
        vmax=vmax,
        extent=(0, seconds, 0, f_max),
    )
    top.set_ylabel("Hz", fontsize=8)
    top.set_title(title, fontsize=9)
    c = chroma(x, sample_rate).numpy()  # [F, 12]
    c = c / np.maximum(c.max(1, keepdims=True), 1e-12)  # each half second's strongest class is black
    bottom.imshow(
        c.T,
        origin="lower",
        aspect="auto",
        cmap="Greys",
        vmin=0,
        vmax=1,
        extent=(0, c.shape[0] * CHROMA_STEP, -0.5, 11.5),
        interpolation="nearest",
    )
    bottom.set_yticks(range(12), PITCH_CLASSES, fontsize=6)
    bottom.set_xlabel("seconds", fontsize=8)
    fig.tight_layout(pad=0.3)
    return fig
