"""`mp3net generate` with the shipped model against a model shipped before it, side by side.

Each case is one `mp3net generate MODEL -n 1 --duration D` process (precision auto, the default threads
unless --threads), timed from outside: wall seconds, CPU seconds (user + system: the fairer figure when
other processes share the cores) and peak resident memory (the child's own ru_maxrss from wait4). The
cases run interleaved, --reps rounds of all of them, so that a background load hits both models alike.

The model before is read from git history at --before (default: the in-band bank model, shipped until the
sine bank; it runs under this checkout). The linear-output GAN model shipped before a207237 has fields that
config version 2 retired at non-neutral values, so it runs from a checkout of tag v0.1-lab
(`--before a207237^ --lab /work/lab`, the lab made with `git worktree add /work/lab v0.1-lab`).

    python benchmarks/bench_generate_shipped.py [--durations 300 10800] [--reps 3] [--before REF [--lab DIR]]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import cpu_model

ROOT = Path(__file__).resolve().parents[1]
BEFORE_COMMIT = "3026894"  # the in-band bank model
SHIPPED = "src/mp3net/pretrained/tiny-chorales"


def extract_before(dest: Path, ref: str) -> Path:
    """The model shipped at git ``ref``, written to ``dest`` (config.json + model.safetensors)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        blob = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{ref}:{SHIPPED}/{name}"],
            capture_output=True,
            check=True,
        ).stdout
        (dest / name).write_bytes(blob)
    return dest


def run_case(
    model: str, src: Path, duration: float, out: Path, threads: int | None, extra: tuple[str, ...] = ()
) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MiB) of one `mp3net generate` process (with ``extra`` arguments)."""
    env = dict(os.environ, PYTHONPATH=str(src))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "mp3net", "generate", model, "-n", "1", "--duration", str(duration), *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen([*cmd, "--out", str(out), "-q"], env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({status})")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--durations", type=float, nargs="+", default=[300.0, 10800.0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--before", default=BEFORE_COMMIT, help="the git ref whose shipped model is compared")
    ap.add_argument("--lab", type=Path, help="a checkout to run the model before under (v0.1-lab: a207237^)")
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS (default: torch's default)")
    args = ap.parse_args()
    if args.lab is not None and not (args.lab / "src" / "mp3net").is_dir():
        raise SystemExit(f"{args.lab} is no mp3net checkout: git worktree add {args.lab} v0.1-lab")
    with tempfile.TemporaryDirectory() as tmp:
        before = extract_before(Path(tmp) / "before", args.before)
        cases = [
            ("shipped", "pretrained", ROOT / "src"),
            (f"before ({args.before})", str(before), (args.lab or ROOT) / "src"),
        ]
        results: dict[tuple[str, float], list[tuple[float, float, float]]] = {}
        for _ in range(args.reps):
            for duration in args.durations:
                for name, model, src in cases:
                    r = run_case(model, src, duration, Path(tmp) / "out", args.threads)
                    results.setdefault((name, duration), []).append(r)
                    print(
                        f"{name:18s} {duration:.0f} s: {r[0]:6.2f} s wall, {r[1]:6.2f} s CPU, {r[2]:.0f} MiB",
                        flush=True,
                    )
    print_table(results, "model", args.threads, args.reps)


def print_table(
    results: dict[tuple[str, float], list[tuple[float, float, float]]],
    label: str,
    threads: int | None,
    reps: int,
) -> None:
    """The medians of each case's (wall, CPU) and its largest peak RSS, as a markdown table."""
    machine = f"{cpu_model()}, {os.cpu_count()} cores, threads {threads or 'default'}"
    print(f"\n{machine}, {dt.date.today()}, of {reps}")
    print(f"| {label} | track | wall s | CPU s | peak RSS MiB |\n|---|---|---|---|---|")
    for (name, duration), rs in results.items():
        wall, cpu, _ = (statistics.median(x) for x in zip(*rs, strict=True))
        print(f"| {name} | {duration:.0f} s | {wall:.2f} | {cpu:.2f} | {max(r[2] for r in rs):.0f} |")


if __name__ == "__main__":
    main()
