"""Training data: ``prepare`` turns a folder of audio files into int16 PCM shards plus a manifest, and
:class:`ClipDataset` / :class:`CropSampler` serve random clips from the memory-mapped shards
(docs/training.md#data).

On-disk layout of a prepared dataset (``OUT_DIR``)::

    manifest.json          sample rate, channels, shards, and per track: source, duration, shard, offset
    shard-00000.i16        raw little-endian int16, interleaved frames [n_frames, channels]
    shard-00001.i16        ...

Shards are raw so that they can be memory-mapped (a 50 GiB corpus needs no 50 GiB of RAM) and appended
to while being written. A shard is written to a temporary name and renamed when complete; the manifest
is rewritten atomically after every finished shard and is the only source of truth: a shard it does not
list (left by an interrupted run) is deleted by the next run, so re-running on the same ``OUT_DIR`` never
duplicates a track and never keeps half a shard.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mp3net import audio
from mp3net.utils import MP3NetError, atomic_write_text, derive_seed

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
SHARD_PREFIX = "shard-"
SHARD_SUFFIX = ".i16"
# extensions soundfile (libsndfile ≥ 1.1) decodes
AUDIO_EXTENSIONS = frozenset(
    {
        ".wav",
        ".wave",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
        ".aif",
        ".aiff",
        ".aifc",
        ".w64",
        ".rf64",
        ".caf",
    }
)
PEAK = audio.PEAK  # per-track peak after normalisation (docs/training.md#data)
SILENCE_PEAK = 10 ** (audio.SILENCE_DB / 20)  # a track whose peak is below -80 dBFS is treated as silent
DEFAULT_SHARD_BYTES = 512 * 2**20


# ---------------------------------------------------------------------------------------------------------
# decoding one file (runs in worker processes)
# ---------------------------------------------------------------------------------------------------------
@dataclass
class _FileResult:
    source: str
    pcm: np.ndarray | None = None  # [T, C] int16
    reason: str | None = None
    source_rate: int = 0
    source_channels: int = 0


def _process_file(job: tuple[str, int, int, int]) -> _FileResult:
    """Decode, convert channels, resample, check and peak-normalise one file."""
    path, sample_rate, channels, min_samples = job
    res = _FileResult(source=path)
    if os.path.getsize(path) == 0:
        res.reason = "empty file (0 bytes)"
        return res
    try:
        x, sr = audio.read_audio(path, allow_empty=True)
    except MP3NetError as e:
        msg = str(e).replace(f"{path}: ", "").replace(f"{path} ", "")  # the report lists the path already
        res.reason = "cannot decode: " + msg.removeprefix("cannot read").lstrip(": ")
        return res
    except Exception as e:  # any decoder failure means "skip this file"
        res.reason = (
            f"cannot decode: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}"
        )
        return res
    res.source_rate, res.source_channels = sr, int(x.shape[0])
    if x.shape[1] == 0 or x.shape[0] == 0:
        res.reason = "empty (no audio samples)"
        return res
    x = audio.resample(audio.to_channels(x, channels), sr, sample_rate)
    peak = float(np.abs(x).max())
    if peak < SILENCE_PEAK:
        res.reason = "silent (peak below -80 dBFS)"
        return res
    n = x.shape[1]
    if n < min_samples:
        res.reason = f"too short ({n / sample_rate:.2f} s < one clip of {min_samples / sample_rate:.2f} s)"
        return res
    x = x * (PEAK / peak)
    res.pcm = np.ascontiguousarray(np.round(x.T * 32767.0).astype(np.int16))
    return res


# ---------------------------------------------------------------------------------------------------------
# manifest
# ---------------------------------------------------------------------------------------------------------
def load_manifest(root: str | Path) -> dict[str, Any]:
    """Read and sanity-check ``root/manifest.json``."""
    path = Path(root) / MANIFEST
    try:
        m = json.loads(path.read_text())
    except FileNotFoundError:
        raise MP3NetError(
            f"{root} is not a prepared dataset (no {MANIFEST}); run `mp3net prepare` first"
        ) from None
    except (OSError, json.JSONDecodeError) as e:
        raise MP3NetError(f"cannot read {path}: {e}") from None
    if not isinstance(m, dict) or m.get("version") != MANIFEST_VERSION or "tracks" not in m:
        raise MP3NetError(f"{path} is not an mp3net manifest of version {MANIFEST_VERSION}")
    return m


def _write_manifest(root: Path, m: dict[str, Any]) -> None:
    atomic_write_text(root / MANIFEST, json.dumps(m, indent=1) + "\n")


def _shard_name(i: int) -> str:
    return f"{SHARD_PREFIX}{i:05d}{SHARD_SUFFIX}"


@dataclass
class PrepareReport:
    """Outcome of :func:`prepare`."""

    added: int = 0
    added_seconds: float = 0.0
    total_tracks: int = 0
    total_seconds: float = 0.0
    already: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"added {self.added} tracks ({self.added_seconds / 3600:.3f} h); dataset now holds "
            f"{self.total_tracks} tracks ({self.total_seconds / 3600:.3f} h)",
        ]
        if self.already:
            lines.append(f"{self.already} files were already in the dataset")
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} files:")
            lines += [f"  {src}: {reason}" for src, reason in self.skipped]
        return "\n".join(lines)


class _ShardWriter:
    """Appends tracks to ``shard-XXXXX.i16.tmp``; ``close()`` fsyncs and renames it into place."""

    def __init__(self, root: Path, index: int) -> None:
        self.index, self.frames = index, 0
        self.tracks: list[dict[str, Any]] = []
        self.path = root / _shard_name(index)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.f = open(self.tmp, "wb")  # closed in close()/abort()

    def add(self, pcm: np.ndarray, track: dict[str, Any]) -> None:
        self.f.write(pcm.astype("<i2", copy=False).tobytes())
        track.update(shard=self.index, offset=self.frames)
        self.tracks.append(track)
        self.frames += pcm.shape[0]

    def close(self) -> None:
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.f.close()
        self.tmp.unlink(missing_ok=True)


def find_audio_files(src: Path, exclude: Path | None = None) -> list[Path]:
    """Audio files under ``src`` (recursively, sorted), skipping anything inside ``exclude``."""
    out = []
    for root, dirs, files in os.walk(src, followlinks=True):
        dirs.sort()
        if exclude is not None and Path(root).resolve().is_relative_to(exclude):
            dirs[:] = []
            continue
        out += [Path(root) / f for f in sorted(files) if Path(f).suffix.lower() in AUDIO_EXTENSIONS]
    return out


def prepare(
    src: str | Path,
    out: str | Path,
    sample_rate: int,
    channels: int,
    min_samples: int,
    workers: int = 1,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    progress: bool = True,
) -> PrepareReport:
    """Build (or extend) a dataset of int16 shards from every audio file under ``src``.

    Args:
        src: folder searched recursively for wav/flac/ogg/mp3 (anything soundfile decodes).
        out: dataset folder; an existing dataset of the same rate and channels is extended, files it
            already holds (same resolved path) are not added again.
        sample_rate, channels: target format (the preset's); mono input is duplicated to stereo.
        min_samples: tracks shorter than this after resampling (one training clip) are skipped.
        workers: decoding processes.
        shard_bytes: a new shard is started when the current one exceeds this size.
    Returns:
        A :class:`PrepareReport`. Raises :class:`MP3NetError` when the dataset ends up empty.
    """
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise MP3NetError(f"source folder {src} does not exist or is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    m = _open_manifest(out, sample_rate, channels)
    _remove_unlisted_shards(out, m)
    report = PrepareReport()
    files = _files_to_add(src, out, m, report)
    if not files and not m["tracks"]:
        raise MP3NetError(
            f"no audio files ({', '.join(sorted({'.wav', '.flac', '.ogg', '.mp3'}))}) found under {src}"
        )
    jobs = [(f, sample_rate, channels, min_samples) for f in files]
    _add_tracks(out, m, jobs, report, workers, shard_bytes, progress)
    m["skipped"] = [{"source": s, "reason": r} for s, r in report.skipped]
    m["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    _write_manifest(out, m)
    report.total_tracks = len(m["tracks"])
    report.total_seconds = sum(t["duration"] for t in m["tracks"])
    if not m["tracks"]:
        why = "; ".join(f"{Path(s).name}: {r}" for s, r in report.skipped[:5])
        raise MP3NetError(f"no usable audio under {src} ({len(report.skipped)} files skipped: {why})")
    return report


def _open_manifest(out: Path, sample_rate: int, channels: int) -> dict[str, Any]:
    """The manifest of the dataset in ``out`` (checked to have this format), or a new empty one."""
    if not (out / MANIFEST).exists():
        return {
            "version": MANIFEST_VERSION,
            "sample_rate": sample_rate,
            "channels": channels,
            "shards": [],
            "tracks": [],
            "skipped": [],
        }
    m = load_manifest(out)
    if m["sample_rate"] != sample_rate or m["channels"] != channels:
        raise MP3NetError(
            f"{out} holds {m['sample_rate']} Hz / {m['channels']}-channel data; this preset needs "
            f"{sample_rate} Hz / {channels} channels: use another OUT_DIR"
        )
    return m


def _remove_unlisted_shards(out: Path, m: dict[str, Any]) -> None:
    """Drop what an interrupted run left behind: temp files and shards the manifest does not list."""
    listed = {s["file"] for s in m["shards"]}
    for p in out.iterdir():
        if p.name.startswith(SHARD_PREFIX) and (p.name.endswith(".tmp") or p.name not in listed):
            p.unlink()


def _files_to_add(src: Path, out: Path, m: dict[str, Any], report: PrepareReport) -> list[str]:
    """Resolved paths of the audio files under ``src`` the dataset does not hold yet (counted in
    ``report.already`` otherwise)."""
    known = {t["source"] for t in m["tracks"]}
    files = []
    for p in find_audio_files(src, exclude=out.resolve()):
        key = str(p.resolve())
        if key in known:
            report.already += 1
        else:
            files.append(key)
    return files


class _ShardSequence:
    """Fills shards one after another; each finished shard is listed in the manifest, which is rewritten."""

    def __init__(self, root: Path, m: dict[str, Any], shard_bytes: int) -> None:
        self.root, self.m, self.shard_bytes = root, m, shard_bytes
        self.writer: _ShardWriter | None = None
        indices = (int(s["file"][len(SHARD_PREFIX) : -len(SHARD_SUFFIX)]) for s in m["shards"])
        self.next_index = max(indices, default=-1) + 1

    def add(self, pcm: np.ndarray, track: dict[str, Any]) -> None:
        if self.writer is None:
            self.writer = _ShardWriter(self.root, self.next_index)
            self.next_index += 1
        self.writer.add(pcm, track)
        if self.writer.frames * self.m["channels"] * 2 >= self.shard_bytes:
            self.finish()

    def finish(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        self.m["shards"].append({"file": self.writer.path.name, "frames": self.writer.frames})
        self.m["tracks"] += self.writer.tracks
        _write_manifest(self.root, self.m)
        self.writer = None

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


@contextmanager
def _decoded(jobs: list[tuple[str, int, int, int]], workers: int) -> Iterator[Iterator[_FileResult]]:
    """The decoded files in job order, from ``workers`` processes (terminated on exit) or this one."""
    if workers <= 1 or len(jobs) <= 1:
        yield map(_process_file, jobs)
        return
    # spawn: the parent may hold torch threads, which fork would copy in a broken state
    pool = multiprocessing.get_context("spawn").Pool(min(workers, len(jobs)))
    try:
        yield pool.imap(_process_file, jobs)
    finally:
        pool.terminate()
        pool.join()


def _add_tracks(
    out: Path,
    m: dict[str, Any],
    jobs: list[tuple[str, int, int, int]],
    report: PrepareReport,
    workers: int,
    shard_bytes: int,
    progress: bool,
) -> None:
    """Decode the jobs and append the usable tracks to new shards; a failure discards the open shard."""
    from tqdm import tqdm

    sample_rate = m["sample_rate"]
    shards = _ShardSequence(out, m, shard_bytes)
    bar = tqdm(total=len(jobs), unit="file", disable=not progress or not jobs, dynamic_ncols=True)
    try:
        with _decoded(jobs, workers) as results:
            for res in results:
                bar.update(1)
                if res.pcm is None:
                    report.skipped.append((res.source, res.reason or "unusable"))
                    continue
                n = res.pcm.shape[0]
                track = {
                    "source": res.source,
                    "duration": n / sample_rate,
                    "frames": n,
                    "source_rate": res.source_rate,
                    "source_channels": res.source_channels,
                }
                shards.add(res.pcm, track)
                report.added += 1
                report.added_seconds += n / sample_rate
                bar.set_postfix_str(f"{report.added_seconds / 3600:.2f} h audio")
        shards.finish()
    except BaseException:
        shards.abort()
        raise
    finally:
        bar.close()


# ---------------------------------------------------------------------------------------------------------
# training-time access
# ---------------------------------------------------------------------------------------------------------
class ClipDataset:
    """Clips of ``clip_samples`` samples at any offset inside any track of a prepared dataset.

    Index ``i`` in ``[0, len(self))`` enumerates every valid (track, start) pair, so drawing ``i`` uniformly
    draws a uniformly random clip of the corpus (longer tracks proportionally more often) and a clip never
    straddles two tracks. The shards are memory-mapped lazily in each process (DataLoader workers included).
    ``self[i]`` is a float32 tensor ``[C, clip_samples]`` in [-1, 1].
    """

    def __init__(self, root: str | Path, clip_samples: int, sample_rate: int, channels: int) -> None:
        self.root = Path(root)
        m = load_manifest(self.root)
        if m["sample_rate"] != sample_rate or m["channels"] != channels:
            raise MP3NetError(
                f"dataset {root} is {m['sample_rate']} Hz / {m['channels']} ch but the model needs "
                f"{sample_rate} Hz / {channels} ch: prepare it with the same preset"
            )
        self.clip_samples, self.channels = clip_samples, channels
        self.shards = {i: s for i, s in enumerate(m["shards"])}
        self._shard_index = {s["file"]: i for i, s in enumerate(m["shards"])}
        for s in m["shards"]:
            p = self.root / s["file"]
            want = s["frames"] * channels * 2
            if not p.exists() or p.stat().st_size != want:
                raise MP3NetError(f"shard {p} is missing or has the wrong size; re-run `mp3net prepare`")
        self.tracks = [t for t in m["tracks"] if t["frames"] >= clip_samples]
        if not self.tracks:
            raise MP3NetError(
                f"dataset {root} has no track of at least one clip ({clip_samples / sample_rate:.2f} s)"
            )
        starts = np.array([t["frames"] - clip_samples + 1 for t in self.tracks], dtype=np.int64)
        self._cum = np.concatenate([[0], np.cumsum(starts)]).tolist()
        self.seconds = sum(t["duration"] for t in self.tracks)
        self._maps: dict[int, np.ndarray] = {}
        self._pid = -1

    def __len__(self) -> int:
        return int(self._cum[-1])

    def _map(self, shard: int) -> np.ndarray:
        if self._pid != os.getpid():  # memmaps must not be shared across fork
            self._maps, self._pid = {}, os.getpid()
        if shard not in self._maps:
            s = self.shards[shard]
            self._maps[shard] = np.memmap(
                self.root / s["file"], dtype="<i2", mode="r", shape=(s["frames"], self.channels)
            )
        return self._maps[shard]

    def first_clip(self, track: int) -> int:
        """The index of the clip at the start of ``self.tracks[track]`` (its clips are the next indices)."""
        return int(self._cum[track])

    def locate(self, i: int) -> tuple[int, int]:
        """(track index, start sample within the track) of clip ``i``."""
        if not 0 <= i < len(self):
            raise IndexError(i)
        t = bisect_right(self._cum, i) - 1
        return t, i - self._cum[t]

    def __getitem__(self, i: int):
        import torch

        t, start = self.locate(int(i))
        track = self.tracks[t]
        a = track["offset"] + start
        pcm = self._map(track["shard"])[a : a + self.clip_samples]
        x = torch.from_numpy(np.ascontiguousarray(pcm.T)).float()
        return x.mul_(1.0 / 32767.0)

    def stack(self, indices: Iterable[int]):
        """Clips ``indices`` as one batch ``[B, C, clip_samples]`` float32 (fixed clips outside a
        DataLoader: pretraining's table, the anchors)."""
        import torch

        return torch.stack([self[int(i)] for i in indices])

    def __getstate__(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["_maps"], d["_pid"] = {}, -1
        return d


def table_runs(dataset: ClipDataset, rows: int, run: int) -> list[list[int]]:
    """A pretraining table of about ``rows`` clips as runs of ``run`` consecutive clips: the dataset indices
    ``[[i, i + clip, ...], ...]`` of each run, in order (docs/long-tracks.md#the-table).

    Every track is cut into non-overlapping clips from its start, and those into runs of at most ``run``
    (as even as they come: 13 clips in runs of 4 are 4 + 3 + 3 + 3); runs spread evenly over the corpus are
    taken until the table holds ``rows`` clips, the last run cut short if need be. A run's clips follow each
    other in the recording, so the table's latents trace its path (the walk of long tracks,
    :mod:`mp3net.model.sampler`). ``run = 1``: the clips spread evenly over every start
    (:func:`clip_indices`), each its own run.
    """
    if run < 1:
        raise ValueError(f"a run holds at least one clip, got {run}")
    if run == 1:
        return [[i] for i in clip_indices(len(dataset), rows)]
    clip, groups = dataset.clip_samples, []
    for t, track in enumerate(dataset.tracks):
        tiles = [dataset.first_clip(t) + k * clip for k in range(int(track["frames"]) // clip)]
        groups += [g.tolist() for g in np.array_split(tiles, -(-len(tiles) // run))] if tiles else []
    m = -(-rows // run)  # runs wanted; more where tracks end in short ones
    while True:
        spread = np.linspace(0, len(groups) - 1, min(m, len(groups))).round().astype(np.int64)
        picked = [groups[g] for g in np.unique(spread)]
        total = sum(map(len, picked))
        if total >= rows or m >= len(groups):
            break
        m = min(len(groups), max(m + 1, -(-m * rows // total)))
    chosen, total = [], 0
    for g in picked:
        if total < rows:
            chosen.append(g[: rows - total])
            total += len(chosen[-1])
    return chosen


def clip_indices(n_items: int, clips: int) -> list[int]:
    """``clips`` dataset indices spread evenly over ``[0, n_items)`` (fewer, without repeats, when the
    dataset holds fewer clips): the same clips every time for the same data."""
    return np.unique(np.linspace(0, n_items - 1, min(clips, n_items)).round().astype(np.int64)).tolist()


class CropSampler:
    """Infinite batch sampler of clip indices for :class:`ClipDataset` (``DataLoader(batch_sampler=...)``).

    Batch ``n`` is drawn from a torch.Generator seeded by (seed, rank, n), so the stream is fixed by the
    seed, differs per rank, and resumes exactly from a batch count however far DataLoader workers had
    prefetched: the trainer stores how many batches it consumed (:meth:`state_dict`).
    """

    def __init__(self, n_clips: int, batch_size: int, seed: int = 0, rank: int = 0, start: int = 0) -> None:
        self.n_clips, self.batch_size, self.seed, self.rank, self.start = (
            n_clips,
            batch_size,
            seed,
            rank,
            start,
        )

    def batch(self, index: int) -> list[int]:
        import torch

        g = torch.Generator().manual_seed(derive_seed(self.seed, self.rank, index))
        return torch.randint(self.n_clips, (self.batch_size,), generator=g).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        n = self.start
        while True:
            yield self.batch(n)
            n += 1

    def state_dict(self, consumed: int) -> dict[str, int]:
        return {"seed": self.seed, "rank": self.rank, "next_batch": consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed, self.start = int(state["seed"]), int(state["next_batch"])
