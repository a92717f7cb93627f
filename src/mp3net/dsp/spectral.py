"""A long-window view of MDCT amplitudes (docs/experiments.md#2026-12-04-ds-spectral-view): back to audio
by the inverse MDCT, then a short-time Fourier transform whose window spans many MDCT frames, so a held
partial is one narrow line and a band of noise a flat smear, where the MDCT shows both as flickering bands."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mp3net.dsp.mdct import imdct

# the log power's floor: |S|² of a sinusoid of amplitude 1.2e-5 (−98 dB re full scale) under a 1024-sample
# Hann window; it bounds the log's slope in silent bins, where D's gradient to G would otherwise explode
LOG_FLOOR = 1e-5


def log_spectrogram(A: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Log power of the STFT of the audio that MDCT amplitudes ``A`` ``[B, C, M, N]`` encode
    (:func:`audio_log_spectrogram` of its inverse MDCT). Differentiable in ``A``.

    Returns:
        ``[B, C, T, n_fft/2 + 1]`` float32 (float64 for float64 ``A``), T = (M + 1)·N / hop + 1 frames,
        time before frequency as in ``A``.
    """
    return log_power(power_spectrogram(A, n_fft))


def power_spectrogram(A: torch.Tensor, n_fft: int) -> torch.Tensor:
    """|S|² of the STFT of the audio that MDCT amplitudes ``A`` ``[B, C, M, N]`` encode, laid out as
    :func:`log_spectrogram`'s ``[B, C, T, n_fft/2 + 1]``. Differentiable in ``A``."""
    return audio_power_spectrogram(imdct(A if A.dtype == torch.float64 else A.float()), n_fft)


def audio_log_spectrogram(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Log power of the STFT of audio ``x`` ``[B, C, T]``: :func:`log_power` of
    :func:`audio_power_spectrogram`. Returns ``[B, C, frames, n_fft/2 + 1]``."""
    return log_power(audio_power_spectrogram(x, n_fft))


def audio_power_spectrogram(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    """|S|² of the STFT of audio ``x`` ``[B, C, T]``: Hann window of ``n_fft`` samples, hop ``n_fft / 4``,
    centred frames. Returns ``[B, C, frames, n_fft/2 + 1]``."""
    b, c, t = x.shape
    window = torch.hann_window(n_fft, dtype=x.dtype, device=x.device)
    S = torch.stft(x.reshape(b * c, t), n_fft, hop_length=n_fft // 4, window=window, return_complex=True)
    power = S.real.square() + S.imag.square()  # [B·C, F, T]
    return power.reshape(b, c, *power.shape[1:]).transpose(-1, -2)


def log_power(power: torch.Tensor) -> torch.Tensor:
    """Power in decibels / 20 (ln-free, so a 20 dB step is 1.0): 0.5·log10(power + ``LOG_FLOOR``)."""
    return 0.5 * torch.log10(power + LOG_FLOOR)


def mid_side(A: torch.Tensor) -> torch.Tensor:
    """Stereo amplitudes ``[B, 2, M, K]`` → mid (L + R)/2 and side (L − R)/2, ``[B, 2, M, K]`` (linear, so
    the MDCT of the mid and side signals); mono ``[B, 1, M, K]`` is returned as it is. A log distance per
    channel is blind to how L and R relate; on mid and side it sees the width of the stereo image."""
    if A.shape[1] != 2:
        return A
    return torch.stack([A[:, 0] + A[:, 1], A[:, 0] - A[:, 1]], 1) / 2


# the blocks log_envelope averages the power over: 4 frames (a quarter window's hop each, so one window's
# span) by 1/32 of the spectrum (≈ 170 Hz at 11 kHz): a partial's exact bin and a note's exact frame go,
# the level of each region of the spectrogram stays
ENVELOPE_FRAMES = 4
ENVELOPE_BANDS = 32


def log_envelope(power: torch.Tensor) -> torch.Tensor:
    """The level of each region of a power spectrogram ``[B, C, T, F]`` (:func:`power_spectrogram`): the
    power averaged over blocks of ``ENVELOPE_FRAMES`` frames by ``ENVELOPE_BANDS``-th of the bins (the
    last few frames and the top bins beyond whole blocks dropped), then :func:`log_power`
    (docs/training.md#autoencoder-pretraining). The mean of the power, not of its log: a clip's level.

    Returns:
        ``[B, C, T // ENVELOPE_FRAMES, ENVELOPE_BANDS]``.
    """
    b, c, t, f = power.shape
    width = f // ENVELOPE_BANDS
    if width < 1 or t < ENVELOPE_FRAMES:
        raise ValueError(
            f"an envelope needs {ENVELOPE_FRAMES} frames and {ENVELOPE_BANDS} bins, got {t} × {f}"
        )
    pooled = F.avg_pool2d(power.reshape(b * c, 1, t, f), (ENVELOPE_FRAMES, width))
    return log_power(pooled[:, 0, :, :ENVELOPE_BANDS]).reshape(b, c, -1, ENVELOPE_BANDS)


# bins of the moving average spectral_detail removes (≈ 180 Hz at 1024 samples and 11 kHz): the envelope
# and the level go, partials (1–3 bins wide under a Hann window) stay
DETAIL_WIDTH = 17


def spectral_detail(spectrum: torch.Tensor, width: int = DETAIL_WIDTH) -> torch.Tensor:
    """The partials of log spectra ``[B, F]``: each minus its moving average over ``width`` bins (fewer at
    the edges). Two clips of the same partials at different levels or under different envelopes have the
    same detail (docs/experiments.md#2026-12-05-mode-seeking)."""
    s = spectrum[:, None]
    return (s - F.avg_pool1d(s, width, 1, width // 2, count_include_pad=False))[:, 0]


def partial_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """How alike the partials of two sets of log spectrograms are, frame by frame: the cosine similarity
    of their :func:`spectral_detail` (the lines over the envelope), each clip's less its mean.

    Args:
        a: ``[N, T, F]`` and b: ``[M, T, F]`` log spectrograms (channels already averaged), the same T, F.
    Returns:
        ``[N, M]`` in [−1, 1]: 1 for the same lines at the same times, about 0 for unrelated clips
        (docs/training.md#autoencoder-pretraining).
    """

    def unit(s: torch.Tensor) -> torch.Tensor:
        n, t, f = s.shape
        d = spectral_detail(s.reshape(n * t, f).float()).reshape(n, t * f)
        d = d - d.mean(1, keepdim=True)
        return d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)

    return unit(a) @ unit(b).T
