"""One run loop for every trainer (audiocraft's ``StandardSolver``; docs/training.md#the-run-loop).

:class:`Solver` holds what GAN training (:class:`~mp3net.train.gan.Trainer`) and autoencoder pretraining
(:class:`~mp3net.train.pretrain.Pretrainer`) share: signals (Ctrl-C and SIGTERM finish the step, then
checkpoint), the progress bar over the real work, the checkpoint cadence, resume, the rollback after
non-finite steps, and the scalars written through :class:`~mp3net.train.logging.RunLogger`. A trainer
implements its step (:meth:`Solver.train_step`), its state (:meth:`Solver.save`, :meth:`Solver.load_state`)
and what it does between steps (:meth:`Solver.periodic`).

Under torchrun every rank runs the loop; the collectives (:mod:`mp3net.train.distributed`) keep the ranks in
step: a stop request, a late checkpoint or a failed checkpoint write on one rank stops or checkpoints all.
"""

from __future__ import annotations

import abc
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mp3net import ops
from mp3net.train import checkpoint as ckpt
from mp3net.train import distributed as ddp
from mp3net.train.logging import RunLogger
from mp3net.utils import MP3NetError

MAX_BAD_STEPS = 8  # consecutive non-finite steps before rolling back to the last checkpoint
MAX_ROLLBACKS = 3  # rollbacks before giving up


class Solver(abc.ABC):
    """The run loop. Subclasses set the attributes of :meth:`setup_run` and implement the abstract methods.

    ``run(total)`` trains until ``step == total``, a time budget has passed or a stop request came, then
    checkpoints; running the same command again resumes exactly where it stopped.
    """

    name = "train"  # the progress bar's label
    # where the latest checkpoint is read from for a rollback (a subclass may keep them elsewhere)
    checkpoint_dir: Path
    # how often to log, checkpoint (steps) and checkpoint at the latest (minutes); 0 = never
    log_every = 1
    ckpt_every = 0
    ckpt_minutes = 0.0

    def setup_run(
        self,
        run_dir: Path,
        device: torch.device,
        rank: int = 0,
        world: int = 1,
        progress: bool = True,
        hooks: list[Callable[[Any], None]] | None = None,
    ) -> None:
        """The loop's state; call before loading a checkpoint."""
        self.run_dir, self.device, self.rank, self.world = run_dir, device, rank, world
        self.is_main = rank == 0
        self.progress, self.hooks = progress and self.is_main, list(hooks or [])
        self.step = 0
        self.rollbacks = 0
        self.bad_steps = 0
        self.last: dict[str, float] = {}
        self.resumed_from: Path | None = None
        self._stop = False
        self._last_ckpt_step = -1
        self._ckpt_clock = time.monotonic()
        self.writer = ckpt.CheckpointWriter(run_dir, self.keep_last(), self.say)

    def resolve_amp(self, setting: str) -> bool:
        """``train.amp`` → whether to train under bf16 autocast here; a warning where bf16 is emulated."""
        amp = ops.resolve_amp(setting, self.device)
        if amp and not ops.bf16_is_fast(self.device):
            self.say(
                f"warning: train.amp=bf16 on a {self.device.type} without native bf16 (CPUs: AVX512_BF16 or "
                "AMX) is emulated and many times slower than float32; -o train.amp=auto picks float32 here"
            )
        return amp

    def start_logging(self, log_dir: Path) -> None:
        """Scalars and samples go to ``log_dir`` (rank 0), from the step the run starts at."""
        self.logger = RunLogger(log_dir, self.step, enabled=self.is_main)

    # ---- what a trainer implements -----------------------------------------------------------------------
    @abc.abstractmethod
    def keep_last(self) -> int:
        """How many checkpoints the run keeps."""

    @abc.abstractmethod
    def train_step(self) -> dict[str, float]:
        """One step; the stats logged, with ``ok`` = 0 when the step was skipped (non-finite)."""

    @abc.abstractmethod
    def save(self) -> None:
        """Checkpoint the current step (collective), through :attr:`writer` or at once."""

    @abc.abstractmethod
    def load_state(self, state: dict[str, Any], where: Path) -> None:
        """Continue from a checkpoint's state (resume and rollback)."""

    @abc.abstractmethod
    def reseed(self) -> None:
        """Fresh random streams after a rollback (or the same batch and noise would diverge again)."""

    def periodic(self) -> None:  # noqa: B027 - an optional hook, nothing by default
        """What runs after a finished step besides logging and checkpoints (samples, evaluations)."""

    def postfix(self) -> str:
        """The progress bar's text after the bar."""
        return ""

    # ---- messages and signals ----------------------------------------------------------------------------
    def say(self, msg: str) -> None:
        if self.is_main:
            from tqdm import tqdm

            tqdm.write(msg, file=sys.stderr)

    def request_stop(self) -> None:
        """Finish the current step, then checkpoint and return from :meth:`run`."""
        self._stop = True

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop:  # a second Ctrl-C: stop now (the last checkpoint stays valid)
            raise KeyboardInterrupt
        self._stop = True
        self.say(
            f"{signal.Signals(signum).name}: finishing step {self.step + 1}, then checkpointing "
            "(press Ctrl-C again to abort without)"
        )

    def _should_stop(self) -> bool:
        return ddp.any_rank(self._stop, self.device) if self.world > 1 else self._stop

    # ---- cadence -----------------------------------------------------------------------------------------
    def _checkpoint_due(self) -> bool:
        """Every :attr:`ckpt_every` steps or :attr:`ckpt_minutes` after the last, whichever comes first."""
        if self.ckpt_every > 0 and self.step % self.ckpt_every == 0:
            return True
        if self.ckpt_minutes <= 0:
            return False
        late = time.monotonic() - self._ckpt_clock >= 60.0 * self.ckpt_minutes
        return ddp.any_rank(late, self.device) if self.world > 1 else late

    def checkpointed(self) -> None:
        """Mark the current step as checkpointed (:meth:`save` calls it)."""
        self._last_ckpt_step = self.step
        self._ckpt_clock = time.monotonic()

    def check_writer(self) -> None:
        """Raise a failed background write's error on every rank: under torchrun only rank 0 writes, and a
        rank that kept training would wait forever in its next collective."""
        failed = self.writer.failed  # read once: a write may finish while the ranks compare notes
        if self.world > 1 and ddp.any_rank(failed, self.device) and not failed:
            raise MP3NetError("training stopped: rank 0 could not write its checkpoint (see its message)")
        if failed:
            self.writer.check()

    def finish_writes(self) -> None:
        """Wait for the last checkpoint write; its failure stops every rank, as :meth:`check_writer`."""
        error: MP3NetError | None = None
        try:
            self.writer.wait()
        except MP3NetError as e:
            error = e
        if self.world > 1 and ddp.any_rank(error is not None, self.device) and error is None:
            raise MP3NetError("training stopped: rank 0 could not write its checkpoint (see its message)")
        if error is not None:
            raise error

    # ---- resume and rollback -----------------------------------------------------------------------------
    def resume(self, require: bool) -> dict[str, Any] | None:
        """Continue from the newest readable checkpoint (one warning line when it is not the newest file;
        a run whose checkpoints are all unreadable stops with one line). Returns its state, or None."""
        found = ckpt.load_latest(self.checkpoint_dir, map_location=self.device, warn=self.say)
        if found is None:
            if require:
                raise MP3NetError(f"--resume: no checkpoint in {self.checkpoint_dir}")
            return None
        state, path = found
        self.load_state(state, path)
        self.resumed_from = path
        self._last_ckpt_step = self.step
        return state

    def rollback(self) -> None:
        """Back to the last checkpoint with fresh random streams, after MAX_BAD_STEPS non-finite steps."""
        self.finish_writes()
        found = ckpt.load_latest(self.checkpoint_dir, map_location=self.device)  # every rank reads it
        if found is None:
            raise MP3NetError(
                f"training diverged (non-finite losses) at step {self.step}, before any checkpoint"
            )
        if self.rollbacks >= MAX_ROLLBACKS:
            raise MP3NetError(
                f"training keeps diverging at step {self.step} after {self.rollbacks} rollbacks"
            )
        state, path = found
        rollbacks = self.rollbacks + 1
        self.load_state(state, path)
        self._last_ckpt_step = self.step
        self.logger.rewind(self.step)  # the diverged steps are trained again: logged once
        self.rollbacks = rollbacks
        self.reseed()
        self.bad_steps = 0
        self.say(f"rolled back to {path.name} (step {self.step}) with fresh random streams")

    # ---- the loop ----------------------------------------------------------------------------------------
    def _progress_bar(self, total: int, seconds: float | None) -> Any:
        """A tqdm bar over the real work: the steps to go, or the time budget when there is one."""
        if not self.progress or self.step >= total:
            return None
        from tqdm import tqdm

        if seconds is None:
            return tqdm(total=total, initial=self.step, unit="it", dynamic_ncols=True, desc=self.name)
        fmt = "{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} of the time budget{postfix}"
        return tqdm(total=round(seconds), unit="s", dynamic_ncols=True, desc=self.name, bar_format=fmt)

    def _after_step(self, stats: dict[str, float], bar: Any, elapsed: float, seconds: float | None) -> None:
        """Log, show, run the periodic work and checkpoint after a finished step."""
        self.bad_steps = 0
        stats = ddp.allreduce_mean(stats, self.world, self.device)
        self.last.update(stats)
        if seconds is not None and elapsed >= seconds:
            self._stop = True
        if bar is not None:
            bar.update(1 if seconds is None else min(round(elapsed), bar.total) - bar.n)
            bar.set_postfix_str(self.postfix(), refresh=False)
        if self.step % max(1, self.log_every) == 0 or self.step == 1:
            self.logger.scalars(self.step, dict(self.last))
        try:
            self.periodic()
        except Exception:
            # the step itself is complete: keep it before the error ends the run
            if self._last_ckpt_step != self.step:
                self.save()
                self.writer.wait()
            raise
        if self._checkpoint_due():
            self.save()
        self.check_writer()
        for hook in self.hooks:
            hook(self)

    def run(self, total_steps: int, seconds: float | None = None) -> int:
        """Train until ``step == total_steps``, ``seconds`` of wall time have passed (at least one step), or
        a stop request. Returns the step reached."""
        total = int(total_steps)
        handlers = {}
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        bar = self._progress_bar(total, seconds)
        t_start = self._ckpt_clock = time.monotonic()
        if self.resumed_from is not None:
            self.say(f"resumed from {self.resumed_from} at step {self.step}")
        try:
            while self.step < total and not self._should_stop():
                stats = self.train_step()
                if stats.pop("ok", 1.0) == 0.0:
                    self.bad_steps += 1
                    self.say(f"step {self.step}: non-finite loss or gradient; update skipped")
                    if self.bad_steps >= MAX_BAD_STEPS:
                        self.rollback()
                    continue
                self._after_step(stats, bar, time.monotonic() - t_start, seconds)
        finally:
            if bar is not None:
                bar.close()
            for sig, h in handlers.items():
                signal.signal(sig, h)
        if self._last_ckpt_step != self.step:
            self.save()
        self.finish_writes()
        if self._stop and (seconds is None or time.monotonic() - t_start < seconds):
            self.say(f"stopped at step {self.step}; checkpoint written, resume by running the same command")
        self.logger.flush()
        return self.step

    def close(self) -> None:
        try:
            self.writer.wait()
        finally:
            self.logger.close()
        if self.world > 1:
            ddp.close()
