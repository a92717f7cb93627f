"""`mp3net analyze` end to end on generated files, and its bad-input behaviour."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import soundfile as sf

from mp3net.cli import main

SUBTYPES = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_24"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
FIGURES = ("mdct", "spectrogram", "threshold", "reduced")


def chord(sr: int, channels: int, seconds: float = 1.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    x = sum(
        np.sin(2 * np.pi * f * t) * np.exp(-2 * t) / (i + 1) for i, f in enumerate((220, 277.2, 329.6, 440))
    )
    x = 0.4 * x / np.abs(x).max()
    return np.stack([x * (0.6 + 0.4 * c) for c in range(channels)], axis=1).astype(np.float32)  # [T, C]


def make_file(path: Path, sr: int, channels: int) -> Path:
    fmt, subtype = SUBTYPES[path.suffix[1:]]
    sf.write(str(path), chord(sr, channels), sr, format=fmt, subtype=subtype)
    return path


def check_png(path: Path) -> None:
    assert path.exists() and path.stat().st_size > 10_000
    img = mpimg.imread(str(path))
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 600
    rgb = img[..., :3]
    assert rgb.std() > 0.05  # not a blank canvas
    # a good part of the image is neither white background nor a single colour
    assert len(np.unique((rgb * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50


@pytest.mark.parametrize(
    "ext,sr,channels",
    [("wav", 44100, 2), ("flac", 48000, 1), ("ogg", 48000, 2), ("mp3", 44100, 1), ("mp3", 48000, 2)],
)
def test_analyze_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ext: str, sr: int, channels: int
) -> None:
    src = make_file(tmp_path / f"chord.{ext}", sr, channels)
    out = tmp_path / "out"
    assert main(["analyze", str(src), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "22016 Hz" in text and f"resampled from {sr} Hz" in text
    assert f"channels:         {channels}" in text
    duration = float(text.split("duration:")[1].split("s")[0])
    assert duration == pytest.approx(1.5, abs=0.1)  # mp3/ogg may add codec padding
    tonality = float(text.split("mean tonality:")[1].split("%")[0])
    inaudible = float(text.split("inaudible share:")[1].split("%")[0])
    assert 20 < tonality <= 100  # a chord of sines is tonal
    assert 0 < inaudible < 100
    for name in FIGURES:
        check_png(out / f"chord_{name}.png")
    assert not list(out.glob(".*.tmp"))


def test_analyze_start_duration_frame(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_file(tmp_path / "c.wav", 44100, 2)
    assert (
        main(
            [
                "analyze",
                str(src),
                "--out",
                str(tmp_path),
                "--start",
                "0.5",
                "--duration",
                "0.5",
                "--frame",
                "0.2",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert float(text.split("duration:")[1].split("s")[0]) == pytest.approx(0.5, abs=0.01)
    check_png(tmp_path / "c_threshold.png")
    assert main(["analyze", str(src), "--out", str(tmp_path), "--frame", "99"]) == 1
    assert "outside" in capsys.readouterr().err


def test_analyze_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "--example", "--out", str(tmp_path), "--duration", "3"]) == 0
    text = capsys.readouterr().out
    assert "built-in example" in text
    assert float(text.split("duration:")[1].split("s")[0]) == pytest.approx(3.0, abs=0.01)
    for name in FIGURES:
        check_png(tmp_path / f"example_{name}.png")


def test_multichannel_is_downmixed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x = np.concatenate([chord(22050, 2), chord(22050, 2)[:, :1] * 0.5], axis=1)  # 3 channels
    sf.write(str(tmp_path / "three.wav"), x, 22050)
    assert main(["analyze", str(tmp_path / "three.wav"), "--out", str(tmp_path)]) == 0
    assert "channels:         2 (down-mixed from 3)" in capsys.readouterr().out


def bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "junk.ogg").write_bytes(b"\x00garbage" * 100)
    sf.write(str(tmp_path / "silent.flac"), np.zeros((22050, 2), np.float32), 22050)
    sf.write(str(tmp_path / "nosamples.wav"), np.zeros((0, 1), np.float32), 22050)
    good = make_file(tmp_path / "good.wav", 22050, 1)
    mp3 = make_file(tmp_path / "g.mp3", 44100, 2).read_bytes()
    (tmp_path / "truncated.mp3").write_bytes(mp3[:40])
    # a valid start, then garbage where the audio frames were
    (tmp_path / "corrupt.mp3").write_bytes(mp3[:200] + bytes(range(256)) * 20)
    sf.write(str(tmp_path / "short.wav"), chord(22016, 2, seconds=0.02), 22016)
    return {
        "corrupt mp3": ([str(tmp_path / "corrupt.mp3")], "corrupt"),
        "shorter than the analysis needs": ([str(tmp_path / "short.wav")], "too short to analyse"),
        "missing": ([str(tmp_path / "nope.wav")], "no such file"),
        "empty": ([str(tmp_path / "empty.wav")], "empty"),
        "junk": ([str(tmp_path / "junk.ogg")], "cannot read"),
        "silent": ([str(tmp_path / "silent.flac")], "silent"),
        "no samples": ([str(tmp_path / "nosamples.wav")], "no audio"),
        "truncated": ([str(tmp_path / "truncated.mp3")], ""),
        "directory": ([str(tmp_path)], "directory"),
        "start beyond end": ([str(good), "--start", "100"], "beyond the end"),
        "both": ([str(good), "--example"], "either"),
    }


def test_bad_inputs_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for case, (argv, message) in bad_inputs(tmp_path).items():
        code = main(["analyze", *argv, "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert code == 1, case
        assert err.startswith("mp3net analyze: error:") and err.count("\n") == 1, (case, err)
        assert message in err, (case, err)
        assert "Traceback" not in err
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_corrupt_mp3_is_one_line_without_decoder_notes(tmp_path: Path) -> None:
    bad_inputs(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "mp3net", "analyze", str(tmp_path / "corrupt.mp3")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0, r.stderr  # mpg123's "Note: ... resync" lines silenced
    assert "corrupt" in r.stderr and "does not exist" not in r.stderr


def test_console_script_exit_code(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mp3net", "analyze", str(tmp_path / "missing.flac")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "no such file" in r.stderr
