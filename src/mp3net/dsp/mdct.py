"""MDCT and inverse MDCT with the convention of docs/mdct.md (paper §2.1).

Forward, for frame m = 0..T/N (one block of N zeros padded at each end of the signal):

    A_k(m) = 1/(√2·N) · Σ_{n=0}^{2N-1} w_n · x[(m-1)N + n] · cos(π/N · (n + ½ - N/2) · (k + ½))

with the Vorbis window w_n = sin(π/2 · sin²(π/(2N)·(n + ½))) (paper eq. 6), which satisfies the
Princen-Bradley conditions (eq. 4-5), so windowed overlap-add of the inverse reconstructs the signal.

Algorithm (N divisible by 4, e.g. the presets' 128): the windowed 2N-sample frame is folded into N samples
u (time-domain aliasing), whose DCT-IV is the MDCT; the DCT-IV is computed with one N/2-point complex FFT
between a pre- and a post-twiddle (t_n = (u_{2n} + i·u_{N-1-2n})·e^{-iπ(4n+1)/(4N)}, c = FFT(t)·e^{-iπk/N},
X_{2k} = Re c_k, X_{N-1-2k} = -Im c_k). Because the hop is N, every step is written on the even/odd
samples of whole blocks with contiguous slices (no gathers, no unfolded copies), and the work runs in chunks
of frames that stay in cache. The inverse runs the same DCT-IV, unfolds with the window and overlap-adds.
For N ≡ 2 (mod 4) a plain 2N-point FFT version is used. Everything is differentiable, batched over any
leading dimensions and device-agnostic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch

# the windowed TDAC pair needs forward·inverse = 2/N, so with the forward 1/(√2·N) the inverse is 2√2
# (docs/mdct.md#inverse; checked by exact reconstruction in tests/dsp/test_mdct.py)
_INV_SCALE = 2.0 * math.sqrt(2.0)
# elements (rows x frames x N) processed per chunk: ~1 MB of float32 per intermediate, cache-sized (2^17 and
# 2^19 measured 10 % slower on this AMD EPYC)
_CHUNK = 1 << 18


def vorbis_window(
    n_bands: int, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """The 2N-point Vorbis power-complementary window, paper eq. 6. Shape ``[2N]``."""
    n = torch.arange(2 * n_bands, dtype=torch.float64)
    w = torch.sin(math.pi / 2 * torch.sin(math.pi / (2 * n_bands) * (n + 0.5)) ** 2)
    return w.to(dtype=dtype, device=device)


def _real_dtype(t: torch.Tensor) -> torch.dtype:
    # half precisions run in float32: float16 underflows, bfloat16 is coarse
    # (docs/psychoacoustics.md#precision)
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


@lru_cache(maxsize=32)
def _fast_tables(N: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Fold coefficients and twiddles for N ≡ 0 (mod 4); computed in float64, then cast."""
    w = vorbis_window(N)
    h, q = N // 2, N // 4
    n = torch.arange(q)
    # Forward fold, per block of N samples with E = even samples and O = odd samples reversed
    # (E_k = x[2k], O_k = x[N-1-2k]): Z = ce[0]·E + co[0]·O and Y = ce[1]·E + co[1]·O, then for frame m
    # (blocks m, m+1): Re t_m = [Z_m[q:], Z_{m+1}[:q]], Im t_m = [Y_{m+1}[q:], Y_m[:q]]. The imaginary
    # part is negated so that an unnormalised inverse FFT yields conj(c), whose real view is the output
    # order up to one reversal.
    ce = torch.stack([torch.cat([w[N + 2 * n], w[h + 2 * n]]), torch.cat([-w[2 * n], w[N + h + 2 * n]])])
    co = torch.stack(
        [
            torch.cat([-w[2 * N - 1 - 2 * n], w[h - 1 - 2 * n]]),
            torch.cat([-w[N - 1 - 2 * n], -w[N + h - 1 - 2 * n]]),
        ]
    )
    k = torch.arange(h, dtype=torch.float64)
    one = torch.ones(h, dtype=torch.float64)
    pre_f = torch.polar(one, math.pi * (4 * k + 1) / (4 * N))
    post_f = torch.polar(one / (math.sqrt(2.0) * N), math.pi * k / N)
    pre_i = torch.polar(one, -math.pi * (4 * k + 1) / (4 * N))
    post_i = torch.polar(one * _INV_SCALE, -math.pi * k / N)
    # Inverse unfold: v = DCT-IV(A); ṽ = [Re c_0, Im c_{h-1}, Re c_1, ...] is v with odd entries negated
    # (sign s(i) folded in here). Output block j = first half of frame j + second half of frame j-1:
    #   out[l]   = w[l]·v_j[h-1-l] + w[N+l]·v_{j-1}[h+l]           (l < h)
    #   out[h+l] = w[h+l]·v_j[l]   - w[N+h+l]·v_{j-1}[h-1-l]
    l = torch.arange(h)

    def s(i: torch.Tensor) -> torch.Tensor:
        return 1.0 - 2.0 * (i % 2).double()

    unfold = torch.stack(
        [w[l] * s(h - 1 - l), w[N + l] * s(h + l), w[h + l] * s(l), -w[N + h + l] * s(h - 1 - l)]
    )
    rd, cd = dtype, _complex_dtype(dtype)
    return (
        ce.to(device, rd),
        co.to(device, rd),
        pre_f.to(device, cd),
        post_f.to(device, cd),
        pre_i.to(device, cd),
        post_i.to(device, cd),
        unfold.to(device, rd),
    )


def _padded_rows(t: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Rows [lo, hi) of ``[zero, t[:, 0], ..., t[:, L-1], zero]`` along dim 1 (t is ``[B, L, N]``)."""
    L = t.shape[1]
    v = t[:, max(lo - 1, 0) : min(hi - 1, L)]
    front, back = int(lo == 0), int(hi == L + 2)
    if front or back:
        v = torch.nn.functional.pad(v, (0, 0, front, back))
    return v


def _mdct_chunk(xb: torch.Tensor, tables: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``[B, n+1, N]`` consecutive blocks → ``[B, n, N]`` MDCT frames (frame i = blocks i, i+1)."""
    ce, co, pre, post = tables[:4]
    B, nb, N = xb.shape
    h, q = N // 2, N // 4
    pairs = xb.reshape(B, nb, h, 2)  # [..., 0] even samples, [..., 1] odd samples
    zy = ce * pairs[..., 0].unsqueeze(2)  # [B, nb, 2, h]
    zy.addcmul_(co, pairs[..., 1].flip(-1).unsqueeze(2))
    re = zy[:, :, 0].reshape(B, nb * h)[:, q : q + (nb - 1) * h].view(B, nb - 1, h)
    y = zy[:, :, 1]
    im = torch.cat([y[:, 1:, q:], y[:, :-1, :q]], dim=-1)
    c = torch.fft.ifft(torch.complex(re, im).mul_(pre), norm="forward").mul_(post)  # conj of the DCT-IV c
    return torch.view_as_real(torch.complex(c.real, c.flip(-1).imag)).flatten(-2)


def _imdct_chunk(Ab: torch.Tensor, tables: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``[B, n+1, N]`` consecutive frames → ``[B, n, N]`` output blocks (block i = frames i, i+1 added)."""
    pre, post, unfold = tables[4:]
    N = Ab.shape[-1]
    h = N // 2
    t = torch.complex(Ab[..., 0::2], Ab.flip(-1)[..., 0::2]).mul_(pre)  # A_{2n} + i·A_{N-1-2n}
    c = torch.fft.fft(t).mul_(post)
    cf = c.flip(-1)
    v = torch.view_as_real(torch.complex(c.real, cf.imag)).flatten(-2)  # ṽ
    vr = torch.view_as_real(torch.complex(c.imag, cf.real)).flatten(-2)  # ṽ reversed
    first = unfold[0] * vr[:, 1:, h:]
    first.addcmul_(unfold[1], v[:, :-1, h:])
    second = unfold[2] * v[:, 1:, :h]
    second.addcmul_(unfold[3], vr[:, :-1, :h])
    return torch.cat([first, second], dim=-1)


class _Workspace:
    """Named scratch buffers reused across chunks, so that the no-grad inverse allocates (and page-faults)
    its intermediates once per call instead of once per chunk."""

    def __init__(self, like: torch.Tensor) -> None:
        self.like = like
        self.bufs: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], complex_: bool = False) -> torch.Tensor:
        dtype = _complex_dtype(self.like.dtype) if complex_ else self.like.dtype
        numel = math.prod(shape)
        buf = self.bufs.get(name)
        if buf is None or buf.numel() < numel:
            buf = self.bufs[name] = torch.empty(numel, dtype=dtype, device=self.like.device)
        return buf[:numel].view(shape)


def _imdct_chunk_into(
    Ab: torch.Tensor, tables: tuple[torch.Tensor, ...], ws: _Workspace, out: torch.Tensor
) -> None:
    """:func:`_imdct_chunk` writing into ``out`` ([B, n, N] view) with reused buffers (no autograd)."""
    pre, post, unfold = tables[4:]
    B, nf, N = Ab.shape
    h = N // 2
    t = ws.get("t", (B, nf, h), complex_=True)
    torch.complex(Ab[..., 0::2], Ab[..., 1::2].flip(-1), out=t).mul_(pre)  # A_{2n} + i·A_{N-1-2n}
    c = ws.get("c", (B, nf, h), complex_=True)
    torch.fft.fft(t, out=c).mul_(post)
    cf = c.flip(-1)
    v = torch.view_as_real(torch.complex(c.real, cf.imag, out=ws.get("v", (B, nf, h), True))).flatten(-2)
    vr = torch.view_as_real(torch.complex(c.imag, cf.real, out=ws.get("vr", (B, nf, h), True))).flatten(-2)
    first, second = out[..., :h], out[..., h:]
    torch.mul(unfold[0], vr[:, 1:, h:], out=first).addcmul_(unfold[1], v[:, :-1, h:])
    torch.mul(unfold[2], v[:, 1:, :h], out=second).addcmul_(unfold[3], vr[:, :-1, :h])


def _chunked(
    fn: Callable[[torch.Tensor, tuple[torch.Tensor, ...]], torch.Tensor],
    rows: torch.Tensor,
    n_out: int,
    tables: tuple[torch.Tensor, ...],
    fn_into: Callable[..., None] | None = None,
) -> torch.Tensor:
    """Run ``fn`` over the zero-padded ``rows`` ([B, L, N], n_out = L + 1 outputs) in cache-sized chunks.

    Without autograd, ``fn_into`` (if given) writes straight into the output with reused scratch buffers.
    Only the inverse has one: for the forward, a second kernel did not pay for itself (benchmarks/README.md,
    "MDCT no-grad kernels").
    """
    B, _, N = rows.shape
    # each intra-op thread works on its share of a chunk, so the chunk grows with the thread count
    step = max(1, _CHUNK * torch.get_num_threads() // max(1, B * N))
    if fn_into is None or (torch.is_grad_enabled() and rows.requires_grad):
        if step >= n_out:
            return fn(_padded_rows(rows, 0, n_out + 1), tables)
        out = rows.new_empty(B, n_out, N)
        for s in range(0, n_out, step):
            e = min(n_out, s + step)
            out[:, s:e] = fn(_padded_rows(rows, s, e + 1), tables)
        return out
    out = rows.new_empty(B, n_out, N)
    ws = _Workspace(rows)
    for s in range(0, n_out, step):
        e = min(n_out, s + step)
        fn_into(_padded_rows(rows, s, e + 1), tables, ws, out[:, s:e])
    return out


@lru_cache(maxsize=32)
def _generic_tables(N: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Twiddles of the 2N-point FFT version (any even N)."""
    n = torch.arange(2 * N, dtype=torch.float64)
    k = torch.arange(N, dtype=torch.float64)
    n0 = 0.5 - N / 2  # phase term -N/2 (docs/mdct.md#forward-transform-and-phase)
    w = vorbis_window(N)
    # forward: Σ_n y_n e^{-iπ(n+n0)(k+½)/N} = e^{-iπ n0 (k+½)/N} · FFT_{2N}(y_n e^{-iπ n/(2N)})[k]
    pre_f = torch.polar(w / (math.sqrt(2.0) * N), -math.pi * n / (2 * N))
    post_f = torch.polar(torch.ones(N, dtype=torch.float64), -math.pi * n0 * (k + 0.5) / N)
    # inverse: Σ_k A_k e^{iπ(n+n0)(k+½)/N} = e^{iπ(n+n0)/(2N)} · 2N·IFFT_{2N}(A_k e^{iπ n0 k/N})[n]
    pre_i = torch.polar(torch.ones(N, dtype=torch.float64), math.pi * n0 * k / N)
    post_i = torch.polar(w * _INV_SCALE * 2 * N, math.pi * (n + n0) / (2 * N))
    return tuple(t.to(device=device, dtype=_complex_dtype(dtype)) for t in (pre_f, post_f, pre_i, post_i))


def _mdct_fft2n(x: torch.Tensor, N: int) -> torch.Tensor:
    """Any even N: ``[B, T]`` → ``[B, T/N + 1, N]`` with one 2N-point complex FFT per frame."""
    pre, post, _, _ = _generic_tables(N, x.dtype, x.device)
    xp = torch.nn.functional.pad(x, (N, N))
    frames = xp.unfold(-1, 2 * N, N)  # [B, F, 2N], frame m = samples [(m-1)N, (m+1)N) of x
    spec = torch.fft.fft(frames * pre, dim=-1)[..., :N]
    return (spec * post).real


def _imdct_fft2n(A: torch.Tensor) -> torch.Tensor:
    """Any even N: ``[B, F, N]`` → ``[B, F+1, N]`` output blocks with one 2N-point complex IFFT per frame."""
    N = A.shape[-1]
    _, _, pre, post = _generic_tables(N, A.dtype, A.device)
    spec = torch.nn.functional.pad(A * pre, (0, N))
    y = (torch.fft.ifft(spec, dim=-1) * post).real  # [B, F, 2N], windowed
    # overlap-add: first halves land on blocks 0..F-1, second halves on blocks 1..F
    zero = y.new_zeros(y.shape[0], 1, N)
    return torch.cat([y[..., :N], zero], dim=1) + torch.cat([zero, y[..., N:]], dim=1)


def mdct(x: torch.Tensor, n_bands: int = 128) -> torch.Tensor:
    """MDCT of a signal.

    Args:
        x: ``[..., T]`` samples, T a multiple of ``n_bands``.
        n_bands: N, the number of filter bands (even).
    Returns:
        ``[..., T/N + 1, N]`` amplitudes A_k(m) (float64 for float64 input, else float32).
    """
    N = n_bands
    if N % 2 or N < 2:
        raise ValueError(f"n_bands must be even and positive, got {N}")
    T = x.shape[-1]
    if T % N:
        raise ValueError(f"signal length {T} is not a multiple of n_bands={N}")
    x = x.to(_real_dtype(x))
    lead = x.shape[:-1]
    M = T // N
    if x.numel() == 0:  # empty batch or signal: all zeros (the FFT backends reject empty input)
        return x.new_zeros(*lead, M + 1, N)
    if N % 4 == 0:
        out = _chunked(
            _mdct_chunk, x.reshape(math.prod(lead), M, N), M + 1, _fast_tables(N, x.dtype, x.device)
        )
        return out.reshape(*lead, M + 1, N)
    return _mdct_fft2n(x.reshape(math.prod(lead), T), N).reshape(*lead, M + 1, N)


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
    lead = A.shape[:-2]
    if A.numel() == 0:
        out = A.new_zeros(*lead, F + 1, N)
    elif N % 4 == 0:
        out = _chunked(
            _imdct_chunk,
            A.reshape(math.prod(lead), F, N),
            F + 1,
            _fast_tables(N, A.dtype, A.device),
            fn_into=_imdct_chunk_into,
        )
    else:
        out = _imdct_fft2n(A.reshape(math.prod(lead), F, N))
    out = out.reshape(*lead, (F + 1) * N)
    return out[..., N:-N] if trim else out
