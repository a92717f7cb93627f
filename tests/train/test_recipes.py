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
from mp3net.train.loop import Trainer, train
from mp3net.train.losses import adversarial_g, d_loss, g_loss, penalty, r1_penalty


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


@pytest.mark.parametrize("loss", ["ns-r1", "rpgan-r1r2"])
def test_penalties_are_gamma_halves_of_r1_and_r2(loss):
    D, _ = tiny_d()
    real, fake = _inputs()
    term, st = penalty(D, real, fake, loss, r1_gamma=0.3)
    want = _autograd_sq_norm(D, real) + (_autograd_sq_norm(D, fake) if loss == "rpgan-r1r2" else 0)
    torch.testing.assert_close(term, 0.15 * want, rtol=1e-10, atol=1e-12)
    assert ("r2" in st) == (loss == "rpgan-r1r2")


@pytest.mark.parametrize("loss", ["wgan-gp", "ns-r1"])
def test_penalties_are_taken_in_ds_unit_scale(loss):
    """With model.amplitude_gain g, the penalty is the gain-1 penalty of the same function at inputs x·g:
    ∇ with respect to D's unit-scale input (docs/networks.md#amplitude-gain)."""
    D1, cfg = tiny_d()
    Dg = copy.deepcopy(D1)
    Dg.cfg = dataclasses.replace(cfg, amplitude_gain=64.0)
    real, fake = _inputs()
    rng = torch.Generator
    ours, _ = penalty(Dg, real / 64, fake / 64, loss, r1_gamma=0.3, generator=rng().manual_seed(1))
    want, _ = penalty(D1, real, fake, loss, r1_gamma=0.3, generator=rng().manual_seed(1))
    torch.testing.assert_close(ours, want, rtol=1e-10, atol=1e-12)
    assert want > 0


@pytest.mark.parametrize("loss", ["ns-r1", "rpgan-r1r2"])
def test_zero_centred_penalties_are_taken_on_ds_compressed_input(loss):
    """With model.d_compress p, R1/R2 are the linear D's at the compressed inputs u: ∇ with respect to what
    D's first conv sees (docs/networks.md#input-compression)."""
    D1, cfg = tiny_d()
    Dc = copy.deepcopy(D1)
    Dc.cfg = dataclasses.replace(cfg, amplitude_gain=64.0, d_compress=0.5)
    real, fake = _inputs()
    ours, _ = penalty(Dc, real / 64, fake / 64, loss, r1_gamma=0.3)
    want, _ = penalty(D1, Dc._unit(real / 64), Dc._unit(fake / 64), loss, r1_gamma=0.3)
    torch.testing.assert_close(ours, want, rtol=1e-10, atol=1e-12)
    linear, _ = penalty(D1, real, fake, loss, r1_gamma=0.3)
    assert not torch.allclose(ours, linear, rtol=1e-3)  # the compression changes what is penalised


def test_adversarial_terms():
    d_real, d_fake = torch.tensor([[0.5], [1.0]]), torch.tensor([[-0.2], [0.3]])
    _, st = d_loss(_Fixed(d_real, d_fake), d_real, d_fake, loss="ns-r1", reg_scale=0.0)
    want = F.softplus(d_fake).mean() + F.softplus(-d_real).mean()
    torch.testing.assert_close(st["d_loss"], want)
    _, st = d_loss(_Fixed(d_real, d_fake), d_real, d_fake, loss="rpgan-r1r2", reg_scale=0.0)
    torch.testing.assert_close(st["d_loss"], F.softplus(d_fake - d_real).mean())
    torch.testing.assert_close(
        adversarial_g("rpgan-r1r2", d_fake, d_real), F.softplus(d_real - d_fake).mean()
    )
    torch.testing.assert_close(adversarial_g("ns-r1", d_fake), F.softplus(-d_fake).mean())
    with pytest.raises(ValueError):
        adversarial_g("rpgan-r1r2", d_fake)


class _Fixed(torch.nn.Module):
    """A 'discriminator' that returns its input: scores in, scores out."""

    def __init__(self, *_):
        super().__init__()

    def forward(self, x):
        return x


def test_rpgan_generator_loss_has_no_gradient_through_the_reals():
    D, _ = tiny_d()
    real, fake = _inputs()
    fake = fake.clone().requires_grad_(True)
    real = real.clone().requires_grad_(True)
    loss, _ = g_loss(D, fake, "rpgan-r1r2", real)
    loss.backward()
    assert real.grad is None and fake.grad.abs().sum() > 0


@pytest.mark.parametrize("loss", ["wgan-gp", "ns-r1", "rpgan-r1r2"])
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
    """reg_every=1: one D update per iteration from the loss with its penalty, uncompensated: the same
    weights as a trainer whose D loss is built whole and backpropagated once."""
    import mp3net.train.loop as loop

    cfg = fast_config("train.loss=ns-r1", "train.reg_every=1", "train.n_critic=1", "train.r1_gamma=5")
    a = Trainer(cfg, notes_dataset, tmp_path / "a", progress=False)
    assert a.opt_D.param_groups[0]["lr"] == cfg.train.lr
    for _ in range(3):
        a.train_step()
    assert int(a.opt_D.state[a.D.score.weight]["step"]) == 3
    a.close()

    def whole(*args, backward=False, **kw):
        total, st = d_loss(*args, backward=False, **kw)
        assert kw["reg_scale"] == 1.0
        total.backward()
        return total.detach(), st

    monkeypatch.setattr(loop, "d_loss", whole)
    b = Trainer(cfg, notes_dataset, tmp_path / "b", progress=False)
    for _ in range(3):
        b.train_step()
    b.close()
    for (k, va), vb in zip(a.D.state_dict().items(), b.D.state_dict().values(), strict=True):
        torch.testing.assert_close(va, vb, rtol=1e-4, atol=1e-6, msg=k)


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
    for g_steps in (0, 100, 1000, 10_000):
        tr.g_steps = g_steps
        betas[g_steps] = tr._ema_beta()
    tr.close()
    assert betas[0] == 0.0  # no history yet: the EMA is the current weights
    assert betas[100] == pytest.approx(0.5 ** (4 / 20))  # half-life 5 % of 400 clips
    assert betas[10_000] == pytest.approx(0.5 ** (4 / 1000))  # capped at the half-life
    assert betas[100] < betas[1000] < betas[10_000]


def test_exact_resume_with_every_recipe_option(notes_dataset, tmp_path):
    opts = [
        "train.loss=rpgan-r1r2", "train.reg_every=3", "train.n_critic=1", "train.augment=0.5",
        "train.warmup_steps=5", "train.ema_half_life=200", "train.ema_rampup=0.05", "train.ckpt_every=4",
        "model.upsample=resize", "model.d_spectral_channels=4", "model.d_spectral_fft=256",
        "model.d_spectral_spread=true", "train.mode_seeking=0.5",
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


@pytest.mark.parametrize("term", ["change_match", "contrast_match", "mode_seeking", "partial_change_match"])
def test_a_matching_term_joins_gs_loss_only(notes_dataset, tmp_path, term):
    """The same first iteration with and without the term: D's update is the same, G's is not, and the
    term is logged."""
    runs = {}
    for w in (0.0, 10.0):
        extra = ["train.partial_change_frames=8"] if term == "partial_change_match" else []  # 0.74 s clips
        cfg = fast_config(f"train.{term}={w}", "train.n_critic=1", *extra)
        tr = Trainer(cfg, notes_dataset, tmp_path / f"{w}")
        stats = tr.train_step()
        runs[w] = (stats, copy.deepcopy(tr.G.state_dict()), copy.deepcopy(tr.D.state_dict()))
        tr.close()
    (s0, g0, d0), (s1, g1, d1) = runs[0.0], runs[10.0]
    logged = {"partial_change_match": "loss/partial_change"}.get(term, f"loss/{term}")
    assert logged not in s0 and s1[logged] > 0
    assert all(torch.equal(d0[k], d1[k]) for k in d0)
    assert any(not torch.equal(g0[k], g1[k]) for k in g0)


def test_change_lags_longer_than_the_clip_are_a_clear_error(notes_dataset, tmp_path):
    from mp3net.utils import MP3NetError

    cfg = fast_config("train.change_match=1", "train.change_lags=[1, 16]")  # 128 frames: 16 steps of 8
    with pytest.raises(MP3NetError, match="lags must be fewer"):
        Trainer(cfg, notes_dataset, tmp_path / "r")


def test_a_contrast_width_as_wide_as_the_bands_is_a_clear_error(notes_dataset, tmp_path):
    from mp3net.utils import MP3NetError

    cfg = fast_config("train.contrast_match=1", "train.contrast_width=64")
    with pytest.raises(MP3NetError, match="contrast_width must be fewer"):
        Trainer(cfg, notes_dataset, tmp_path / "r")


@pytest.mark.parametrize("fast", [False, True])
def test_bf16_where_it_is_emulated_is_warned_about(notes_dataset, tmp_path, monkeypatch, capsys, fast):
    from mp3net import ops

    monkeypatch.setattr(ops, "bf16_is_fast", lambda device: fast)
    Trainer(fast_config("train.amp=bf16"), notes_dataset, tmp_path / "r").close()
    warned = "train.amp=bf16 on a cpu without native bf16" in capsys.readouterr().err
    assert warned != fast


SPECTRAL = ("train.loss=ns-r1", "train.n_critic=1", "model.d_spectral_channels=4", "model.d_spectral_fft=256")


def test_the_spectral_view_trains_beside_d_and_joins_gs_loss_by_its_weight(notes_dataset, tmp_path):
    """The first iteration without the view, with it at weight 0 and at weight 1: D's MDCT view and, at
    weight 0, G take the same update as without it (its own noise draw, weights and RNG take nothing from
    theirs); at weight 1 G's update changes; the view itself trains and its scores are logged."""
    runs = {}
    for name, extra in (
        ("off", []),
        ("w0", [*SPECTRAL[2:], "train.spectral_weight=0"]),
        ("w1", SPECTRAL[2:]),
    ):
        tr = Trainer(fast_config(*SPECTRAL[:2], *extra), notes_dataset, tmp_path / name, progress=False)
        before = None if tr.D.spectral is None else copy.deepcopy(tr.D.spectral.state_dict())
        stats = tr.train_step()
        after = None if tr.D.spectral is None else tr.D.spectral.state_dict()
        d_mdct = {k: v.clone() for k, v in tr.D.state_dict().items() if not k.startswith("spectral.")}
        runs[name] = (stats, copy.deepcopy(tr.G.state_dict()), d_mdct, before, after)
        tr.close()
    (s_off, g_off, d_off, _, _), (s0, g0, d0, _, _), (s1, g1, d1, before, after) = runs.values()
    assert "score/spectral_real" not in s_off
    assert {"score/spectral_real", "score/spectral_fake", "loss/d_spectral", "loss/g_spectral"} <= s1.keys()
    assert "spectral_r1" in s1  # reg_every=1 in the fast config: the penalty joins every step
    assert all(torch.equal(d_off[k], d0[k]) and torch.equal(d_off[k], d1[k]) for k in d_off)
    assert all(torch.equal(g_off[k], g0[k]) for k in g_off)
    assert any(not torch.equal(g_off[k], g1[k]) for k in g_off)
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_lazy_regularisation_takes_the_spectral_penalty_with_ds(notes_dataset, tmp_path):
    tr = Trainer(fast_config(*SPECTRAL, "train.reg_every=2"), notes_dataset, tmp_path / "r", progress=False)
    has_r1 = [{"r1", "spectral_r1"} <= tr.train_step().keys() for _ in range(4)]
    tr.close()
    assert has_r1 == [True, False, True, False]
