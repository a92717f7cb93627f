"""Writing tracks block by block as they are synthesised: memory independent of the duration.

:func:`write_tracks` takes an iterator of waveform blocks ``[B, C, T_i]`` (one row per track) and appends
each row to its own file. Every file is written under a temporary name beside its final one and renamed
only when complete, so Ctrl-C, a full disk or a kill leave no half-written file under the final name.
:func:`check_fits` refuses up front a set of tracks that cannot fit the disk or the format.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from mp3net.utils import MP3NetError, first_line, publish

# format name -> (libsndfile container, subtype, bytes per sample and channel, container size limit)
STREAM_FORMATS = {
    "wav": ("WAV", "PCM_16", 2, 2**32 - 1),  # 32-bit RIFF sizes
    "rf64": ("RF64", "PCM_16", 2, None),  # WAV with 64-bit sizes (EBU Tech 3306), written as .wav
    "flac": ("FLAC", "PCM_16", 2, None),
    "ogg": ("OGG", "VORBIS", 2, None),
}
EXTENSIONS = {"rf64": "wav"}
# share of the 16-bit PCM size a file takes, for the disk-space check of compressed formats: FLAC keeps
# about 60 % of generated music, Vorbis at libsndfile's default quality about 12 % (~ 160 kbit/s stereo
# at 44.1 kHz); WAV/RF64 are exact
_SIZE_SHARE = {"wav": 1.0, "rf64": 1.0, "flac": 0.6, "ogg": 0.12}
_HEADER = 1 << 16  # generous room for headers, seek tables and Ogg pages


def extension(fmt: str) -> str:
    """The file extension of a format (``rf64`` files are ``.wav``)."""
    return EXTENSIONS.get(fmt, fmt)


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def estimated_bytes(fmt: str, n_samples: int, channels: int) -> int:
    """Size of one file: exact for WAV/RF64, typical for FLAC/Ogg."""
    pcm = n_samples * channels * STREAM_FORMATS[fmt][2]
    return int(pcm * _SIZE_SHARE[fmt]) + _HEADER


def check_fits(out_dir: str | Path, fmt: str, n_tracks: int, n_samples: int, channels: int, sr: int) -> None:
    """Raise a one-line :class:`MP3NetError` when ``n_tracks`` files of ``n_samples`` samples would exceed
    the format's size limit (WAV: 4 GB) or the free space of ``out_dir``'s disk."""
    _, _, width, limit = STREAM_FORMATS[fmt]
    seconds = n_samples / sr
    if limit is not None and n_samples * channels * width + 44 > limit:
        raise MP3NetError(
            f"a {seconds:.0f} s track would be {_gb(n_samples * channels * width)} as {fmt.upper()}, over "
            f"the format's {_gb(limit)} limit: use --format flac or --format rf64"
        )
    need = n_tracks * estimated_bytes(fmt, n_samples, channels)
    free = shutil.disk_usage(out_dir).free
    if need > free:
        typical = "" if _SIZE_SHARE[fmt] == 1.0 else "typically "
        raise MP3NetError(
            f"{n_tracks} track(s) of {seconds:.0f} s as {fmt} need {typical}{_gb(need)}, but {out_dir} has "
            f"only {_gb(free)} free"
        )


def _block_frames(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[C, T]`` float → ``[T, C]`` float32 clipped to [-1, 1] (the fixed-point formats clip anyway)."""
    a = x.detach().to("cpu", torch.float32).numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return np.ascontiguousarray(np.clip(a, -1.0, 1.0).T, dtype=np.float32)


class ClipMeter:
    """Scales a stream of blocks ``[B, C, T_i]`` by a gain and counts, per track (row), the samples that
    the 16-bit and lossy formats will clip at full scale, and the peak.

    ``meter.apply(blocks)`` yields the scaled blocks for :func:`write_tracks`; after the stream is spent,
    :attr:`clipped` ``[B]`` and :attr:`peak` ``[B]`` hold the counts and the peaks of the scaled samples.
    Fresh per batch of tracks.
    """

    def __init__(self, n_tracks: int, gain_db: float = 0.0) -> None:
        self.gain = 10.0 ** (gain_db / 20.0)
        self.clipped = np.zeros(n_tracks, dtype=np.int64)
        self.peak = np.zeros(n_tracks)
        self.samples = 0  # per track, all channels

    def apply(self, blocks: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        for block in blocks:
            if self.gain != 1.0:
                block = block * self.gain
            mag = block.detach().abs().flatten(1)  # [B, C*T_i]
            self.clipped += (mag > 1.0).sum(1).cpu().numpy()
            self.peak = np.maximum(self.peak, mag.amax(1).float().cpu().numpy())
            self.samples += mag.shape[1]
            yield block


def write_tracks(
    paths: Sequence[str | Path],
    blocks: Iterable[torch.Tensor | np.ndarray],
    sample_rate: int,
    fmt: str,
    on_block: Callable[[int], None] | None = None,
) -> list[Path]:
    """Append the rows of every block ``[len(paths), C, T_i]`` to the files ``paths`` and return them.

    Files are complete under their final names only after the last block; on any error or interrupt
    every temporary file is deleted (an OSError such as a full disk becomes a one-line MP3NetError).
    ``on_block(T_i)`` is called after each block is written (progress bars).
    """
    container, subtype, _, _ = STREAM_FORMATS[fmt]
    finals = [Path(p) for p in paths]
    temps: list[Path] = []
    files: list[sf.SoundFile] = []
    current = finals[0] if finals else None  # the file being written, for the error message
    try:
        for p in finals:
            fd, name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
            os.close(fd)
            temps.append(Path(name))
        for block in blocks:
            if not files:  # opened with the first block: it gives the channel count
                channels = int(block.shape[1])
                files = [
                    sf.SoundFile(str(t), "w", sample_rate, channels, subtype, format=container) for t in temps
                ]
            for i, row in enumerate(block):
                current = finals[i]
                files[i].write(_block_frames(row))
            if on_block is not None:
                on_block(int(block.shape[-1]))
        for f, final in zip(files, finals, strict=True):
            current = final
            f.close()
        for tmp, final in zip(temps, finals, strict=True):
            current = final
            publish(tmp, final)
    except BaseException as e:
        for f in files:
            try:
                f.close()
            except Exception:  # closing a file on a full disk fails again: it is deleted anyway
                pass
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        if isinstance(e, (OSError, sf.LibsndfileError)):  # a full disk, a file-size limit, ...
            reason = (e.strerror if isinstance(e, OSError) else None) or first_line(e)
            raise MP3NetError(f"cannot write {current}: {reason}") from None
        raise
    return finals
