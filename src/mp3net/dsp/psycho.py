"""Psychoacoustic model (paper §2.2, eq. 8-13): docs/psychoacoustics.md. The noise layer built on it
is :class:`mp3net.model.NoiseLayer`.

Amplitudes are calibrated so that |A| = 1 is 120 dB; intensities are A². All functions are
vectorised over any leading dimensions ``[..., F, N]`` (batch, channels, frames) with no Python loops,
differentiable, and computed in float32 (or float64 when given float64).
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn

EPS = 1e-14  # intensity floor, -20 dB
_CHUNK = 1 << 18  # elements per chunk of rows in threshold(): intermediates stay in cache


def bark(f: torch.Tensor | float) -> torch.Tensor:
    """z(f) = 6·asinh(f/600), f in Hz."""
    return 6.0 * torch.asinh(torch.as_tensor(f, dtype=torch.float64) / 600.0)


def inv_bark(z: torch.Tensor | float) -> torch.Tensor:
    """f(z) = 600·sinh(z/6), in Hz."""
    return 600.0 * torch.sinh(torch.as_tensor(z, dtype=torch.float64) / 6.0)


def absolute_threshold_db(f_hz: torch.Tensor) -> torch.Tensor:
    """Absolute threshold of hearing in dB (paper eq. 9), f in Hz, clipped to [-20, 120] dB."""
    f = f_hz / 1000.0
    level = 3.64 * f**-0.8 - 6.5 * torch.exp(-0.6 * (f - 3.3) ** 2) + 1e-3 * f**4
    return level.clamp(-20.0, 120.0)


def db_to_intensity(level_db: torch.Tensor) -> torch.Tensor:
    return 10.0 ** ((level_db - 120.0) / 10.0)


def spreading_db(dz: torch.Tensor) -> torch.Tensor:
    """Spreading function SF(Δz) in dB, paper eq. 11."""
    return 15.81 + 7.5 * (dz + 0.474) - 17.5 * torch.sqrt(1.0 + (dz + 0.474) ** 2)


def tonality(A: torch.Tensor) -> torch.Tensor:
    """Tonality τ per frame: flatness of the intensities (paper eq. 13; docs/psychoacoustics.md#tonality).

    Args:
        A: ``[..., F, N]`` MDCT amplitudes.
    Returns:
        ``[..., F]`` τ in [0, 1]: ≈1 for a pure tone, ≈0 for white noise.
    """
    I = A.to(torch.float64 if A.dtype == torch.float64 else torch.float32) ** 2
    return _tonality_from_means(torch.log(I.clamp_min(EPS)).mean(dim=-1), I.mean(dim=-1))


def _tonality_from_means(log_geo: torch.Tensor, arith: torch.Tensor) -> torch.Tensor:
    """τ = min(SFM_dB / -60, 1) (eq. 13) from the log of the geometric mean of the floored intensities and
    their arithmetic mean (any matching shapes); SFM_dB = 10·log10(geometric / arithmetic mean)."""
    sfm_db = (10.0 / math.log(10.0)) * (log_geo - torch.log(arith + EPS))
    return (sfm_db / -60.0).clamp(max=1.0)


class PsychoacousticModel(nn.Module):
    """Masking threshold of MDCT amplitudes (paper eq. 8-12; docs/psychoacoustics.md).

    The bin↔Bark-band matrices, absolute threshold and spreading matrix are buffers, so the model
    moves with ``.to(device)``.

    Args:
        sample_rate: fs in Hz; the bins cover [0, fs/2].
        n_bands: N, MDCT bands.
        n_bark: number of equal-width Bark bands (24; it sets the level of the masking threshold).
        alpha: non-linear superposition exponent of eq. 10.
    """

    def __init__(self, sample_rate: int, n_bands: int, n_bark: int = 24, alpha: float = 0.6) -> None:
        super().__init__()
        self.sample_rate, self.n_bands, self.n_bark, self.alpha = sample_rate, n_bands, n_bark, alpha
        f64 = torch.float64
        z_max = bark(sample_rate / 2.0)
        width = z_max / n_bark
        df = sample_rate / (2.0 * n_bands)
        bin_lo = torch.arange(n_bands, dtype=f64) * df
        bin_hi = bin_lo + df
        band_edges = inv_bark(torch.arange(n_bark + 1, dtype=f64) * width)
        band_edges[-1] = sample_rate / 2.0  # exact top edge despite sinh(asinh(·)) rounding
        band_lo, band_hi = band_edges[:-1], band_edges[1:]
        overlap = (
            torch.minimum(bin_hi[:, None], band_hi[None]) - torch.maximum(bin_lo[:, None], band_lo[None])
        ).clamp_min(0)
        W = overlap / df  # [N, n_bark], rows sum to 1
        W_inv = (overlap / (band_hi - band_lo)[None]).T.contiguous()  # [n_bark, N], rows sum to 1
        # absolute threshold at the Bark-band mid-points (eq. 8-9)
        f_mid = inv_bark((torch.arange(n_bark, dtype=f64) + 0.5) * width)
        quiet = db_to_intensity(absolute_threshold_db(f_mid))
        # spreading matrix S[i (masker), j (maskee)] sampled on zz = linspace(-z_max, z_max, 2·n_bark)
        zz = torch.linspace(-float(z_max), float(z_max), 2 * n_bark, dtype=f64)
        i = torch.arange(n_bark)[:, None]
        j = torch.arange(n_bark)[None, :]
        S = 10.0 ** (alpha * spreading_db(zz[n_bark - i + j]) / 10.0)
        # offset (eq. 12) uses band positions linspace(0, z_max, n_bark), end points included
        z_off = torch.linspace(0.0, float(z_max), n_bark, dtype=f64)
        # W with an extra column 1/N: one matmul gives the band intensities and the mean intensity (eq. 13);
        # zero columns pad it to a multiple of 8, which the BLAS kernels handle much faster than 25
        pad = -(n_bark + 1) % 8
        W_mean = torch.cat(
            [W, torch.full((n_bands, 1), 1.0 / n_bands, dtype=f64), torch.zeros(n_bands, pad, dtype=f64)], 1
        )
        bufs = dict(W=W, W_inv=W_inv, quiet=quiet, S=S, z_off=z_off, W_mean=W_mean)
        for name, t in {**bufs, "f_mid": f_mid}.items():
            self.register_buffer(name, t.to(torch.float32), persistent=False)
        self._f64 = bufs

    def _buffers_like(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dtype == torch.float64:
            return {k: v.to(x.device) for k, v in self._f64.items()}
        return {k: getattr(self, k) for k in self._f64}

    def absolute_threshold(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``[N]`` amplitudes of the absolute threshold of hearing spread over the bins (eq. 9): the
        masking threshold of silence."""
        buf = self._buffers_like(torch.empty(0, dtype=dtype, device=cast(torch.Tensor, self.quiet).device))
        return torch.sqrt(buf["quiet"] @ buf["W_inv"])

    def band_intensity(self, A: torch.Tensor) -> torch.Tensor:
        """``[..., F, N]`` amplitudes → ``[..., F, n_bark]`` Bark-band intensities Σ_i W[i, j]·A_i²."""
        A = A.to(torch.float64 if A.dtype == torch.float64 else torch.float32)
        return (A * A) @ self._buffers_like(A)["W"]

    def tonality(self, A: torch.Tensor) -> torch.Tensor:
        """``[..., F, N]`` → ``[..., F]`` tonality per frame (eq. 13)."""
        return tonality(A)

    def threshold(self, A: torch.Tensor) -> torch.Tensor:
        """Per-bin masking threshold amplitude (eq. 8-12), combining masking and the absolute threshold.

        Args:
            A: ``[..., F, N]`` MDCT amplitudes (any float dtype; half precisions run in float32).
        Returns:
            ``[..., F, N]`` threshold amplitudes, positive and finite (float32 or float64).
        """
        # float32 even inside a bf16/fp16 autocast region: the matmuls below must not drop to half precision
        with torch.autocast(device_type=A.device.type, enabled=False):
            return self._threshold(A.to(torch.float64 if A.dtype == torch.float64 else torch.float32))

    def _threshold(self, A: torch.Tensor) -> torch.Tensor:
        buf = self._buffers_like(A)
        N = A.shape[-1]
        rows = A.reshape(-1, N)
        # frames are independent: work in cache-sized chunks of rows (no Python loop over single frames)
        step = max(1, _CHUNK * torch.get_num_threads() // N)  # per-thread share stays cache-sized
        if step >= rows.shape[0]:
            return self._threshold_rows(rows, buf).reshape(A.shape)
        out = rows.new_empty(rows.shape)
        no_grad = not (torch.is_grad_enabled() and rows.requires_grad)
        for s in range(0, rows.shape[0], step):
            if no_grad:  # the last matmul writes straight into the output
                self._threshold_rows(rows[s : s + step], buf, out=out[s : s + step])
            else:
                out[s : s + step] = self._threshold_rows(rows[s : s + step], buf)
        return out.reshape(A.shape)

    def _threshold_rows(
        self, A: torch.Tensor, buf: dict[str, torch.Tensor], out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``[R, N]`` amplitudes → ``[R, N]`` threshold amplitudes (into ``out`` if given; no autograd)."""
        a = self.alpha
        I = A * A
        nb = self.n_bark
        band_mean = I @ buf["W_mean"]  # [R, n_bark + 1 + pad]
        I_band = band_mean[:, :nb]  # [R, n_bark]
        # tonality (eq. 13)
        floored = I.clamp_min(EPS)
        # in place when no gradient is needed (log's backward needs its input)
        log_i = floored.log() if torch.is_grad_enabled() and floored.requires_grad else floored.log_()
        tau = _tonality_from_means(log_i.mean(dim=-1, keepdim=True), band_mean[:, nb : nb + 1])  # [R, 1]
        offset_db = tau * (buf["z_off"] + 9.0) + 5.5  # eq. 12, [R, n_bark]
        # eq. 10: (Σ_i I_i^α S_ij)^(1/α) · 10^(-O_j/10) (the offset factor does not depend on i), with the
        # powers as exp/log: a float exponent in torch.pow is several times slower than vectorised exp and log
        spread = torch.exp(a * torch.log(I_band.clamp_min(EPS))) @ buf["S"]
        I_mask = torch.exp(torch.log(spread) / a - offset_db * (math.log(10.0) / 10.0))
        I_glob = torch.maximum(I_mask, buf["quiet"])
        spread_bins = I_glob @ buf["W_inv"] if out is None else torch.matmul(I_glob, buf["W_inv"], out=out)
        return spread_bins.clamp_min_(EPS).sqrt_()

    def inaudible_share(self, A: torch.Tensor) -> float:
        """Share of coefficients with |A| below the masking threshold (the part MP3 would drop)."""
        return (A.abs().to(torch.float32) < self.threshold(A)).float().mean().item()
