"""MDCT and inverse MDCT with the convention of SPEC §1 (paper §2.1).

Forward, for frame m = 0..T/N (one block of N zeros padded at each end of the signal):

    A_k(m) = 1/(√2·N) · Σ_{n=0}^{2N-1} w_n · x[(m-1)N + n] · cos(π/N · (n + ½ - N/2) · (k + ½))

with the Vorbis window w_n = sin(π/2 · sin²(π/(2N)·(n + ½))) (paper eq. 6), which satisfies the
Princen-Bradley conditions (eq. 4-5), so windowed overlap-add of the inverse reconstructs the signal.

Both directions are computed with one complex FFT of length 2N per frame (pre-twiddle, FFT,
post-twiddle), batched over any leading dimensions, differentiable, on any device.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

# inverse scale: the windowed TDAC pair needs forward·inverse = 2/N, so with the forward 1/(√2·N) of
# SPEC §1 the inverse is 2√2 (checked by exact reconstruction in tests/dsp/test_mdct.py)
_INV_SCALE = 2.0 * math.sqrt(2.0)


def vorbis_window(n_bands: int, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> torch.Tensor:
    """The 2N-point Vorbis power-complementary window, paper eq. 6. Shape ``[2N]``."""
    n = torch.arange(2 * n_bands, dtype=torch.float64)
    w = torch.sin(math.pi / 2 * torch.sin(math.pi / (2 * n_bands) * (n + 0.5)) ** 2)
    return w.to(dtype=dtype, device=device)


@lru_cache(maxsize=32)
def _tables(n_bands: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Window and twiddle factors for one (N, dtype, device); computed in float64, then cast."""
    N = n_bands
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    n = torch.arange(2 * N, dtype=torch.float64)
    k = torch.arange(N, dtype=torch.float64)
    n0 = 0.5 - N / 2  # phase term -N/2 (SPEC §1)
    w = vorbis_window(N)
    # forward: Σ_n y_n e^{-iπ(n+n0)(k+½)/N} = e^{-iπ n0 (k+½)/N} · FFT_{2N}(y_n e^{-iπ n/(2N)})[k]
    pre_f = torch.polar(w / (math.sqrt(2.0) * N), -math.pi * n / (2 * N))
    post_f = torch.polar(torch.ones(N, dtype=torch.float64), -math.pi * n0 * (k + 0.5) / N)
    # inverse: Σ_k A_k e^{iπ(n+n0)(k+½)/N} = e^{iπ(n+n0)/(2N)} · 2N·IFFT_{2N}(A_k e^{iπ n0 k/N})[n]
    pre_i = torch.polar(torch.ones(N, dtype=torch.float64), math.pi * n0 * k / N)
    post_i = torch.polar(w * _INV_SCALE * 2 * N, math.pi * (n + n0) / (2 * N))
    return tuple(t.to(device=device, dtype=cdtype) for t in (pre_f, post_f, pre_i, post_i))


def _real_dtype(x: torch.Tensor) -> torch.dtype:
    # half precisions are computed in float32: float16 underflows, bfloat16 is too coarse (SPEC §2)
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def mdct(x: torch.Tensor, n_bands: int = 128) -> torch.Tensor:
    """MDCT of a signal.

    Args:
        x: ``[..., T]`` samples, T a multiple of ``n_bands``.
        n_bands: N, the number of filter bands (even).
    Returns:
        ``[..., T/N + 1, N]`` amplitudes A_k(m).
    """
    N = n_bands
    if N % 2 or N < 2:
        raise ValueError(f"n_bands must be even and positive, got {N}")
    T = x.shape[-1]
    if T % N:
        raise ValueError(f"signal length {T} is not a multiple of n_bands={N}")
    x = x.to(_real_dtype(x))
    pre, post, _, _ = _tables(N, x.dtype, x.device)
    lead = x.shape[:-1]
    xp = torch.nn.functional.pad(x.reshape(-1, T), (N, N))
    frames = xp.unfold(-1, 2 * N, N)  # [B, F, 2N], frame m = samples [(m-1)N, (m+1)N) of x
    spec = torch.fft.fft(frames * pre, dim=-1)[..., :N]
    return (spec * post).real.reshape(*lead, T // N + 1, N)


def imdct(A: torch.Tensor, trim: bool = False) -> torch.Tensor:
    """Inverse MDCT by windowed overlap-add.

    Args:
        A: ``[..., F, N]`` amplitudes.
        trim: drop the padding block at each end, returning exactly the ``(F-1)·N`` samples that
            :func:`mdct` was given.
    Returns:
        ``[..., (F+1)·N]`` samples (frame m lands on samples [mN, mN+2N)); the original signal is
        samples ``[N, N+T)``. With ``trim=True``: ``[..., (F-1)·N]``.
    """
    F, N = A.shape[-2], A.shape[-1]
    if N % 2 or N < 2:
        raise ValueError(f"the number of bands must be even and positive, got {N}")
    A = A.to(_real_dtype(A))
    _, _, pre, post = _tables(N, A.dtype, A.device)
    lead = A.shape[:-2]
    spec = torch.nn.functional.pad(A.reshape(-1, F, N) * pre, (0, N))
    y = (torch.fft.ifft(spec, dim=-1) * post).real  # [B, F, 2N], windowed
    # overlap-add: first halves land on blocks 0..F-1, second halves on blocks 1..F
    first, second = y[..., :N], y[..., N:]
    zero = first.new_zeros(first.shape[0], 1, N)
    out = torch.cat([first, zero], dim=1) + torch.cat([zero, second], dim=1)
    out = out.reshape(*lead, (F + 1) * N)
    return out[..., N:-N] if trim else out
