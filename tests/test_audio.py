"""mp3net.audio: decoding, channel conversion, resampling, normalisation, writing, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mp3net.audio import (
    check_not_silent,
    is_silent,
    load_audio,
    peak_normalize,
    read_audio,
    resample,
    to_channels,
    write_audio,
)
from mp3net.utils import MP3NetError

FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}


def sine(f: float, sr: int, seconds: float, channels: int = 2, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return np.stack([amp * np.sin(2 * np.pi * f * (c + 1) * t) for c in range(channels)]).astype(np.float32)


def write_raw(path: Path, x: np.ndarray, sr: int) -> Path:
    fmt, subtype = FORMATS[path.suffix[1:]]
    sf.write(str(path), x.T, sr, format=fmt, subtype=subtype)
    return path


def dominant_freq(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


@pytest.mark.parametrize("ext", list(FORMATS))
@pytest.mark.parametrize("channels", [1, 2])
def test_read_formats(tmp_path: Path, ext: str, channels: int) -> None:
    x = sine(440, 44100, 1.0, channels)
    path = write_raw(tmp_path / f"a.{ext}", x, 44100)
    y, sr = read_audio(path)
    assert sr == 44100 and y.dtype == np.float32 and y.shape[0] == channels
    assert abs(y.shape[1] - x.shape[1]) < 0.05 * 44100  # lossy codecs may pad a little
    for c in range(channels):
        assert dominant_freq(y[c], sr) == pytest.approx(440 * (c + 1), abs=3)
    if ext in ("wav", "flac"):
        assert np.abs(y - x).max() < 1e-4  # 16-bit PCM


def test_read_start_duration(tmp_path: Path) -> None:
    sr = 8000
    x = np.linspace(-0.5, 0.5, 3 * sr, dtype=np.float32)[None].repeat(2, 0)
    path = write_raw(tmp_path / "ramp.wav", x, sr)
    y, _ = read_audio(path, start=1.0, duration=0.5)
    assert y.shape == (2, sr // 2)
    assert np.abs(y - x[:, sr : sr + sr // 2]).max() < 1e-4
    y, _ = read_audio(path, start=2.5)
    assert y.shape == (2, sr // 2)
    with pytest.raises(MP3NetError, match="beyond the end"):
        read_audio(path, start=5.0)
    with pytest.raises(MP3NetError, match="duration"):
        read_audio(path, duration=0)
    with pytest.raises(MP3NetError, match="start"):
        read_audio(path, start=-1)


def test_load_resamples_and_converts(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "mono48.flac", sine(1000, 48000, 1.0, channels=1), 48000)
    x, sr = load_audio(path, sample_rate=22016, channels=2)
    assert sr == 22016 and x.shape == (2, 22016) and x.dtype == np.float32
    assert np.array_equal(x[0], x[1])  # mono duplicated
    assert dominant_freq(x[0], sr) == pytest.approx(1000, abs=3)
    xn, _ = load_audio(path, sample_rate=22016, channels=2, normalize=True)
    assert np.abs(xn).max() == pytest.approx(0.999, abs=1e-6)


def test_resample_preserves_tone() -> None:
    x = sine(3000, 44100, 0.5)
    y = resample(x, 44100, 22016)
    assert y.shape == (2, round(0.5 * 22016)) and y.dtype == np.float32
    assert dominant_freq(y[0], 22016) == pytest.approx(3000, abs=5)
    # amplitude preserved in the middle (away from filter edges)
    assert np.abs(y[0, 2000:-2000]).max() == pytest.approx(0.5, abs=0.01)
    # content above the new Nyquist is removed, not aliased
    hi = resample(sine(15000, 44100, 0.5, channels=1), 44100, 22016)
    assert np.abs(hi[:, 2000:-2000]).max() < 1e-3
    assert resample(x, 22016, 22016) is x


def test_to_channels_rules() -> None:
    rng = np.random.default_rng(0)
    mono = rng.uniform(-1, 1, (1, 100)).astype(np.float32)
    st = to_channels(mono, 2)
    assert st.shape == (2, 100) and np.array_equal(st[0], mono[0]) and np.array_equal(st[1], mono[0])
    stereo = rng.uniform(-1, 1, (2, 100)).astype(np.float32)
    assert np.allclose(to_channels(stereo, 1)[0], stereo.mean(0), atol=1e-7)
    assert to_channels(stereo, 2) is stereo
    # 5.1 (L R C LFE Ls Rs): fronts kept, the rest added at -3 dB to both sides, rescaled by 1 + 4/√2
    six = rng.uniform(-1, 1, (6, 100)).astype(np.float32)
    down = to_channels(six, 2)
    g = 1 / math.sqrt(2)
    norm = 1 + 4 * g
    assert np.allclose(down[0], (six[0] + g * six[2:].sum(0)) / norm, atol=1e-6)
    assert np.allclose(down[1], (six[1] + g * six[2:].sum(0)) / norm, atol=1e-6)
    assert np.abs(down).max() <= np.abs(six).max() + 1e-6
    # a signal only in the centre channel lands equally on both sides
    centre = np.zeros((3, 10), np.float32)
    centre[2] = 1
    assert np.allclose(to_channels(centre, 2)[0], to_channels(centre, 2)[1])
    with pytest.raises(MP3NetError):
        to_channels(six, 4)


def test_multichannel_file_downmix(tmp_path: Path) -> None:
    x = np.zeros((4, 8000), np.float32)
    x[0] = 0.5
    x[3] = 0.25
    path = tmp_path / "quad.wav"
    sf.write(str(path), x.T, 8000, subtype="FLOAT")
    y, _ = load_audio(path, channels=2)
    norm = 1 + 2 / math.sqrt(2)
    assert np.allclose(y[0], (0.5 + 0.25 / math.sqrt(2)) / norm, atol=1e-6)
    assert np.allclose(y[1], (0.25 / math.sqrt(2)) / norm, atol=1e-6)


def test_peak_normalize() -> None:
    x = np.array([[0.1, -0.2], [0.05, 0.4]], np.float32)
    y = peak_normalize(x)
    assert np.abs(y).max() == pytest.approx(0.999, rel=1e-6)
    assert np.allclose(y / x, 0.999 / 0.4)  # one gain for both channels
    t = peak_normalize(torch.tensor(x))
    assert isinstance(t, torch.Tensor) and torch.allclose(t, torch.from_numpy(y))
    with pytest.raises(MP3NetError, match="silent"):
        peak_normalize(np.zeros((2, 10), np.float32))


def test_silence_helpers() -> None:
    assert is_silent(np.zeros((2, 5)))
    assert is_silent(np.full((2, 5), 1e-5))  # -100 dBFS
    assert not is_silent(np.full((2, 5), 1e-3))  # -60 dBFS
    assert not is_silent(torch.full((5,), 0.5))
    assert is_silent(np.full(5, 1e-3), threshold_db=-50)
    check_not_silent(np.ones(3))
    with pytest.raises(MP3NetError, match="silent"):
        check_not_silent(np.zeros(3), name="x.wav")


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "mp3"])
def test_write_read_round_trip(tmp_path: Path, ext: str) -> None:
    x = torch.from_numpy(sine(660, 22016, 0.5))
    path = write_audio(tmp_path / f"out.{ext}", x, 22016)
    assert path.exists() and not list(tmp_path.glob(".*.tmp"))  # atomic: no temp file left
    y, sr = read_audio(path)
    assert sr == (22050 if ext == "mp3" else 22016) and y.shape[0] == 2
    assert dominant_freq(y[1], sr) == pytest.approx(1320, abs=5)
    if ext in ("wav", "flac"):
        assert y.shape[1] == x.shape[1] and np.abs(y - x.numpy()).max() < 1e-4


def test_write_explicit_format_and_clipping(tmp_path: Path) -> None:
    x = np.array([[2.0, -3.0, 0.5]], np.float32)
    path = write_audio(tmp_path / "noext", x, 8000, format="wav")
    y, _ = read_audio(path)
    assert np.allclose(y, [[1.0, -1.0, 0.5]], atol=1e-4)
    path = write_audio(tmp_path / "f.wav", x, 8000, subtype="FLOAT")
    assert np.array_equal(read_audio(path)[0], x)
    with pytest.raises(MP3NetError, match="format"):
        write_audio(tmp_path / "x.xyz", x, 8000)
    with pytest.raises(MP3NetError):
        write_audio(tmp_path / "e.wav", np.zeros((2, 0), np.float32), 8000)
    with pytest.raises(MP3NetError, match="cannot write"):
        write_audio(tmp_path / "bad.flac", x, 8000, subtype="VORBIS")
    assert not list(tmp_path.glob(".*.tmp"))


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(MP3NetError, match="no such file"):
        read_audio(tmp_path / "missing.wav")
    with pytest.raises(MP3NetError, match="directory"):
        read_audio(tmp_path)
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(MP3NetError, match="empty"):
        read_audio(tmp_path / "empty.wav")
    (tmp_path / "junk.mp3").write_bytes(b"this is not audio at all" * 40)
    with pytest.raises(MP3NetError, match="cannot read"):
        read_audio(tmp_path / "junk.mp3")
    # a valid header cut off before the data
    good = write_raw(tmp_path / "good.flac", sine(440, 8000, 0.5), 8000)
    (tmp_path / "cut.flac").write_bytes(good.read_bytes()[:30])
    with pytest.raises(MP3NetError):
        read_audio(tmp_path / "cut.flac")
    # a header with zero frames
    sf.write(str(tmp_path / "zero.wav"), np.zeros((0, 2), np.float32), 8000)
    with pytest.raises(MP3NetError, match="no audio"):
        read_audio(tmp_path / "zero.wav")
    assert read_audio(tmp_path / "zero.wav", allow_empty=True)[0].shape == (2, 0)
    # NaN samples
    nan = np.full((1, 10), np.nan, np.float32)
    sf.write(str(tmp_path / "nan.wav"), nan.T, 8000, subtype="FLOAT")
    with pytest.raises(MP3NetError, match="NaN"):
        read_audio(tmp_path / "nan.wav")
    # silence is rejected by load_audio unless allowed
    silent = write_raw(tmp_path / "silent.wav", np.zeros((2, 800), np.float32), 8000)
    with pytest.raises(MP3NetError, match="silent"):
        load_audio(silent)
    assert load_audio(silent, allow_silent=True)[0].shape == (2, 800)
