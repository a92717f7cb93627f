"""Inference speed of ``mp3net generate``: model load time, one training clip, and a 5-minute stereo track.

Uses the shipped model (``pretrained``) when present, else a randomly initialised ``tiny`` generator (same
cost). Each measurement is the median of ``--rounds`` runs, with 1 and 2 torch threads. Results go into
benchmarks/README.md between the ``<!-- bench_generate:start -->`` / ``<!-- bench_generate:end -->`` markers.

    python benchmarks/bench_generate.py [--rounds 3] [--threads 1 2] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from mp3net import generate as gen
from mp3net.config import preset
from mp3net.model import Generator
from mp3net.utils import atomic_write_text

START, END = "<!-- bench_generate:start -->", "<!-- bench_generate:end -->"
README = Path(__file__).resolve().parent / "README.md"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def timed(f, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run(threads: list[int], rounds: int) -> tuple[str, list[str]]:
    if "tiny-chorales" in gen.pretrained_names():
        source = "pretrained (tiny-chorales)"
        t_load = timed(lambda: gen.load_generator("pretrained"), rounds)
        G, _ = gen.load_generator("pretrained")
    else:
        source = "random tiny generator (no shipped model found)"
        t_load = float("nan")
        torch.manual_seed(0)
        G = Generator(preset("tiny").model).eval()
    m = G.cfg
    rows = []
    for n in threads:
        torch.set_num_threads(n)
        gen.generate(G, [0])  # warm-up
        t_clip = timed(lambda: gen.generate(G, [0]), rounds)
        t_batch = timed(lambda: gen.generate(G, list(range(8)), batch_size=8), rounds)
        t_long = timed(lambda: gen.generate(G, [0], duration=300.0), rounds)
        rows.append(
            f"| {n} | {t_clip * 1000:.0f} ms ({m.clip_seconds / t_clip:.0f}×) "
            f"| {t_batch:.2f} s ({8 * m.clip_seconds / t_batch:.0f}×) "
            f"| {t_long:.2f} s ({300 / t_long:.0f}×) |"
        )
    return source, [f"model load: {t_load:.2f} s", *rows]


def render(source: str, rows: list[str], rounds: int) -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    m = preset("tiny").model
    return "\n".join(
        [
            START,
            f"### bench_generate — {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
            "",
            f"Machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, Python "
            f"{platform.python_version()}; load average at the end {load[0]:.1f} (shared machine; medians of "
            f"{rounds} runs).",
            "",
            f"Model: {source}; {m.sample_rate} Hz stereo, clip {m.clip_seconds:.2f} s. "
            "The 5-minute track is one pass over a latent path (one anchor latent per clip, slerp between "
            "neighbours) with the widest "
            "blocks in 16384-frame tiles. ×N = seconds of audio per second of wall time. "
            f"{rows[0]}.",
            "",
            "| threads | one clip | 8 clips, batch 8 | 5-minute stereo track |",
            "|---|---|---|---|",
            *rows[1:],
            "",
            "Reproduce: `python benchmarks/bench_generate.py`.",
            END,
        ]
    )


def write_section(section: str) -> None:
    text = README.read_text() if README.exists() else "# Benchmarks\n\n"
    if START in text and END in text:
        before, rest = text.split(START, 1)
        text = before + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    atomic_write_text(README, text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--no-write", action="store_true", help="print only, leave benchmarks/README.md alone")
    args = p.parse_args()
    source, rows = run(args.threads, args.rounds)
    section = render(source, rows, args.rounds)
    print(section)
    if not args.no_write:
        write_section(section)
        print(f"updated {README}")


if __name__ == "__main__":
    main()
