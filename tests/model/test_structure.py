"""The octave structure of generator and discriminator blocks, minibatch stddev and exact time tiling."""

from dataclasses import replace

import pytest
import torch

from mp3net import ops
from mp3net.config import ModelConfig, preset
from mp3net.model import Discriminator, DiscriminatorBlock, Generator, GeneratorBlock, minibatch_stddev
from mp3net.ops import TileLevel


def small_cfg(**kw) -> ModelConfig:
    base = dict(
        sample_rate=2752,
        n_bands=16,
        latent_dim=8,
        n_blocks=3,
        start_frames=1,
        start_bands=2,
        base_channels=2,
        max_channels=8,
        d_dense=8,
        channels=2,
    )
    base.update(kw)
    return ModelConfig(**base)


def test_generator_new_octave_ignores_lower_bands():
    torch.manual_seed(0)
    block = GeneratorBlock(6, 5, 4)
    x = torch.randn(2, 6, 4, 8, requires_grad=True)
    block.new_octave(x).square().sum().backward()
    assert x.grad[..., :4].abs().max() == 0
    assert x.grad[..., 4:].abs().min() > 0
    x.grad = None
    # the existing octaves see every band
    block.old_octaves(x).square().sum().backward()
    assert x.grad.abs().min() > 0


def test_generator_block_concatenates_low_then_high():
    torch.manual_seed(0)
    block = GeneratorBlock(6, 5, 4)
    x = torch.randn(1, 6, 4, 8)
    grads = {}
    delta = torch.zeros(1, 5, 8, 8, requires_grad=True)
    # perturb the new octave right before the concatenation: only the top half of the bands (plus one band
    # of 3×3 spill-over across the boundary) may change
    h = block.high_balance.register_forward_hook(lambda m, i, o: o + delta)
    y = block(x)
    h.remove()
    y[..., :7].sum().backward(retain_graph=True)
    grads["below"] = delta.grad.clone()
    assert grads["below"][..., 1:].abs().max() == 0  # only band 0 of the new octave touches band 7 of y
    delta.grad = None
    y[..., 8:].sum().backward()
    assert delta.grad.abs().sum() > 0


def test_discriminator_folds_high_octave_onto_upper_half_of_lower_octave():
    torch.manual_seed(0)
    block = DiscriminatorBlock(3, 4, 5)
    x = torch.randn(2, 3, 16, 16)
    delta = torch.zeros(2, 5, 4, 4, requires_grad=True)  # the top octave after its balancing conv
    h = block.high_balance.register_forward_hook(lambda m, i, o: o + delta)
    y = block(x)
    h.remove()
    assert y.shape == (2, 5, 4, 8)
    y[..., :4].sum().backward(retain_graph=True)  # lower quarter of the input bands
    assert delta.grad.abs().max() == 0
    delta.grad = None
    y[..., 4:].sum().backward()  # upper half of the lower octave: added one to one
    assert torch.equal(delta.grad, torch.ones_like(delta))


def test_discriminator_octave_paths_read_their_own_bands():
    torch.manual_seed(0)
    block = DiscriminatorBlock(3, 4, 5)
    x = torch.randn(2, 3, 16, 16)
    delta = torch.zeros(2, 4, 8, 16, requires_grad=True)  # added onto the down conv's output y
    outs = {}
    block.down.register_forward_hook(lambda m, i, o: o + delta)
    block.high_balance.register_forward_hook(lambda m, i, o: outs.setdefault("high", o))
    block.low_balance.register_forward_hook(lambda m, i, o: outs.setdefault("low", o))
    block(x)
    (g,) = torch.autograd.grad(outs["high"].square().sum(), delta, retain_graph=True)
    assert g[..., :8].abs().max() == 0 and g[..., 8:].abs().min() > 0  # the top octave: top K/2 bands only
    (g,) = torch.autograd.grad(outs["low"].square().sum(), delta)
    assert g[..., 8:].abs().max() == 0 and g[..., :8].abs().sum() > 0


def test_minibatch_stddev_identical_samples_zero():
    x = torch.randn(1, 3, 4, 2).repeat(8, 1, 1, 1)
    f = minibatch_stddev(x, 4)
    assert f.shape == (8, 4, 4, 2)
    assert torch.equal(f[:, :3], x)
    assert torch.allclose(f[:, 3], torch.full((8, 4, 2), 1e-4))  # √(0 + 1e-8)


def test_minibatch_stddev_positive_and_grouped():
    torch.manual_seed(0)
    same = torch.randn(1, 3, 4, 2)
    x = torch.randn(8, 3, 4, 2)
    x[0::2] = same  # group size 4 over batch 8: samples b and b+2, b+4, b+6 form a group
    f = minibatch_stddev(x, 4)[:, 3]
    assert torch.allclose(f[0::2], torch.full_like(f[0::2], 1e-4))
    assert (f[1::2] > 0.1).all()
    # the value: mean over elements of the (biased) std over the group
    odd = x[1::2]
    expected = torch.sqrt(odd.var(dim=0, unbiased=False) + 1e-8).mean()
    assert torch.allclose(f[1], expected.expand(4, 2), rtol=1e-5)


@pytest.mark.parametrize(
    "batch,spread",
    [(1, False), (2, True), (3, True), (6, True), (5, False)],  # 6 → groups of 3; 5 → groups of one
)
def test_minibatch_stddev_any_batch(batch, spread):
    torch.manual_seed(0)
    x = torch.randn(batch, 3, 4, 2)
    f = minibatch_stddev(x, 4)
    assert f.shape == (batch, 4, 4, 2) and torch.isfinite(f).all()
    if spread:
        assert (f[:, 3] > 0.1).all()
    else:
        assert f[:, 3].abs().max() == 0


def test_discriminator_batch_one():
    cfg = small_cfg()
    D = Discriminator(cfg)
    assert D(torch.randn(1, 2, cfg.n_frames, cfg.n_bands)).shape == (1, 1)


def laptop_model(*overrides: str) -> ModelConfig:
    """The laptop preset's network (the oscillator bank, band normalisation), its levels per band filled in
    as training does: falling 30 dB across the bands."""
    cfg = preset("laptop").override(list(overrides)).model
    return replace(cfg, band_rms=tuple(float(v) for v in torch.logspace(-1, -2.5, cfg.n_bands)))


def test_tiled_synthesis_is_exact():
    cfg = laptop_model()
    torch.manual_seed(0)
    G = Generator(cfg)
    with torch.no_grad():
        h = G.head(torch.randn(1, 2, cfg.latent_dim))
        with ops.enabled(False):  # the plain path: NCHW
            full = G.synthesize(h)
        assert full.shape == (1, cfg.channels, 2 * cfg.n_frames, cfg.n_bands)
        tol = 1e-5 * full.abs().max().item()  # float rounding: the conv kernels' blocking depends on the size
        for tile_frames, tile_blocks, cl in [(16, 1, False), (3, 2, False), (1, 4, False), (5, 2, True)]:
            with ops.enabled(cl):
                tiled = G.synthesize(h, [TileLevel(tile_blocks, tile_frames)])
            torch.testing.assert_close(tiled, full, rtol=0, atol=tol)
        # nested levels (the inference policy's shape): outer tiles of 3 blocks, inner tiles of 2
        for tiles in ([TileLevel(3, 1), TileLevel(2, 3)], [TileLevel(4, 1), TileLevel(2, 5)]):
            torch.testing.assert_close(G.synthesize(h, tiles), full, rtol=0, atol=tol)
        # too little context is wrong near every tile edge: the checks above would notice a wrong halo
        wrong = G.synthesize(h, [TileLevel(2, 3)], halo=1)
        assert (wrong - full).abs().max() > 1e-2 * full.abs().max()
        assert G.generate(torch.randn(2, cfg.latent_dim)).shape == (2, 2, cfg.n_frames, 64)
        # the inference path: the device plan's tiling, the same values
        torch.testing.assert_close(G.render(h, dtype=torch.float32), full, rtol=0, atol=tol)


@pytest.mark.parametrize(
    "option",
    [
        "model.upsample=resize",  # the laptop network: resize upsampling, the bank output
        "model.upsample=transposed",
        "model.output=linear",
    ],
)
def test_inference_tiles_are_exact_for_every_upsampling_and_output_mode(option):
    cfg = laptop_model(option)
    torch.manual_seed(0)
    G = Generator(cfg)
    with torch.no_grad():
        h = G.head(torch.randn(1, 2, cfg.latent_dim))
        full = G.synthesize(h)
        tol = 1e-5 * full.abs().max().item()
        for tiles in ([TileLevel(2, 3)], [TileLevel(3, 1), TileLevel(2, 3)]):
            torch.testing.assert_close(G.synthesize(h, tiles), full, rtol=0, atol=tol)
        torch.testing.assert_close(G.render(h, dtype=torch.float32), full, rtol=0, atol=tol)


def test_generator_is_deterministic_and_latent_tiles_are_consistent():
    cfg = small_cfg()
    torch.manual_seed(1)
    G = Generator(cfg)
    z = torch.randn(2, 3, cfg.latent_dim)
    assert torch.equal(G(z), G(z))
    # each start tile is the head of its own latent, laid along time
    h = G.head(z)
    for i in range(3):
        f = cfg.start_frames
        assert torch.allclose(h[:, :, i * f : (i + 1) * f], G.head(z[:, i]))
