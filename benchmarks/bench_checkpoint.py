"""What a checkpoint costs training: the snapshot the training thread waits for, the background write,
and how much a concurrent write slows the training thread's compute.

The state is a full training state of a preset (G, D, EMA G, both Adams with their moments), as
``Trainer.state_dict`` builds it; the write is ``CheckpointWriter``'s (checkpoint + export, fsynced).

Run: ``python benchmarks/bench_checkpoint.py [--preset 95s] [--dir /path/on/the/run/disk]``; the result
replaces the bench_checkpoint section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from datetime import datetime, timezone

import torch

from _common import cpu_model, write_section
from mp3net import preset
from mp3net.model import Discriminator, Generator
from mp3net.train import checkpoint as ckpt
from mp3net.utils import keep_freed_memory


def _state(name: str) -> tuple[dict, dict]:
    cfg = preset(name)
    G, D = Generator(cfg.model), Discriminator(cfg.model)
    G_ema = copy.deepcopy(G)
    opts = []
    for net in (G, D):
        opt = torch.optim.Adam(net.parameters())
        for p in net.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()  # creates the moments
        opts.append(opt)
    live = {
        "format": "mp3net-train",
        "step": 1,
        "config": cfg.to_dict(),
        "G": G.state_dict(),
        "D": D.state_dict(),
        "G_ema": G_ema.state_dict(),
        "opt_G": opts[0].state_dict(),
        "opt_D": opts[1].state_dict(),
    }
    return live, {"cfg": cfg}


def _gemm_step(a: torch.Tensor) -> torch.Tensor:
    return torch.tanh(a @ a)


def _seconds_per_step(n: int) -> float:
    """Wall time of one unit of GEMM work on the calling thread (the stand-in for a training step)."""
    a = torch.randn(768, 768)
    t0 = time.perf_counter()
    for _ in range(n):
        a = _gemm_step(a)
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="95s")
    ap.add_argument("--dir", default=None, help="where to write (default: a temporary folder)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()  # as the trainer does on CPU: a later snapshot reuses the memory of an earlier one
    live, extra = _state(args.preset)
    size = sum(t.numel() * t.element_size() for t in _tensors(live))
    snaps, writes, alone, during = [], [], [], []
    with tempfile.TemporaryDirectory(dir=args.dir) as run:
        writer = ckpt.CheckpointWriter(run, keep_last=1)
        for step in range(1, args.rounds + 1):
            t0 = time.perf_counter()
            state = ckpt.snapshot({**live, "step": step})
            snaps.append(time.perf_counter() - t0)
            alone.append(_seconds_per_step(50))
            a, n = torch.randn(768, 768), 0
            t0 = time.perf_counter()
            writer.submit(state, step, extra["cfg"], state["G_ema"])
            while writer.busy:  # compute on the training thread for as long as the write runs
                a, n = _gemm_step(a), n + 1
            elapsed = time.perf_counter() - t0
            writer.wait()
            writes.append(elapsed)
            during.append(elapsed / max(n, 1))
        on_disk = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(run) for f in fs)

    def med(x: list[float]) -> float:
        return sorted(x)[len(x) // 2]

    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    slow = med(during) / med(alone) - 1
    section = "\n".join(
        [
            "<!-- bench_checkpoint:start -->",
            f"### bench_checkpoint — {when}",
            "",
            f"Machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}; shared machine "
            f"(load average {os.getloadavg()[0]:.1f}), medians of {args.rounds} rounds, training thread and "
            f"writer on one thread each. State: preset `{args.preset}`, {size / 1e9:.2f} GB of tensors "
            f"(checkpoint + export {on_disk / 1e9:.2f} GB on disk).",
            "",
            "| what | median |",
            "|---|---|",
            f"| snapshot to CPU memory (training waits for this) | {med(snaps):.2f} s |",
            f"| background write, checkpoint + export, fsynced | {med(writes):.2f} s |",
            f"| training-thread compute while the write runs | {100 * slow:+.0f} % time |",
            "",
            "The slowdown during the write is the two threads sharing this machine's cores (a GEMM thread in "
            "place of the writer slows the training thread as much); with a spare core the write costs the "
            "training thread nothing but the snapshot.",
            "",
            f"Reproduce: `python benchmarks/bench_checkpoint.py --preset {args.preset}`.",
            "<!-- bench_checkpoint:end -->",
        ]
    )
    print(section)
    write_section("bench_checkpoint", section)


def _tensors(obj):
    if torch.is_tensor(obj):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


if __name__ == "__main__":
    main()
