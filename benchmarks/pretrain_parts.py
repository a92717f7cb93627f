"""What a pretraining checkpoint draws, part by part (docs/training.md#autoencoder-pretraining): `mp3net
evaluate`'s metrics, against the same real clips, of

- its reconstructions: 64 clips of the table (spread evenly over it) drawn from their own latents;
- its samples before the level calibration: seeds 0–63 through the folded Gaussian;
- its samples as exported (calibrated, when the run's config asks for it; docs/training.md#level-calibration);

optionally with a uniform gain on the first two (``--gain-db``, a probe of how much of the FD is level),
and the window features whose means stand furthest from the reals' (``--features``, in the reals' standard
deviations: what the FD is made of). ``--pictures PREFIX`` writes long-window rows (1024-sample log
spectrograms up to 2.75 kHz) of four reconstructions, their four clips, and four samples as exported.

    python benchmarks/pretrain_parts.py ~/runs/preb3 --data ~/data/chorales --features
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench_learning import spectrogram_row

N_CLIPS = 64


def _audio(G, z, gain: float = 1.0) -> list:
    import torch

    from mp3net.dsp import imdct

    with torch.no_grad():
        A = torch.cat([G(z[a : a + 8]) for a in range(0, len(z), 8)])  # [N, C, M, K]
    return list((gain * imdct(A.double(), trim=True)).float())


def _row(name: str, rep) -> str:
    bark = np.abs(np.array(rep.bark_db_fake) - np.array(rep.bark_db_real))
    return (
        f"| {name} | {rep.fd:.0f} | {rep.tonality_fake:.1%} | {bark.mean():.1f} / {bark.max():.1f} dB | "
        f"{rep.onset_contrast_fake:.1f} | {rep.valley_db_fake:.1f} dB | {rep.partial_spread_fake:.1f} dB | "
        f"{rep.memorisation['ratio']:.2f} |"
    )


def _features(real: list, fake: list, sr: int, n: int = 8) -> str:
    from mp3net.evaluate import FeatureScaler, _stack, clip_features

    names = [f"level {i}" for i in range(24)] + [f"level sd {i}" for i in range(24)]
    names += [f"chroma {i}" for i in range(12)]
    names += [
        "flux mean",
        "flux sd",
        "flux autocorrelation",
        "tonality mean",
        "tonality sd",
        "width",
        "loudness",
    ]
    fr, ff = _stack(clip_features(real, sr)), _stack(clip_features(fake, sr))
    scale = FeatureScaler.fit(fr)
    d = scale(ff).mean(0) - scale(fr).mean(0)
    top = np.argsort(-np.abs(d))[:n]
    return ", ".join(f"{names[i]} {d[i]:+.1f}" for i in top) + f" (sum of squares {float((d**2).sum()):.0f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a pretraining run directory")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--step", type=int, help="the checkpoint (default: the latest)")
    ap.add_argument("--gain-db", type=float, default=0.0, help="a uniform gain on the uncalibrated rows")
    ap.add_argument("--features", action="store_true", help="print the features furthest from the reals'")
    ap.add_argument("--pictures", metavar="PREFIX", help="write PREFIX-recon.png, -samples.png, -reals.png")
    args = ap.parse_args()
    import torch

    from mp3net.config import Config
    from mp3net.data import ClipDataset, clip_indices
    from mp3net.evaluate import evaluate_clips, load_real_clips
    from mp3net.generate import generate
    from mp3net.model import Generator
    from mp3net.train import checkpoint as ckpt
    from mp3net.train.pretrain import PRETRAIN_DIR, exported_generator, folded_generator

    torch.set_num_threads(1)
    found = dict(ckpt.list_checkpoints(args.run / PRETRAIN_DIR))
    if not found or (args.step is not None and args.step not in found):
        raise SystemExit(f"{args.run}: no pretraining checkpoint {args.step or ''}".strip())
    state = ckpt.load_checkpoint(found[args.step if args.step is not None else max(found)])
    cfg = Config.from_dict(state["config"])
    G = Generator(cfg.model)
    G.load_state_dict(state["G"])
    table = state["latents"]["weight"]
    gain = 10 ** (args.gain_db / 20)
    reals, sr = load_real_clips(args.data, N_CLIPS, cfg.model.clip_samples, cfg.model.sample_rate, 2)
    rows = clip_indices(len(table), N_CLIPS)
    recon = _audio(G.eval(), table[rows], gain)
    folded = folded_generator(cfg, state["G"], table)
    raw = [gain * a for a in generate(folded, list(range(N_CLIPS)), batch_size=8)[0]]
    exported, _ = exported_generator(cfg, state["G"], table)
    samples, _ = generate(exported, list(range(N_CLIPS)), batch_size=8)
    print(f"{args.run.name} at step {state['step']}, {N_CLIPS} clips each against {N_CLIPS} reals")
    print(
        "| drawn | FD | tonality | Bark error mean / max | onset contrast | valley depth | partial spread ",
        end="",
    )
    print("| memorisation |")
    print("|---|---|---|---|---|---|---|---|")
    named = {
        "reconstructions": recon,
        "samples, before calibration": raw,
        "samples, as exported": list(samples),
    }
    for name, fake in named.items():
        rep = evaluate_clips(reals, fake, sr)
        print(_row(name, rep), flush=True)
        if args.features:
            print(f"  {_features(reals, fake, sr)}", flush=True)
    print(
        f"reals: tonality {rep.tonality_real:.1%}, onset contrast {rep.onset_contrast_real:.1f}, "
        f"valley depth {rep.valley_db_real:.1f} dB, partial spread {rep.partial_spread_real:.1f} dB"
    )
    if args.pictures:
        m = cfg.model
        dataset = ClipDataset(args.data, m.clip_samples, m.sample_rate, m.channels)
        own = list(dataset.stack(state["clips"][i] for i in rows[:4]))  # the reconstructions' clips
        for name, clips in (("recon", recon), ("samples", list(samples)), ("reals", own)):
            spectrogram_row(clips[:4], sr, Path(f"{args.pictures}-{name}.png"), name, long_window=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
