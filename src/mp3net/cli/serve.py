"""``mp3net serve [MODEL ...] [--host 127.0.0.1] [--port 8000]``: a local web page to play with models."""

from __future__ import annotations

import argparse
import signal
import sys

from mp3net.cli import usable_device
from mp3net.utils import MP3NetError


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Serve a local web page to generate tracks (seed or random, any duration, truncation), audition a "
        "grid of seeds, interpolate between two seeds and download wav/flac/ogg. MODEL is an export folder, "
        "a training run folder or 'pretrained' (default). A run folder is watched: its newest export is "
        "loaded when it changes and its tonality and FD curves are shown."
    )
    parser.add_argument("models", nargs="*", metavar="MODEL", help="export dir, run dir or 'pretrained'")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument(
        "--out", default=None, metavar="DIR", help="keep generated files in DIR (default: a temporary folder)"
    )
    parser.add_argument(
        "--watch-interval",
        type=float,
        default=5.0,
        metavar="SEC",
        help="how often to check runs for a new export",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every HTTP request")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from mp3net.serve import App, make_server

    if not 0 <= args.port <= 65535:
        raise MP3NetError(f"--port must be between 0 and 65535, got {args.port}")
    if not args.watch_interval > 0:
        raise MP3NetError(f"--watch-interval must be positive, got {args.watch_interval}")
    device = usable_device(args.device)
    batch = 8 if torch.device(device).type == "cuda" else 1
    app = App(args.models, device, args.out, batch, args.watch_interval)
    old_handler = signal.signal(signal.SIGTERM, _interrupt)  # `kill` cleans up like Ctrl-C
    try:
        app.start()
        server = make_server(app, args.host, args.port, args.verbose)
        host, port = server.host_port
        shown = f"[{host}]" if ":" in host else host
        if host not in ("127.0.0.1", "::1"):
            print(
                f"warning: listening on {host}: anyone who can reach this machine can use the page",
                file=sys.stderr,
            )
        for slot in app.slots.values():
            print(f"model {slot.id}: {slot.status}{' — ' + slot.error if slot.error else ''}")
        print(f"generated files go to {app.out_dir}" + (" (removed on exit)" if args.out is None else ""))
        print(f"serving on http://{shown}:{port}/  (Ctrl-C to stop)", flush=True)
        try:
            server.serve_forever(poll_interval=0.25)
        finally:
            server.server_close()
    finally:
        app.close()
        signal.signal(signal.SIGTERM, old_handler)
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
