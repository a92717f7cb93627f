"""The models a page offers: the generator of each, reloaded when a watched run's export changes, and the
run's training curves from its ``metrics.jsonl``.

A model given as a run directory (or an export folder) is *watched*: :meth:`ModelSlot.signature` is a
cheap ``stat`` of its export and newest checkpoint, polled by the server; when it changes the slot's
worker reloads the generator between two jobs, so a job never sees half a model. A run that has no
export or checkpoint yet is listed as *waiting* and becomes ready when training writes the first one.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mp3net import artifacts
from mp3net import generate as gen
from mp3net.model import Generator
from mp3net.utils import MP3NetError, first_line

METRICS_FILE = "metrics.jsonl"  # written by mp3net.train.logging.RunLogger
CURVE_KEY = re.compile(r"(^|[/_])(tonality|fd|frechet)([/_]|$)", re.IGNORECASE)
MAX_CURVE_POINTS = 2000  # per series sent to the page; longer series are thinned evenly


def _stat_key(p: Path) -> tuple[int, int, int] | None:
    try:
        s = p.stat()
    except OSError:
        return None
    return (s.st_mtime_ns, s.st_size, s.st_ino)


def _is_run_dir(p: Path) -> bool:
    return p.is_dir() and any((p / n).exists() for n in ("checkpoints", "export", METRICS_FILE, "tb"))


def _newest_checkpoint(run: Path) -> str | None:
    ckpts = sorted((run / "checkpoints").glob("step-*.pt")) if (run / "checkpoints").is_dir() else []
    return ckpts[-1].name if ckpts else None


def _export_step(folder: Path) -> int | None:
    """The training step recorded in an export's safetensors metadata (None when absent)."""
    try:
        from safetensors import safe_open

        with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
            step = (f.metadata() or {}).get("step")
        return int(step) if step is not None else None
    except Exception:  # a file being replaced or without metadata: the step is only informative
        return None


def _seconds_per_sample(G) -> float:
    """Generation speed of one training clip (which also warms the kernels up), for progress estimates."""
    t0 = time.perf_counter()
    gen.generate(G, [0])
    return (time.perf_counter() - t0) / G.cfg.clip_samples


def _slug(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "model"
    name, i = base, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    return name


@dataclass
class MetricsReader:
    """Incremental reader of a run's ``metrics.jsonl``: tonality and FD series ``{key: [[step, v], ...]}``."""

    path: Path
    _offset: int = 0
    _series: dict[str, list[list[float]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def read(self) -> dict[str, list[list[float]]]:
        with self._lock:
            try:
                size = self.path.stat().st_size
            except OSError:
                self._offset, self._series = 0, {}
                return {}
            if size < self._offset:  # truncated after a resume: start over
                self._offset, self._series = 0, {}
            if size > self._offset:
                with open(self.path, "rb") as f:
                    f.seek(self._offset)
                    chunk = f.read(size - self._offset)
                end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next poll
                self._offset += end
                for line in chunk[:end].splitlines():
                    self._add(line)
            return {k: _thin(v, MAX_CURVE_POINTS) for k, v in self._series.items()}

    def _add(self, line: bytes) -> None:
        try:
            row = json.loads(line)
            step = int(row["step"])
        except (ValueError, KeyError, TypeError):
            return  # a line cut by a crash
        for k, v in row.items():
            if CURVE_KEY.search(k) and isinstance(v, (int, float)) and math.isfinite(v):
                self._series.setdefault(k, []).append([step, float(v)])


def _thin(points: list, n: int) -> list:
    if len(points) <= n:
        return list(points)
    idx = [round(i * (len(points) - 1) / (n - 1)) for i in range(n)]
    return [points[i] for i in idx]


class ModelSlot:
    """One model on the page: its source, loaded generator, status and (for runs) training curves.

    ``status`` is ``"ready"``, ``"waiting"`` (a run without a generator yet) or ``"error"`` (a watched
    model whose reload failed before it was ever loaded; a failed *re*load keeps the previous generator).
    Only the slot's worker thread calls :meth:`load`, so generation and reloading never overlap.
    """

    def __init__(self, source: str, id: str, device: str) -> None:
        self.source, self.id, self.device = source, id, device
        self.path: Path | None = None if source in artifacts.PRETRAINED_ALIASES else Path(source)
        if self.path is not None and not self.path.exists():
            self.path = None  # a shipped model's name
        self.watched = self.path is not None
        self.is_run = self.path is not None and _is_run_dir(self.path)
        self.metrics: MetricsReader | None = None
        if self.path is not None and self.is_run:
            self.metrics = MetricsReader(self.path / METRICS_FILE)
        self.G: Generator | None = None
        self.status, self.error, self.version = "waiting", "", 0
        self.step: int | None = None
        self.loaded_at: float | None = None
        self.parameters = 0
        self.seconds_per_sample: float | None = None  # measured generation speed, for progress estimates
        self.loaded_signature: tuple | None = None

    def signature(self) -> tuple | None:
        """What identifies the current weights on disk (None for a shipped model: never changes)."""
        if self.path is None:
            return None
        folder = self.path / "export" if (self.path / "export").is_dir() else self.path
        return (_stat_key(folder / "model.safetensors"), _newest_checkpoint(self.path))

    def load(self) -> None:
        """(Re)load the generator; a failure of a watched run keeps the old one and records the message."""
        sig = self.signature()
        try:
            G = gen.from_pretrained(self.source, self.device)
        except MP3NetError as e:
            self.loaded_signature = sig
            self.error = first_line(e)
            if self.G is None:
                self.status = "waiting" if self.is_run else "error"
            return
        self.seconds_per_sample = _seconds_per_sample(G)
        self.parameters = sum(p.numel() for p in G.parameters())
        self.step = self._step()
        self.G, self.loaded_signature, self.error, self.status = G, sig, "", "ready"
        self.version += 1
        self.loaded_at = time.time()

    def _step(self) -> int | None:
        """The training step of the weights just loaded: the export's, else the newest checkpoint's."""
        if self.path is None:
            return None
        if (self.path / "export" / "model.safetensors").exists():
            return _export_step(self.path / "export")
        if (self.path / "model.safetensors").exists():
            return _export_step(self.path)
        ckpt = _newest_checkpoint(self.path)
        return int(ckpt[5:-3]) if ckpt else None

    def changed_on_disk(self) -> bool:
        return self.watched and self.signature() != self.loaded_signature

    def info(self) -> dict[str, Any]:
        """The record the page shows for this model."""
        d: dict[str, Any] = {
            "id": self.id,
            "source": self.source,
            "status": self.status,
            "error": self.error,
            "watched": self.watched,
            "run": self.is_run,
            "step": self.step,
            "version": self.version,
            "loaded_at": self.loaded_at,
        }
        if self.G is not None:
            m = self.G.cfg
            d.update(
                sample_rate=m.sample_rate,
                channels=m.channels,
                clip_seconds=m.clip_seconds,
                parameters=self.parameters,
            )
        return d


def make_slots(sources: list[str], device: str) -> list[ModelSlot]:
    """One slot per model source (default: the shipped model), with unique URL-safe ids.

    Raises:
        MP3NetError: a source that is neither an existing path nor a shipped model's name.
    """
    taken: set[str] = set()
    slots = []
    for src in sources or ["pretrained"]:
        p = Path(src)
        if not p.exists():
            gen.resolve_model_path(src)  # a one-line error naming the shipped models
        name = p.resolve().name if p.exists() else src
        if name == "export" and p.exists():
            name = p.resolve().parent.name
        slot = ModelSlot(src, _slug(name, taken), device)
        taken.add(slot.id)
        slots.append(slot)
    return slots
