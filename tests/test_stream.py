"""Streaming generation (mp3net.stream): files written block by block equal the in-memory tracks, memory
does not grow with the duration, sizes are checked up front, and no half-written file is ever left
under its final name (Ctrl-C, a full disk)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from mp3net import generate as gen
from mp3net import ops, stream
from mp3net.audio import write_audio
from mp3net.cli import main
from mp3net.utils import MP3NetError


@pytest.fixture(scope="module")
def G():
    return gen.load_generator("pretrained")[0]


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")


def test_streamed_file_equals_the_in_memory_track(G, tmp_path, monkeypatch):
    dur = 20 * G.cfg.clip_seconds
    monkeypatch.setattr(ops.plan, "TILE_OUT_FRAMES", 256)  # blocks of the fewest start frames, 16 (8 clips)
    z = gen.seed_latents(3, 20, G.cfg.latent_dim)[None]
    blocks = list(gen.synthesize_tiles(G, z, round(dur * 11008), precision="fp32"))
    assert len(blocks) >= 3
    assert (
        main(["generate", "pretrained", "--seeds", "3", "--duration", str(dur), "--out", str(tmp_path), "-q",
              "--precision", "fp32"])
        == 0
    )  # fmt: skip
    monkeypatch.setattr(ops.plan, "TILE_OUT_FRAMES", 10**9)  # the reference: one block
    whole, sr = gen.generate(G, [3], dur, precision="fp32")  # bf16 would round differently per tile
    write_audio(tmp_path / "ref.wav", whole[0], sr)
    ours, _ = sf.read(tmp_path / "seed-0003.wav", dtype="int16")
    ref, _ = sf.read(tmp_path / "ref.wav", dtype="int16")
    assert ours.shape == ref.shape == (round(dur * sr), 2)
    assert np.abs(ours.astype(int) - ref).max() <= 1  # equal up to float rounding, at most 1 LSB
    assert not list(tmp_path.glob(".*"))


def test_clip_meter_scales_and_counts_per_track():
    blocks = [torch.tensor([[[0.5, -1.5]], [[0.1, 0.2]]]), torch.tensor([[[2.0, 0.0]], [[-0.3, 0.9]]])]
    meter = stream.ClipMeter(2)
    out = list(meter.apply(blocks))
    assert all(torch.equal(a, b) for a, b in zip(out, blocks, strict=True))
    assert meter.clipped.tolist() == [2, 0] and meter.peak.tolist() == pytest.approx([2.0, 0.9])
    assert meter.samples == 4
    half = stream.ClipMeter(2, gain_db=-20 * np.log10(2))
    out = list(half.apply(blocks))
    assert torch.allclose(out[1], blocks[1] / 2)
    assert half.clipped.tolist() == [0, 0] and half.peak.tolist() == pytest.approx([1.0, 0.45])


def test_generate_gain_and_clipping_report(tmp_path, capsys):
    loud, quiet = tmp_path / "loud", tmp_path / "quiet"
    assert main(["generate", "pretrained", "-n", "2", "--out", str(loud), "-q", "--gain", "30"]) == 0
    report = capsys.readouterr().out
    assert "2 of 2 track(s) clipped at full scale" in report and "--gain " in report
    fix = float(report.split("--gain ")[1].split()[0])  # the gain it proposes for the same seeds
    assert main(["generate", "pretrained", "-n", "2", "--out", str(quiet), "-q", "--gain", str(fix)]) == 0
    assert "no sample beyond full scale" in capsys.readouterr().out
    assert main(["generate", "pretrained", "--out", str(quiet), "-q", "--gain", "nan"]) != 0
    assert "--gain must be" in capsys.readouterr().err
    peak = {d: max(np.abs(sf.read(d / f"seed-000{i}.wav")[0]).max() for i in (0, 1)) for d in (loud, quiet)}
    assert peak[loud] == pytest.approx(1.0, abs=1e-4)  # clipped
    assert 0.9 < peak[quiet] <= 1.0  # the proposed gain brings the loudest track just under full scale


def test_formats_and_rf64(tmp_path):
    for fmt, container in (("flac", "FLAC"), ("ogg", "OGG"), ("rf64", "RF64")):
        out = tmp_path / fmt
        assert (
            main(
                [
                    "generate",
                    "pretrained",
                    "-n",
                    "2",
                    "--duration",
                    "7",
                    "--format",
                    fmt,
                    "--out",
                    str(out),
                    "-q",
                ]
            )
            == 0
        )
        files = sorted(out.iterdir())
        assert [f.name for f in files] == [f"seed-000{i}.{stream.extension(fmt)}" for i in (0, 1)]
        info = sf.info(files[0])
        assert info.format == container and info.channels == 2 and abs(info.frames - 7 * 11008) <= 1


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("mp3net generate: error:") and "\n" not in err, err
    return err


def test_wav_size_limit_and_disk_space_refused_up_front(tmp_path, capsys, monkeypatch):
    out = tmp_path / "o"
    t0 = time.perf_counter()
    assert main(["generate", "pretrained", "-n", "1", "--duration", "100000", "--out", str(out)]) == 1
    assert time.perf_counter() - t0 < 20  # refused before synthesising anything
    err = _one_line_error(capsys)
    assert "4.29 GB limit" in err and "--format flac" in err and "--format rf64" in err
    assert not list(out.iterdir())

    free = 10**8
    monkeypatch.setattr(stream.shutil, "disk_usage", lambda p: type("U", (), {"free": free})())
    assert main(["generate", "pretrained", "-n", "2", "--duration", "1200", "--out", str(out)]) == 1
    err = _one_line_error(capsys)
    assert "need 0.11 GB" in err and "only 0.10 GB free" in err, err  # 2 × 1200 s × 11008 Hz × 4 bytes
    assert not list(out.iterdir())
    # FLAC is checked against its typical size
    with pytest.raises(MP3NetError, match="typically"):
        stream.check_fits(out, "flac", 1, 10**8, 2, 11008)
    stream.check_fits(out, "flac", 1, 10**6, 2, 11008)


def test_interrupted_writer_leaves_no_file(tmp_path):
    def blocks():
        yield torch.zeros(2, 2, 1000)
        yield torch.zeros(2, 2, 1000)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stream.write_tracks([tmp_path / "a.wav", tmp_path / "b.wav"], blocks(), 11008, "wav")
    assert not list(tmp_path.iterdir())


def test_ctrl_c_during_generate_leaves_no_file(tmp_path):
    argv = [sys.executable, "-m", "mp3net", "generate", "pretrained", "-n", "1", "--duration", "20000"]
    # a terminal's Ctrl-C: the child gets the default SIGINT disposition even when this test runs in a
    # background job (which inherits SIGINT ignored, and Python then keeps it ignored)
    proc = subprocess.Popen(
        [*argv, "--out", str(tmp_path), "-q"],
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.time() + 60
        while not any(p.stat().st_size > 10**6 for p in tmp_path.glob(".seed-0000.wav.*.tmp")):
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(120) == 130  # long only on a loaded machine: the block in flight finishes first
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "interrupted" in proc.stderr.read()
    assert not list(tmp_path.iterdir())


def test_full_disk_during_generate_is_one_line_and_leaves_no_file(tmp_path):
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG

    argv = [sys.executable, "-m", "mp3net", "generate", "pretrained", "-n", "1", "--duration", "60"]
    r = subprocess.run(
        [*argv, "--out", str(tmp_path), "-q"], capture_output=True, text=True, env=_env(), preexec_fn=limit
    )
    assert r.returncode == 1
    err = r.stderr.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert "cannot write" in err and "seed-0000.wav" in err
    assert not list(tmp_path.iterdir())


MAX_RSS = """
import resource, sys
from mp3net.cli import main
code = main(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(code)
"""


def _peak_rss_kib(tmp_path, seconds: float) -> int:
    argv = ["generate", "pretrained", "-n", "1", "--duration", str(seconds), "--out", str(tmp_path), "-q"]
    r = subprocess.run([sys.executable, "-c", MAX_RSS, *argv], capture_output=True, text=True, env=_env())
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split()[-1])


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_duration(tmp_path):
    short = _peak_rss_kib(tmp_path / "a", 300)
    long = _peak_rss_kib(tmp_path / "b", 3000)  # 10× longer: 2.6 MB of latents more, 240 MB of samples
    assert sf.info(tmp_path / "b" / "seed-0000.wav").frames == 3000 * 11008
    assert long < short + 20_000, (short, long)
