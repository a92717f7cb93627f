"""Generation jobs: request validation, resource checks, one worker thread per model, the files made.

A request (``generate`` one seed, a ``grid`` of N seeds, or ``interpolate`` between two seeds in K steps)
is checked before it is queued: every problem is a one-line :class:`BadRequest`. The slot's worker runs
its jobs one at a time and writes each track as a 16-bit WAV plus a spectrogram PNG into the job's own
folder; FLAC and Ogg are encoded on the first download. Progress is exact in tracks and, within a
track, estimated from the model's measured speed (a long track is one forward pass).
"""

from __future__ import annotations

import inspect
import io
import itertools
import math
import os
import queue
import secrets
import shutil
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mp3net import generate as gen
from mp3net.model import Generator
from mp3net.serve.models import ModelSlot
from mp3net.utils import MP3NetError, first_line

KINDS = ("generate", "grid", "interpolate")
FORMATS = ("wav", "flac", "ogg")
MAX_SEED = 2**31 - 1
MAX_TRACKS = 64  # per grid / interpolation
MAX_QUEUED = 16  # jobs waiting for one model's worker
MEMORY_FACTOR = 8  # peak bytes while generating ≈ 8 × the float32 audio (measured ≈ 3.6×, doubled)
MEMORY_SHARE = 0.5  # a job may plan to use at most this share of the available memory
DISK_RESERVE = 256 * 2**20  # bytes of free disk left untouched after a job's files
PNG_BYTES = 200_000  # upper bound of one spectrogram image


class BadRequest(MP3NetError):
    """A request the page must show as a message (HTTP 400)."""


@dataclass(frozen=True)
class Request:
    """A validated generation request. ``seeds``: generate → [seed]; grid → N seeds; interpolate → [a, b]."""

    model: str
    kind: str
    seeds: tuple[int, ...]
    steps: int
    duration: float | None
    truncation: float | None
    precision: str

    @property
    def n_tracks(self) -> int:
        return self.steps if self.kind == "interpolate" else len(self.seeds)


def _api_has_precision() -> bool:
    return all("precision" in inspect.signature(f).parameters for f in (gen.generate, gen.interpolate))


def supported_precisions() -> list[str]:
    """Precisions the generation API accepts: ``fp32`` only until ``generate()`` has ``precision=``."""
    if not _api_has_precision():
        return ["fp32"]
    return list(getattr(gen, "PRECISIONS", ("fp32", "bf16", "auto")))


def _number(body: dict, key: str, kind: type, default: Any = None) -> Any:
    v = body.get(key, default)
    if v is None or v == "":
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise BadRequest(f"{key} must be a number, got {v!r}")
    try:
        x = float(v)
    except ValueError:
        raise BadRequest(f"{key} must be a number, got {v!r}") from None
    if not math.isfinite(x):
        raise BadRequest(f"{key} must be a finite number, got {v!r}")
    if kind is int:
        if x != int(x):
            raise BadRequest(f"{key} must be a whole number, got {v!r}")
        return int(x)
    return x


def _seed(body: dict, key: str) -> int:
    """A seed from the request, or a fresh random one when it is missing or ``"random"``."""
    if body.get(key) in (None, "", "random"):
        return secrets.randbelow(MAX_SEED + 1)
    s = _number(body, key, int)
    if not 0 <= s <= MAX_SEED:
        raise BadRequest(f"{key} must be between 0 and {MAX_SEED}, got {s}")
    return s


def _count(body: dict, key: str, default: int, lo: int) -> int:
    n = _number(body, key, int, default)
    if not lo <= n <= MAX_TRACKS:
        raise BadRequest(f"{key} must be between {lo} and {MAX_TRACKS}, got {n}")
    return n


def parse_request(body: Any, models: dict[str, ModelSlot]) -> Request:
    """Check a JSON request body against the models on offer; raises :class:`BadRequest`."""
    if not isinstance(body, dict):
        raise BadRequest("the request must be a JSON object")
    model = body.get("model")
    if model not in models:
        raise BadRequest(f"unknown model {model!r}; this server offers: {', '.join(models)}")
    kind = body.get("kind", "generate")
    if kind not in KINDS:
        raise BadRequest(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    duration = _number(body, "duration", float)
    if duration is not None and duration <= 0:
        raise BadRequest(f"duration must be a positive number of seconds, got {duration:g}")
    truncation = _number(body, "truncation", float)
    if truncation is not None and truncation <= 0:
        raise BadRequest(f"truncation must be positive, got {truncation:g}")
    precision = body.get("precision") or "fp32"
    if precision not in supported_precisions():
        raise BadRequest(f"precision {precision!r} is not available; use {', '.join(supported_precisions())}")
    steps = 1
    if kind == "generate":
        seeds: tuple[int, ...] = (_seed(body, "seed"),)
    elif kind == "grid":
        n = _count(body, "n", 4, 1)
        first = _seed(body, "seed")
        seeds = tuple((first + i) % (MAX_SEED + 1) for i in range(n))
    else:
        seeds = (_seed(body, "seed_a"), _seed(body, "seed_b"))
        steps = _count(body, "steps", 8, 2)
    return Request(model, kind, seeds, steps, duration, truncation, precision)


def available_memory() -> int:
    """Bytes of memory available to a new allocation (``MemAvailable``; physical memory elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_resources(
    req: Request, slot: ModelSlot, out_dir: Path, memory: Callable[[], int] = available_memory
) -> int:
    """Samples per track, once the job is known to fit in memory and on disk (else :class:`BadRequest`)."""
    cfg = _loaded(slot).cfg
    n = cfg.clip_samples if req.duration is None else round(req.duration * cfg.sample_rate)
    if n < 1:
        raise BadRequest(f"duration {req.duration:g} s is shorter than one sample")
    in_memory = req.n_tracks if req.kind == "interpolate" else 1  # a grid is generated seed by seed
    need = MEMORY_FACTOR * 4 * cfg.channels * n * in_memory
    have = memory()
    if need > MEMORY_SHARE * have:
        longest = MEMORY_SHARE * have / (MEMORY_FACTOR * 4 * cfg.channels * in_memory * cfg.sample_rate)
        raise BadRequest(
            f"{_seconds(n, cfg.sample_rate)} × {in_memory} track(s) needs about {need / 2**30:.1f} GiB of "
            f"memory, {have / 2**30:.1f} GiB are available: choose at most {longest:.0f} s"
        )
    disk = req.n_tracks * (2 * cfg.channels * n + PNG_BYTES)
    free = shutil.disk_usage(out_dir).free
    if disk + DISK_RESERVE > free:
        raise BadRequest(
            f"{req.n_tracks} track(s) of {_seconds(n, cfg.sample_rate)} need {disk / 2**20:.0f} MiB of disk, "
            f"only {max(0, free - DISK_RESERVE) / 2**20:.0f} MiB are free in {out_dir}"
        )
    return n


def _seconds(n: int, sr: int) -> str:
    return f"{n / sr:g} s"


@dataclass
class Track:
    """One generated track: its WAV and spectrogram, and the other formats once encoded."""

    index: int
    label: str
    seed: int | None
    samples: int
    sample_rate: int
    channels: int
    files: dict[str, Path] = field(default_factory=dict)  # "wav", "png", "flac", "ogg"
    peak_dbfs: float = -math.inf  # of the generated samples, before the files clip them at full scale
    clipped: int = 0  # samples (all channels) beyond full scale, clipped in the files


@dataclass
class Job:
    """A queued, running, finished or failed request, with its tracks and progress."""

    id: str
    request: Request
    samples: int
    folder: Path
    status: str = "queued"  # queued | running | done | error
    error: str = ""
    tracks: list[Track] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    expected_s: float | None = None  # estimated seconds of the forward pass in flight
    pass_started: float | None = None
    model_version: int = 0
    model_step: int | None = None
    _shown: float = 0.0  # progress never goes back, whatever the estimates say

    def progress(self) -> float:
        """0…1: tracks done, plus the estimated share of the forward pass in flight; never decreases."""
        self._shown = max(self._shown, self._estimate())
        return self._shown

    def _estimate(self) -> float:
        if self.status == "done":
            return 1.0
        total = self.request.n_tracks
        done = len(self.tracks)
        if self.status == "running" and self.pass_started and self.expected_s:
            per_pass = total - done if self.request.kind == "interpolate" else 1
            frac = min(0.95, (time.monotonic() - self.pass_started) / self.expected_s)
            return (done + frac * per_pass) / total
        return done / total

    def to_json(self) -> dict[str, Any]:
        r = self.request
        return {
            "id": self.id,
            "model": r.model,
            "kind": r.kind,
            "seeds": list(r.seeds),
            "steps": r.steps,
            "duration": r.duration,
            "truncation": r.truncation,
            "precision": r.precision,
            "status": self.status,
            "error": self.error,
            "progress": round(self.progress(), 4),
            "elapsed": round((self.finished or time.time()) - self.started, 3) if self.started else 0.0,
            "model_version": self.model_version,
            "model_step": self.model_step,
            "tracks": [self._track_json(t) for t in self.tracks],
        }

    def _track_json(self, t: Track) -> dict[str, Any]:
        base = f"/files/{self.id}/{t.index}"
        return {
            "index": t.index,
            "label": t.label,
            "seed": t.seed,
            "seconds": t.samples / t.sample_rate,
            "sample_rate": t.sample_rate,
            "channels": t.channels,
            "peak_dbfs": round(t.peak_dbfs, 2) if math.isfinite(t.peak_dbfs) else None,
            "clipped_share": t.clipped / max(t.samples * t.channels, 1),
            "audio": f"{base}.wav",
            "spectrogram": f"{base}.png",
            "downloads": {f: f"{base}.{f}?download=1" for f in FORMATS},
        }


class JobStore:
    """The jobs of this server, newest last; the oldest finished ones (and their files) are dropped."""

    def __init__(self, root: Path, keep: int = 100) -> None:
        self.root, self.keep = root, keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._counter = itertools.count()

    def new(self, req: Request, samples: int) -> Job:
        job_id = f"{next(self._counter):04x}{secrets.token_hex(4)}"
        folder = self.root / job_id
        folder.mkdir(parents=True)
        job = Job(job_id, req, samples, folder)
        with self._lock:
            self._jobs[job_id] = job
            self._evict()
        return job

    def discard(self, job_id: str) -> None:
        with self._lock:
            job = self._jobs.pop(job_id, None)
        if job is not None:
            shutil.rmtree(job.folder, ignore_errors=True)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _evict(self) -> None:
        finished = [j for j in self._jobs.values() if j.status in ("done", "error")]
        for job in finished[: max(0, len(self._jobs) - self.keep)]:
            del self._jobs[job.id]
            shutil.rmtree(job.folder, ignore_errors=True)


class Worker(threading.Thread):
    """Runs one model's jobs one at a time, and reloads the model between jobs when asked."""

    def __init__(self, slot: ModelSlot, batch_size: int = 1) -> None:
        super().__init__(name=f"mp3net-serve-{slot.id}", daemon=True)
        self.slot, self.batch_size = slot, batch_size
        self.queue: queue.Queue[Job | str | None] = queue.Queue()
        self._reload_pending = threading.Event()
        self._waiting = 0  # jobs submitted and not started
        self._lock = threading.Lock()
        self._stopping = False

    def submit(self, job: Job) -> None:
        """Queue a job; raises :class:`BadRequest` when ``MAX_QUEUED`` jobs already wait."""
        with self._lock:
            if self._waiting >= MAX_QUEUED:
                raise BadRequest(f"{MAX_QUEUED} jobs are already waiting for {self.slot.id}: try again soon")
            self._waiting += 1
        self.queue.put(job)

    def request_reload(self) -> None:
        if not self._reload_pending.is_set():
            self._reload_pending.set()
            self.queue.put("reload")

    def stop(self) -> None:
        """Finish the job in flight, drop the queued ones, end the thread."""
        self._stopping = True
        self.queue.put(None)

    def run(self) -> None:
        while (item := self.queue.get()) is not None:
            if isinstance(item, str):  # "reload"
                self._reload_pending.clear()
                if self.slot.changed_on_disk():
                    self.slot.load()
            else:
                with self._lock:
                    self._waiting -= 1
                if self._stopping:
                    item.status, item.error = "error", "the server is shutting down"
                    continue
                self._run_job(item)

    def _run_job(self, job: Job) -> None:
        job.status, job.started = "running", time.time()
        job.model_version, job.model_step = self.slot.version, self.slot.step
        try:
            generate_tracks(job, self.slot, self.batch_size)
            job.status = "done"
        except MP3NetError as e:
            job.status, job.error = "error", first_line(e)
        except MemoryError:
            job.status, job.error = "error", "out of memory: choose a shorter duration or fewer tracks"
        except Exception as e:  # a bug: one line for the page, the traceback for the server's console
            msg = first_line(e)
            if "out of memory" in msg.lower():
                job.status, job.error = "error", "out of memory: choose a shorter duration or fewer tracks"
            else:
                job.status, job.error = "error", f"generation failed: {msg}"
                traceback.print_exc(file=sys.stderr)
        finally:
            job.finished = time.time()


def _loaded(slot: ModelSlot) -> Generator:
    """The slot's generator; :class:`BadRequest` while it has none (a run waiting for its first export)."""
    if slot.G is None:
        raise BadRequest(f"model {slot.id} is not loaded: {slot.error or 'waiting'}")
    return slot.G


def _precision_kw(req: Request) -> dict[str, Any]:
    return {"precision": req.precision} if _api_has_precision() else {}


def generate_tracks(job: Job, slot: ModelSlot, batch_size: int = 1) -> None:
    """Run a job's forward passes and write its tracks (appended to ``job.tracks`` as they are done)."""
    req, G = job.request, _loaded(slot)
    common = dict(
        duration=req.duration, truncation=req.truncation, batch_size=batch_size, **_precision_kw(req)
    )
    if req.kind == "interpolate":
        a, b = req.seeds
        _start_pass(job, slot, req.steps)
        audio, sr = gen.interpolate(G, a, b, req.steps, **common)
        _end_pass(job, slot, req.steps)
        for i, x in enumerate(audio):
            seed = a if i == 0 else b if i == req.steps - 1 else None
            _add_track(job, x, sr, f"{a} → {b}, step {i + 1}/{req.steps}", seed)
        return
    for seed in req.seeds:
        _start_pass(job, slot, 1)
        audio, sr = gen.generate(G, [seed], **common)
        _end_pass(job, slot, 1)
        _add_track(job, audio[0], sr, f"seed {seed}", seed)


def _start_pass(job: Job, slot: ModelSlot, tracks: int) -> None:
    job.pass_started = time.monotonic()
    rate = slot.seconds_per_sample
    job.expected_s = rate * job.samples * tracks if rate else None


def _end_pass(job: Job, slot: ModelSlot, tracks: int) -> None:
    assert job.pass_started is not None, "_end_pass without _start_pass"
    rate = (time.monotonic() - job.pass_started) / (job.samples * tracks)
    old = slot.seconds_per_sample
    slot.seconds_per_sample = rate if old is None else 0.5 * (old + rate)
    job.pass_started = job.expected_s = None  # between passes progress counts finished tracks only (≤ 1)


def _add_track(job: Job, x, sr: int, label: str, seed: int | None) -> None:
    """Write one ``[C, T]`` track's WAV and spectrogram, then publish it on the job."""
    from mp3net.audio import peak_db, write_audio

    i = len(job.tracks)
    wav = write_audio(job.folder / f"{i}.wav", x, sr, format="wav")
    png = write_spectrogram(job.folder / f"{i}.png", x, sr, label)
    files = {"wav": wav, "png": png}
    clipped = int((x.abs() > 1.0).sum())
    job.tracks.append(Track(i, label, seed, x.shape[-1], sr, x.shape[0], files, peak_db(x), clipped))


SPEC_FFT = 512
SPEC_MAX_FRAMES = 4000  # image columns: bounds time and memory for hour-long tracks


def write_spectrogram(path: Path, x, sr: int, title: str) -> Path:
    """A compact log-magnitude spectrogram PNG of the channel mean of ``[C, T]`` audio.

    The hop grows with the length (at least ``SPEC_FFT/4``) so that any track gives at most
    ``SPEC_MAX_FRAMES`` STFT frames: a 10-minute track costs what a 1-minute one does.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from mp3net.utils import atomic_write_bytes

    mono = torch.as_tensor(x).float().mean(0)
    hop = max(SPEC_FFT // 4, math.ceil(mono.numel() / SPEC_MAX_FRAMES))
    S = torch.stft(mono, SPEC_FFT, hop_length=hop, window=torch.hann_window(SPEC_FFT), return_complex=True)
    db = 20 * torch.log10(S.abs() + 1e-6)
    top = float(db.max())
    fig, ax = plt.subplots(figsize=(8, 3))
    try:
        ax.imshow(
            db.numpy(),
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=top - 90,
            vmax=top,
            extent=(0, mono.numel() / sr, 0, sr / 2000),
        )
        ax.set_xlabel("s")
        ax.set_ylabel("kHz")
        ax.set_title(title)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        return atomic_write_bytes(path, buf.getvalue())
    finally:
        plt.close(fig)


def encoded(track: Track, fmt: str) -> Path:
    """The track's file in ``fmt`` (wav, flac, ogg, png), encoding FLAC/Ogg from the WAV on first use."""
    if fmt not in track.files:
        from mp3net.audio import read_audio, write_audio

        x, sr = read_audio(track.files["wav"])
        track.files[fmt] = write_audio(track.files["wav"].with_suffix(f".{fmt}"), x, sr, format=fmt)
    return track.files[fmt]
