"""Autoencoder pretraining (mp3net pretrain): G and per-clip latents fitted to the clips' spectrograms."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from conftest import fast_config

from mp3net.cli import main as cli_main
from mp3net.config import Config
from mp3net.data import clip_indices
from mp3net.dsp import mdct
from mp3net.generate import load_generator
from mp3net.model.sampler import TableSampler
from mp3net.train import checkpoint as ckpt
from mp3net.train.anchors import from_pretraining
from mp3net.train.band_levels import CALIBRATION_CLIPS
from mp3net.train.gan import Trainer
from mp3net.train.losses import spectral_reconstruction
from mp3net.train.pretrain import LatentGaussian, Pretrainer, clip_features, exported_generator, pca_latents

PRE = ["pretrain.clips=4", "pretrain.batch_size=4", "pretrain.ckpt_every=1000", "pretrain.ffts=[256, 1024]"]
# a constant rate, on which these tests were calibrated (the decay is tested on its own)
PRE += ["pretrain.lr_decay_start=0", "pretrain.lr_decay_steps=0"]


def _cfg(*extra: str):
    return fast_config(*PRE, *extra)


def test_clip_indices_spread_over_the_dataset_without_repeats():
    assert clip_indices(101, 5) == [0, 25, 50, 75, 100]
    assert clip_indices(3, 10) == [0, 1, 2]


def test_latent_gaussian_fits_mean_and_covariance():
    g = torch.Generator().manual_seed(0)
    L = torch.tensor([[1.0, 0.0, 0.0], [0.5, 2.0, 0.0], [0.0, -1.0, 0.3]])
    z = torch.tensor([1.0, -2.0, 3.0]) + torch.randn(20000, 3, generator=g) @ L.T
    fit = LatentGaussian.fit(z)
    assert torch.allclose(fit.mean, torch.tensor([1.0, -2.0, 3.0]), atol=0.05)
    assert torch.allclose(fit.scale @ fit.scale.T, L @ L.T, atol=0.08)


def test_pca_latents_are_whitened_components_that_keep_like_clips_together():
    """Three groups of like clips in 50 dimensions: two components keep each group together and apart from
    the others; each component has unit variance; components beyond the clips' rank are zero."""
    g = torch.Generator().manual_seed(0)
    centres = 10 * torch.randn(3, 50, generator=g)
    feats = centres.repeat_interleave(4, 0) + 0.1 * torch.randn(12, 50, generator=g)
    z = pca_latents(feats, 2)
    assert torch.allclose(z.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(z.var(0), torch.ones(2), atol=1e-4)
    d = torch.cdist(z, z)
    same = torch.block_diag(*[torch.ones(4, 4)] * 3).bool()
    assert d[same].max() < 0.2 * d[~same].min()
    assert torch.all(pca_latents(feats[:3], 8)[:, 2:] == 0)  # 3 clips span 2 components


def test_pretraining_starts_from_the_clips_principal_components(notes_dataset, tmp_path):
    t = Pretrainer(_cfg(), notes_dataset, tmp_path / "pca", progress=False)
    audio = torch.stack([t.dataset[i] for i in t.clips])
    want = pca_latents(clip_features(mdct(audio, t.cfg.model.n_bands)), t.cfg.model.latent_dim)
    assert torch.allclose(t.latents.weight, want, atol=1e-5)
    r = Pretrainer(_cfg("pretrain.latent_init=random"), notes_dataset, tmp_path / "rnd", progress=False)
    assert not torch.allclose(r.latents.weight, want, atol=0.1)


def test_pretraining_fits_each_clip_to_its_own_latent(notes_dataset, tmp_path, one_thread):
    """After a short run, G(latent i) is nearer clip i than any other clip: the latents are used, not
    averaged away (a G that draws the mean clip for every latent fails this)."""
    cfg = _cfg("model.band_norm=true", "pretrain.ffts=[256, 512]")
    t = Pretrainer(cfg, notes_dataset, tmp_path / "r", progress=False)
    first = t.train_step()["loss"]
    t.run(200)
    ffts = t.cfg.pretrain.ffts
    reals = mdct(torch.stack([t.dataset[i] for i in t.clips]), t.cfg.model.n_bands)
    with torch.no_grad():
        fakes = t.G(t.latents.weight)
        dist = torch.tensor(
            [
                [float(spectral_reconstruction(fakes[i : i + 1], reals[j : j + 1], ffts)) for j in range(4)]
                for i in range(4)
            ]
        )
    assert float(dist.diagonal().mean()) < 0.6 * first
    assert all(int(dist[i].argmin()) == i for i in range(4)), dist
    fit = t.fit()  # the partials' measure agrees: each drawn clip is most like its own
    assert fit["partials_found"] == 1.0 and fit["partials_own"] > fit["partials_other"] + 0.1, fit


def test_resume_is_exact_and_the_export_draws_through_its_sampler(notes_dataset, tmp_path, one_thread):
    runs = "pretrain.run_clips=2"  # a table of two runs of two clips
    a = Pretrainer(_cfg(runs), notes_dataset, tmp_path / "a", progress=False)
    a.run(4)
    b = Pretrainer(_cfg(runs), notes_dataset, tmp_path / "b", progress=False)
    b.run(2)
    b = Pretrainer(_cfg(runs), notes_dataset, tmp_path / "b", progress=False)
    assert b.step == 2 and b.resumed_from is not None
    b.run(4)
    for x, y in zip(a.G.state_dict().values(), b.G.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    assert torch.equal(a.latents.weight, b.latents.weight)
    G, cfg = load_generator(tmp_path / "a")  # the default: a table sampler over the run's latents
    assert cfg.model.sampler == "table" and a.cfg.model.sampler == "gaussian"
    # the table is runs of consecutive clips, and the export knows which follows which
    assert torch.equal(G.sampler.successor, torch.tensor(a.successor)) and G.sampler.walks
    for row, nxt in enumerate(a.successor):
        if nxt >= 0:
            (t0, s0), (t1, s1) = a.dataset.locate(a.clips[row]), a.dataset.locate(a.clips[nxt])
            assert t0 == t1 and s1 == s0 + a.cfg.model.clip_samples
    table = TableSampler(cfg.model.latent_dim).fit(a.latents.weight)
    z = torch.randn(3, cfg.model.latent_dim)
    with torch.no_grad():
        assert torch.equal(G.latents(z), table(z))
        assert torch.allclose(G(z), a.G(table(z)), atol=1e-5)
    folded = dataclasses.replace(a.cfg, pretrain=dataclasses.replace(a.cfg.pretrain, sampler="gaussian"))
    G, cfg = exported_generator(folded, a.G.state_dict(), a.latents.weight)
    gauss = a.gaussian()
    assert G.sampler is None and cfg.model.sampler == "gaussian"
    with torch.no_grad():
        assert torch.allclose(G(z), a.G(gauss.mean + z @ gauss.scale.T), atol=1e-5)


def test_a_gan_starts_from_a_pretraining_run(notes_dataset, tmp_path):
    """From the folded generator of its checkpoint (the GAN draws z ~ N(0, I), the anchors use the table)."""
    Pretrainer(_cfg(), notes_dataset, tmp_path / "pre", progress=False).run(2)
    G, _, _ = from_pretraining(tmp_path / "pre")
    t = Trainer(fast_config(), notes_dataset, tmp_path / "gan", progress=False, init_from=tmp_path / "pre")
    pairs = zip(t.G.state_dict().values(), G.state_dict().values(), strict=True)
    assert all(torch.equal(x, y) for x, y in pairs)
    t.close()


def test_cli_pretrains_resumes_and_rejects_bad_input(notes_dataset, tmp_path, capsys):
    run = tmp_path / "cli"
    args = ["pretrain", "--run", str(run), "-q"]
    assert cli_main(args + ["--steps", "2"]) == 1
    assert "--data OUT_DIR is required for a new run" in capsys.readouterr().err
    cfg = tmp_path / "cfg.json"
    _cfg().save(cfg)
    assert cli_main(args + ["--config", str(cfg), "--data", str(notes_dataset), "--steps", "2"]) == 0
    assert "init-from" in capsys.readouterr().out
    assert cli_main(args + ["--steps", "3"]) == 0  # the saved config and data
    rows = [json.loads(x) for x in (run / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]
    # each checkpoint (on exit: steps 2 and 3) evaluates the export: the rows of the progress tables
    assert [r["step"] for r in rows if "eval/fd" in r] == [2, 3]
    assert "partial spread" in capsys.readouterr().err
    assert cli_main(args + ["--steps", "0"]) == 1
    capsys.readouterr()
    assert cli_main(args + ["--steps", "4", "-o", "model.sampler=table"]) == 1
    assert "choose it with pretrain.sampler" in capsys.readouterr().err
    assert cli_main(args + ["-o", "pretrain.ffts=[100]"]) == 1
    assert "pretrain.ffts" in capsys.readouterr().err


@pytest.mark.parametrize(
    "bad", ["pretrain.clips=1", "pretrain.lr=0", "pretrain.ffts=[]", "pretrain.ffts=[65536]"]
)
def test_bad_pretrain_settings_are_config_errors(bad):
    from mp3net.config import ConfigError

    with pytest.raises(ConfigError):
        _cfg(bad)


def test_the_export_is_level_calibrated_with_band_normalisation(notes_dataset, tmp_path, one_thread):
    """docs/training.md#level-calibration: the export's samples have the data's rms per band; the run's own
    config (and so a GAN started from it) keeps the data's levels as its unit."""
    t = Pretrainer(_cfg("model.band_norm=true"), notes_dataset, tmp_path / "a", progress=False)
    t.run(2)
    data = torch.tensor(t.cfg.model.band_rms, dtype=torch.float64)
    G, cfg = load_generator(tmp_path / "a")
    assert Config.load(tmp_path / "a" / "config.json").model.band_rms == t.cfg.model.band_rms
    assert cfg.model.band_rms != t.cfg.model.band_rms
    z = torch.randn(CALIBRATION_CLIPS, cfg.model.latent_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        drawn = (
            torch.cat([G(z[a : a + 8]) for a in range(0, len(z), 8)]).double().square().mean((0, 1, 2)).sqrt()
        )
    assert float((20 * torch.log10(drawn / data)).abs().max()) < 0.1
    off = Pretrainer(_cfg("model.band_norm=true", "pretrain.calibrate=false"), notes_dataset, tmp_path / "b")
    off.run(1)
    assert load_generator(tmp_path / "b")[1].model.band_rms == off.cfg.model.band_rms


def test_the_rates_fall_along_half_a_cosine_and_resume_exactly(notes_dataset, tmp_path, one_thread):
    cfg = _cfg("pretrain.lr_decay_start=1", "pretrain.lr_decay_steps=2")
    a = Pretrainer(cfg, notes_dataset, tmp_path / "a", progress=False)
    assert [a.lr_scale(s) for s in (0, 1, 2, 3, 10)] == pytest.approx([1.0, 1.0, 0.55, 0.1, 0.1])
    a.run(4)
    pc = a.cfg.pretrain
    assert a.opt_G.param_groups[0]["lr"] == pytest.approx(0.1 * pc.lr)
    assert a.opt_z.param_groups[0]["lr"] == pytest.approx(0.1 * pc.latent_lr)
    b = Pretrainer(cfg, notes_dataset, tmp_path / "b", progress=False)
    b.run(2)
    b = Pretrainer(cfg, notes_dataset, tmp_path / "b", progress=False)
    b.run(4)
    pairs = zip(a.G.state_dict().values(), b.G.state_dict().values(), strict=True)
    assert all(torch.equal(x, y) for x, y in pairs)
    assert torch.equal(a.latents.weight, b.latents.weight)
    assert Pretrainer(_cfg(), notes_dataset, tmp_path / "c", progress=False).lr_scale(10**6) == 1.0


def test_init_from_takes_a_models_decoder_and_levels_with_a_new_table(notes_dataset, tmp_path, capsys):
    """`pretrain --init-from` an export with a table sampler: G's weights (not the sampler) and its network;
    the levels are the data's; the new run's latents are its own clips' principal components."""
    cfg = _cfg("model.band_norm=true")
    src = Pretrainer(cfg, notes_dataset, tmp_path / "src", progress=False)
    src.run(2)
    export = tmp_path / "src" / "export"
    H, saved = load_generator(export)
    assert saved.model.sampler == "table"
    args = ["pretrain", "--data", str(notes_dataset), "--run", str(tmp_path / "new"), "-q"]
    assert cli_main([*args, "--init-from", str(export), "--steps", "1", "-o", "pretrain.eval_clips=0"]) == 0
    state, _ = ckpt.load_latest(tmp_path / "new" / "pretrain")
    new = Config.from_dict(state["config"])
    # the data's own levels (here the same data: the source run's measured levels, not its export's)
    assert new.model.band_rms == src.cfg.model.band_rms != saved.model.band_rms
    assert new.model.sampler == "gaussian"
    assert new.pretrain.steps == Config().pretrain.steps  # the default recipe, not the source's
    t = Pretrainer(new, notes_dataset, tmp_path / "fresh", progress=False, init_from=export)
    mine = {k: v for k, v in H.state_dict().items() if not k.startswith("sampler.")}
    assert all(torch.equal(v, t.G.state_dict()[k]) for k, v in mine.items())
    audio = torch.stack([t.dataset[i] for i in t.clips])
    want = pca_latents(clip_features(mdct(audio, new.model.n_bands)), new.model.latent_dim)
    assert torch.allclose(t.latents.weight, want, atol=1e-5)
    other = tmp_path / "other"
    bad = ["pretrain", "--data", str(notes_dataset), "--run", str(other), "--init-from", str(export)]
    assert cli_main([*bad, "-o", "model.min_channels=8", "-q"]) == 1  # the source's network is not this one
    assert "different model config" in capsys.readouterr().err


def test_a_bank_models_decoder_starts_a_sine_bank_run(notes_dataset, tmp_path, capsys):
    """The sine bank's head has the bank's weights (docs/networks.md#sine-bank): `--init-from` a bank model
    with `model.output=sines` takes them all; a linear head's run may not start from it."""
    from mp3net.model.generator import SineBankHead

    cfg = _cfg("model.output=bank")
    Pretrainer(cfg, notes_dataset, tmp_path / "src", progress=False).run(1)
    export = tmp_path / "src" / "export"
    H, _ = load_generator(export)
    sines = _cfg("model.output=sines")
    t = Pretrainer(sines, notes_dataset, tmp_path / "sines", progress=False, init_from=export)
    assert isinstance(t.G.output_head, SineBankHead)
    mine = {k: v for k, v in H.state_dict().items() if not k.startswith("sampler.")}
    assert all(torch.equal(v, t.G.state_dict()[k]) for k, v in mine.items())
    # with the quiet gate too: the same weights (the gate has none)
    gated = _cfg("model.output=sines", "model.bank_gate=0.001")
    t = Pretrainer(gated, notes_dataset, tmp_path / "gated", progress=False, init_from=export)
    assert t.G.cfg.bank_gate == 0.001
    assert all(torch.equal(v, t.G.state_dict()[k]) for k, v in mine.items())
    run = ["pretrain", "--data", str(notes_dataset), "--run", str(tmp_path / "lin")]
    assert cli_main([*run, "--init-from", str(export), "-o", "model.output=linear", "-q"]) == 1
    assert "different model config" in capsys.readouterr().err


def test_the_table_is_sized_to_the_data(tmp_path, capsys):
    """Fewer clips of audio than pretrain.clips: a table of as many clips as there are, said in one line;
    less than two clips: a one-line error."""
    from conftest import write_notes

    from mp3net.data import prepare
    from mp3net.utils import MP3NetError

    m = _cfg().model
    for name, seconds in (("three", 3.5 * m.clip_seconds), ("one", 1.5 * m.clip_seconds)):
        write_notes(tmp_path / name, 1, seconds, m.sample_rate)
        prepare(
            tmp_path / name,
            tmp_path / f"{name}-ds",
            m.sample_rate,
            m.channels,
            m.clip_samples,
            progress=False,
        )
    t = Pretrainer(_cfg("pretrain.clips=8"), tmp_path / "three-ds", tmp_path / "r3", progress=False)
    assert len(t.clips) == 3 and t.latents.weight.shape[0] == 3
    assert "a table of 3 latents" in capsys.readouterr().err
    with pytest.raises(MP3NetError, match="needs at least two"):
        Pretrainer(_cfg(), tmp_path / "one-ds", tmp_path / "r1", progress=False)
