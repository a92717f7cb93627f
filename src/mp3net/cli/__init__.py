"""The ``mp3net`` command. Each sub-command lives in its own module with ``register(subparsers)``;
the function it sets as ``args.func`` returns the exit code."""

from __future__ import annotations

import argparse
import importlib
import sys

from mp3net import __version__
from mp3net.config import ConfigError
from mp3net.utils import MP3NetError

# sub-command name -> module under mp3net.cli (imported lazily so `mp3net --help` stays fast)
COMMANDS = {
    "analyze": "Plot the MDCT, spectrogram and masking threshold of an audio file",
    "prepare": "Turn a folder of audio files into a sharded training dataset",
    "pretrain": "Pretrain the generator as a decoder of per-clip latents (no GAN), resumable",
    "train": "Train MP3net (WGAN-GP), resumable, with TensorBoard logs",
    "generate": "Generate tracks from a trained or exported model",
    "evaluate": "Compare generated and real audio (tonality, Frechet distance, memorisation)",
    "serve": "Serve a local web page to generate, audition, interpolate and download tracks",
    "info": "Show a preset's or run's config, block shapes, parameter counts and FLOPs",
    "demo": "Render a built-in dataset, train the tiny model on it and write an HTML report",
}


def add_override_argument(parser: argparse.ArgumentParser, what: str = "a config value") -> None:
    """The shared ``-o/--override SECTION.FIELD=VALUE`` option (repeatable), parsed into ``args.override``."""
    parser.add_argument(
        "-o",
        "--override",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help=f"override {what}, e.g. -o train.lr=2e-4 -o model.n_blocks=5 (repeatable)",
    )


def usable_device(device: str | None) -> str:
    """``--device`` (default: cuda if available, else cpu), checked by allocating on it: a one-line
    :class:`MP3NetError` for a device that is absent or unusable."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as e:
        raise MP3NetError(f"device {device!r} is not usable: {str(e).splitlines()[0]}") from None
    return device


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mp3net", description="MP3net: generate long stereo music as MDCT amplitudes with a GAN."
    )
    parser.add_argument("--version", action="version", version=f"mp3net {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"mp3net.cli.{name}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.register(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (MP3NetError, ConfigError) as e:
        print(f"mp3net {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mp3net {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        # disk full, permission denied, ...: one line, not a traceback
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"mp3net {args.command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
