"""Spectrogram rows for benchmarks/README.md: four clips of a run's checkpoint (its EMA generator, seeds 0–3),
of a model (``pretrained``, an export or a run's export), or of real clips; the log-MDCT thumbnails, or with
``--long-window`` the 1024-sample log spectrograms up to 2.75 kHz (D's spectral view), where single
partials are lines.

    python benchmarks/look.py ~/runs/spec3 --step 500 --out benchmarks/images/spectral-500.png --long-window
    python benchmarks/look.py pretrained --out benchmarks/images/shipped-long.png --long-window
    python benchmarks/look.py ~/data/chorales --reals --out benchmarks/images/reals-long.png --long-window
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench_learning import spectrogram_row
from model_card import _generator_of

SEEDS = [0, 1, 2, 3]


def clips_of(source: str, step: int | None, reals: bool) -> tuple[list, int, str]:
    """Four clips ``[C, T]``, their sample rate and a title."""
    from mp3net import generate as gen
    from mp3net.evaluate import load_real_clips
    from mp3net.train import checkpoint as ckpt

    if reals:  # the clips the in-training evaluation and the model card compare against (3 s)
        clips, rate = load_real_clips(Path(source), len(SEEDS), seed=1)
        return list(clips), rate, "real clips"
    if step is None:
        G, cfg = gen.load_generator(source)
        title = Path(source).name
    else:
        G, cfg = _generator_of(ckpt.load_checkpoint(dict(ckpt.list_checkpoints(Path(source)))[step]))
        title = f"{Path(source).name} @{step * cfg.train.batch_size} clips"
    fakes, rate = gen.generate(G, SEEDS)
    return list(fakes), rate, title


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", help="a run directory (with --step), a model, or a prepared dataset (--reals)")
    ap.add_argument("--step", type=int, help="the run's checkpoint at this many D steps")
    ap.add_argument("--reals", action="store_true", help="real clips of the dataset SOURCE")
    ap.add_argument("--long-window", action="store_true", help="the 1024-sample view instead of the MDCT")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    clips, rate, title = clips_of(args.source, args.step, args.reals)
    spectrogram_row(clips, rate, args.out, title, long_window=args.long_window)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
