"""``mp3net demo [--minutes M] [--out demo]``: the built-in dataset, a short training run and a report."""

from __future__ import annotations

import argparse

from mp3net.cli import add_override_argument


def register(parser: argparse.ArgumentParser) -> None:
    from mp3net.demo import DEFAULT_MINUTES

    parser.description = (
        "Render Mozart's and Haydn's string quartets (music21's corpus) with the built-in piano "
        "synthesizer (cached after the first run), prepare them, and fine-tune the shipped model on them: "
        "its decoder, trained on Bach chorales, with a new table of 64 clips of the quartets (`mp3net "
        "pretrain --init-from pretrained`, 640 steps, or --minutes at most). Then generate tracks and "
        "write OUT/report.html: audio and spectrograms of generated and real clips, the tonality of both "
        "over training (paper figure 5), the evaluate table, and the shipped model's tracks and figures "
        "on the same quartets (where the run started). Running it again on the same --out with a larger "
        "--steps continues the training."
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=DEFAULT_MINUTES,
        help=f"training time budget in minutes (default {DEFAULT_MINUTES:g})",
    )
    parser.add_argument("--out", default="demo", metavar="DIR", help="output folder (default ./demo)")
    parser.add_argument(
        "--pieces",
        type=int,
        default=0,
        help="how many quartet movements to render (default 0 = all 25, about 68 minutes)",
    )
    parser.add_argument("--cache", metavar="DIR", help="render cache (default ~/.cache/mp3net)")
    parser.add_argument(
        "--steps", type=int, help="stop training at this many steps in all even within budget"
    )
    parser.add_argument(
        "--tracks", type=int, default=4, help="generated and real tracks in the report (default 4)"
    )
    parser.add_argument(
        "--eval-clips", type=int, default=32, help="clips per side for the evaluate table (default 32)"
    )
    add_override_argument(parser, "a value of the laptop preset (after the demo's own recipe)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mp3net.demo import run_demo
    from mp3net.utils import MP3NetError

    if not args.minutes >= 0:
        raise MP3NetError(f"--minutes must be >= 0, got {args.minutes}")
    if args.tracks < 1 or args.eval_clips < 2:
        raise MP3NetError("--tracks must be >= 1 and --eval-clips >= 2")
    path = run_demo(
        args.out,
        args.minutes,
        pieces=args.pieces or None,
        cache=args.cache,
        max_steps=args.steps,
        overrides=args.override,
        n_tracks=args.tracks,
        n_eval=args.eval_clips,
        quiet=args.quiet,
    )
    print(f"report: {path.resolve()}")
    return 0
