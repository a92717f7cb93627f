"""Full-state training checkpoints and the generator-only export.

A checkpoint (``RUN_DIR/checkpoints/step-00001000.pt``) is one ``torch.save`` of a dict of plain tensors,
numbers and strings (loadable with ``weights_only=True``): G, D and EMA-G weights, both optimisers, the
step counters, every random-number generator state (per rank) and the config. It is written to a temporary
file and renamed, so a crash or kill -9 mid-write leaves the previous checkpoints intact; weights that are
not finite are never written.

The export (``RUN_DIR/export/``: ``config.json`` + ``model.safetensors``) holds only the generator (EMA
weights when EMA is on), which is what ``mp3net generate`` loads.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mp3net.artifacts import (  # noqa: F401 - the reading side, re-exported for the writers' callers
    CKPT_DIR,
    EXPORT_DIR,
    NoReadableCheckpoint,
    _warn,
    checkpoint_path,
    export_step,
    list_checkpoints,
    load_checkpoint,
    load_export,
    load_latest,
    source_config,
)
from mp3net.config import Config, ConfigError
from mp3net.utils import MP3NetError, atomic_write, first_line, plain_permissions


class NonFiniteWeights(MP3NetError):
    """Refused to write a checkpoint or export because some weights are NaN or Inf."""


def _non_finite(tensors: dict[str, torch.Tensor]) -> list[str]:
    return [k for k, v in tensors.items() if torch.is_floating_point(v) and not bool(torch.isfinite(v).all())]


def remove_partial(run_dir: str | Path) -> int:
    """Delete what an interrupted checkpoint or export write left behind; returns how many.

    A kill between the export's two renames leaves no ``export/`` but its predecessor as ``.export.old``:
    that one is put back.
    """
    run = Path(run_dir)
    d = run / CKPT_DIR
    n = 0
    if d.is_dir():
        for p in d.glob(".step-*.tmp"):
            p.unlink(missing_ok=True)
            n += 1
    old = run / f".{EXPORT_DIR}.old"
    if old.is_dir():
        if not (run / EXPORT_DIR).exists():
            os.replace(old, run / EXPORT_DIR)
        else:
            shutil.rmtree(old, ignore_errors=True)
        n += 1
    for p in run.glob(f".{EXPORT_DIR}.*.tmp") if run.is_dir() else []:
        shutil.rmtree(p, ignore_errors=True)
        n += 1
    return n


def save_checkpoint(run_dir: str | Path, state: dict[str, Any], step: int, keep_last: int) -> Path:
    """Atomically write ``state`` as the checkpoint of ``step`` and delete all but the ``keep_last`` newest.

    Raises :class:`NonFiniteWeights` (and writes nothing) if any model weight is not finite.
    """
    for key in ("G", "D", "G_ema"):
        bad = _non_finite(state.get(key) or {})
        if bad:
            raise NonFiniteWeights(
                f"not writing checkpoint of step {step}: non-finite weights in {key} ({bad[0]}, ...)"
            )
    path = checkpoint_path(run_dir, step)
    atomic_write(path, lambda p: torch.save(state, p))
    for _, old in list_checkpoints(run_dir)[: -max(1, keep_last)]:
        old.unlink(missing_ok=True)
    return path


def check_compatible(
    saved: dict[str, Any], cfg: Config, where: str | Path, may_differ: frozenset[str] = frozenset()
) -> None:
    """Raise a one-line :class:`MP3NetError` when a checkpoint's model config differs from ``cfg``'s in a
    field outside ``may_differ``."""
    try:
        old = Config.from_dict(saved)
    except ConfigError as e:
        raise MP3NetError(f"{where} holds an unreadable config: {e}") from None
    a, b = old.model.__dict__, cfg.model.__dict__
    diff = [
        f"model.{k}: {a[k]!r} there vs {b[k]!r} here" for k in a if a[k] != b.get(k) and k not in may_differ
    ]
    if diff:
        raise MP3NetError(
            f"{where} was trained with a different model config ({'; '.join(diff[:3])}): "
            "use another --run directory or the same preset/overrides"
        )


# ---------------------------------------------------------------------------------------------------------
# generator-only export
# ---------------------------------------------------------------------------------------------------------
def export_generator(out_dir: str | Path, cfg: Config, weights: dict[str, torch.Tensor], step: int) -> Path:
    """Write ``out_dir/config.json`` and ``out_dir/model.safetensors`` (generator weights) atomically.

    The files are written into a fresh sibling folder that then replaces ``out_dir``, so a reader sees
    either the old export or the new one, never a config of one with the weights of another.
    """
    from safetensors.torch import save_file

    bad = _non_finite(weights)
    if bad:
        raise NonFiniteWeights(f"not exporting step {step}: non-finite generator weights ({bad[0]}, ...)")
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        tensors = {  # a sampler's neighbour indices stay integers
            k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous()
            for k, v in weights.items()
        }
        meta = {"format": "mp3net-generator", "step": str(step), "config": cfg.to_json()}
        save_file(tensors, tmp / "model.safetensors", metadata=meta)
        cfg.save(tmp / "config.json")
        for p in tmp.iterdir():
            plain_permissions(p)  # a shared export: readable by others, as cp'ing it keeps the modes
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        plain_permissions(tmp)
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def refresh_export(run_dir: str | Path, cfg: Config, state: dict[str, Any], step: int) -> None:
    """Bring ``run_dir/export`` up to a GAN checkpoint's ``state`` when a kill came between the two writes."""
    export = Path(run_dir) / EXPORT_DIR
    if export_step(export) != step:
        weights = state["G_ema"] if state.get("G_ema") is not None else state["G"]
        export_generator(export, cfg, weights, step)


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2) + "\n"))


# ---------------------------------------------------------------------------------------------------------
# writing in the background
# ---------------------------------------------------------------------------------------------------------
def snapshot(obj: Any) -> Any:
    """A copy of a nested state (dicts, lists, tuples of tensors and plain values) with every tensor copied
    to the CPU: training may go on changing the originals in place while the copy is written."""
    if torch.is_tensor(obj):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v) for v in obj)
    return obj


class CheckpointWriter:
    """Writes a checkpoint and then the export on a background thread, one write at a time.

    :meth:`submit` first waits for the previous write, so at most one is in flight and a crash loses at
    most one checkpoint interval plus one write. A failed write (disk full, ...) is raised as a one-line
    :class:`MP3NetError` by the next :meth:`check`, :meth:`submit` or :meth:`wait`; the previous
    checkpoint and export stay intact (both are written to temporary names and renamed). Non-finite
    weights are reported through ``say`` and not written, as :func:`save_checkpoint` does.
    """

    def __init__(self, run_dir: str | Path, keep_last: int, say: Callable[[str], None] = _warn) -> None:
        self.run_dir, self.keep_last, self.say = Path(run_dir), keep_last, say
        self._thread: threading.Thread | None = None
        self._error: MP3NetError | None = None
        self.last_written: int | None = None  # step of the newest checkpoint this writer completed

    def submit(self, state: dict[str, Any], step: int, cfg: Config, export: dict[str, torch.Tensor]) -> None:
        """Write ``state`` (a :func:`snapshot`, not to be changed afterwards) and the generator weights
        ``export`` of ``step`` in the background."""
        self.wait()
        self._thread = threading.Thread(
            target=self._write, args=(state, step, cfg, export), name="mp3net-checkpoint"
        )
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def failed(self) -> bool:
        """A finished write failed (:meth:`check` raises its error)."""
        return self._error is not None and not self.busy

    def _write(self, state: dict[str, Any], step: int, cfg: Config, export: dict[str, torch.Tensor]) -> None:
        what = "checkpoint"
        try:
            save_checkpoint(self.run_dir, state, step, self.keep_last)
            what = "export"
            export_generator(self.run_dir / EXPORT_DIR, cfg, export, step)
            self.last_written = step
        except NonFiniteWeights as e:
            self.say(str(e))
        except Exception as e:  # disk full, file too large, permissions: reported by the training thread
            self._error = self._failure(what, step, e)

    def _failure(self, what: str, step: int, e: Exception) -> MP3NetError:
        reason = (e.strerror if isinstance(e, OSError) else None) or first_line(e)
        if "inline_container" in reason or "PytorchStreamWriter" in reason:
            # torch's zip writer reports a short write without its errno
            free = shutil.disk_usage(self.run_dir).free / 1e9
            reason = f"the write failed: disk full or a file-size limit, {free:.2f} GB free"
        if what == "checkpoint":
            prev = [p.name for s, p in list_checkpoints(self.run_dir) if s != step]
            kept = f"{prev[-1]} is intact" if prev else "no earlier checkpoint exists"
            return MP3NetError(f"cannot write the checkpoint of step {step} ({reason}); {kept}")
        return MP3NetError(
            f"cannot write the export of step {step} ({reason}); its checkpoint is written, the previous "
            "export is intact"
        )

    def check(self) -> None:
        """Raise the error of a finished write that failed."""
        if self._error is not None and not self.busy:
            err, self._error = self._error, None
            raise err

    def wait(self) -> None:
        """Wait for the write in flight; raise its error if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.check()
