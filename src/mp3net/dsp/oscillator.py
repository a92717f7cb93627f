"""MDCT coefficients of a bank of steady tones at fixed offsets in every band
(docs/networks.md#oscillator-bank).

A sinusoid cos(ωn + θ) analysed by an MDCT with hop N gives, in every band k it reaches, a coefficient
sequence over frames m of the form c_k · cos(ωN·m + θ_k): the window and the band fix the size c_k and an
offset θ_k, and the phase advances by ωN per frame, whatever the band. Writing ω in band units,
ω = π(k + ½ + δ)/N, the advance is π(k + ½ + δ). A *bank* holds S oscillators per band at the fixed offsets
δ_s = (s + ½)/S − ½, each with its own amplitude ``a_s[m, k]``:

    X[m, k] = Σ_s a_s[m, k] · cos Φ_s[m, k],   Φ_s[m, k] = Φ₀[s, k] + π(k + ½ + δ_s)·(m + 1)

A partial anywhere in the band is then a held amplitude of the bank oscillator nearest to it (within 1/(2S)
band), and the choice of pitch is a choice of which amplitude to draw, not a frequency to learn by gradient.

The phase depends on the frame index m only. With δ_s = (2s + 1 − S)/(2S) the advance is a whole number of
(2π / 4S)-turns, π(k + ½ + δ_s)(m + 1) = (2π / 4S)·(m + 1)(2kS + 2s + 1), so cos Φ repeats every 4S frames:
:func:`bank_cosines` tabulates one period (exactly, in integers, for tracks of any length) and
:func:`bank_mdct` reads the frames ``first, first + 1, ...`` of a track from it, so the windows of a long
track need to share nothing but their first frame's index. (The single oscillator per band with a learned
offset was retired; it is at tag v0.1-lab.)
"""

from __future__ import annotations

import functools
import math

import torch

from mp3net.dsp.mdct import vorbis_window

TWO_PI = 2 * math.pi
# the golden-ratio sequence: start phases spread evenly over the circle, no two oscillators alike
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def bank_offsets(size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The fixed frequency offsets ``[S]`` of a bank of S oscillators per band: δ_s = (s + ½)/S − ½, evenly
    spaced across the band, none on its edges."""
    return (torch.arange(size, dtype=torch.float32, device=device) + 0.5) / size - 0.5


def bank_start_phase(size: int, n_bands: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The phase Φ₀ ``[S, K]`` each bank oscillator starts from at a track's first frame (the golden
    sequence over all S·K of them: deterministic, no two alike, so their sum has no click at the start)."""
    i = torch.arange(size * n_bands, dtype=torch.float64, device=device)
    return (TWO_PI * torch.frac(i * _GOLDEN)).float().reshape(size, n_bands)


def bank_phase(size: int, n_bands: int, frames: torch.Tensor) -> torch.Tensor:
    """Φ_s[m, k] wrapped to [0, 2π) for the track frames ``frames`` ``[M]`` (int64): ``[M, K, S]`` float32.

    The advance since the track's start is taken modulo 2π in integers, so the phase of frame 10⁸ is as exact
    as that of frame 0; the start phase is added in float64 and the sum rounded to float32 once."""
    S, K = size, n_bands
    k = torch.arange(K, dtype=torch.int64, device=frames.device)
    s = torch.arange(S, dtype=torch.int64, device=frames.device)
    turns = ((frames[:, None, None] % (4 * S) + 1) * (2 * k[:, None] * S + 2 * s + 1)) % (4 * S)  # [M, K, S]
    start = bank_start_phase(S, K, frames.device).double().t()  # [K, S]
    return torch.remainder(start + turns.double() * (TWO_PI / (4 * S)), TWO_PI).float()


@functools.lru_cache(maxsize=16)
def bank_cosines(size: int, n_bands: int, channels: int, device: torch.device) -> torch.Tensor:
    """cos Φ of two periods of 4S frames, ``[8S, K, C, S]`` float32 (row p: every frame m ≡ p mod 4S; the
    same for every channel, laid out for :func:`bank_mdct`'s sum), made once per device. A normal tensor
    even when first asked for under inference mode, so training may save it for backward."""
    with torch.inference_mode(False):
        frames = torch.arange(8 * size, dtype=torch.int64, device=device)
        cos = torch.cos(bank_phase(size, n_bands, frames))  # [8S, K, S]
        return cos[:, :, None].expand(-1, -1, channels, -1).contiguous()


def bank_mdct(amplitude: torch.Tensor, first: int = 0) -> torch.Tensor:
    """MDCT coefficients of a bank of S oscillators per band at the offsets of :func:`bank_offsets`.

    Args:
        amplitude: ``[B, C, S, M, K]`` float32: oscillator s of band k in track frame ``first + m``, per
            channel (signed). Any strides: the bank sum runs over the layout ``[B, M, K, C, S]``, which
            a channels-last ``[B, C·S, M, K]`` conv output has without a copy.
        first: the track frame of ``m = 0`` (the windows of a long track pass their own).
    Returns:
        X ``[B, C, M, K]`` float32 = Σ_s amplitude_s · cos Φ_s, a ``[B, M, K, C]``-contiguous tensor.
    """
    if amplitude.dim() != 5:
        raise ValueError(f"amplitude must be [B, C, S, M, K], got shape {tuple(amplitude.shape)}")
    B, C, S, M, K = amplitude.shape
    table = bank_cosines(S, K, C, amplitude.device)
    out = _over_periods(amplitude, table, first, "bmkcs,mkcs->bmkc")  # [B, M, K, C]
    return out.permute(0, 3, 1, 2)


def _over_periods(amplitude: torch.Tensor, table: torch.Tensor, first: int, equation: str) -> torch.Tensor:
    """``equation`` (over frames m) between the amplitudes laid out ``[B, M, K, C, S]`` and a table of two
    periods ``[2P, K, ...]``, read from track frame ``first``: the whole periods of M against the one period,
    then the remainder. Returns ``[B, M, K, ...]``."""
    a = amplitude.permute(0, 3, 4, 1, 2)  # [B, M, K, C, S]
    M = a.shape[1]
    P = table.shape[0] // 2
    table = table[first % P :][:P]  # row j is track frame first + j (mod P)
    q, r = divmod(M, P)
    parts = []
    if q:  # whole periods [B, q, P, ...], each against the one period
        per_period = equation.replace("m", "p").replace("b", "bq")
        parts.append(torch.einsum(per_period, a[:, : q * P].unflatten(1, (q, P)), table).flatten(1, 2))
    if r:
        parts.append(torch.einsum(equation, a[:, q * P :], table[:r]))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


# the neighbouring bands each side that a sine-bank oscillator writes: a steady sinusoid's coefficients 3
# bands away are 22–49 dB under its own band's (docs/networks.md#sine-bank), 4 away under 40 dB
SINE_REACH = 3


@functools.lru_cache(maxsize=16)
def sine_leak(size: int, n_bands: int, reach: int = SINE_REACH) -> torch.Tensor:
    """What a steady sinusoid at each bank frequency writes into the bands beside its own, relative to its
    own band: ``[K, S, 2·reach + 1]`` complex128, entry ``[k, s, reach + d]`` = G_{k+d}(ω)/G_k(ω) for
    ω = π(k + ½ + δ_s)/N, zero where band k + d does not exist.

    A sinusoid cos(ωt + θ) has, in band k' of frame m, the MDCT coefficient Re(e^{i(θ + ωN(m−1))}·G_{k'}(ω))
    with G_{k'}(ω) = Σ_n w_n e^{iωn} cos(π/N·(n + ½ − N/2)(k' + ½)) (the forward MDCT of docs/mdct.md up to
    its scale). Every band shares the phase advance ωN per frame; they differ by the fixed complex factor
    G_{k'}: band k + d carries the own band's coefficient scaled by |G_{k+d}/G_k|, turned by its angle."""
    with torch.device("cpu"):  # once, on the CPU, whatever device a caller's context sets
        return _sine_leak(size, n_bands, reach)


def _sine_leak(size: int, n_bands: int, reach: int) -> torch.Tensor:
    N, K, S = n_bands, n_bands, size
    n = torch.arange(2 * N, dtype=torch.float64)
    w = vorbis_window(N)
    k = torch.arange(K, dtype=torch.float64)[:, None]
    omega = math.pi * (k + 0.5 + bank_offsets(S).double()) / N  # [K, S]
    carrier = w * torch.exp(1j * omega[..., None] * n)  # [K, S, 2N]
    basis = torch.cos(math.pi / N * (n[None] + 0.5 - N / 2) * (k + 0.5))  # [K, 2N]: band k's MDCT row
    G = torch.einsum("ksn,jn->ksj", carrier, basis.to(torch.complex128))  # [K (own), S, K (any band)]
    own = G.diagonal(dim1=0, dim2=2).t()  # [K, S]
    leak = torch.zeros(K, S, 2 * reach + 1, dtype=torch.complex128)
    for d in range(-reach, reach + 1):
        lo, hi = max(0, -d), min(K, K - d)  # own bands k whose band k + d exists
        rows = torch.arange(lo, hi)
        leak[lo:hi, :, reach + d] = G[rows, :, rows + d] / own[lo:hi]
    return leak


@functools.lru_cache(maxsize=16)
def sine_bank_table(size: int, n_bands: int, device: torch.device, reach: int = SINE_REACH) -> torch.Tensor:
    """Re(leak · e^{iΦ}) over two periods of 4S frames, ``[8S, K, 2·reach + 1, S]`` float32: row p, band k,
    side d, oscillator s is what oscillator s of band k writes into band k + d − reach in a frame ≡ p mod 4S
    (side ``reach`` is cos Φ, the in-band bank's). Made once per device, a normal tensor as
    :func:`bank_cosines`."""
    with torch.inference_mode(False), torch.device("cpu"):
        frames = torch.arange(8 * size, dtype=torch.int64)
        phase = bank_phase(size, n_bands, frames).double()  # [8S, K, S]
        cos, sin = torch.cos(phase), torch.sin(phase)
        leak = sine_leak(size, n_bands, reach)  # [K, S, D]
        table = torch.empty(8 * size, n_bands, 2 * reach + 1, size)
        for d in range(2 * reach + 1):  # side by side: no complex [8S, K, D, S] temporary
            table[:, :, d] = leak[..., d].real * cos - leak[..., d].imag * sin
        return table.to(device)


def sine_bank_mdct(amplitude: torch.Tensor, first: int = 0, reach: int = SINE_REACH) -> torch.Tensor:
    """MDCT coefficients of a bank of steady sinusoids: as :func:`bank_mdct`, but each oscillator also writes
    its coefficients in the ``reach`` bands either side of its own (:func:`sine_leak`), so each is the
    sinusoid itself rather than its own band's share of it, whose inverse MDCT carries images a band away
    (4–8 dB under the tone, docs/networks.md#sine-bank).

    Args:
        amplitude: ``[B, C, S, M, K]`` float32, as :func:`bank_mdct`'s.
        first: the track frame of ``m = 0``.
        reach: the bands written either side.
    Returns:
        X ``[B, C, M, K]`` float32.
    """
    if amplitude.dim() != 5:
        raise ValueError(f"amplitude must be [B, C, S, M, K], got shape {tuple(amplitude.shape)}")
    B, C, S, M, K = amplitude.shape
    table = sine_bank_table(S, K, amplitude.device, reach)
    sides = _over_periods(amplitude, table, first, "bmkcs,mkds->bmkcd")  # [B, M, K (own), C, D]
    out = sides[..., reach].clone()
    for d in range(1, reach + 1):  # band k + d receives side +d of band k, band k − d side −d
        out[:, :, d:] += sides[:, :, :-d, :, reach + d]
        out[:, :, :-d] += sides[:, :, d:, :, reach - d]
    return out.permute(0, 3, 1, 2)
