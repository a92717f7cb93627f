"""MDCT coefficients of steady tones, one oscillator per band (docs/networks.md#oscillator-output).

A sinusoid cos(ωn + θ) analysed by an MDCT with hop N gives, in every band k it reaches, a coefficient
sequence over frames m of the form c_k · cos(ωN·m + θ_k): the window and the band fix the size c_k and an
offset θ_k, and the phase advances by ωN per frame, whatever the band. Writing ω in band units,
ω = π(k + ½ + δ)/N, the advance is π(k + ½ + δ). So an amplitude ``a[m, k]`` and a frequency offset
``δ[m, k]`` per band give MDCT coefficients

    X[m, k] = a[m, k] · cos(Φ[m, k]),   Φ[m, k] = Φ_start[k] + Σ_{j ≤ m} π(k + ½ + δ[j, k])

which are a steady partial when ``a`` and ``δ`` are held, at any frequency the band covers. The advance is
only known modulo 2π and a cosine cannot tell ±Φ apart, so δ and 2j − 1 − 2k − δ give the same sequence;
with |δ| ≤ ½ the tone lies inside band k's own range, where its basis function carries it
(tests/dsp/test_oscillator.py). The generator's ``oscillator`` output draws ``a`` and ``δ`` and lets this
function draw the phase.

An oscillator *bank* (:func:`bank_mdct`) holds the offsets fixed instead: S oscillators per band at
δ_s = (s + ½)/S − ½, each with its own amplitude. A partial anywhere in the band is then a held amplitude
of the bank oscillator nearest to it (within 1/(2S) band), and the choice of pitch is a choice of which
amplitude to draw, not a frequency to learn by gradient.
"""

from __future__ import annotations

import math

import torch

TWO_PI = 2 * math.pi
# the golden-ratio sequence: start phases spread evenly over the circle, no two bands alike
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def start_phase(n_bands: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The phase ``[K]`` every band's oscillator starts from at a track's first frame (deterministic, so a
    generator's output depends on its weights and latent only)."""
    k = torch.arange(n_bands, dtype=torch.float64, device=device)
    return (TWO_PI * torch.frac(k * _GOLDEN)).float()


def oscillator_phase(delta: torch.Tensor, start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Φ of every frame, wrapped to [0, 2π), and the phase to continue from in the next frames.

    Args:
        delta: ``[B, 1, M, K]`` frequency offsets δ in bands (any float dtype; the sums run in float64,
            so the phase stays exact over tracks of hours).
        start: ``[K]`` or ``[B, 1, 1, K]``: Φ before frame 0 (:func:`start_phase` at a track's start).
    Returns:
        (Φ ``[B, 1, M, K]`` float32, end ``[B, 1, 1, K]`` = Φ of the last frame, in float64 so that a
        track continued window by window keeps its phase exact).
    """
    if delta.dim() != 4 or delta.shape[1] != 1:
        raise ValueError(f"delta must be [B, 1, M, K], got shape {tuple(delta.shape)}")
    M, K = delta.shape[-2:]
    k = torch.arange(K, device=delta.device)
    m = torch.arange(1, M + 1, device=delta.device)
    # π(k + ½)·(m + 1) modulo 2π exactly: (π/2)·((2k + 1)(m + 1) mod 4), integers
    quarter_turns = ((2 * k + 1)[None, :] * m[:, None]) % 4  # [M, K]
    base = (math.pi / 2) * quarter_turns.double()
    drift = torch.cumsum(delta.double(), dim=2) * math.pi
    phase = torch.remainder(start.double().reshape(-1, 1, 1, K) + base + drift, TWO_PI)
    return phase.float(), phase[:, :, -1:]


def oscillator_mdct(
    amplitude: torch.Tensor, delta: torch.Tensor, start: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """MDCT coefficients of one oscillator per band (the module docstring's X).

    Args:
        amplitude: ``[B, C, M, K]`` per channel (signed: a sign flip is a half turn of the phase).
        delta: ``[B, 1, M, K]`` frequency offsets in bands, shared by the channels (one phase per band:
            a stereo partial is the same tone at two levels).
        start: ``[K]`` or ``[B, 1, 1, K]`` phase before frame 0.
    Returns:
        (X ``[B, C, M, K]`` float32, the end phase ``[B, 1, 1, K]`` to continue from).
    """
    phase, end = oscillator_phase(delta, start)
    return amplitude.float() * torch.cos(phase), end


def bank_offsets(size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The fixed frequency offsets ``[S]`` of a bank of S oscillators per band: δ_s = (s + ½)/S − ½, evenly
    spaced across the band, none on its edges."""
    return (torch.arange(size, dtype=torch.float32, device=device) + 0.5) / size - 0.5


def bank_start_phase(size: int, n_bands: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The phase ``[S, 1, 1, K]`` each bank oscillator starts from at a track's first frame (the golden
    sequence over all S·K of them: deterministic, no two alike, so their sum has no click at the start)."""
    i = torch.arange(size * n_bands, dtype=torch.float64, device=device)
    return (TWO_PI * torch.frac(i * _GOLDEN)).float().reshape(size, 1, 1, n_bands)


def bank_mdct(amplitude: torch.Tensor, start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MDCT coefficients of a bank of S oscillators per band at the fixed offsets of :func:`bank_offsets`.

    Args:
        amplitude: ``[B, C, S, M, K]``: oscillator s of band k in frame m, per channel (signed).
        start: ``[S, 1, 1, K]`` phase before frame 0 (:func:`bank_start_phase` at a track's start).
    Returns:
        (X ``[B, C, M, K]`` float32 = Σ_s amplitude_s · cos Φ_s, the end phase ``[S, 1, 1, K]`` to continue
        from).
    """
    if amplitude.dim() != 5:
        raise ValueError(f"amplitude must be [B, C, S, M, K], got shape {tuple(amplitude.shape)}")
    S, M, K = amplitude.shape[2:]
    delta = bank_offsets(S, amplitude.device).reshape(S, 1, 1, 1).expand(S, 1, M, K)
    phase, end = oscillator_phase(delta, start)  # the S offsets run as a batch: [S, 1, M, K]
    X = torch.einsum("bcsmk,smk->bcmk", amplitude.float(), torch.cos(phase[:, 0]))
    return X, end
