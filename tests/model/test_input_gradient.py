"""Discriminator.input_gradient: the same gradient, and the same second-order parameter gradient of the
penalty, as autograd's create_graph route — with and without minibatch-stddev groups, in both layouts, with
and without band normalisation."""

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


def plain_model():
    """The laptop preset's discriminator with its last blocks narrower (min_channels=16 instead of 32, for
    the tests' speed) and the paper's unit: the amplitudes as they are."""
    return replace(preset("laptop").model, min_channels=16, band_norm=False)


def band_normalised_model():
    """:func:`plain_model` with band normalisation: levels falling 40 dB across the bands."""
    cfg = plain_model()
    levels = tuple(float(v) for v in torch.logspace(-1, -3, cfg.n_bands))
    return replace(cfg, band_norm=True, band_rms=levels)


@pytest.mark.parametrize("batch", [1, 3, 4])  # 1: no stddev group; 3, 4: groups of 3 and 4
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
# D's unit: the paper's (the amplitudes as they are) and band normalisation's (each band over its level)
@pytest.mark.parametrize("unit", ["plain", "band_norm"])
def test_input_gradient_matches_autograd(batch, layout, unit):
    cfg = plain_model() if unit == "plain" else band_normalised_model()
    _check_against_autograd(cfg, batch, layout)


def _check_against_autograd(cfg, batch, layout):
    torch.manual_seed(0)
    D = Discriminator(cfg).double()
    x = torch.randn(batch, cfg.channels, cfg.n_frames, cfg.n_bands, dtype=torch.float64)
    x = x.abs() if not cfg.band_norm else x * 0.01  # signed amplitudes at the data's level
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
    cfg = band_normalised_model()
    D = Discriminator(cfg)
    x = torch.rand(2, cfg.channels, cfg.n_frames, cfg.n_bands)
    with torch.no_grad():
        _, g = D.input_gradient(x)
    assert not g.requires_grad and g.abs().sum() > 0


def test_input_gradient_with_respect_to_ds_input():
    """``wrt_input``: ∂D/∂u at u = the input over the levels per band, the gradient of a plain D with the
    same weights at u; without it, ∂D/∂x = ∂D/∂u / level."""
    cfg = band_normalised_model()
    levels = torch.tensor(cfg.band_rms, dtype=torch.float64)
    torch.manual_seed(1)
    D = Discriminator(cfg).double()
    plain = copy.deepcopy(D)
    plain.cfg = replace(cfg, band_norm=False)
    x = torch.randn(2, cfg.channels, cfg.n_frames, cfg.n_bands, dtype=torch.float64) * 0.01
    u = D._unit(x)
    torch.testing.assert_close(u, x / levels, rtol=1e-6, atol=0)  # the unit: 1 / level in float32
    _, g = D.input_gradient(x, wrt_input=True)
    _, want = plain.input_gradient(u)
    torch.testing.assert_close(g, want, rtol=1e-12, atol=1e-14)
    _, gx = D.input_gradient(x)
    torch.testing.assert_close(gx, want / levels, rtol=1e-6, atol=1e-14 / float(levels.min()))
    torch.testing.assert_close(D(x), plain(u), rtol=1e-12, atol=0)
