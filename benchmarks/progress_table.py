"""The expected-progress table of a pretraining run: at each checkpoint, the clips seen and the process
CPU-seconds against the metrics its export was evaluated with (``pretrain/metrics.jsonl``, the eval/* rows;
docs/training.md#metrics-during-training). A user compares their own run's printed lines with it.

    python benchmarks/progress_table.py ~/runs/r32-piano [--every 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def rows(run: Path) -> list[dict[str, float]]:
    """One row per evaluated checkpoint: step, clips seen, CPU seconds and the eval/* figures (the last
    evaluation of a step when a resumed run repeated it)."""
    path = run / "pretrain" / "metrics.jsonl"
    if not path.exists():
        raise SystemExit(f"progress_table: {path} does not exist")
    cfg = json.loads((run / "config.json").read_text())
    batch = int(cfg["pretrain"]["batch_size"])
    cpu: dict[int, float] = {}
    evals: dict[int, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if "cpu_seconds" in r:
            cpu[int(r["step"])] = float(r["cpu_seconds"])
        if "eval/fd" in r:
            evals[int(r["step"])] = {k[5:]: float(v) for k, v in r.items() if k.startswith("eval/")}
    out = []
    for step in sorted(evals):
        seconds = cpu.get(step, max((v for s, v in cpu.items() if s <= step), default=0.0))
        out.append({"step": step, "clips": step * batch, "cpu_seconds": seconds, **evals[step]})
    return out


def table(found: list[dict[str, float]], every: int) -> str:
    lines = [
        "| step | clips seen | CPU s | FD | tonality fake / real | Bark mean / worst dB | onset contrast "
        "fake / real | valley dB fake / real | partial spread dB fake / real |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in found:
        if every and r["step"] % every and r is not found[-1]:
            continue
        lines.append(
            f"| {r['step']:.0f} | {r['clips']:.0f} | {r['cpu_seconds']:.0f} | {r['fd']:.1f} | "
            f"{r['tonality_fake']:.1%} / {r['tonality_real']:.1%} | {r['bark_err_mean_db']:.1f} / "
            f"{r['bark_err_max_db']:.1f} | {r['onset_contrast_fake']:.1f} / {r['onset_contrast_real']:.1f} | "
            f"{r['valley_db_fake']:.1f} / {r['valley_db_real']:.1f} | {r['partial_spread_fake']:.1f} / "
            f"{r['partial_spread_real']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a pretraining run directory")
    ap.add_argument("--every", type=int, default=0, help="only the checkpoints at multiples of this step")
    args = ap.parse_args()
    found = rows(args.run)
    if not found:
        sys.exit(f"progress_table: {args.run} has no evaluated checkpoint yet")
    print(table(found, args.every))


if __name__ == "__main__":
    main()
