"""Run logging without a cloud account: TensorBoard event files (``RUN_DIR/tb``), the same scalars as JSON
lines in ``RUN_DIR/metrics.jsonl``, and periodic samples (stereo WAV, MDCT amplitude and spectrogram
images drawn by :mod:`mp3net.plots`) both in TensorBoard and as files under
``RUN_DIR/samples/step-XXXXXXXX/``.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mp3net.utils import atomic_write, atomic_write_bytes

METRICS = "metrics.jsonl"


def _truncate_jsonl(path: Path, last_step: int) -> None:
    """Drop the lines of steps after ``last_step`` (logged by a run that was then resumed from earlier)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= last_step:
                keep.append(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
    atomic_write(path, lambda p: p.write_text("".join(x + "\n" for x in keep)))


def _truncate_events(tb_dir: Path, last_step: int) -> None:
    """Rewrite the TensorBoard event files of ``tb_dir`` without the events of steps after ``last_step``
    (and without a record torn by a crash); files with nothing to drop are left as they are."""
    if not tb_dir.is_dir():
        return
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    for path in sorted(tb_dir.glob("events.out.tfevents.*")):
        records = list(RawEventFileLoader(str(path)).Load())
        keep = [r for r in records if Event.FromString(r).step <= last_step]
        if len(keep) == len(records) and _ends_cleanly(path, records):
            continue

        def write(tmp: Path, keep: list[bytes] = keep) -> None:
            with open(tmp, "wb") as f:
                w = RecordWriter(f)
                for r in keep:
                    w.write(r)

        atomic_write(path, write)


def _ends_cleanly(path: Path, records: list[bytes]) -> bool:
    """Whether the file holds exactly ``records`` (no torn record at its end): 16 bytes of framing each."""
    return path.stat().st_size == sum(len(r) + 16 for r in records)


def _truncate_samples(samples_dir: Path, last_step: int) -> None:
    """Delete the sample folders of steps after ``last_step``."""
    for d in samples_dir.glob("step-*") if samples_dir.is_dir() else []:
        if d.name[5:].isdigit() and int(d.name[5:]) > last_step:
            shutil.rmtree(d, ignore_errors=True)


def truncate_logs(run_dir: str | Path, last_step: int) -> None:
    """Make a run's logs match the checkpoint it resumes from: the ``metrics.jsonl`` rows, TensorBoard
    events and sample folders of steps after ``last_step`` (logged by a run that was then killed) go."""
    run = Path(run_dir)
    _truncate_jsonl(run / METRICS, last_step)
    _truncate_events(run / "tb", last_step)
    _truncate_samples(run / "samples", last_step)


def _stereo_wav(x: np.ndarray, sample_rate: int) -> bytes:
    """``[C, T]`` float in [-1, 1] → 16-bit WAV bytes."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(x.T, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


class RunLogger:
    """Scalars and samples of one run. Only the writing rank creates one with ``enabled=True``."""

    def __init__(self, run_dir: str | Path, start_step: int, enabled: bool = True) -> None:
        self.run_dir, self.enabled = Path(run_dir), enabled
        self.tb: Any = None  # a torch.utils.tensorboard.SummaryWriter while enabled and open
        if enabled:
            self._open(start_step)

    def _open(self, start_step: int) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        truncate_logs(self.run_dir, start_step)
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(self.run_dir / "tb"))
        self._jsonl = open(self.run_dir / METRICS, "a", buffering=1)  # closed in close()

    def rewind(self, step: int) -> None:
        """Drop what was logged after ``step`` (a rollback to that step's checkpoint) and go on logging."""
        if self.enabled:
            self.close()
            self._open(step)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: (float(v) if math.isfinite(float(v)) else None) for k, v in values.items()}
        for k, v in clean.items():
            if v is not None:
                self.tb.add_scalar(k, v, step)
        self._jsonl.write(json.dumps({"step": step, "time": round(time.time(), 3), **clean}) + "\n")

    def samples(
        self, step: int, A: torch.Tensor, audio: torch.Tensor, sample_rate: int, tag: str = "fake"
    ) -> Path | None:
        """Log ``A`` ``[n, C, M, K]`` and its audio ``[n, C, T]``: WAV + images to TensorBoard and files."""
        if not self.enabled:
            return None
        from tensorboard.compat.proto.summary_pb2 import Summary

        from mp3net.plots import mdct_figure, png_bytes, spectrogram_figure

        out = self.run_dir / "samples" / f"step-{step:08d}"
        out.mkdir(parents=True, exist_ok=True)
        writer = self.tb._get_file_writer()
        for i in range(A.shape[0]):
            x = audio[i].detach().float().cpu().numpy()
            wav = _stereo_wav(x, sample_rate)
            atomic_write_bytes(out / f"{tag}-{i}.wav", wav)
            au = Summary.Audio(
                sample_rate=sample_rate,
                num_channels=x.shape[0],
                length_frames=x.shape[1],
                encoded_audio_string=wav,
                content_type="audio/wav",
            )
            writer.add_summary(Summary(value=[Summary.Value(tag=f"audio/{tag}_{i}", audio=au)]), step)
            for kind, draw in (("mdct", mdct_figure), ("spectrogram", spectrogram_figure)):
                fig = draw(A[i], sample_rate, f"{tag} {i}, step {step}")
                atomic_write_bytes(out / f"{tag}-{i}-{kind}.png", png_bytes(fig))
                self.tb.add_figure(f"{kind}/{tag}_{i}", fig, step, close=False)
        self.tb.flush()
        return out

    def flush(self) -> None:
        if self.enabled:
            self.tb.flush()
            self._jsonl.flush()

    def close(self) -> None:
        if self.enabled and self.tb is not None:
            self.tb.close()
            self._jsonl.close()
            self.tb = None
