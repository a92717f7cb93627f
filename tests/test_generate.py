"""mp3net.generate and the CLI: files, determinism, long tracks without seams, interpolation, errors."""

from __future__ import annotations

import json

import pytest
import soundfile as sf
import torch

from mp3net import generate as gen
from mp3net import ops
from mp3net.cli import main
from mp3net.config import preset
from mp3net.dsp import imdct, mdct
from mp3net.model import Generator
from mp3net.train.checkpoint import export_generator

# the in-band bank: with random weights its frame-to-frame spectral change is steady enough for the seam
# measure below (a random sine bank's is 1.5× as large and as spread); every head's long tracks are one
# synthesis (test_long_track_is_one_synthesis_for_every_head)
OVERRIDES = ["model.max_channels=32", "model.base_channels=4", "model.band_norm=false", "model.output=bank"]


@pytest.fixture(scope="module")
def cfg():
    return preset("tiny").override(OVERRIDES)


@pytest.fixture(scope="module")
def G(cfg):
    torch.manual_seed(0)
    return Generator(cfg.model).eval()


@pytest.fixture(scope="module")
def export(tmp_path_factory, cfg, G):
    d = tmp_path_factory.mktemp("model") / "export"
    export_generator(d, cfg, G.state_dict(), step=7)
    return d


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mp3net {command}: error:"), err
    assert "\n" not in err and "Traceback" not in err
    return err


def test_cli_writes_one_file_per_seed(export, cfg, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["generate", str(export), "--seeds", "0-2", "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "real time" in printed
    files = sorted(p.name for p in out.iterdir())
    assert files == ["seed-0000.wav", "seed-0001.wav", "seed-0002.wav"]
    for f in files:
        info = sf.info(out / f)
        assert info.samplerate == cfg.model.sample_rate
        assert info.channels == cfg.model.channels
        assert info.frames == cfg.model.clip_samples  # MDCT edge padding trimmed
    # the same seed alone, in another call: the same file, bit for bit
    again = tmp_path / "again"
    assert main(["generate", str(export), "--seeds", "1", "--out", str(again), "-q"]) == 0
    assert (again / "seed-0001.wav").read_bytes() == (out / "seed-0001.wav").read_bytes()
    # different seeds differ
    assert (out / "seed-0000.wav").read_bytes() != (out / "seed-0001.wav").read_bytes()


def test_cli_formats_duration_spectrogram(export, cfg, tmp_path):
    out = tmp_path / "o"
    args = ["generate", str(export), "-n", "1", "--out", str(out), "--format", "flac", "--duration", "1.5"]
    assert main([*args, "--spectrogram", "-q"]) == 0
    assert sf.info(out / "seed-0000.flac").frames == round(1.5 * cfg.model.sample_rate)
    assert (out / "seed-0000.png").stat().st_size > 1000


def test_one_clip_equals_forward(G, cfg):
    audio, sr = gen.generate(G, [5], precision="fp32")
    z = gen.seed_latents(5, 1, cfg.model.latent_dim)
    with torch.no_grad():
        ref = imdct(G(z), trim=True)
    assert sr == cfg.model.sample_rate
    assert audio.shape == (1, cfg.model.channels, cfg.model.clip_samples)
    torch.testing.assert_close(audio, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precision_round_trip(G, cfg, precision, monkeypatch):
    # bf16 and fp32 are both deterministic and near each other; auto follows bf16_is_fast
    a, _ = gen.generate(G, [4], precision=precision)
    b, _ = gen.generate(G, [4], precision=precision)
    assert torch.equal(a, b) and a.dtype == torch.float32
    ref, _ = gen.generate(G, [4], precision="fp32")
    err = (a - ref).norm() / ref.norm()
    assert err < (1e-6 if precision == "fp32" else 5e-2), err
    if precision == "bf16":
        assert err > 0  # bf16 did run
    monkeypatch.setattr(ops.precision, "bf16_is_fast", lambda device: precision == "bf16")
    auto, _ = gen.generate(G, [4], precision="auto")
    assert torch.equal(auto, a)


def test_cli_precision_flag(export, tmp_path, capsys):
    out = {}
    for p in ("fp32", "bf16"):
        d = tmp_path / p
        assert main(["generate", str(export), "--seeds", "1", "--out", str(d), "--precision", p, "-q"]) == 0
        assert f"in {p}" in capsys.readouterr().out
        out[p] = sf.read(d / "seed-0001.wav")[0]
    assert out["fp32"].shape == out["bf16"].shape and (out["fp32"] != out["bf16"]).any()
    with pytest.raises(SystemExit):
        main(["generate", str(export), "--precision", "fp16", "--out", str(tmp_path / "x"), "-q"])
    with pytest.raises(gen.MP3NetError, match="precision"):
        gen.generate(str(export), [0], precision="half")


def test_batch_composition_does_not_change_a_seed(G):
    a, _ = gen.generate(G, [0, 1, 2], batch_size=2)
    b, _ = gen.generate(G, [2], batch_size=2)
    assert torch.equal(a[2], b[0])


def _spectral_change(x: torch.Tensor, n_bands: int) -> torch.Tensor:
    """Frame-to-frame change of the log power spectrum, ``[F-1]``."""
    L = torch.log(mdct(x, n_bands).pow(2).sum(0) + 1e-10)
    return (L[1:] - L[:-1]).abs().mean(-1)


def test_long_track_has_no_seams(G, cfg, monkeypatch):
    m = cfg.model
    monkeypatch.setattr(ops.plan, "TILE_OUT_FRAMES", 128)  # many tile boundaries too
    dur = 3 * m.clip_seconds
    ours, _ = gen.generate(G, [0], dur, precision="fp32")
    assert ours.shape[-1] == round(dur * m.sample_rate)
    # tiles are exact: the same track synthesised in one piece
    monkeypatch.setattr(ops.plan, "TILE_OUT_FRAMES", 10**9)
    whole, _ = gen.generate(G, [0], dur, precision="fp32")
    torch.testing.assert_close(ours, whole, rtol=0, atol=1e-5)
    # the naive alternative, clips of the three anchor latents glued end to end, has seams
    z = gen.seed_latents(0, 3, m.latent_dim)
    with torch.no_grad():
        naive = torch.cat([imdct(G(z[i : i + 1]), trim=True) for i in range(3)], -1)[0]
    bounds = [m.n_frames * k for k in (1, 2)]

    def seam_and_rest(x):
        d = _spectral_change(x, m.n_bands)
        at = torch.stack([d[b - 2 : b + 2].max() for b in bounds])
        rest = torch.ones_like(d, dtype=torch.bool)
        for b in bounds:
            rest[b - 4 : b + 4] = False
        return at, torch.quantile(d[rest], 0.99)

    at, p99 = seam_and_rest(ours[0])
    assert (at < p99).all(), (at, p99)
    at_naive, p99_naive = seam_and_rest(naive)
    assert (at_naive > p99_naive).any(), (at_naive, p99_naive)  # the measure does see seams


@pytest.mark.parametrize("output", ["linear", "bank", "sines"])
def test_long_track_is_one_synthesis_for_every_head(cfg, monkeypatch, output):
    """A bank's phase runs over the whole track: window by window it equals one pass."""
    m = cfg.override([f"model.output={output}", "model.bank_size=4"]).model
    torch.manual_seed(0)
    G = Generator(m).eval()
    monkeypatch.setattr(ops.plan, "TILE_OUT_FRAMES", 128)  # windows of 8·TILE_HALO start frames: 3 here
    dur = 20 * m.clip_seconds
    ours, _ = gen.generate(G, [0], dur, precision="fp32")
    monkeypatch.setattr(ops.plan, "TILE_OUT_FRAMES", 10**9)
    whole, _ = gen.generate(G, [0], dur, precision="fp32")
    assert ours.shape == whole.shape == (1, m.channels, round(dur * m.sample_rate))
    torch.testing.assert_close(ours, whole, rtol=0, atol=1e-5)
    one, _ = gen.generate(G, [0], precision="fp32")  # one clip is exactly G(z)
    with torch.no_grad():
        ref = imdct(G(gen.seed_latents(0, 1, m.latent_dim)), trim=True)
    torch.testing.assert_close(one, ref[..., : one.shape[-1]], rtol=0, atol=1e-5)


def test_latent_path_is_smooth_and_hits_anchors():
    anchors = torch.randn(4, 16)
    path = gen.latent_path(anchors, 4, 4)  # 16 frames, anchor j between frames 4j+1 and 4j+2
    assert path.shape == (16, 16)
    steps = (path[1:] - path[:-1]).norm(dim=-1)
    assert steps.max() < 0.5 * (anchors[1:] - anchors[:-1]).norm(dim=-1).min()
    one = gen.latent_path(anchors[:1], 1, 4)
    assert torch.equal(one, anchors[:1].expand(4, 16))


def test_interpolation_endpoints_are_the_seeds(G, export, tmp_path):
    tracks, _ = gen.interpolate(G, 3, 8, steps=4)
    a, _ = gen.generate(G, [3])
    b, _ = gen.generate(G, [8])
    assert tracks.shape[0] == 4
    assert torch.equal(tracks[0], a[0]) and torch.equal(tracks[-1], b[0])
    assert not torch.equal(tracks[1], tracks[0])
    out = tmp_path / "i"
    assert (
        main(["generate", str(export), "--interpolate", "3", "8", "--steps", "3", "--out", str(out), "-q"])
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == [f"interp-0003-0008-{i:02d}.wav" for i in range(3)]


def test_python_api_and_run_dir(export, cfg, tmp_path):
    G2 = gen.from_pretrained(export)
    assert isinstance(G2, Generator) and G2.cfg == cfg.model
    # a run directory: its export is found
    run = tmp_path / "run"
    export_generator(run / "export", cfg, G2.state_dict(), step=1)
    (run / "checkpoints").mkdir()
    audio, sr = gen.generate(run, [0, 1], duration=0.5)
    assert audio.shape == (2, 2, round(0.5 * sr))
    assert gen.parse_seeds("0-2,7") == [0, 1, 2, 7]


def test_truncation(G):
    z = gen.seed_latents(0, 3, 64, truncation=0.5)
    assert z.abs().max() <= 0.5
    assert torch.equal(z, gen.seed_latents(0, 3, 64, truncation=0.5))


def _broken(tmp_path, export, what: str):
    import shutil

    d = tmp_path / what
    shutil.copytree(export, d)
    if what == "missing":
        (d / "model.safetensors").unlink()
    elif what == "corrupt":
        (d / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    elif what == "version":
        c = json.loads((d / "config.json").read_text())
        c["version"] = 99
        (d / "config.json").write_text(json.dumps(c))
    elif what == "mismatch":
        c = json.loads((d / "config.json").read_text())
        c["model"]["max_channels"] = 64
        (d / "config.json").write_text(json.dumps(c))
    return d


@pytest.mark.parametrize("what", ["missing", "corrupt", "version", "mismatch"])
def test_bad_model_is_one_line_error(export, tmp_path, capsys, what):
    d = _broken(tmp_path, export, what)
    assert main(["generate", str(d), "-n", "1", "--out", str(tmp_path / "o"), "-q"]) == 1
    _one_line_error(capsys, "generate")


@pytest.mark.parametrize(
    "extra",
    [["--format", "mp4"], ["--duration", "-2"], ["--duration", "0"], ["--seeds", "3-1"], ["-n", "0"]],
    ids=["format", "negative-duration", "zero-duration", "seeds", "n"],
)
def test_bad_arguments_are_one_line_errors(export, tmp_path, capsys, extra):
    assert main(["generate", str(export), "--out", str(tmp_path / "o"), "-q", *extra]) == 1
    _one_line_error(capsys, "generate")


def test_unwritable_output_and_unknown_model(export, tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    assert main(["generate", str(export), "-n", "1", "--out", str(blocker / "sub"), "-q"]) == 1
    _one_line_error(capsys, "generate")
    assert main(["generate", str(tmp_path / "no-such-model"), "-n", "1", "--out", str(tmp_path / "o")]) == 1
    assert "not found" in _one_line_error(capsys, "generate")


def test_shipped_model_makes_a_five_minute_stereo_track(tmp_path):
    assert "tiny-chorales" in gen.pretrained_names(), "the package must ship its pretrained model"
    out = tmp_path / "p"
    assert main(["generate", "pretrained", "-n", "1", "--duration", "300", "--out", str(out), "-q"]) == 0
    info = sf.info(out / "seed-0000.wav")
    assert info.channels == 2 and info.frames == 300 * info.samplerate
    G, cfg = gen.load_generator("tiny-chorales")
    assert cfg.name == "laptop" and G.cfg == cfg.model
