"""Anchored GAN (train.anchor): a GAN started from a pretraining run keeps drawing that run's clips."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from conftest import fast_config

from mp3net.dsp import mdct
from mp3net.train.anchors import ANCHORS_FILE, AnchorTable, from_pretraining
from mp3net.train.gan import Trainer
from mp3net.train.losses import spectral_reconstruction
from mp3net.train.pretrain import Pretrainer
from mp3net.utils import MP3NetError

PRE = ["pretrain.clips=4", "pretrain.batch_size=4", "pretrain.ckpt_every=1000", "pretrain.ffts=[256, 1024]"]


@pytest.fixture(scope="module")
def pretrained(notes_dataset, tmp_path_factory):
    """A pretraining run whose G draws each of its 4 clips from that clip's latent."""
    run = tmp_path_factory.mktemp("anchors") / "pre"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    Pretrainer(fast_config(*PRE), notes_dataset, run, progress=False).run(150)
    torch.set_num_threads(n)
    return run


def _table_error(G, table: AnchorTable, dataset, cfg) -> float:
    reals = mdct(torch.stack([dataset[i] for i in table.clips]), cfg.model.n_bands)
    with torch.no_grad():
        return float(spectral_reconstruction(G(table.latents), reals, cfg.pretrain.ffts))


def test_the_folded_generator_draws_each_clip_from_its_folded_latent(pretrained, notes_dataset):
    t = Pretrainer(fast_config(*PRE), notes_dataset, pretrained, progress=False)  # resumes: the same state
    G, cfg, table = from_pretraining(pretrained)
    assert table.clips == t.clips
    with torch.no_grad():
        assert torch.allclose(G(table.latents), t.G(t.latents.weight), atol=1e-4)
    # the folded coordinates are the latents' own Gaussian's: centred, unit covariance
    assert table.latents.mean(0).abs().max() < 1e-4


def test_the_anchor_keeps_the_clips_the_gan_would_forget(pretrained, notes_dataset, tmp_path, one_thread):
    """30 GAN iterations from the pretrained G: with the anchor the table's clips are drawn better than
    without it, and far better than by a G that forgot them."""
    errors = {}
    for w in (0.0, 30.0):
        cfg = fast_config(*PRE, f"train.anchor={w}", "train.log_every=1")
        t = Trainer(cfg, notes_dataset, tmp_path / f"w{w}", progress=False, init_from=pretrained)
        if w == 0:
            _, _, table = from_pretraining(pretrained)
            start = _table_error(t.G, table, t.dataset, t.cfg)
        t.run(30)
        errors[w] = _table_error(t.G, table, t.dataset, t.cfg)
        t.close()
    assert errors[30.0] < errors[0.0] and errors[30.0] < 1.1 * start, (start, errors)
    rows = [json.loads(x) for x in (tmp_path / "w30.0" / "metrics.jsonl").read_text().splitlines()]
    assert any("loss/anchor" in r for r in rows)
    assert not (tmp_path / "w0.0" / ANCHORS_FILE).exists()


@pytest.mark.parametrize("sampler", ["gaussian", "table"])
def test_an_anchored_run_resumes_exactly(pretrained, notes_dataset, tmp_path, one_thread, sampler):
    """With either sampler (the table's: the sharpening stage)."""
    cfg = fast_config(*PRE, "train.anchor=10", f"model.sampler={sampler}")
    a = Trainer(cfg, notes_dataset, tmp_path / "a", progress=False, init_from=pretrained)
    a.run(4)
    a.close()
    b = Trainer(cfg, notes_dataset, tmp_path / "b", progress=False, init_from=pretrained)
    b.run(2)
    b.close()
    # resumed without --init-from: the table comes from the run directory
    b = Trainer(cfg, notes_dataset, tmp_path / "b", progress=False)
    assert b.step == 2 and (tmp_path / "b" / ANCHORS_FILE).exists()
    b.run(4)
    b.close()
    for x, y in zip(a.G.state_dict().values(), b.G.state_dict().values(), strict=True):
        assert torch.equal(x, y)


def test_the_anchor_needs_a_pretraining_start(notes_dataset, tmp_path, pretrained):
    with pytest.raises(MP3NetError, match="init-from"):
        Trainer(fast_config("train.anchor=1"), notes_dataset, tmp_path / "r", progress=False)
    from mp3net.config import ConfigError

    with pytest.raises(ConfigError):
        fast_config("train.anchor=-1")


def test_the_sharpening_stage_draws_through_the_table_and_anchors_past_it(
    pretrained, notes_dataset, tmp_path, one_thread
):
    """A GAN from a pretraining run with model.sampler=table: its fakes are G.decode of latents near the
    folded table (the sampler's), the anchor term decodes the table's rows themselves, and
    the CLI takes the sampler from the run's pretrain.sampler."""
    cfg = fast_config(*PRE, "train.anchor=10", "model.sampler=table")
    a = Trainer(cfg, notes_dataset, tmp_path / "a", progress=False, init_from=pretrained)
    _, _, table = from_pretraining(pretrained)
    assert torch.equal(a.G.sampler.table, table.latents)
    z = torch.randn(3, cfg.model.latent_dim)
    with torch.no_grad():
        drawn = a.G.latents(z)
        assert torch.cdist(drawn, table.latents).min(1).values.max() < torch.cdist(z, table.latents).min()
        assert torch.equal(a.G(z), a.G.decode(drawn))
    state = a.gen.get_state()
    with torch.no_grad():
        term = float(a._anchor_loss(a.anchors))
    a.gen.set_state(state)  # the same rows again, decoded by hand: the anchor term is past the sampler
    rows = torch.randint(len(table.clips), (cfg.train.batch_size,), generator=a.gen)
    reals = mdct(torch.stack([a.dataset[table.clips[int(i)]] for i in rows]), cfg.model.n_bands)
    with torch.no_grad():
        fake = a.G.decode(table.latents[rows])
    want = spectral_reconstruction(
        fake, reals, cfg.pretrain.ffts, cfg.pretrain.envelope, cfg.pretrain.mid_side
    )
    assert term == pytest.approx(float(want), rel=1e-5)
    a.close()
    from mp3net.cli.train import resolve_config

    args = argparse.Namespace(
        run=str(tmp_path / "c"), init_from=str(pretrained), config=None, preset=None, override=[]
    )
    assert resolve_config(args).model.sampler == "table"
