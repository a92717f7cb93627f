"""MDCT / inverse MDCT against docs/mdct.md: exact reconstruction, the direct formula, window conditions."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from mp3net.dsp import imdct, mdct, vorbis_window
from mp3net.synth import random_music

mdct_module = sys.modules["mp3net.dsp.mdct"]


def direct_mdct(x: np.ndarray, N: int) -> np.ndarray:
    """docs/mdct.md#forward-transform-and-phase as the O(N²) sum, float64: x [T] -> [T/N + 1, N]."""
    T = x.shape[-1]
    xp = np.concatenate([np.zeros(N), x, np.zeros(N)])
    n = np.arange(2 * N)
    k = np.arange(N)
    w = np.sin(np.pi / 2 * np.sin(np.pi / (2 * N) * (n + 0.5)) ** 2)
    out = np.empty((T // N + 1, N))
    for m in range(T // N + 1):
        seg = xp[m * N : m * N + 2 * N]  # samples (m-1)N .. (m+1)N of x
        for kk in k:
            out[m, kk] = np.sum(w * seg * np.cos(np.pi / N * (n + 0.5 - N / 2) * (kk + 0.5)))
    return out / (math.sqrt(2.0) * N)


def music_like(T: int, sr: int = 22016, seed: int = 0) -> np.ndarray:
    """Piano chords (:func:`mp3net.synth.random_music`, left channel) plus a little noise, float64 ``[T]``:
    a 'real-looking' signal."""
    x = random_music(T / sr + 0.01, seed=seed, sample_rate=sr)[0, :T].astype(np.float64)
    x += 0.01 * np.random.default_rng(seed).standard_normal(T)
    return 0.9 * x / np.abs(x).max()


@pytest.mark.parametrize("n_bands", [6, 16, 64, 128, 256])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("lead", [(), (3,), (2, 2)])
def test_round_trip_random(n_bands: int, dtype: torch.dtype, tol: float, lead: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(n_bands)
    T = 37 * n_bands
    x = (torch.rand(*lead, T, generator=g, dtype=torch.float64) * 2 - 1).to(dtype)
    A = mdct(x, n_bands)
    assert A.shape == (*lead, T // n_bands + 1, n_bands)
    assert A.dtype == dtype
    y = imdct(A)
    assert y.shape == (*lead, (T // n_bands + 2) * n_bands)
    assert (y[..., n_bands : n_bands + T] - x).abs().max().item() < tol
    # the padding blocks reconstruct to zeros
    assert y[..., :n_bands].abs().max().item() < tol
    assert y[..., -n_bands:].abs().max().item() < tol
    assert torch.equal(imdct(A, trim=True), y[..., n_bands:-n_bands])


@pytest.mark.parametrize("n_bands", [16, 128, 256])
def test_round_trip_music(n_bands: int) -> None:
    x64 = torch.from_numpy(np.stack([music_like(200 * n_bands, seed=s) for s in range(2)]))
    for dtype, tol in [(torch.float32, 1e-5), (torch.float64, 1e-10)]:
        x = x64.to(dtype)
        err = (imdct(mdct(x, n_bands), trim=True) - x).abs().max().item()
        assert err < tol, (dtype, err)


@pytest.mark.parametrize("n_bands", [6, 10, 16, 64, 128])
def test_matches_direct_formula(n_bands: int) -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([music_like(6 * n_bands, seed=2), rng.uniform(-1, 1, 5 * n_bands)])
    ref = direct_mdct(x, n_bands)
    for dtype in (torch.float64, torch.float32):
        got = mdct(torch.from_numpy(x).to(dtype), n_bands).double().numpy()
        assert np.abs(got - ref).max() < 1e-6, dtype
    # batched leading dims give each row its own transform
    xb = np.stack([x, -2 * x[::-1]])
    got = mdct(torch.from_numpy(xb), n_bands).numpy()
    assert np.abs(got[0] - ref).max() < 1e-10
    assert np.abs(got[1] - direct_mdct(-2 * x[::-1], n_bands)).max() < 1e-10


def test_direct_formula_sign_convention() -> None:
    """A cosine at the centre of bin k lights up bin k (guards against a frequency flip or +N/2 phase)."""
    N = 128
    T = 64 * N
    k = 17
    t = np.arange(T)
    x = np.cos(np.pi / N * (k + 0.5) * t)
    A = mdct(torch.from_numpy(x), N).numpy()[5:-5]
    energy = (A**2).sum(axis=0)
    assert energy.argmax() == k
    assert energy[k] > 0.5 * energy.sum()
    assert energy[k - 2 : k + 3].sum() > 0.99 * energy.sum()
    assert energy[k - 1] == pytest.approx(energy[k + 1], rel=1e-6)  # leakage symmetric about the bin centre


@pytest.mark.parametrize("n_bands", [16, 128, 256])
def test_window_conditions(n_bands: int) -> None:
    N = n_bands
    w = vorbis_window(N)
    n = torch.arange(2 * N, dtype=torch.float64)
    ref = torch.sin(math.pi / 2 * torch.sin(math.pi / (2 * N) * (n + 0.5)) ** 2)  # eq. 6
    assert torch.allclose(w, ref, atol=0, rtol=0)
    assert torch.allclose(w, w.flip(0), atol=1e-15)  # eq. 4: w_n = w_{2N-1-n}
    assert torch.allclose(w[:N] ** 2 + w[N:] ** 2, torch.ones(N, dtype=torch.float64), atol=1e-14)  # eq. 5
    assert vorbis_window(N, torch.float32).dtype == torch.float32


@pytest.mark.parametrize("n_bands", [16, 128])
def test_energy_relation(n_bands: int) -> None:
    """The MDCT with a Princen-Bradley window is an orthogonal lapped transform up to the scale:
    the orthonormal basis is √(2/N)·w·cos, so A = (1/(√2·N))·√(N/2)·<x, basis> and Σ A² = Σ x² / (4N)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 50 * n_bands, generator=g, dtype=torch.float64)
    A = mdct(x, n_bands)
    ratio = (A**2).sum(dim=(-2, -1)) / (x**2).sum(dim=-1)
    assert torch.allclose(ratio, torch.full_like(ratio, 1.0 / (4 * n_bands)), rtol=1e-10)


def test_linearity_and_time_shift() -> None:
    N = 32
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(2, 20 * N, generator=g, dtype=torch.float64)
    assert torch.allclose(mdct(2 * a - 3 * b, N), 2 * mdct(a, N) - 3 * mdct(b, N), atol=1e-12)
    # shifting the signal by one block shifts the frames by one
    shifted = torch.cat([torch.zeros(N, dtype=torch.float64), a])
    assert torch.allclose(mdct(shifted, N)[1:], mdct(a, N), atol=1e-12)


@pytest.mark.parametrize("N", [8, 6])  # the fast path (N % 4 == 0) and the generic 2N-FFT path
@pytest.mark.parametrize("chunk", [16, 1 << 19])  # several chunks, or a single one
def test_gradcheck(N: int, chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mdct_module, "_CHUNK", chunk)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4 * N, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: mdct(t, N), (x,))
    A = torch.randn(2, 5, N, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(imdct, (A,))
    assert torch.autograd.gradcheck(lambda t: imdct(t, trim=True), (A,))


@pytest.mark.parametrize("chunk", [1, 128 * 3, 128 * 7 * 2])
def test_chunking_is_invisible(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The transforms run in chunks of frames; chunk edges must not show in the result."""
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, 41 * 128, generator=g, dtype=torch.float64)
    A_ref = torch.from_numpy(direct_mdct(x[1, 2].numpy(), 128))
    y_ref = imdct(mdct(x, 128))
    monkeypatch.setattr(mdct_module, "_CHUNK", chunk)
    A = mdct(x, 128)
    assert (A[1, 2] - A_ref).abs().max().item() < 1e-12
    assert (imdct(A) - y_ref).abs().max().item() < 1e-12


def test_half_precision_input_runs_in_float32() -> None:
    x = torch.randn(3 * 16).to(torch.bfloat16)
    assert mdct(x, 16).dtype == torch.float32
    assert imdct(mdct(x, 16)).dtype == torch.float32


@pytest.mark.parametrize("bad", [15, 0, 7])
def test_rejects_odd_bands(bad: int) -> None:
    with pytest.raises(ValueError):
        mdct(torch.zeros(bad * 4 if bad else 4), bad)


def test_rejects_length_not_multiple() -> None:
    with pytest.raises(ValueError, match="multiple"):
        mdct(torch.zeros(100), 16)


@pytest.mark.parametrize("n_bands", [16, 128])
def test_fast_path_equals_fft2n_path(n_bands: int) -> None:
    """The N/2-point FFT algorithm and the plain 2N-point FFT formulation agree (float64)."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 30 * n_bands, generator=g, dtype=torch.float64)
    A = mdct(x, n_bands)
    assert (A - mdct_module._mdct_fft2n(x, n_bands)).abs().max().item() < 1e-12
    assert (imdct(A) - mdct_module._imdct_fft2n(A).flatten(-2)).abs().max().item() < 1e-12


@pytest.mark.parametrize("n_bands", [16, 6])
def test_empty_inputs(n_bands: int) -> None:
    N = n_bands
    assert torch.equal(mdct(torch.zeros(2, 0), N), torch.zeros(2, 1, N))  # only the padding frame
    assert mdct(torch.zeros(0, 2, 3 * N), N).shape == (0, 2, 4, N)
    assert imdct(torch.zeros(2, 0, N)).shape == (2, N)
    assert imdct(torch.zeros(0, 3, N), trim=True).shape == (0, 2 * N)
    x = torch.randn(3, 4 * N, dtype=torch.float64)
    assert torch.equal(mdct(x.t().contiguous().t(), N), mdct(x, N))  # non-contiguous input


@pytest.mark.parametrize("chunk", [128 * 3, 1 << 19])
def test_no_grad_inverse_kernel_equals_the_autograd_one(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The inverse's no-grad kernel (into reused buffers) gives bit for bit what its autograd kernel gives."""
    monkeypatch.setattr(mdct_module, "_CHUNK", chunk)
    g = torch.Generator().manual_seed(8)
    A = torch.randn(2, 3, 40, 128, generator=g)
    with torch.no_grad():
        y_into = imdct(A)
    y_graph = imdct(A.clone().requires_grad_(True))
    assert y_graph.requires_grad
    assert torch.equal(y_into, y_graph.detach())
