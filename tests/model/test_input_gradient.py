"""Discriminator.input_gradient: the same gradient, and the same second-order parameter gradient of the
penalty, as autograd's create_graph route — with and without minibatch-stddev groups, in both layouts."""

import copy
from dataclasses import replace

import pytest
import torch

from mp3net.config import preset
from mp3net.model import Discriminator


def autograd_penalty_grads(D, x):
    xr = x.detach().clone().requires_grad_(True)
    score = D(xr)
    (g,) = torch.autograd.grad(score.sum(), xr, create_graph=True)
    gp = (g.flatten(1).norm(dim=1) - 1).square().mean()
    grads = torch.autograd.grad(gp, list(D.parameters()), allow_unused=True)
    return score.detach(), g.detach(), grads


@pytest.mark.parametrize("batch", [1, 3, 4])  # 1: no stddev group; 3, 4: groups of 3 and 4
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
# model.amplitude_gain and d_compress: the paper's linear unit, the tiny preset's gain, and a compressed input
# (signed amplitudes around 0, where the compression bends most)
@pytest.mark.parametrize("gain,power", [(1.0, 1.0), (64.0, 1.0), (64.0, 0.5)])
def test_input_gradient_matches_autograd(batch, layout, gain, power):
    cfg = replace(preset("tiny").model, amplitude_gain=gain, d_compress=power)
    _check_against_autograd(cfg, batch, layout)


def test_input_gradient_with_the_pooled_branch_matches_autograd():
    cfg = replace(preset("tiny").model, amplitude_gain=64.0, d_compress=1 / 3, d_pooled_channels=8)
    _check_against_autograd(cfg, 4, torch.channels_last)


def _check_against_autograd(cfg, batch, layout):
    torch.manual_seed(0)
    D = Discriminator(cfg).double()
    if D.pooled is not None:
        torch.nn.init.normal_(D.pooled.score.weight)  # it starts at zero: the branch would not count
    x = torch.randn(batch, cfg.channels, cfg.n_frames, cfg.n_bands, dtype=torch.float64)
    x = x.abs() if cfg.d_compress == 1 else x * 0.01
    score_ref, g_ref, grads_ref = autograd_penalty_grads(copy.deepcopy(D), x)

    score, g = D.input_gradient(x.contiguous(memory_format=layout))
    gp = (g.flatten(1).norm(dim=1) - 1).square().mean()
    grads = torch.autograd.grad(gp, list(D.parameters()), allow_unused=True)

    torch.testing.assert_close(score, score_ref, rtol=1e-12, atol=0)
    scale = g_ref.abs().max()
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-12 * scale)
    top = max(r.abs().max() for r in grads_ref if r is not None)
    for (name, _), got, want in zip(D.named_parameters(), grads, grads_ref, strict=True):
        # a parameter outside the chain (a bias, at batch 1) gets no gradient; autograd's is zero then
        if want is None or got is None:
            assert all(t is None or not t.any() for t in (got, want)), name
            continue
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12 * top, msg=name)
    assert top > 0


def test_input_gradient_without_grad_mode_is_detached():
    cfg = preset("tiny").model
    D = Discriminator(cfg)
    x = torch.rand(2, cfg.channels, cfg.n_frames, cfg.n_bands)
    with torch.no_grad():
        _, g = D.input_gradient(x)
    assert not g.requires_grad and g.abs().sum() > 0


def test_input_gradient_with_respect_to_ds_input():
    """``wrt_input``: ∂D/∂u at u = the compressed, scaled input, the gradient of a linear gain-1 D with the
    same weights at u."""
    cfg = replace(preset("tiny").model, amplitude_gain=64.0, d_compress=1 / 3)
    torch.manual_seed(1)
    D = Discriminator(cfg).double()
    plain = copy.deepcopy(D)
    plain.cfg = replace(cfg, amplitude_gain=1.0, d_compress=1.0)
    x = torch.randn(2, cfg.channels, cfg.n_frames, cfg.n_bands, dtype=torch.float64) * 0.01
    u = D._unit(x)
    assert torch.equal(torch.sign(u), torch.sign(x)) and u.abs().max() < (x.abs().max() * 64) ** (1 / 3)
    _, g = D.input_gradient(x, wrt_input=True)
    _, want = plain.input_gradient(u)
    torch.testing.assert_close(g, want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(D(x), plain(u), rtol=1e-12, atol=0)


def test_pooled_branch_starts_silent_and_sees_held_tones_steadily():
    """A D that gains the branch scores as before; the branch's input is the rms over d_pooled_frames
    frames (a coefficient that flips sign every frame, a steady tone's MDCT pattern, is a constant there)
    and its change from step to step (zero while held, the jump where the level changes)."""
    from mp3net.model.discriminator import pooled_rms, pooled_view

    base = preset("tiny").model
    torch.manual_seed(0)
    D0 = Discriminator(replace(base, amplitude_gain=64.0)).double()
    D1 = Discriminator(replace(base, amplitude_gain=64.0, d_pooled_channels=8)).double()
    D1.load_state_dict(D0.state_dict(), strict=False)
    x = torch.randn(2, base.channels, base.n_frames, base.n_bands, dtype=torch.float64) * 0.01
    torch.testing.assert_close(D1(x), D0(x), rtol=0, atol=0)
    flips = torch.ones(1, 1, 16, 4) * torch.tensor([1.0, -1.0]).repeat(8).view(1, 1, 16, 1) * 3
    torch.testing.assert_close(pooled_rms(flips, 8), torch.full((1, 1, 2, 4), 3.0), rtol=1e-6, atol=1e-6)
    chord_change = torch.cat([flips, 2 * flips], dim=2)  # [1, 1, 32, 4] → 4 pooled steps: 3, 3, 6, 6
    view = pooled_view(chord_change, 8)
    torch.testing.assert_close(view[0, 1, :, 0], torch.tensor([0.0, 0.0, 3.0, 0.0]), rtol=1e-5, atol=1e-5)
