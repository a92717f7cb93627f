"""Spectrogram rows for benchmarks/README.md: four clips of a run's checkpoint (its EMA generator, seeds 0–3),
of a model (``pretrained``, an export or a run's export), or of real clips; the log-MDCT thumbnails, or with
``--long-window`` the 1024-sample log spectrograms up to 2.75 kHz (D's spectral view), where single
partials are lines. ``--lines`` also prints where the held lines of the clips' mean spectrum sit within
their MDCT band: the share within 1/64 band of a multiple of 1/16 band, frequencies whose MDCT coefficients
repeat every 32 frames (chance: one half), and how many of each clip's lines another clip holds too (a comb
drawn whatever the latent: all of them). ``--spread`` prints `mp3net evaluate`'s partial spread of 32
clips, and the same between the 1 s segments of each clip (chords that change: large; drones: small).

    python benchmarks/look.py ~/runs/spec3 --step 500 --out benchmarks/images/spectral-500.png --long-window
    python benchmarks/look.py pretrained --out benchmarks/images/shipped-long.png --long-window
    python benchmarks/look.py ~/data/chorales --reals --out benchmarks/images/reals-long.png --long-window
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench_learning import spectrogram_row
from model_card import _generator_of

SEEDS = [0, 1, 2, 3]  # the pictures' clips
LINE_SEEDS = list(range(8))
SPREAD_CLIPS = 32  # as the in-training evaluation


def held_lines(clips: list, rate: int) -> np.ndarray:
    """Frequencies (Hz) of the lines of the clips' mean power spectrum (one Hann window over each whole clip,
    channels averaged): local maxima over ±30 bins standing 15 dB above the median of ±100 bins."""
    import torch

    x = torch.stack([torch.as_tensor(c, dtype=torch.float64).mean(0) for c in clips])  # [B, T]
    n = x.shape[-1]
    power = torch.fft.rfft(x * torch.hann_window(n, dtype=torch.float64), dim=-1).abs().square().mean(0)
    db = 10 * np.log10(power.numpy() + 1e-20)
    found = [
        i
        for i in range(100, len(db) - 100)
        if db[i] == db[i - 30 : i + 31].max() and db[i] - np.median(db[i - 100 : i + 101]) > 15
    ]
    return np.asarray(found) * rate / n


def on_grid_share(freqs: np.ndarray, rate: int, n_bands: int) -> float:
    """The share of ``freqs`` within 1/64 band of a multiple of 1/16 of an MDCT band (chance: 0.5)."""

    pos = freqs / (rate / 2 / n_bands) * 16  # in 1/16 bands
    return float((np.abs(pos - np.round(pos)) < 0.25).mean())


def shared_line_share(clips: list, rate: int, n_bands: int) -> tuple[float, float]:
    """Lines held in one clip that another clip holds too: the mean number of :func:`held_lines` per clip,
    and the share of a clip's lines with a line of another clip within 1/64 band, averaged over ordered
    pairs. Real chords differ from clip to clip; a comb drawn whatever the latent is shared by all."""
    per_clip = [held_lines([c], rate) for c in clips]
    tol = rate / 2 / n_bands / 64
    shares = [
        float(np.mean([np.min(np.abs(b - f)) < tol for f in a]))
        for i, a in enumerate(per_clip)
        for j, b in enumerate(per_clip)
        if i != j and len(a) and len(b)
    ]
    return float(np.mean([len(a) for a in per_clip])), float(np.mean(shares)) if shares else float("nan")


def within_clip_spread(clips: list, rate: int, seconds: float = 1.0) -> float:
    """How much the partials change within a clip, dB: each clip ``[C, T]`` cut into segments of
    ``seconds``, the partial spread (`mp3net evaluate`'s) between the segments of one clip, averaged over
    the clips. Chords that change every second or so give a large value, drones held through the clip a
    small one."""
    from mp3net.evaluate import partial_spread

    n = int(seconds * rate)
    return float(
        np.mean(
            [
                partial_spread([c[..., i : i + n] for i in range(0, c.shape[-1] - n + 1, n)], rate)
                for c in clips
            ]
        )
    )


def line_report(target, fit, rate: int, n_bands: int) -> str:
    """How a fit ``[C, T]`` reproduces a target clip's held lines: the share of the target's lines (and of
    those off the 1/16-band grid) that have a fit line within 1/64 band, and both grid shares."""
    lt, lf = held_lines([target], rate), held_lines([fit], rate)
    tol = rate / 2 / n_bands / 64

    def hit(f: float) -> bool:
        return len(lf) > 0 and float(np.min(np.abs(lf - f))) < tol

    off = [f for f in lt if on_grid_share(np.array([f]), rate, n_bands) == 0]
    found, found_off = np.mean([hit(f) for f in lt]), np.mean([hit(f) for f in off])
    return (
        f"target: {len(lt)} held lines, {on_grid_share(lt, rate, n_bands):.0%} on the 1/16-band grid; "
        f"fit: {len(lf)}, {on_grid_share(lf, rate, n_bands):.0%}; the fit has {found:.0%} of the target's "
        f"lines within 1/64 band, {found_off:.0%} of its {len(off)} off-grid ones"
    )


def clips_of(source: str, step: int | None, reals: bool, n: int) -> tuple[list, int, str]:
    """``n`` clips ``[C, T]`` (seeds 0…n−1 of a generator), their sample rate and a title."""
    from mp3net import generate as gen
    from mp3net.evaluate import load_real_clips
    from mp3net.train import checkpoint as ckpt

    if reals:  # the clips the in-training evaluation and the model card compare against (3 s)
        clips, rate = load_real_clips(Path(source), n, seed=1)
        return list(clips), rate, "real clips"
    if step is None:
        G, cfg = gen.load_generator(source)
        title = Path(source).name
    else:
        G, cfg = _generator_of(ckpt.load_checkpoint(dict(ckpt.list_checkpoints(Path(source)))[step]))
        title = f"{Path(source).name} @{step * cfg.train.batch_size} clips"
    fakes, rate = gen.generate(G, list(range(n)))
    return list(fakes), rate, title


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", help="a run directory (with --step), a model, or a prepared dataset (--reals)")
    ap.add_argument("--step", type=int, help="the run's checkpoint at this many D steps")
    ap.add_argument("--reals", action="store_true", help="real clips of the dataset SOURCE")
    ap.add_argument("--long-window", action="store_true", help="the 1024-sample view instead of the MDCT")
    ap.add_argument("--lines", action="store_true", help="print where the held lines sit in their bands")
    ap.add_argument(
        "--spread", action="store_true", help="print the partial spread of 32 clips (mp3net evaluate's)"
    )
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    n = len(LINE_SEEDS) if args.lines else len(SEEDS)
    clips, rate, title = clips_of(args.source, args.step, args.reals, n)
    spectrogram_row(clips[: len(SEEDS)], rate, args.out, title, long_window=args.long_window)
    print(args.out)
    if args.lines:
        lines = held_lines(clips, rate)
        share = on_grid_share(lines, rate, 64 * rate // 11008)
        print(f"{title}: {len(lines)} held lines, {share:.0%} on the 1/16-band grid (chance 50 %)")
        per_clip, shared = shared_line_share(clips, rate, 64 * rate // 11008)
        print(f"{title}: {per_clip:.1f} held lines per clip, {shared:.0%} of them held by another clip too")
    if args.spread:
        from mp3net.evaluate import partial_spread

        clips, rate, _ = clips_of(args.source, args.step, args.reals, SPREAD_CLIPS)
        print(f"{title}: partial spread {partial_spread(clips, rate):.1f} dB over {len(clips)} clips")
        print(f"{title}: within a clip, between its 1 s segments, {within_clip_spread(clips, rate):.1f} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
