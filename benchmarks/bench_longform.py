"""How the long-form measures (`mp3net evaluate --long`, docs/long-tracks.md#long-form-measures) behave on
real excerpts, on references that are not music, and on a model's long tracks.

Rows, each a mean over ``--n`` tracks of ``--duration`` seconds at the model's rate:

- ``real``: excerpts of the data (one from the start of each long enough track);
- ``real shuffled``: the same excerpts cut into clip-length pieces, shuffled across the tracks (the sound of
  the data, no progression);
- ``noise``: white noise at the reals' level;
- ``drone``: each real excerpt's first half second's chroma held: a steady chord (a sum of its partials);
- ``independent``: the model's tracks from independent latents laid end to end;
- ``walk``: the model's tracks walking its table (where the model has runs).

    python benchmarks/bench_longform.py --model pretrained --data ~/runs/chorales --n 16 --duration 30
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from mp3net import generate as gen
from mp3net import longform as lf


def shuffled(tracks: list[torch.Tensor], piece: int, seed: int = 0) -> list[torch.Tensor]:
    """The tracks ``[C, T]`` cut into pieces of ``piece`` samples, shuffled across all of them."""
    pieces = [t[:, a : a + piece] for t in tracks for a in range(0, t.shape[-1] - piece + 1, piece)]
    order = torch.randperm(len(pieces), generator=torch.Generator().manual_seed(seed)).tolist()
    per = len(pieces) // len(tracks)
    return [torch.cat([pieces[i] for i in order[k * per : (k + 1) * per]], -1) for k in range(len(tracks))]


def noise_like(tracks: list[torch.Tensor], seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(t.shape, generator=g) * t.std() for t in tracks]


def drone_like(tracks: list[torch.Tensor], sample_rate: int) -> list[torch.Tensor]:
    """Each track's opening half second's strongest pitch classes held: three tones (and two overtones
    each) at those classes in the octave above 220 Hz, at the track's level."""
    out = []
    for x in tracks:
        c = lf.chroma(x[:, :sample_rate], sample_rate)
        top = c[0].topk(3).indices.tolist() if c.shape[0] else [0, 4, 7]
        t = torch.arange(x.shape[-1], dtype=torch.float64) / sample_rate
        f0 = [220 * 2 ** (pc / 12) for pc in top]
        y = sum(0.5**h * torch.sin(2 * math.pi * f * (h + 1) * t) for f in f0 for h in range(3))
        y = y / y.std() * x.std()
        out.append(y.float()[None].expand(x.shape[0], -1).clone())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    G, cfg = gen.load_generator(args.model)
    sr, period = cfg.model.sample_rate, cfg.model.clip_samples / cfg.model.sample_rate
    reals = lf.load_real_excerpts(args.data, args.n, args.duration, sr, cfg.model.channels)
    rows = {
        "real": reals,
        "real shuffled": shuffled(reals, cfg.model.clip_samples),
        "noise": noise_like(reals),
        "drone": drone_like(reals, sr),
    }
    seeds = list(range(args.n))
    rows["independent"] = list(gen.generate(G, seeds, args.duration, sequence="independent")[0])
    if gen.walks(G):
        rows["walk"] = list(gen.generate(G, seeds, args.duration, sequence="walk")[0])
    table = {name: lf.mean_measures(tracks, sr, period) for name, tracks in rows.items()}

    print(f"{args.model} on {args.data}: {args.n} tracks of {args.duration:g} s, clips of {period:.2f} s")
    print("| tracks | " + " | ".join(lf.MEASURES) + " |")
    print("|---|" + "---|" * len(lf.MEASURES))
    for name, m in table.items():
        print(f"| {name} | " + " | ".join(f"{m[k]:.3f}" for k in lf.MEASURES) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
