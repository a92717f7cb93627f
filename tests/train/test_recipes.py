"""The training recipes (docs/training.md#recipes): penalties against autograd, lazy regularisation, the
optimiser compensation, the EMA ramp, and exact resume with every option on."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from conftest import fast_config
from test_losses import tiny_d

from mp3net.train import checkpoint as ckpt
from mp3net.train.gan import Trainer, train
from mp3net.train.losses import adversarial_g, d_loss, penalty, r1_penalty


def _inputs(seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(4, 1, 16, 8, generator=g, dtype=torch.float64) * 0.1
    fake = torch.randn(4, 1, 16, 8, generator=g, dtype=torch.float64) * 0.1
    return real, fake


def _autograd_sq_norm(D, x):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    return g.square().flatten(1).sum(1).mean()


def test_r1_penalty_and_its_weight_gradient_equal_autograd():
    D, _ = tiny_d()
    real, _ = _inputs()
    ours = r1_penalty(D, real)
    ref = _autograd_sq_norm(D, real)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    params = list(D.parameters())
    ga = torch.autograd.grad(ours, params, allow_unused=True)
    gb = torch.autograd.grad(ref, params, allow_unused=True)
    for p, a, b in zip(params, ga, gb, strict=True):  # the score's bias plays no part in ∇D
        a, b = (torch.zeros_like(p) if t is None else t for t in (a, b))
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_r1_matches_finite_differences_of_the_score():
    D, _ = tiny_d(1)
    x, _ = _inputs(5)
    eps = 1e-6
    grad = torch.zeros_like(x)
    flat = grad.view(-1)
    for i in range(0, x.numel(), 37):  # a sample of the coordinates
        e = torch.zeros_like(x).view(-1)
        e[i] = eps
        e = e.view_as(x)
        flat[i] = (D(x + e).sum() - D(x - e).sum()) / (2 * eps)
    _, ours = D.input_gradient(x)
    idx = torch.arange(0, x.numel(), 37)
    torch.testing.assert_close(ours.reshape(-1)[idx], flat[idx], rtol=1e-5, atol=1e-8)


def test_the_r1_penalty_is_gamma_half_of_r1_on_the_reals_alone():
    D, _ = tiny_d()
    real, fake = _inputs()
    term, st = penalty(D, real, fake, "ns-r1", r1_gamma=0.3)
    want = _autograd_sq_norm(D, real)
    torch.testing.assert_close(term, 0.15 * want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(st["r1"], want.detach(), rtol=1e-10, atol=1e-12)
    assert "r2" not in st


@pytest.mark.parametrize("loss", ["wgan-gp", "ns-r1"])
def test_penalties_are_taken_in_ds_unit_scale(loss):
    """With model.band_norm, the penalty is the plain D's penalty of the same function at inputs x / level
    per band: ∇ with respect to D's unit-scale input (docs/networks.md#band-normalisation)."""
    D1, cfg = tiny_d()
    levels = torch.logspace(-1, -3, cfg.n_bands, dtype=torch.float64)  # 40 dB across the bands
    Dn = copy.deepcopy(D1)
    Dn.cfg = dataclasses.replace(cfg, band_norm=True, band_rms=tuple(float(v) for v in levels))
    real, fake = _inputs()
    rng = torch.Generator
    ours, _ = penalty(Dn, real * levels, fake * levels, loss, r1_gamma=0.3, generator=rng().manual_seed(1))
    want, _ = penalty(D1, real, fake, loss, r1_gamma=0.3, generator=rng().manual_seed(1))
    torch.testing.assert_close(ours, want, rtol=1e-10, atol=1e-12)
    assert want > 0


def test_adversarial_terms():
    d_real, d_fake = torch.tensor([[0.5], [1.0]]), torch.tensor([[-0.2], [0.3]])
    _, st = d_loss(_Fixed(d_real, d_fake), d_real, d_fake, loss="ns-r1", reg_scale=0.0)
    want = F.softplus(d_fake).mean() + F.softplus(-d_real).mean()
    torch.testing.assert_close(st["d_loss"], want)
    torch.testing.assert_close(adversarial_g("ns-r1", d_fake), F.softplus(-d_fake).mean())


class _Fixed(torch.nn.Module):
    """A 'discriminator' that returns its input: scores in, scores out."""

    def __init__(self, *_):
        super().__init__()

    def forward(self, x):
        return x


@pytest.mark.parametrize("loss", ["wgan-gp", "ns-r1"])
def test_term_by_term_backward_equals_one_backward(loss):
    D, _ = tiny_d()
    D2 = copy.deepcopy(D)
    real, fake = _inputs()
    total, _ = d_loss(D, real, fake, 3.0, 0.1, torch.Generator().manual_seed(1), loss=loss)
    total.backward()
    d_loss(D2, real, fake, 3.0, 0.1, torch.Generator().manual_seed(1), backward=True, loss=loss)
    for a, b in zip(D.parameters(), D2.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-13)


def test_reg_scale_zero_is_the_adversarial_term_alone():
    D, _ = tiny_d()
    real, fake = _inputs()
    plain, st = d_loss(D, real, fake, loss="ns-r1", reg_scale=0.0)
    full, _ = d_loss(D, real, fake, loss="ns-r1", reg_scale=4.0, r1_gamma=2.0)
    torch.testing.assert_close(full - plain, 4.0 * _autograd_sq_norm(D, real), rtol=1e-9, atol=1e-12)
    assert "r1" not in st


def test_lazy_regularisation_at_interval_one_is_the_every_step_form(
    notes_dataset, tmp_path, monkeypatch, one_thread
):
    """reg_every=1: one D update per iteration from the loss with its penalty, uncompensated. At every
    iteration, D's gradient is that of the loss built whole and backpropagated once, on the same inputs.

    (Compared per iteration, not as the weights of two trainers after a few steps: float32 rounding of the
    two backward orders moves a LeakyReLU mask here and there, and Adam turns that into a visible step.)"""
    import mp3net.train.losses as losses

    cfg = fast_config("train.loss=ns-r1", "train.reg_every=1", "train.n_critic=1", "train.r1_gamma=5")
    tr = Trainer(cfg, notes_dataset, tmp_path / "a", progress=False)
    assert tr.opt_D.param_groups[0]["lr"] == cfg.train.lr
    checked = []

    def term_by_term(D, *args, **kw):
        # the reference first (ns-r1 draws nothing from the generator): the whole loss on a copy of D
        ref = copy.deepcopy(D)
        ref.zero_grad(set_to_none=True)
        assert kw["reg_scale"] == 1.0 and kw["backward"]
        whole, want_st = d_loss(ref, *args, **{**kw, "backward": False})
        whole.backward()
        before = [None if p.grad is None else p.grad.clone() for p in D.parameters()]
        total, st = d_loss(D, *args, **kw)
        torch.testing.assert_close(total, whole.detach(), rtol=1e-6, atol=0)
        assert st.keys() == want_st.keys() and "r1" in st
        for (name, p), b, want in zip(D.named_parameters(), before, ref.parameters(), strict=True):
            assert b is None  # D's gradients start from nothing each iteration
            if p.requires_grad:
                torch.testing.assert_close(p.grad, want.grad, rtol=1e-5, atol=1e-8, msg=name)
        checked.append(1)
        return total, st

    monkeypatch.setattr(losses, "d_loss", term_by_term)
    for _ in range(3):
        tr.train_step()
    assert int(tr.opt_D.state[tr.D.score.weight]["step"]) == 3
    assert len(checked) == 3  # GANLoss built D's loss through it, once per iteration
    tr.close()


def test_lazy_regularisation_takes_its_own_compensated_update(notes_dataset, tmp_path):
    k = 4
    cfg = fast_config("train.loss=ns-r1", f"train.reg_every={k}", "train.n_critic=1", "train.lr=2e-4")
    tr = Trainer(cfg, notes_dataset, tmp_path / "r", progress=False)
    r = k / (k + 1)
    group = tr.opt_D.param_groups[0]
    assert group["lr"] == pytest.approx(2e-4 * r)
    assert group["betas"] == pytest.approx((0.5**r, 0.9**r))
    assert tr.opt_G.param_groups[0]["lr"] == pytest.approx(2e-4)
    counts, has_r1 = [], []
    for _ in range(2 * k):
        st = tr.train_step()
        counts.append(int(tr.opt_D.state[tr.D.score.weight]["step"]))
        has_r1.append("r1" in st)
    tr.close()
    # steps 0 and k regularise: an extra D update each
    assert counts == [2, 3, 4, 5, 7, 8, 9, 10]
    assert has_r1 == [True, False, False, False, True, False, False, False]


def test_warmup_ramps_the_learning_rate(notes_dataset, tmp_path):
    cfg = fast_config("train.warmup_steps=4", "train.lr=1e-3", "train.lr_d=2e-3")
    tr = Trainer(cfg, notes_dataset, tmp_path / "r", progress=False)
    lrs = []
    for _ in range(5):
        tr.train_step()
        lrs.append((tr.opt_G.param_groups[0]["lr"], tr.opt_D.param_groups[0]["lr"]))
    tr.close()
    assert [round(g, 8) for g, _ in lrs] == [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3]
    assert [round(d, 8) for _, d in lrs] == [5e-4, 1e-3, 1.5e-3, 2e-3, 2e-3]


def test_ema_half_life_in_clips_ramps_with_the_clips_seen(notes_dataset, tmp_path):
    cfg = fast_config("train.ema_half_life=1000", "train.ema_rampup=0.05", "train.batch_size=4")
    tr = Trainer(cfg, notes_dataset, tmp_path / "r", progress=False)
    betas = {}
    assert tr.ema is not None and tr.G_ema is tr.ema.model
    for g_steps in (0, 100, 1000, 10_000):
        betas[g_steps] = tr.ema.beta(g_steps)
    tr.close()
    assert betas[0] == 0.0  # no history yet: the EMA is the current weights
    assert betas[100] == pytest.approx(0.5 ** (4 / 20))  # half-life 5 % of 400 clips
    assert betas[10_000] == pytest.approx(0.5 ** (4 / 1000))  # capped at the half-life
    assert betas[100] < betas[1000] < betas[10_000]


def test_exact_resume_with_every_recipe_option(notes_dataset, tmp_path):
    opts = [
        "train.loss=ns-r1", "train.reg_every=3", "train.n_critic=1", "train.augment=0.5",
        "train.warmup_steps=5", "train.ema_half_life=200", "train.ema_rampup=0.05", "train.ckpt_every=4",
        "model.upsample=resize", "model.output=bank", "model.band_norm=true",
    ]  # fmt: skip
    cfg = fast_config(*opts)
    a = train(cfg, notes_dataset, tmp_path / "a", steps=10, progress=False)

    def stop(tr: Trainer) -> None:
        if tr.step == 5:
            tr.request_stop()

    train(cfg, notes_dataset, tmp_path / "b", steps=10, progress=False, hooks=[stop])
    b = train(cfg, notes_dataset, tmp_path / "b", steps=10, progress=False, require_checkpoint=True)
    assert a.step == b.step == 10
    sa, _ = ckpt.load_latest(tmp_path / "a")
    sb, _ = ckpt.load_latest(tmp_path / "b")
    for net in ("G", "D", "G_ema"):
        for key in sa[net]:
            assert torch.equal(sa[net][key], sb[net][key]), (net, key)


@pytest.mark.parametrize("fast", [False, True])
def test_bf16_where_it_is_emulated_is_warned_about(notes_dataset, tmp_path, monkeypatch, capsys, fast):
    from mp3net import ops

    monkeypatch.setattr(ops, "bf16_is_fast", lambda device: fast)
    Trainer(fast_config("train.amp=bf16"), notes_dataset, tmp_path / "r").close()
    warned = "train.amp=bf16 on a cpu without native bf16" in capsys.readouterr().err
    assert warned != fast
