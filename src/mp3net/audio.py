"""Audio file I/O: decode anything libsndfile reads, convert channels, resample, normalise, write.

Arrays are float32 ``[C, T]`` (channels first, like the model's ``[B, C, M, K]``). Every user-facing
failure (missing, unreadable, corrupt, empty or silent file) raises :class:`mp3net.utils.MP3NetError`
with a one-line message.

Channel conversion (:func:`to_channels`):

- mono → C channels: the channel is duplicated;
- C channels → mono: the mean of all channels;
- more than two channels → stereo: channels 0 and 1 are taken as front left/right (the WAV, FLAC and
  MP3 order), every further channel (centre, LFE, surrounds, ...) is added to both sides at −3 dB
  (× 1/√2), and the sum is divided by 1 + (C−2)/√2 so that the down-mix cannot exceed the input's peak.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import soundfile as sf
import soxr
import torch

from mp3net.utils import MP3NetError, atomic_write, first_line

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

PEAK = 0.999  # per-track peak after normalisation (docs/training.md#data)
SILENCE_DB = -80.0  # a signal whose peak is below -80 dBFS counts as silent

# format name -> (libsndfile format, default subtype)
WRITE_FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    return np.asarray(x, dtype=np.float32)


@contextlib.contextmanager
def _quiet_decoder() -> Iterator[None]:
    """Silence what the C decoders print on the process's stderr (mpg123's "Note: Illegal Audio-MPEG-Header
    ... Trying to resync" lines for a damaged mp3): the error that follows says it in one line."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr (embedded, pytest capture by fd)
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _decode_error(path: Path, e: Exception) -> MP3NetError:
    """libsndfile's error for a file that exists but does not decode, as a one-line message."""
    reason = first_line(e).split("': ", 1)[-1].removeprefix("Error : ")
    if "does not exist or is not a regular file" in reason:
        # what libsndfile says when its mp3 decoder finds no valid frame: the file exists, it is corrupt
        reason = "no valid audio frames found"
    return MP3NetError(f"cannot read {path}: corrupt or not an audio file ({reason})")


def audio_info(path: str | Path) -> sf._SoundFileInfo:
    """soundfile's header info (sample rate, channels, frames, format) or a clear MP3NetError."""
    path = _check_path(path)
    try:
        with _quiet_decoder():
            return sf.info(str(path))
    except Exception as e:  # libsndfile raises several types for bad files
        raise _decode_error(path, e) from None


def _check_path(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise MP3NetError(f"no such file: {path}")
    if path.is_dir():
        raise MP3NetError(f"{path} is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise MP3NetError(f"{path} is empty (0 bytes)")
    return path


def read_audio(
    path: str | Path, start: float | None = None, duration: float | None = None, allow_empty: bool = False
) -> tuple[np.ndarray, int]:
    """Decode an audio file at its own sample rate.

    Args:
        path: any file libsndfile reads (wav, flac, ogg/vorbis, opus, mp3, aiff, ...).
        start: seconds to skip from the beginning (default 0).
        duration: seconds to read (default: to the end).
        allow_empty: return ``[C, 0]`` for a file without samples instead of raising.
    Returns:
        ``(x, sample_rate)`` with ``x`` float32 ``[C, T]``.
    Raises:
        MP3NetError: missing, unreadable, corrupt or empty file, NaN/Inf samples, or a start beyond the end.
    """
    path = _check_path(path)
    if start is not None and start < 0:
        raise MP3NetError(f"start must be >= 0 seconds, got {start}")
    if duration is not None and duration <= 0:
        raise MP3NetError(f"duration must be > 0 seconds, got {duration}")
    try:
        with _quiet_decoder(), sf.SoundFile(str(path)) as f:
            sr = f.samplerate
            first = int(round((start or 0.0) * sr))
            if first > 0:
                if f.frames and first >= f.frames:
                    raise MP3NetError(
                        f"start {start:g} s is beyond the end of {path} ({f.frames / sr:.2f} s long)"
                    )
                f.seek(first)
            frames = -1 if duration is None else max(1, int(round(duration * sr)))
            data = f.read(frames=frames, dtype="float32", always_2d=True)
    except MP3NetError:
        raise
    except Exception as e:  # corrupt headers / truncated streams raise several libsndfile error types
        raise _decode_error(path, e) from None
    if data.shape[0] == 0 and not allow_empty:
        raise MP3NetError(f"{path} contains no audio samples")
    if not np.isfinite(data).all():
        raise MP3NetError(f"{path} contains NaN or infinite samples")
    return np.ascontiguousarray(data.T), int(sr)


def to_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """``[C, T]`` → ``[channels, T]`` with the rules in the module docstring (1 or 2 target channels,
    or any count equal to the input's)."""
    c_in = x.shape[0]
    if c_in == channels:
        return x
    if channels == 1:
        return x.mean(axis=0, keepdims=True, dtype=np.float64).astype(np.float32)
    if c_in == 1:
        return np.repeat(x, channels, axis=0)
    if channels == 2:
        g = 1.0 / math.sqrt(2.0)
        rest = x[2:].sum(axis=0, dtype=np.float64) * g
        out = np.stack([x[0] + rest, x[1] + rest]) / (1.0 + g * (c_in - 2))
        return out.astype(np.float32)
    raise MP3NetError(f"cannot convert {c_in} channels to {channels} (supported targets: 1, 2 or {c_in})")


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """``[C, T]`` float32 resampled with soxr (high quality) → ``[C, T']``."""
    if sr_in == sr_out:
        return x
    y = soxr.resample(np.ascontiguousarray(x.T), sr_in, sr_out, quality="HQ")
    return np.ascontiguousarray(y.T, dtype=np.float32)


def peak_db(x: np.ndarray | torch.Tensor) -> float:
    """Peak level in dBFS over all channels (−inf for all-zero audio)."""
    peak = float(np.abs(_as_numpy(x)).max()) if np.size(x) else 0.0
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def is_silent(x: np.ndarray | torch.Tensor, threshold_db: float = SILENCE_DB) -> bool:
    """True if the peak of ``x`` (any shape) lies below ``threshold_db`` dBFS."""
    return peak_db(x) < threshold_db


def check_not_silent(
    x: np.ndarray | torch.Tensor, name: str = "audio", threshold_db: float = SILENCE_DB
) -> None:
    """Raise MP3NetError if ``x`` is silent (see :func:`is_silent`)."""
    if is_silent(x, threshold_db):
        level = peak_db(x)
        shown = "digital silence" if level == -math.inf else f"peak {level:.1f} dBFS"
        raise MP3NetError(f"{name} is silent ({shown}, below {threshold_db:g} dBFS)")


def peak_normalize(x: ArrayT, peak: float = PEAK) -> ArrayT:
    """``x · peak / max|x|`` with the maximum over all channels, stereo image kept (docs/training.md#data).

    Returns the same type as given. Raises MP3NetError for silent input (nothing to normalise).
    """
    check_not_silent(x)
    if isinstance(x, torch.Tensor):
        return x * (peak / x.abs().max())
    a = np.asarray(x)
    return (a * (peak / np.abs(a).max())).astype(a.dtype, copy=False)


def load_audio(
    path: str | Path,
    sample_rate: int | None = None,
    channels: int | None = None,
    start: float | None = None,
    duration: float | None = None,
    normalize: bool = False,
    allow_silent: bool = False,
) -> tuple[np.ndarray, int]:
    """Read, convert channels, resample and optionally peak-normalise one file.

    Args:
        sample_rate: target rate in Hz (None keeps the file's).
        channels: target channel count (None keeps the file's; see :func:`to_channels`).
        start, duration: seconds, see :func:`read_audio`.
        normalize: apply :func:`peak_normalize`.
        allow_silent: do not raise for silent audio.
    Returns:
        ``(x, sample_rate)`` with ``x`` float32 ``[C, T]``.
    """
    x, sr = read_audio(path, start=start, duration=duration)
    if channels is not None:
        x = to_channels(x, channels)
    if sample_rate is not None and sample_rate != sr:
        x, sr = resample(x, sr, sample_rate), sample_rate
    if not allow_silent:
        check_not_silent(x, name=str(path))
    if normalize:
        x = peak_normalize(x)
    return x, sr


def write_audio(
    path: str | Path,
    x: np.ndarray | torch.Tensor,
    sample_rate: int,
    format: str | None = None,
    subtype: str | None = None,
) -> Path:
    """Write ``[C, T]`` (or ``[T]``) audio atomically.

    Args:
        format: "wav", "flac", "ogg" (Vorbis) or "mp3"; default from the file extension.
        subtype: libsndfile subtype (default 16-bit PCM for wav/flac). Samples are clipped to [-1, 1]
            for the fixed-point and lossy formats.

    MPEG audio only allows a few sample rates: for "mp3" the audio is resampled to the nearest allowed
    rate at or above ``sample_rate`` (22016 Hz → 22050 Hz).
    """
    path = Path(path)
    fmt = (format or path.suffix.lstrip(".")).lower()
    if fmt not in WRITE_FORMATS:
        raise MP3NetError(f"cannot write format {fmt!r} ({path}); choose one of {', '.join(WRITE_FORMATS)}")
    sf_format, default_subtype = WRITE_FORMATS[fmt]
    subtype = subtype or default_subtype
    data = _as_numpy(x)
    if data.ndim == 1:
        data = data[None]
    if data.ndim != 2 or data.shape[1] == 0:
        raise MP3NetError(f"audio to write must be [C, T] with T > 0, got shape {tuple(data.shape)}")
    if not subtype.startswith(("FLOAT", "DOUBLE")):
        data = np.clip(data, -1.0, 1.0)
    sample_rate = int(sample_rate)
    if fmt == "mp3" and sample_rate not in MP3_RATES:
        target = min((r for r in MP3_RATES if r >= sample_rate), default=MP3_RATES[-1])
        data, sample_rate = resample(data, sample_rate, target), target
    frames = np.ascontiguousarray(data.T)

    def write(tmp: Path) -> None:
        try:
            sf.write(str(tmp), frames, sample_rate, format=sf_format, subtype=subtype)
        except (sf.LibsndfileError, ValueError, TypeError) as e:
            raise MP3NetError(f"cannot write {path}: {first_line(e)}") from None

    return atomic_write(path, write)
