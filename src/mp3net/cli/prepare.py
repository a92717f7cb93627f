"""``mp3net prepare SRC_DIR OUT_DIR``: decode a folder of music into int16 training shards."""

from __future__ import annotations

import argparse
import os
import time

from mp3net.config import DEFAULT_PRESET, PRESET_NAMES, preset
from mp3net.data import prepare


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Walk SRC_DIR recursively for audio files (wav, flac, ogg, mp3, ...), decode them, convert to the "
        "preset's channels (mono is duplicated), resample to its sample rate, peak-normalise each track and "
        "write memory-mappable int16 shards plus manifest.json into OUT_DIR. Corrupt, empty, silent and "
        "too-short files are skipped and listed. Re-running on the same OUT_DIR only adds new files."
    )
    parser.add_argument("src", metavar="SRC_DIR", help="folder with your audio files (searched recursively)")
    parser.add_argument("out", metavar="OUT_DIR", help="dataset folder to create or extend")
    parser.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        choices=PRESET_NAMES,
        help=f"model preset whose sample rate, channels and clip length to use (default {DEFAULT_PRESET})",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=max(1, min(8, os.cpu_count() or 1)),
        help="parallel decoding processes (default: number of CPUs, at most 8)",
    )
    parser.add_argument(
        "--shard-mib", type=int, default=512, help="target size of one shard in MiB (default 512)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    m = preset(args.preset).model
    t0 = time.perf_counter()
    report = prepare(
        args.src,
        args.out,
        m.sample_rate,
        m.channels,
        m.clip_samples,
        workers=max(1, args.workers),
        shard_bytes=max(1, args.shard_mib) * 2**20,
        progress=not args.quiet,
    )
    dt = time.perf_counter() - t0
    print(report.summary())
    print(f"dataset: {args.out} ({m.sample_rate} Hz, {m.channels} ch; {dt:.1f} s)")
    return 0
