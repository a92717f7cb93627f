"""`mp3net generate` of long tracks walking the table against independent latents, side by side
(docs/long-tracks.md): the walk must cost no more than 10 % in time and memory.

Each case is one `mp3net generate MODEL -n 1 --duration D --sequence S` process, timed from outside as in
bench_generate_shipped.py (wall, process CPU seconds, peak RSS), the two sequences interleaved, --reps rounds.

    python benchmarks/bench_generate_sequence.py --model pretrained [--durations 300 10800] [--reps 2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench_generate_shipped import ROOT, print_table, run_case


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="pretrained")
    ap.add_argument("--durations", type=float, nargs="+", default=[300.0, 10800.0])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS (default: torch's default)")
    args = ap.parse_args()
    results: dict[tuple[str, float], list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.reps):
            for duration in args.durations:
                for sequence in ("walk", "independent"):
                    out = Path(tmp) / "out"
                    r = run_case(
                        args.model, ROOT / "src", duration, out, args.threads, ("--sequence", sequence)
                    )
                    results.setdefault((sequence, duration), []).append(r)
                    print(
                        f"{sequence:12s} {duration:.0f} s: {r[0]:6.2f} s wall, {r[1]:6.2f} s CPU", flush=True
                    )
    print_table(results, "sequence", args.threads, args.reps)


if __name__ == "__main__":
    main()
