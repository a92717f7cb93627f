"""Analysis of an audio signal as MP3net sees it: MDCT amplitudes, masking threshold, tonality, the
octave-folded "reduced spectrogram" of paper figure 6, and the dB scales the figures use (the figures
themselves are drawn by :mod:`mp3net.plots`).

Signals are float32 ``[C, T]`` numpy arrays at :data:`SAMPLE_RATE`; MDCT amplitudes are ``[C, F, N]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mp3net.dsp import PsychoacousticModel, mdct

SAMPLE_RATE = 22016  # docs/mdct.md#parameters: 128 bands × 172 blocks/s
N_BANDS = 128
DB_OFFSET = 120.0  # docs/psychoacoustics.md#calibration: |A| = 1 ↔ 120 dB


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
        quiet=pm.absolute_threshold(),
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


def loudest_frame(an: Analysis) -> int:
    """Index of the frame with the most energy (summed over channels)."""
    return int((an.A**2).sum(dim=(0, 2)).argmax())
