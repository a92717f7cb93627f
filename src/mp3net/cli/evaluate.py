"""``mp3net evaluate --real DATA --fake DIR_OR_MODEL [--n N] [--json PATH]``."""

from __future__ import annotations

import argparse

from mp3net.utils import MP3NetError, atomic_write_text


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Compare generated with real audio, both measured the same way: mean tonality (paper eq. 13) of the "
        "un-noised MDCT and after the noise layer; a Frechet distance on hand-made audio features (Bark-band "
        "levels, chroma, onset strength, tonality, stereo width; no downloaded weights), with the distance "
        "between two halves of the real clips as its noise floor; and a memorisation check (nearest real "
        "clip of each fake versus real-to-real). Prints a table and writes JSON."
    )
    parser.add_argument(
        "--real",
        required=True,
        metavar="DATA",
        help="prepared dataset folder (mp3net prepare) or a folder of audio files",
    )
    parser.add_argument(
        "--fake",
        required=True,
        metavar="DIR_OR_MODEL",
        help="folder of generated audio files, or a model (export dir, run dir, 'pretrained')",
    )
    parser.add_argument(
        "--n", type=int, default=None, help="clips per side (default 100; with --long, 16 tracks)"
    )
    parser.add_argument(
        "--long",
        action="store_true",
        help="long-form measures instead: key clarity and hold, harmonic rhythm, chroma self-similarity at "
        "4-16 s and the pulse at the anchors' spacing, of tracks from a model against real excerpts of the "
        "same length (docs/long-tracks.md#long-form-measures)",
    )
    parser.add_argument(
        "--duration", type=float, default=30.0, help="with --long: seconds per track (default 30)"
    )
    parser.add_argument(
        "--sequence",
        default="auto",
        choices=("auto", "walk", "independent"),
        help="with --long: how the model's clips follow each other (as mp3net generate; default auto)",
    )
    parser.add_argument(
        "--json",
        default="evaluate.json",
        metavar="PATH",
        help="where to write the metrics (default ./evaluate.json; '-' for none)",
    )
    parser.add_argument("--device", default=None, help="device for generating from a model (default cpu)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.long:
        return _run_long(args)
    from mp3net.evaluate import evaluate

    n = 100 if args.n is None else args.n
    if n < 2:
        raise MP3NetError(f"--n must be at least 2, got {n}")
    report = evaluate(args.real, args.fake, n=n, device=args.device, progress=not args.quiet)
    print(report.table())
    if args.json != "-":
        atomic_write_text(args.json, report.to_json() + "\n")
        print(f"metrics written to {args.json}")
    return 0


def _run_long(args: argparse.Namespace) -> int:
    from mp3net.longform import evaluate_long

    n = 16 if args.n is None else args.n
    if n < 1:
        raise MP3NetError(f"--n must be at least 1, got {n}")
    if not args.duration >= 10:
        raise MP3NetError(f"--duration must be at least 10 s for long-form measures, got {args.duration}")
    report = evaluate_long(
        args.real, args.fake, n, args.duration, args.sequence, args.device, progress=not args.quiet
    )
    print(report.table())
    if args.json != "-":
        atomic_write_text(args.json, report.to_json() + "\n")
        print(f"metrics written to {args.json}")
    return 0
