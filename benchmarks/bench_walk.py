"""How a walk's clips should meet and how often it should follow its recording (docs/experiments.md,
"Issue 33: Walking the table"): the long-form measures of tracks made each way from one model.

Variants: independent latents blended from clip centre to centre (the tracks of before) or each clip holding
its own; the walk with each
clip holding its latent (the default) or blended; following the recording with probability ½ (the default)
or 0.8; and the table's rows exactly (no step towards a neighbour, no jitter).

    python benchmarks/bench_walk.py --model ~/runs/r33-chorales --data ~/runs/chorales --n 12
"""

from __future__ import annotations

import argparse

import torch

from mp3net import generate as gen
from mp3net import longform as lf

VARIANTS = (  # name, walk, hold, follow, jitter and reach (None: the export's)
    ("independent, blended", False, False, 0.5, None),
    ("independent, held", False, True, 0.5, None),
    ("walk, held, follow 1/2", True, True, 0.5, None),
    ("walk, blended, follow 1/2", True, False, 0.5, None),
    ("walk, held, follow 0.8", True, True, 0.8, None),
    ("walk, held, follow 0.8, rows exactly", True, True, 0.8, 0.0),
)


def tracks(G, n: int, seconds: float, walk: bool, hold: bool, follow: float, jitter: float | None):
    """``n`` tracks (seeds 0..n−1) made with the sampler's ``follow`` (and ``jitter`` = ``reach``) set so."""
    s = G.sampler
    saved = [b.clone() for b in (s.follow, s.jitter, s.reach)]
    try:
        s.follow.fill_(follow)
        if jitter is not None:
            s.jitter.fill_(jitter)
            s.reach.fill_(jitter)
        samples, positions = gen.track_plan(G, seconds)
        anchors = gen.seed_anchor_sets(G, range(n), positions, None, walk)
        return list(gen._run_batched(G, anchors, samples, 4, hold=hold))
    finally:
        for b, v in zip((s.follow, s.jitter, s.reach), saved, strict=True):
            b.copy_(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a model whose table has runs")
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--duration", type=float, default=30.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    G, cfg = gen.load_generator(args.model)
    if not gen.walks(G):
        raise SystemExit(f"{args.model} cannot walk: its table has no runs")
    sr, period = cfg.model.sample_rate, cfg.model.clip_samples / cfg.model.sample_rate
    reals = lf.load_real_excerpts(args.data, args.n, args.duration, sr, cfg.model.channels)
    rows = {"real": lf.mean_measures(reals, sr, period)}
    for name, *how in VARIANTS:
        rows[name] = lf.mean_measures(tracks(G, args.n, args.duration, *how), sr, period)
    print("| tracks | " + " | ".join(lf.MEASURES) + " |\n|---|" + "---|" * len(lf.MEASURES))
    for name, m in rows.items():
        print(f"| {name} | " + " | ".join(f"{m[k]:.3f}" for k in lf.MEASURES) + " |")


if __name__ == "__main__":
    main()
