"""``mp3net analyze``: look at an audio file the way MP3net does (MDCT, masking threshold, tonality)."""

from __future__ import annotations

import argparse
from pathlib import Path

# the shortest audio worth analysing: with fewer MDCT blocks the figures show a few pixels of time
MIN_BLOCKS = 16


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Resample AUDIO to 22016 Hz, compute its MDCT (128 bands) and psychoacoustic masking threshold, "
        "print duration, sample rate, channels, mean tonality (the paper's metric) and the share of MDCT "
        "coefficients below the masking threshold, and write four PNGs: signed-dB MDCT amplitudes, the MDCT "
        "spectrogram (paper fig. 1), one block's spectrum with absolute and masking thresholds (fig. 2) and "
        "the octave-folded reduced spectrogram (fig. 6). Without AUDIO (or with --example) a built-in "
        "piano-like chord sequence is analysed."
    )
    parser.add_argument(
        "audio", nargs="?", metavar="AUDIO", help="wav, flac, ogg, mp3 or any file libsndfile reads"
    )
    parser.add_argument("--out", type=Path, default=None, help="folder for the PNGs (default: ./analysis)")
    parser.add_argument("--start", type=float, default=None, metavar="SEC", help="skip this many seconds")
    parser.add_argument(
        "--duration", type=float, default=None, metavar="SEC", help="analyse only this many seconds"
    )
    parser.add_argument(
        "--frame",
        type=float,
        default=None,
        metavar="SEC",
        help="time of the block shown in the threshold figure (default: the loudest block)",
    )
    parser.add_argument("--example", action="store_true", help="analyse the built-in example signal")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: keeps `mp3net --help` fast (matplotlib, torch)
    from mp3net import analysis, plots
    from mp3net.audio import audio_info, check_not_silent, load_audio
    from mp3net.synth import example_signal
    from mp3net.utils import MP3NetError

    sr = analysis.SAMPLE_RATE
    if args.example or args.audio is None:
        if args.audio is not None:
            raise MP3NetError("give either AUDIO or --example, not both")
        x = example_signal(sample_rate=sr)
        if args.start is not None or args.duration is not None:
            first = int(round((args.start or 0.0) * sr))
            last = None if args.duration is None else first + int(round(args.duration * sr))
            x = x[:, first:last]
            if x.shape[1] == 0:
                raise MP3NetError("--start is beyond the end of the example signal")
        name, source = "example", f"built-in example (piano-like chords, {sr} Hz)"
        source_rate, source_channels = sr, 2
    else:
        info = audio_info(args.audio)
        # more than two channels are down-mixed to stereo (see mp3net.audio.to_channels)
        x, _ = load_audio(
            args.audio,
            sample_rate=sr,
            channels=min(info.channels, 2),
            start=args.start,
            duration=args.duration,
            allow_silent=True,
        )
        name, source = Path(args.audio).stem, str(args.audio)
        source_rate, source_channels = info.samplerate, info.channels
    check_not_silent(x, name=source)
    blocks = x.shape[1] // analysis.N_BANDS
    if blocks < MIN_BLOCKS:
        raise MP3NetError(
            f"{source} is too short to analyse: {x.shape[1] / sr:.3f} s ({blocks} MDCT blocks); at least "
            f"{MIN_BLOCKS * analysis.N_BANDS / sr:.2f} s ({MIN_BLOCKS} blocks of {analysis.N_BANDS} samples) "
            "are needed"
        )

    an = analysis.analyze_signal(x, sr)
    frame = None
    if args.frame is not None:
        frame = int(round(args.frame * sr / analysis.N_BANDS))
        if not 0 <= frame < an.A.shape[1]:
            raise MP3NetError(f"--frame {args.frame:g} s is outside the analysed audio ({an.duration:.2f} s)")
    out_dir = args.out if args.out is not None else Path("analysis")
    print(f"source:           {source}")
    print(f"duration:         {an.duration:.2f} s")
    print(
        f"sample rate:      {sr} Hz (resampled from {source_rate} Hz)"
        if source_rate != sr
        else f"sample rate:      {sr} Hz"
    )
    ch_note = f" (down-mixed from {source_channels})" if source_channels > an.channels else ""
    print(f"channels:         {an.channels}{ch_note}")
    print(f"MDCT:             {an.A.shape[1]} blocks x {an.A.shape[2]} bands")
    print(f"mean tonality:    {100 * an.mean_tonality:.1f} %")
    print(
        f"inaudible share:  {100 * an.inaudible_share:.1f} % of MDCT coefficients below the masking threshold"
    )
    for path in plots.write_figures(an, out_dir, name, title=name, frame=frame):
        print(f"wrote {path}")
    return 0
