"""WGAN-GP losses (docs/training.md#wgan-gp): the penalty against finite differences, the loss composition."""

import copy
import math

import pytest
import torch

from mp3net.config import ModelConfig
from mp3net.dsp import mdct
from mp3net.model import Discriminator
from mp3net.train.losses import d_loss, g_loss, gradient_penalty, spectral_reconstruction


def tiny_d(seed: int = 0) -> tuple[Discriminator, ModelConfig]:
    cfg = ModelConfig(
        sample_rate=1376,
        n_bands=8,
        latent_dim=4,
        n_blocks=2,
        start_frames=1,
        start_bands=2,
        base_channels=2,
        max_channels=4,
        d_dense=4,
        channels=1,
        mbstd_group=2,
    )
    torch.manual_seed(seed)
    return Discriminator(cfg).double(), cfg


def test_gradient_penalty_matches_finite_differences():
    D, cfg = tiny_d()
    real = torch.randn(2, 1, cfg.n_frames, cfg.n_bands, dtype=torch.float64)
    fake = torch.randn_like(real)
    gp = gradient_penalty(D, real, fake, generator=torch.Generator().manual_seed(7))
    # the same α, then ∂ΣD/∂x̂ by central differences, element by element
    alpha = torch.rand((2, 1, 1, 1), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    x_hat = alpha * real + (1 - alpha) * fake
    h = 1e-6
    grad = torch.zeros_like(x_hat)
    with torch.no_grad():
        flat = x_hat.view(-1)
        for i in range(flat.numel()):
            old = flat[i].item()
            flat[i] = old + h
            up = D(x_hat).sum()
            flat[i] = old - h
            down = D(x_hat).sum()
            flat[i] = old
            grad.view(-1)[i] = (up - down) / (2 * h)
    norm = torch.sqrt(grad.flatten(1).square().sum(1) + 1e-8)
    expected = (norm - 1).square().mean()
    assert torch.allclose(gp, expected, rtol=1e-6), (gp.item(), expected.item())


def test_gradient_penalty_trains_d_only():
    D, cfg = tiny_d()
    real = torch.randn(4, 1, cfg.n_frames, cfg.n_bands, dtype=torch.float64)
    fake = torch.randn_like(real).requires_grad_(True)
    gradient_penalty(D, real, fake).backward()
    assert fake.grad is None
    # every parameter but the final bias (a constant shift does not change ∂D/∂x) gets a gradient
    assert all(p.grad is not None for n, p in D.named_parameters() if n != "score.bias")
    assert D.from_in.weight.grad.abs().sum() > 0


def test_d_loss_composition_and_detach():
    D, cfg = tiny_d()
    real = torch.randn(4, 1, cfg.n_frames, cfg.n_bands, dtype=torch.float64)
    fake = torch.randn_like(real).requires_grad_(True)
    loss, st = d_loss(D, real, fake, gp_lambda=3.0, drift=0.1, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        d_real, d_fake = D(real), D(fake)
    gp = gradient_penalty(D, real, fake, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(st["d_real"], d_real.mean()) and torch.allclose(st["d_fake"], d_fake.mean())
    assert torch.allclose(st["w_distance"], d_real.mean() - d_fake.mean())
    assert torch.allclose(st["drift"], d_real.square().mean())
    assert torch.allclose(st["gp"], gp)
    expected = d_fake.mean() - d_real.mean() + 3.0 * gp + 0.1 * d_real.square().mean()
    assert torch.allclose(loss, expected)
    assert all(not v.requires_grad for v in st.values())
    loss.backward()
    assert fake.grad is None  # the D step must not reach into the generator
    # the paper's variant: other λ and drift give a different loss from the same scores
    loss2, _ = d_loss(D, real, fake, gp_lambda=10.0, drift=0.001, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(loss2, d_fake.mean() - d_real.mean() + 10.0 * gp + 0.001 * d_real.square().mean())


def test_d_loss_backward_term_by_term_gives_the_same_gradients():
    D, cfg = tiny_d()
    D2 = copy.deepcopy(D)
    real = torch.randn(4, 1, cfg.n_frames, cfg.n_bands, dtype=torch.float64)
    fake = torch.randn_like(real)
    loss, st = d_loss(D, real, fake, 3.0, 0.1, generator=torch.Generator().manual_seed(1))
    loss.backward()
    loss2, st2 = d_loss(D2, real, fake, 3.0, 0.1, generator=torch.Generator().manual_seed(1), backward=True)
    assert not loss2.requires_grad
    torch.testing.assert_close(loss2, loss.detach())
    assert all(torch.equal(st[k], st2[k]) for k in st)
    for (name, p), p2 in zip(D.named_parameters(), D2.parameters(), strict=True):
        torch.testing.assert_close(p2.grad, p.grad, rtol=1e-10, atol=1e-14, msg=name)


def test_g_loss_flows_into_fakes():
    D, cfg = tiny_d()
    fake = torch.randn(4, 1, cfg.n_frames, cfg.n_bands, dtype=torch.float64, requires_grad=True)
    loss, st = g_loss(D, fake)
    assert torch.allclose(loss, -D(fake).mean()) and torch.allclose(st["d_fake"], -loss)
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


def test_change_matching_is_zero_on_the_reals_and_equals_scipys_wasserstein_distance():
    from scipy.stats import wasserstein_distance

    from mp3net.dsp import pooled_level_change
    from mp3net.train.losses import change_matching

    torch.manual_seed(0)
    real = torch.randn(4, 2, 64, 16).double()
    fake = torch.randn(4, 2, 64, 16).double() * torch.linspace(0.5, 2, 64)[:, None]
    assert change_matching(real, real, pool=4) == 0
    cf = pooled_level_change(fake.square().mean(1), 4, 60.0)
    cr = pooled_level_change(real.square().mean(1), 4, 60.0)
    ref = wasserstein_distance(cf.flatten(), cr.flatten()) + wasserstein_distance(
        cf.mean(-1).flatten(), cr.mean(-1).flatten()
    )
    assert float(change_matching(fake, real, pool=4)) == pytest.approx(ref, rel=1e-6)


def test_change_matching_descends_towards_held_notes():
    """Reals: a level held for 16 frames, then a jump; fakes: noise. Gradient steps on the fakes alone
    lower the distance, and what they learn is the reals' shape: still between the steps."""
    from mp3net.dsp import pooled_level_change
    from mp3net.train.losses import change_matching

    torch.manual_seed(1)
    levels = torch.rand(4, 1, 4, 16).repeat_interleave(16, dim=2) + 0.1  # [4, 1, 64, 16], 4 held steps
    real = levels.expand(4, 2, 64, 16) * torch.randn(4, 2, 64, 16).sign()
    fake = torch.randn(4, 2, 64, 16).requires_grad_()
    opt = torch.optim.Adam([fake], lr=0.02)

    def median_change() -> float:
        return float(pooled_level_change(fake.detach().square().mean(1), 8, 60.0).median())

    first, first_median = float(change_matching(fake.detach(), real, pool=8)), median_change()
    _descend(opt, lambda: change_matching(fake, real, pool=8), 100)
    assert float(change_matching(fake.detach(), real, pool=8)) < 0.5 * first
    assert median_change() < 0.5 * first_median  # most steps held still, as the reals' are


def test_contrast_matching_is_zero_on_the_reals_and_equals_scipys_wasserstein_distance():
    from scipy.stats import wasserstein_distance

    from mp3net.dsp import pooled_level_contrast
    from mp3net.train.losses import contrast_matching

    torch.manual_seed(0)
    real = torch.randn(4, 2, 64, 16).double()
    fake = torch.randn(4, 2, 64, 16).double() * torch.linspace(0.5, 2, 16)
    assert contrast_matching(real, real, pool=4, width=2) == 0
    cf = pooled_level_contrast(fake.square().mean(1), 4, 60.0, 2)
    cr = pooled_level_contrast(real.square().mean(1), 4, 60.0, 2)
    ref = wasserstein_distance(cf.flatten(), cr.flatten()) + wasserstein_distance(
        cf.mean(-1).flatten(), cr.mean(-1).flatten()
    )
    assert float(contrast_matching(fake, real, pool=4, width=2)) == pytest.approx(ref, rel=1e-6)


def test_contrast_matching_descends_towards_held_partials():
    """Reals: partials every 4th bin held over the clip (random signs per frame, as an MDCT's); fakes:
    noise. Gradient steps on the fakes alone lower the distance and dig valleys between held peaks."""
    from mp3net.dsp import pooled_level_contrast
    from mp3net.train.losses import contrast_matching

    torch.manual_seed(2)
    partials = torch.full((16,), 0.03)
    partials[1::4] = 1.0
    real = partials * torch.randn(4, 2, 64, 16)
    fake = torch.randn(4, 2, 64, 16).requires_grad_()
    opt = torch.optim.Adam([fake], lr=0.02)

    def mean_contrast() -> float:
        return float(pooled_level_contrast(fake.detach().square().mean(1), 8, 60.0, 2).mean())

    first, first_mean = float(contrast_matching(fake.detach(), real, pool=8)), mean_contrast()
    _descend(opt, lambda: contrast_matching(fake, real, pool=8), 150)
    assert float(contrast_matching(fake.detach(), real, pool=8)) < 0.5 * first
    assert mean_contrast() < first_mean - 5.0  # valleys dug several dB deeper, towards the reals'


def _descend(opt: torch.optim.Optimizer, loss_fn, steps: int) -> None:
    """``steps`` optimiser steps on ``loss_fn()``."""
    for _ in range(steps):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()


def _spectral_d(seed: int = 0):
    from mp3net import preset
    from mp3net.model import SpectralDiscriminator

    cfg = preset("tiny").override(
        ["model.n_blocks=3", "model.start_bands=8", "model.d_spectral_channels=4", "model.d_spectral_fft=32"]
    )
    torch.manual_seed(seed)
    return SpectralDiscriminator(cfg.model).double(), cfg.model


def test_spectral_r1_is_the_squared_input_gradient_of_the_spectral_view():
    """‖∇_v S‖² with ∇ checked against central differences along random directions of its input v."""
    from mp3net.train.losses import spectral_r1

    spec, cfg = _spectral_d()
    x = 0.01 * torch.randn(2, cfg.channels, cfg.n_frames, cfg.n_bands, dtype=torch.float64)
    v = spec.view(x).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(spec.score_view(v).sum(), v)
    h = 1e-6
    for seed in range(3):
        d = torch.randn(v.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        with torch.no_grad():
            fd = (spec.score_view(v + h * d) - spec.score_view(v - h * d)).sum() / (2 * h)
        assert float((grad * d).sum()) == pytest.approx(float(fd), rel=1e-5)
    r1 = spectral_r1(spec, x.requires_grad_(True))
    assert float(r1) == pytest.approx(float(grad.square().flatten(1).sum(1).mean()), rel=1e-10)
    r1.backward()  # trains the view only, never its input
    assert x.grad is None and spec.body[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("loss", ["ns-r1", "rpgan-r1r2"])
def test_spectral_d_loss_is_the_adversarial_term_plus_the_scaled_penalty(loss):
    from mp3net.train.losses import adversarial_d, spectral_d_loss, spectral_penalty

    spec, cfg = _spectral_d()
    real = 0.01 * torch.randn(2, cfg.channels, cfg.n_frames, cfg.n_bands, dtype=torch.float64)
    fake = torch.randn_like(real).mul(0.01).requires_grad_(True)
    plain, st = spectral_d_loss(spec, real, fake, loss, r1_gamma=4.0, reg_scale=0.0)
    assert "spectral_r1" not in st
    assert float(plain) == pytest.approx(float(adversarial_d(loss, spec(real), spec(fake))), rel=1e-12)
    lazy, st = spectral_d_loss(spec, real, fake, loss, r1_gamma=4.0, reg_scale=8.0)
    term, pen_st = spectral_penalty(spec, real, fake, loss, r1_gamma=4.0)
    pen = pen_st["spectral_r1"]
    assert float(term) == pytest.approx(2.0 * float(pen), rel=1e-12)  # γ/2
    assert float(lazy) == pytest.approx(float(plain) + 8.0 * 2.0 * float(pen), rel=1e-10)
    assert float(st["spectral_r1"]) == pytest.approx(float(pen), rel=1e-12)
    if loss == "rpgan-r1r2":  # R2 on the fakes too
        from mp3net.train.losses import spectral_r1

        assert float(pen) == pytest.approx(
            float(spectral_r1(spec, real) + spectral_r1(spec, fake)), rel=1e-12
        )
    lazy.backward()
    assert fake.grad is None  # a D-only loss


def test_mode_seeking_is_the_inverse_spectral_distance_over_the_latent_distance():
    """A hand computation of the ratio, a batch of identical fakes is penalised with 1/ε, and descending
    the loss makes two fakes' long-window spectra differ more."""
    from mp3net.dsp.spectral import DETAIL_WIDTH, log_spectrogram
    from mp3net.train.losses import MODE_SEEKING_EPS, mode_seeking

    torch.manual_seed(0)
    fake = 0.01 * torch.randn(4, 2, 32, 16)
    z = torch.randn(4, 8)
    loss, ratio = mode_seeking(fake, z, 64)
    s = log_spectrogram(fake, 64).mean(dim=(1, 2))
    h = DETAIL_WIDTH // 2
    s = s - torch.stack(
        [s[:, max(0, f - h) : f + h + 1].mean(1) for f in range(s.shape[1])], 1
    )  # minus the moving average
    ref = torch.stack([(s[i] - s[i + 2]).abs().mean() / (z[i] - z[i + 2]).abs().mean() for i in range(2)])
    torch.testing.assert_close(ratio, ref.mean())
    torch.testing.assert_close(loss, 1 / (ref.mean() + MODE_SEEKING_EPS))
    same = torch.cat([fake[:2], fake[:2]])
    assert mode_seeking(same, z, 64)[0] == pytest.approx(1 / MODE_SEEKING_EPS)
    x = fake.clone().requires_grad_(True)
    opt = torch.optim.SGD([x], lr=1e-5)
    for _ in range(5):
        opt.zero_grad()
        mode_seeking(x, z, 64)[0].backward()
        opt.step()
    assert mode_seeking(x.detach(), z, 64)[1] > ratio
    with pytest.raises(ValueError, match="at least 2"):
        mode_seeking(fake[:1], z[:1], 64)


def test_partial_change_matching_is_zero_on_the_reals_and_pulls_a_drone_towards_chord_changes():
    """The reals against themselves cost nothing; a held tone against a tone that jumps between segments
    costs, and descending the loss makes the held tone's partials change between segments."""
    from mp3net.dsp import mdct
    from mp3net.dsp.spectral import log_spectrogram, partial_changes
    from mp3net.train.losses import partial_change_matching

    sr, k, n_fft, frames = 11008, 16, 64, 4
    t = torch.arange(32 * k * 4) / sr
    half = t.numel() // 2
    held = 0.1 * torch.sin(2 * math.pi * 1000 * t)
    jump = torch.cat([held[:half], 0.1 * torch.sin(2 * math.pi * 2500 * t[half:])])
    real = mdct(jump.expand(2, 2, -1).contiguous(), k)
    fake = mdct(held.expand(2, 2, -1).contiguous(), k)
    zero, moved = partial_change_matching(real, real, n_fft, frames)
    assert float(zero) == 0.0
    assert float(moved) == pytest.approx(
        float(partial_changes(log_spectrogram(real, n_fft).mean(1), frames).mean())
    )
    before, moved_before = partial_change_matching(fake, real, n_fft, frames)
    assert before > 0.5
    x = fake.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=1e-3)
    for _ in range(50):
        opt.zero_grad()
        partial_change_matching(x, real, n_fft, frames)[0].backward()
        opt.step()
    after, moved_after = partial_change_matching(x.detach(), real, n_fft, frames)
    assert after < 0.5 * before and moved_after > 2 * moved_before


def test_the_envelope_term_draws_an_unsure_fake_at_the_clips_level():
    """A G unsure which of two pitches a clip holds draws both at half the power each. The log distance
    alone is least with that hedge several dB too quiet (the median of the log, not the level); the
    envelope term halves the shortfall."""
    t = torch.arange(127 * 64, dtype=torch.float64) / 11008

    def tone(freq: float, amplitude: float = 0.1) -> torch.Tensor:
        return amplitude * torch.sin(2 * math.pi * freq * t)

    noise = 1e-4 * torch.randn(
        2, 1, t.numel(), generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    real = mdct(torch.stack([tone(430.0), tone(470.0)])[:, None] + noise, 64)
    hedge = mdct((tone(430.0, 0.1 / 2**0.5) + tone(470.0, 0.1 / 2**0.5)).expand(2, 1, -1) + noise.flip(0), 64)
    gains_db = [x / 4 for x in range(-48, 25)]

    def best_gain(envelope: float) -> float:
        loss = [
            float(spectral_reconstruction(hedge * 10 ** (db / 20), real, (256, 1024), envelope))
            for db in gains_db
        ]
        return gains_db[loss.index(min(loss))]

    assert best_gain(0.0) <= -2.0
    assert best_gain(1.0) >= -1.5
    assert float(spectral_reconstruction(real, real, (256, 1024), 1.0)) == 0.0


def test_mid_side_sees_the_stereo_image_that_a_distance_per_channel_is_blind_to():
    x = torch.randn(1, 1, 63 * 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    real = mdct(torch.cat([x, x], 1), 64)  # a centred source
    fake = mdct(torch.cat([x, -x], 1), 64)  # the same in each channel, out of phase: all side
    assert float(spectral_reconstruction(fake, real, (256,))) < 1e-6
    assert float(spectral_reconstruction(fake, real, (256,), stereo_mid_side=True)) > 2.0  # > 40 dB apart
    assert float(spectral_reconstruction(real, real, (256,), stereo_mid_side=True)) == 0.0
