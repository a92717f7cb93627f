"""``mp3net generate MODEL [-n N | --seeds 0-7] [--out DIR] [--duration SEC] ...``: write generated tracks."""

from __future__ import annotations

import argparse
import math
import os
import signal
import threading
import time
from pathlib import Path

from mp3net.cli import usable_device
from mp3net.utils import MP3NetError

FORMATS = ("wav", "rf64", "flac", "ogg")
SEQUENCES = ("auto", "walk", "independent")  # mp3net.generate.SEQUENCES, without importing torch


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Generate tracks with a trained generator. MODEL is an exported model folder (config.json + "
        "model.safetensors), a training run folder (its export, else its newest checkpoint's EMA generator) "
        "or the shipped model 'pretrained' (= 'tiny-chorales'). One file per seed, named seed-NNNN; the same "
        "seed gives the same file bit for bit (same device and --batch-size). --duration beyond the training "
        "clip lays one latent per clip length along time: a walk through what followed what in the training "
        "music where the model holds it (--sequence), else independent latents smoothly blended. Files "
        "are written block by block as they are synthesised (memory does not grow with --duration) under a "
        "temporary name, renamed when complete."
    )
    parser.add_argument("model", metavar="MODEL", help="export dir, run dir, or 'pretrained'")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("-n", type=int, metavar="N", help="generate seeds 0..N-1 (default 4)")
    who.add_argument("--seeds", metavar="LIST", help="seeds, e.g. 0-7 or 3,5,11")
    who.add_argument(
        "--interpolate",
        nargs=2,
        type=int,
        metavar=("SEED_A", "SEED_B"),
        help="write --steps tracks along the latent path from SEED_A to SEED_B",
    )
    parser.add_argument(
        "--steps", type=int, default=8, help="tracks for --interpolate, ends included (default 8)"
    )
    parser.add_argument(
        "--out", default="generated", metavar="DIR", help="output folder (default ./generated)"
    )
    parser.add_argument(
        "--format",
        default="wav",
        help=f"audio format: {', '.join(FORMATS)} (default wav; WAV files end at 4 GB, rf64 is WAV "
        "without that limit, written as .wav)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        metavar="SEC",
        help="track length in seconds (default: the model's training clip)",
    )
    parser.add_argument(
        "--sequence",
        default="auto",
        choices=SEQUENCES,
        help="how a long track's clips follow each other: walk (each clip drawn from what followed the one "
        "before in the training music; models whose table holds runs of clips), independent (a latent per "
        "clip, blended), or auto = walk where the model can (default; docs/long-tracks.md)",
    )
    parser.add_argument(
        "--truncation",
        type=float,
        metavar="T",
        help="redraw latent entries beyond ±T (less variety, more typical output)",
    )
    parser.add_argument(
        "--gain",
        type=float,
        default=0.0,
        metavar="DB",
        help="output gain in dB (default 0); samples beyond full scale are clipped, counted and reported",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="tracks per forward pass (default 1 on CPU, 8 on CUDA)"
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16"),
        help="compute precision: auto = bf16 where the device runs it fast (CUDA; a CPU with AVX512_BF16 "
        "or AMX), else fp32 (default auto)",
    )
    parser.add_argument(
        "--spectrogram",
        action="store_true",
        help="also write a spectrogram PNG per track (reads each whole track back into memory)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _check_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MP3NetError(f"cannot create output folder {out}: {e.strerror or e}") from None
    if not out.is_dir() or not os.access(out, os.W_OK | os.X_OK):
        raise MP3NetError(f"output folder {out} is not writable")


def _spectrograms(paths: list[Path], sample_rate: int, n_bands: int) -> None:
    """A spectrogram PNG beside each written track (the whole track is read back for it)."""
    from mp3net.audio import read_audio
    from mp3net.plots import write_spectrogram

    for path in paths:
        x, _ = read_audio(path)
        write_spectrogram(x, sample_rate, n_bands, path.with_suffix(".png"), title=path.stem)


def _clipping_summary(clipped: list[int], peaks: list[float], samples_per_track: int, gain_db: float) -> str:
    """One line on full-scale clipping: none, or how many tracks and samples and the --gain that avoids it."""
    peak_db = 20 * math.log10(max(max(peaks, default=0.0), 1e-12))
    if not any(clipped):
        return f"no sample beyond full scale (peak {peak_db:+.1f} dBFS)"
    hit = sum(1 for c in clipped if c)
    share = sum(clipped) / (samples_per_track * len(clipped))
    fix = gain_db - math.ceil(peak_db * 10) / 10
    return (
        f"{hit} of {len(clipped)} track(s) clipped at full scale ({share:.3%} of samples, peak "
        f"{peak_db:+.1f} dBFS): --gain {fix:.1f} keeps every sample within full scale"
    )


def _advance(bar, tracks: int, sample_rate: int):
    """``on_block`` for a progress bar in seconds of audio: a block adds ``tracks`` rows of T samples."""
    return lambda t: bar.update(tracks * t / sample_rate)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from mp3net import generate as gen
    from mp3net import ops
    from mp3net.stream import ClipMeter, check_fits, extension, write_tracks

    fmt = args.format.lower().lstrip(".")
    if fmt not in FORMATS:
        raise MP3NetError(f"unknown format {args.format!r}; choose one of {', '.join(FORMATS)}")
    if args.duration is not None and not args.duration > 0:
        raise MP3NetError(f"--duration must be positive, got {args.duration}")
    if args.n is not None and args.n < 1:
        raise MP3NetError(f"-n must be at least 1, got {args.n}")
    if not -120.0 <= args.gain <= 120.0:  # also refuses nan
        raise MP3NetError(f"--gain must be a level in dB between -120 and 120, got {args.gain}")
    if args.batch_size is not None and args.batch_size < 1:
        raise MP3NetError(f"--batch-size must be at least 1, got {args.batch_size}")
    device = usable_device(args.device)
    batch = args.batch_size or (8 if torch.device(device).type == "cuda" else 1)
    out = Path(args.out)
    _check_out_dir(out)

    t0 = time.perf_counter()
    G, cfg = gen.load_generator(args.model, device)
    t_load = time.perf_counter() - t0
    n, positions = gen.track_plan(G, args.duration)
    walk = gen.walks(G, args.sequence) and not args.interpolate  # an interpolation blends two seeds' tracks
    if args.interpolate:
        a, b = args.interpolate
        anchors = gen.interpolation_anchor_sets(G, a, b, args.steps, positions, args.truncation)
        names = [f"interp-{a:04d}-{b:04d}-{i:02d}" for i in range(args.steps)]
    else:
        seeds = gen.parse_seeds(args.seeds) if args.seeds else list(range(args.n or 4))
        anchors = gen.seed_anchor_sets(G, seeds, positions, args.truncation, walk)
        names = [f"seed-{s:04d}" for s in seeds]
    sr, channels = cfg.model.sample_rate, cfg.model.channels
    check_fits(out, fmt, len(names), n, channels, sr)
    paths = [out / f"{name}.{extension(fmt)}" for name in names]

    main_thread = threading.current_thread() is threading.main_thread()
    # `kill` (SIGTERM) is cleaned up like Ctrl-C: no partial file
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    t1 = time.perf_counter()
    clipped: list[int] = []
    peaks: list[float] = []
    try:
        with tqdm(total=len(names) * n / sr, unit="s", disable=args.quiet, dynamic_ncols=True) as bar:
            for which, blocks in gen.stream_batches(G, anchors, n, batch, args.precision, hold=walk):
                progress = _advance(bar, len(which), sr)
                meter = ClipMeter(len(which), args.gain)
                done = write_tracks([paths[i] for i in which], meter.apply(blocks), sr, fmt, progress)
                clipped += meter.clipped.tolist()
                peaks += meter.peak.tolist()
                if args.spectrogram:
                    _spectrograms(done, sr, cfg.model.n_bands)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t_gen = time.perf_counter() - t1
    seconds = len(names) * n / sr
    print(f"wrote {len(names)} track(s) of {n / sr:.2f} s, {sr} Hz, {channels} ch to {out}/")
    print(_clipping_summary(clipped, peaks, n * channels, args.gain))
    print(
        f"model loaded in {t_load:.2f} s; generated and wrote {seconds:.1f} s of audio in {t_gen:.2f} s "
        f"({seconds / max(t_gen, 1e-9):.1f}x real time) on {device} in "
        f"{'bf16' if ops.resolve_precision(args.precision, device) == torch.bfloat16 else 'fp32'}"
    )
    return 0
