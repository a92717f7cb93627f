"""Psychoacoustic model against docs/psychoacoustics.md and an independent loop-based numpy
reimplementation."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from mp3net.dsp import PsychoacousticModel, mdct, tonality
from mp3net.dsp.psycho import EPS
from mp3net.synth import random_music

SR, N = 22016, 128


def ref_threshold(A: np.ndarray, sr: int, n_bands: int, n_bark: int = 24, alpha: float = 0.6) -> np.ndarray:
    """docs/psychoacoustics.md with explicit loops, float64. A: [F, N] -> threshold amplitudes [F, N]."""
    eps = 1e-14
    zb = lambda f: 6.0 * math.asinh(f / 600.0)  # noqa: E731
    fb = lambda z: 600.0 * math.sinh(z / 6.0)  # noqa: E731
    z_max = zb(sr / 2)
    w = z_max / n_bark
    df = sr / (2 * n_bands)
    overlap = np.zeros((n_bands, n_bark))
    for i in range(n_bands):
        for j in range(n_bark):
            lo = max(i * df, fb(j * w))
            hi = min((i + 1) * df, fb((j + 1) * w) if j < n_bark - 1 else sr / 2)
            overlap[i, j] = max(0.0, hi - lo)
    band_width = [(fb((j + 1) * w) if j < n_bark - 1 else sr / 2) - fb(j * w) for j in range(n_bark)]
    quiet = np.zeros(n_bark)
    for j in range(n_bark):
        f = fb((j + 0.5) * w) / 1000.0
        level = 3.64 * f**-0.8 - 6.5 * math.exp(-0.6 * (f - 3.3) ** 2) + 1e-3 * f**4
        quiet[j] = 10 ** ((min(max(level, -20.0), 120.0) - 120.0) / 10)
    zz = np.linspace(-z_max, z_max, 2 * n_bark)
    z_off = np.linspace(0, z_max, n_bark)

    def sf(dz: float) -> float:
        return 15.81 + 7.5 * (dz + 0.474) - 17.5 * math.sqrt(1 + (dz + 0.474) ** 2)

    F = A.shape[0]
    out = np.zeros_like(A)
    for m in range(F):
        I = A[m] ** 2
        geo = math.exp(sum(math.log(max(eps, v)) for v in I) / n_bands)
        sfm = 10 * math.log10(geo / (sum(I) / n_bands + eps))
        tau = min(sfm / -60.0, 1.0)
        I_band = [sum(overlap[i, j] / df * I[i] for i in range(n_bands)) for j in range(n_bark)]
        I_glob = []
        for j in range(n_bark):
            O = tau * (z_off[j] + 9) + 5.5
            acc = 0.0
            for i in range(n_bark):
                acc += (
                    max(eps, I_band[i]) ** alpha
                    * 10 ** (alpha * sf(zz[n_bark - i + j]) / 10)
                    * 10 ** (-alpha * O / 10)
                )
            I_glob.append(max(acc ** (1 / alpha), quiet[j]))
        for k in range(n_bands):
            spread = sum(I_glob[j] * overlap[k, j] / band_width[j] for j in range(n_bark))
            out[m, k] = math.sqrt(max(eps, spread))
    return out


def tone(f: float, seconds: float = 0.5, amp: float = 0.5, sr: int = SR) -> torch.Tensor:
    T = int(seconds * sr) // N * N
    return amp * torch.sin(2 * math.pi * f * torch.arange(T, dtype=torch.float64) / sr)


def music_like(seconds: float = 0.5, seed: int = 0) -> torch.Tensor:
    """Piano chords from :func:`mp3net.synth.random_music` (left channel) plus a little noise, float64
    ``[T]`` with T a multiple of N, peak 0.8."""
    T = int(seconds * SR) // N * N
    x = torch.from_numpy(random_music(seconds + 0.01, seed=seed, sample_rate=SR)[0, :T]).double()
    x += 0.003 * torch.randn(T, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return 0.8 * x / x.abs().max()


@pytest.fixture(scope="module")
def pm() -> PsychoacousticModel:
    return PsychoacousticModel(SR, N)


@pytest.mark.parametrize("sr,n_bands", [(SR, N), (44100, 64), (16000, 256)])
def test_matches_loop_reference(sr: int, n_bands: int) -> None:
    model = PsychoacousticModel(sr, n_bands)
    g = torch.Generator().manual_seed(n_bands)
    T = 6 * n_bands
    t = torch.arange(T, dtype=torch.float64) / sr
    signals = [
        0.7 * torch.sin(2 * math.pi * 1000.0 * t),  # tonal
        0.3 * torch.randn(T, generator=g, dtype=torch.float64),  # noise
        1e-9 * torch.randn(T, generator=g, dtype=torch.float64),  # near silence: absolute threshold
        torch.zeros(T, dtype=torch.float64),
    ]
    A = mdct(torch.stack(signals), n_bands)  # [4, F, N]
    got = model.threshold(A)
    assert got.dtype == torch.float64
    for s in range(A.shape[0]):
        ref = ref_threshold(A[s].numpy(), sr, n_bands)
        rel = np.abs(got[s].numpy() - ref) / ref
        assert rel.max() < 1e-10, (s, rel.max())
    # float32 stays close to the float64 reference (docs/psychoacoustics.md#precision)
    got32 = model.threshold(A.float()).double()
    assert ((got32 - got).abs() / got).max().item() < 1e-3


def test_music_matches_loop_reference(pm: PsychoacousticModel) -> None:
    A = mdct(music_like(0.1), N)
    ref = ref_threshold(A.numpy(), SR, N)
    assert np.abs(pm.threshold(A).numpy() / ref - 1).max() < 1e-10


def test_bin_band_matrices_rows_sum_to_one(pm: PsychoacousticModel) -> None:
    for model in (pm, PsychoacousticModel(44100, 64, n_bark=20), PsychoacousticModel(16000, 256)):
        assert torch.allclose(model.W.sum(1), torch.ones(model.n_bands), atol=1e-6)
        assert torch.allclose(model.W_inv.sum(1), torch.ones(model.n_bark), atol=1e-6)
        assert (model.W >= 0).all() and (model.W_inv >= 0).all()
        # every band gets some bin and every bin some band
        assert (model.W.sum(0) > 0).all()


def test_absolute_threshold_at_band_midpoints(pm: PsychoacousticModel) -> None:
    z_max = 6 * math.asinh(SR / 2 / 600)
    for j in range(24):
        f_khz = 600 * math.sinh((j + 0.5) * z_max / 24 / 6) / 1000
        db = 3.64 * f_khz**-0.8 - 6.5 * math.exp(-0.6 * (f_khz - 3.3) ** 2) + 1e-3 * f_khz**4
        db = min(max(db, -20.0), 120.0)
        assert pm.quiet[j].item() == pytest.approx(10 ** ((db - 120) / 10), rel=1e-5)
    # silence: the threshold is the absolute threshold spread over the bins
    thr = pm.threshold(torch.zeros(3, N, dtype=torch.float64))
    expected = torch.sqrt(pm._f64["quiet"] @ pm._f64["W_inv"])
    assert torch.allclose(thr, expected.expand_as(thr), rtol=1e-12)
    assert torch.allclose(pm.absolute_threshold(torch.float64), expected, rtol=1e-12)
    assert torch.allclose(pm.absolute_threshold(), expected.float(), rtol=1e-6)
    # around 3-4 kHz the ear is most sensitive: the lowest quiet threshold lies there
    f_min = pm.f_mid[pm.quiet.argmin()].item()
    assert 2500 < f_min < 5000


def test_tonality_tone_and_noise(pm: PsychoacousticModel) -> None:
    # a pure tone at a bin centre: nearly all energy in one bin
    A_tone = mdct(tone((40 + 0.5) * SR / (2 * N)), N)[2:-2]
    assert pm.tonality(A_tone).mean().item() > 0.95
    g = torch.Generator().manual_seed(0)
    A_noise = mdct(0.3 * torch.randn(4, 200 * N, generator=g, dtype=torch.float64), N)[..., 2:-2, :]
    tau = tonality(A_noise)
    assert tau.shape == A_noise.shape[:-1]
    # Gaussian A: A²/σ² ~ χ²₁ with E[ln χ²₁] = ψ(½) + ln 2 = -γ - ln 2, so the large-N limit is
    # SFM = 10·log10(e)·(-γ - ln 2) ≈ -5.5 dB, τ ≈ 0.092: "near 0" compared with tones
    euler_gamma = 0.5772156649015329
    expected = 10 / math.log(10) * (euler_gamma + math.log(2)) / 60
    assert tau.mean().item() == pytest.approx(expected, abs=0.01)
    assert (tau >= 0).all() and (tau <= 1).all()
    # a tone at a random frequency is still much more tonal than noise
    assert tonality(mdct(tone(1234.5), N)[2:-2]).mean().item() > 0.6


def _bin_at_bark(z_bins: torch.Tensor, z: float) -> int:
    k = int((z_bins - z).abs().argmin())
    assert abs(z_bins[k].item() - z) < 0.3
    return k


@pytest.mark.parametrize("k0", [10, 25, 40])
def test_loud_tone_masks_upward_more_than_downward(pm: PsychoacousticModel, k0: int) -> None:
    """A single loud MDCT line (no window leakage) over a faint floor. Beyond ~3 Bark the spreading
    function (eq. 11) falls ~25 dB/Bark downward but only ~10 dB/Bark upward. (Within 2 Bark the
    half-grid shift of docs/psychoacoustics.md#spreading and the z-dependent offset of eq. 12 make the two
    sides comparable.)"""
    z_bins = 6 * torch.asinh((torch.arange(N, dtype=torch.float64) + 0.5) * SR / (2 * N) / 600)
    floor = torch.full((1, N), 1e-6, dtype=torch.float64)
    loud = floor.clone()
    loud[0, k0] = 0.3
    rise_db = 20 * torch.log10(pm.threshold(loud)[0] / pm.threshold(floor)[0])
    assert rise_db[k0] > 50
    for d in (4.0, 5.0):
        up = _bin_at_bark(z_bins, z_bins[k0].item() + d)
        down = _bin_at_bark(z_bins, z_bins[k0].item() - d)
        assert rise_db[up] > rise_db[down] + 10, (d, rise_db[up], rise_db[down])
    # the tone's own bin is masked hardest
    assert rise_db[k0] >= rise_db.max() - 3


def test_real_tone_masks_upward(pm: PsychoacousticModel) -> None:
    """The same with a sine through the MDCT (k0 = 40, 3.5 kHz) over faint noise."""
    g = torch.Generator().manual_seed(1)
    T = 30 * N
    quiet_noise = 1e-4 * torch.randn(T, generator=g, dtype=torch.float64)
    k0 = 40
    x_tone = quiet_noise + 0.5 * torch.sin(math.pi * (k0 + 0.5) / N * torch.arange(T))
    thr0 = pm.threshold(mdct(quiet_noise, N))[3:-3].mean(0)
    thr1 = pm.threshold(mdct(x_tone, N))[3:-3].mean(0)
    rise_db = 20 * torch.log10(thr1 / thr0)
    assert rise_db[k0] > 30
    z_bins = 6 * torch.asinh((torch.arange(N, dtype=torch.float64) + 0.5) * SR / (2 * N) / 600)
    for d in (4.0, 5.0):
        up = _bin_at_bark(z_bins, z_bins[k0].item() + d)
        down = _bin_at_bark(z_bins, z_bins[k0].item() - d)
        assert rise_db[up] > rise_db[down] + 5, d


@pytest.mark.parametrize(
    "case",
    ["silence", "full_scale_noise", "clipped", "tiny", "huge_amplitudes"],
)
def test_threshold_positive_and_finite(pm: PsychoacousticModel, case: str) -> None:
    g = torch.Generator().manual_seed(2)
    T = 40 * N
    if case == "silence":
        x = torch.zeros(2, T)
    elif case == "full_scale_noise":
        x = (torch.rand(2, T, generator=g) * 2 - 1).sign()
    elif case == "clipped":
        x = (4 * music_like(T / SR).float()).clamp(-1, 1).expand(2, T)
    elif case == "tiny":
        x = 1e-30 * torch.randn(2, T, generator=g)
    else:
        x = 1e4 * torch.randn(2, T, generator=g)
    A = mdct(x, N)
    for dt in (torch.float32, torch.float64):
        thr = pm.threshold(A.to(dt))
        assert thr.shape == A.shape
        assert torch.isfinite(thr).all()
        assert (thr > 0).all()
        tau = pm.tonality(A.to(dt))
        assert torch.isfinite(tau).all() and (tau >= 0).all() and (tau <= 1).all()


def test_threshold_scales_with_level(pm: PsychoacousticModel) -> None:
    """Far above the absolute threshold, masking is homogeneous: doubling A doubles thr (eq. 10 is
    1-homogeneous in intensity), a direct check on the α-superposition exponents."""
    g = torch.Generator().manual_seed(7)
    x = 0.5 * music_like(0.3) + 0.05 * torch.randn(int(0.3 * SR) // N * N, generator=g, dtype=torch.float64)
    A = 4 * mdct(x, N)[1:-1]
    assert (A * A).min() > 100 * EPS  # no coefficient at the intensity floor, where homogeneity ends
    thr1, thr2 = pm.threshold(A), pm.threshold(2 * A)
    assert (thr1 > 10 * torch.sqrt(pm._f64["quiet"] @ pm._f64["W_inv"])).all()  # masking everywhere
    assert torch.allclose(thr2, 2 * thr1, rtol=1e-9)
    # near silence the absolute threshold takes over and the threshold stops following the level
    assert torch.allclose(pm.threshold(1e-8 * A), pm.threshold(1e-9 * A), rtol=1e-6)


def test_batched_equals_per_item(pm: PsychoacousticModel) -> None:
    x = torch.stack([music_like(0.2, seed=s) for s in range(4)]).reshape(2, 2, -1)
    A = mdct(x, N)  # [B=2, C=2, F, N]
    thr = pm.threshold(A)
    for b in range(2):
        for c in range(2):
            assert torch.allclose(thr[b, c], pm.threshold(A[b, c]), rtol=1e-12)
    assert pm.band_intensity(A).shape == (*A.shape[:-1], 24)
    assert torch.allclose(pm.band_intensity(A).sum(-1), (A**2).sum(-1), rtol=1e-10)  # W rows sum to 1


def test_gradients_flow_through_threshold(pm: PsychoacousticModel) -> None:
    g = torch.Generator().manual_seed(3)
    A = (0.1 * torch.randn(2, 3, 16, generator=g, dtype=torch.float64)).requires_grad_()
    small = PsychoacousticModel(SR, 16)
    assert torch.autograd.gradcheck(small.threshold, (A,))
    assert torch.autograd.gradcheck(small.tonality, (A,))


def test_inaudible_share(pm: PsychoacousticModel) -> None:
    A = mdct(music_like(0.5), N)
    share = pm.inaudible_share(A)
    thr = pm.threshold(A)
    assert share == pytest.approx((A.abs() < thr).double().mean().item(), abs=1e-6)
    assert 0.2 < share < 1.0  # music has many inaudible coefficients
    assert pm.inaudible_share(torch.zeros(4, N)) == 1.0
    line = torch.zeros(4, N)
    line[:, 40] = 0.5
    assert pm.inaudible_share(line) == pytest.approx(1 - 1 / N)  # only the loud line is audible


def test_moves_with_device_and_dtype_buffers(pm: PsychoacousticModel) -> None:
    names = {n for n, _ in pm.named_buffers()}
    assert {"W", "W_inv", "quiet", "S"} <= names
    assert pm.threshold(torch.zeros(1, N, dtype=torch.bfloat16)).dtype == torch.float32


def test_threshold_chunking_is_invisible(pm: PsychoacousticModel, monkeypatch: pytest.MonkeyPatch) -> None:
    A = mdct(torch.stack([music_like(0.3, seed=s) for s in range(3)]), N)  # [3, F, N]
    ref = pm.threshold(A)
    monkeypatch.setattr(sys.modules["mp3net.dsp.psycho"], "_CHUNK", 5 * N)  # 5 frames per chunk
    assert torch.allclose(pm.threshold(A), ref, rtol=1e-12, atol=0)  # BLAS blocking may round differently
    A32 = A.float().requires_grad_()
    pm.threshold(A32).sum().backward()  # chunked writes keep the autograd graph
    assert A32.grad is not None and torch.isfinite(A32.grad).all()


def test_threshold_ignores_autocast(pm: PsychoacousticModel) -> None:
    """bfloat16 is up to 7 % off (docs/psychoacoustics.md#precision): the threshold stays float32."""
    A = mdct(music_like(0.3), N).float()
    ref = pm.threshold(A)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        thr = pm.threshold(A)
    assert thr.dtype == torch.float32
    assert torch.allclose(thr, ref, rtol=1e-6)
