"""``mp3net info PRESET_OR_RUN``: resolved config, block shapes, parameter counts, clip length and FLOPs.

The networks are built on the meta device, so even the 95 s model costs no memory and no compute here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from mp3net.cli import add_override_argument
from mp3net.config import PRESET_NAMES, Config, preset
from mp3net.utils import MP3NetError


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        metavar="PRESET_OR_RUN",
        help=f"a preset ({', '.join(PRESET_NAMES)}), a run or model directory with config.json, or a "
        "config file",
    )
    add_override_argument(parser, "a config field")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.set_defaults(func=run)


def resolve_config(target: str) -> Config:
    """A preset name, a directory with config.json, or a .json/.yaml config file."""
    if target in PRESET_NAMES:
        return preset(target)
    path = Path(target)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise MP3NetError(f"{path} has no config.json (is it a run or model directory?)")
        return Config.load(path / "config.json")
    if path.is_file():
        return Config.load(path)
    raise MP3NetError(
        f"{target!r} is neither a preset ({', '.join(PRESET_NAMES)}) nor an existing run directory"
    )


def describe(cfg: Config) -> dict:
    """Everything ``info`` prints, as plain data."""
    from torch.utils.flop_counter import FlopCounterMode

    from mp3net.model import Discriminator, Generator

    m = cfg.model
    # band levels are measured when training starts; shapes, parameters and FLOPs do not depend on them
    m = m.with_unit_levels()
    with torch.device("meta"):
        G, D = Generator(m), Discriminator(m)
        z = torch.empty(1, m.latent_dim)
        with FlopCounterMode(display=False) as g_flops:
            x = G(z)
        with FlopCounterMode(display=False) as d_flops:
            D(x)
    return {
        "config": cfg.to_dict(),
        "clip_frames": m.n_frames,
        "clip_samples": m.clip_samples,
        "clip_seconds": m.clip_seconds,
        "generator": {
            "params": sum(p.numel() for p in G.parameters()),
            "blocks": [{"name": n, "shape": list(s)} for n, s in G.block_shapes()],
            "channels": [list(m.block_channels(i)) for i in range(m.n_blocks)],
            "flops_forward": g_flops.get_total_flops(),
        },
        "discriminator": {
            "params": sum(p.numel() for p in D.parameters()),
            "blocks": [{"name": n, "shape": list(s)} for n, s in D.block_shapes()],
            "flops_forward": d_flops.get_total_flops(),
        },
    }


def _shape(s: list[int]) -> str:
    return " × ".join(str(v) for v in s)


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args.target).override(args.override)
    info = describe(cfg)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    m = cfg.model
    print(f"config {cfg.name!r}")
    for section, values in (("model", info["config"]["model"]), ("train", info["config"]["train"])):
        print(f"  {section}:")
        for k, v in values.items():
            print(f"    {k:<16} {v}")
    print(
        f"\nclip: {m.n_frames} frames × {m.n_bands} bands × {m.channels} channels = "
        f"{m.clip_samples} samples at {m.sample_rate} Hz = {m.clip_seconds:.2f} s"
    )
    g, d = info["generator"], info["discriminator"]
    print("\ngenerator (per sample: channels × frames × bands)")
    for i, b in enumerate(g["blocks"]):
        extra = ""
        if b["name"].startswith("block"):
            cin, mid, out = m.block_channels(i - 1)
            extra = f"   (in {cin}, mid {mid}, out {out})"
        print(f"  {b['name']:<24} {_shape(b['shape'])}{extra}")
    print("discriminator")
    for b in d["blocks"]:
        print(f"  {b['name']:<24} {_shape(b['shape'])}")
    print(
        f"\nparameters: generator {g['params']:,} ({g['params'] / 1e6:.2f} M), "
        f"discriminator {d['params']:,} ({d['params'] / 1e6:.2f} M)"
    )
    print(
        f"FLOPs of one forward pass (batch 1): generator {g['flops_forward'] / 1e9:.1f} GFLOP, "
        f"discriminator {d['flops_forward'] / 1e9:.1f} GFLOP"
    )
    return 0
