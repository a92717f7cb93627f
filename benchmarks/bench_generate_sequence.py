"""`mp3net generate` of long tracks walking the table against independent latents, side by side
(docs/long-tracks.md): the walk must cost no more than 10 % in time and memory.

Each case is one `mp3net generate MODEL -n 1 --duration D --sequence S` process, timed from outside as in
bench_generate_shipped.py (wall, process CPU seconds, peak RSS), the two sequences interleaved, --reps rounds.

    python benchmarks/bench_generate_sequence.py --model pretrained [--durations 300 10800] [--reps 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import cpu_model

ROOT = Path(__file__).resolve().parents[1]


def run_case(model: str, sequence: str, duration: float, out: Path, threads: int | None) -> tuple[float, ...]:
    """(wall s, CPU s, peak RSS MiB) of one `mp3net generate` process."""
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "mp3net", "generate", model, "-n", "1", "--duration", str(duration)]
    cmd += ["--sequence", sequence, "--out", str(out), "-q"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({status})")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="pretrained")
    ap.add_argument("--durations", type=float, nargs="+", default=[300.0, 10800.0])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS (default: torch's default)")
    args = ap.parse_args()
    results: dict[tuple[str, float], list[tuple[float, ...]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.reps):
            for duration in args.durations:
                for sequence in ("walk", "independent"):
                    r = run_case(args.model, sequence, duration, Path(tmp) / "out", args.threads)
                    results.setdefault((sequence, duration), []).append(r)
                    wall, cpu, rss = r
                    print(
                        f"{sequence:12s} {duration:.0f} s: {wall:6.2f} s wall, {cpu:6.2f} s CPU, {rss:.0f} MiB",
                    )
    threads = args.threads or "default"
    print(f"\n{cpu_model()}, {os.cpu_count()} cores, threads {threads}, {dt.date.today()}, of {args.reps}")
    print("| sequence | track | wall s | CPU s | peak RSS MiB |\n|---|---|---|---|---|")
    for (sequence, duration), rs in results.items():
        wall, cpu, _ = (statistics.median(x) for x in zip(*rs, strict=True))
        print(f"| {sequence} | {duration:.0f} s | {wall:.2f} | {cpu:.2f} | {max(r[2] for r in rs):.0f} |")


if __name__ == "__main__":
    main()
