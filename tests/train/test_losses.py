"""The GAN losses (docs/training.md#recipes): the penalty against finite differences, the loss composition,
the phases of GANLoss; the pretraining distance."""

import copy
import math

import pytest
import torch

from mp3net.config import ModelConfig, TrainConfig
from mp3net.dsp import mdct
from mp3net.model import Discriminator, NoiseLayer
from mp3net.train.augment import augment
from mp3net.train.losses import GANLoss, d_loss, g_loss, gradient_penalty, penalty, spectral_reconstruction


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


def _gan_loss(cfg: ModelConfig, loss: str, reg_every: int, augment: float = 0.0, seed: int = 5) -> GANLoss:
    tc = TrainConfig(loss=loss, reg_every=reg_every, gp_lambda=3.0, drift=0.1, r1_gamma=0.7, augment=augment)
    return GANLoss(tc, NoiseLayer(cfg, sigma=0.5), torch.Generator().manual_seed(seed))


def _twin(generator: torch.Generator) -> torch.Generator:
    """A new generator in ``generator``'s state: it draws what ``generator`` draws next."""
    twin = torch.Generator()
    twin.set_state(generator.get_state())
    return twin


def _grads(D: Discriminator) -> list[torch.Tensor]:
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in D.parameters()]


def _assert_same_grads(got: list[torch.Tensor], want: list[torch.Tensor], D: Discriminator) -> None:
    assert any(w.abs().sum() > 0 for w in want)
    for (name, _), a, b in zip(D.named_parameters(), got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13, msg=name)


@pytest.mark.parametrize("loss", ["wgan-gp", "ns-r1"])
def test_gan_loss_phases_give_ds_gradients_of_the_joined_and_the_lazy_loss(loss):
    """reg_every=1: d_main alone is d_loss with the penalty joined. reg_every=k: d_main is the adversarial
    term alone, d_reg the penalty scaled by k, and both together are d_loss with reg_scale=k. The penalty's
    random draws (WGAN-GP's α) come from the loss's generator."""
    D, cfg = tiny_d()
    g = torch.Generator().manual_seed(2)
    real = 0.1 * torch.randn(4, 1, cfg.n_frames, cfg.n_bands, generator=g, dtype=torch.float64)
    fake = 0.1 * torch.randn(4, 1, cfg.n_frames, cfg.n_bands, generator=g, dtype=torch.float64)
    ref = copy.deepcopy(D)

    def reference(reg_scale: float, generator: torch.Generator) -> tuple[list[torch.Tensor], dict]:
        ref.zero_grad(set_to_none=True)
        total, st = d_loss(
            ref, real, fake, 3.0, 0.1, generator, loss=loss, r1_gamma=0.7, reg_scale=reg_scale
        )  # fmt: skip
        total.backward()
        return _grads(ref), st

    # every step: the penalty joined to the adversarial term
    joined = _gan_loss(cfg, loss, reg_every=1)
    assert not joined.lazy and not any(joined.regularise_now(i) for i in range(4))
    want, want_st = reference(1.0, _twin(joined.generator))
    st = joined.d_main(D, real, fake)
    _assert_same_grads(_grads(D), want, D)
    assert st.keys() == want_st.keys() and all(torch.equal(st[k], want_st[k]) for k in st)
    assert ("gp" if loss == "wgan-gp" else "r1") in st

    # lazy: the adversarial term, then the penalty scaled by the interval
    k = 4
    lazy = _gan_loss(cfg, loss, reg_every=k)
    assert lazy.lazy and [lazy.regularise_now(i) for i in range(2 * k)] == [True, False, False, False] * 2
    twin = _twin(lazy.generator)
    D.zero_grad(set_to_none=True)
    lazy.d_main(D, real, fake)
    adversarial = _grads(D)
    _assert_same_grads(adversarial, reference(0.0, torch.Generator())[0], D)
    D.zero_grad(set_to_none=True)
    reg_st = lazy.d_reg(D, real, fake)
    ref.zero_grad(set_to_none=True)
    pen, pen_st = penalty(ref, real, fake, loss, 3.0, 0.7, _twin(twin))
    (k * pen).backward()
    _assert_same_grads(_grads(D), _grads(ref), D)
    torch.testing.assert_close(reg_st["d_reg"], k * pen.detach(), rtol=1e-12, atol=0)
    assert all(torch.equal(reg_st[name], pen_st[name]) for name in pen_st)
    # both phases together: d_loss with the penalty scaled by k
    both = [a + b for a, b in zip(adversarial, _grads(D), strict=True)]
    _assert_same_grads(both, reference(float(k), twin)[0], D)


@pytest.mark.parametrize("loss", ["wgan-gp", "ns-r1"])
def test_gan_loss_g_main_is_g_loss_on_the_noised_fakes(loss):
    """g_main: the fakes augmented and noised with the loss's generator, then g_loss; G's gradient flows
    through the noise layer's in-graph threshold into the fakes."""
    D, cfg = tiny_d()
    gl = _gan_loss(cfg, loss, reg_every=4, augment=0.5)
    g = torch.Generator().manual_seed(3)
    base = 0.1 * torch.randn(8, 1, cfg.n_frames, cfg.n_bands, generator=g, dtype=torch.float64)
    twin = _twin(gl.generator)
    fake = base.clone().requires_grad_(True)
    out, st = gl.g_main(D, fake)
    out.backward()
    fake_ref = base.clone().requires_grad_(True)
    noised = gl.noise(augment(fake_ref, 0.5, generator=twin), generator=twin)
    want, want_st = g_loss(D, noised, loss)
    want.backward()
    torch.testing.assert_close(out, want, rtol=1e-12, atol=0)
    assert st.keys() == want_st.keys() and all(torch.equal(st[k], want_st[k]) for k in st)
    torch.testing.assert_close(fake.grad, fake_ref.grad, rtol=1e-10, atol=1e-14)
    assert fake.grad.abs().sum() > 0
    assert torch.equal(gl.generator.get_state(), twin.get_state())  # the same draws, no more
    # the noise is there: the un-noised fakes score otherwise
    assert not torch.allclose(out, g_loss(D, base, loss)[0], rtol=1e-6, atol=0)


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


def test_the_relative_floor_asks_for_the_partial_before_the_noise_floor_at_any_level():
    """The reals hold one tone over noise 60 dB under it. Under the absolute floor, a fake with the tone alone
    (nothing between) is further from them than one with the noise and no tone: the mean bin asks for the
    floor. With the floor 40 dB under the clip's level the tone alone is near and the missing tone far, and
    the same holds for the clip 40 dB quieter (the floor follows the clip), the envelope term included."""
    t = torch.arange(127 * 64, dtype=torch.float64) / 11008
    tone = torch.sin(2 * math.pi * 430.0 * t)[None, None]
    gen = torch.Generator().manual_seed(0)
    noise = 1e-3 * torch.randn(1, 1, t.numel(), generator=gen, dtype=torch.float64)
    real, bare, no_tone = mdct(tone + noise, 64), mdct(tone, 64), mdct(noise, 64)
    ffts = (256, 1024)
    assert float(spectral_reconstruction(bare, real, ffts)) > float(
        spectral_reconstruction(no_tone, real, ffts)
    )
    for gain in (1.0, 0.01):
        near = float(spectral_reconstruction(bare * gain, real * gain, ffts, 1.0, floor_db=-40))
        far = float(spectral_reconstruction(no_tone * gain, real * gain, ffts, 1.0, floor_db=-40))
        assert near < 1e-3 and far > 0.02
        assert float(spectral_reconstruction(real * gain, real * gain, ffts, floor_db=-40)) == 0.0
