"""``mp3net pretrain --data OUT_DIR --run RUN_DIR``: G as a decoder, before any GAN."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from mp3net.artifacts import source_config
from mp3net.cli import usable_device
from mp3net.cli.train import add_device_arguments, add_run_arguments, resolve_config
from mp3net.config import DEFAULT_PRESET, preset
from mp3net.utils import MP3NetError

DATA_INFO = "pretrain_data.json"


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Pretrain MP3net's generator without a discriminator (docs/training.md#autoencoder-pretraining): "
        "pretrain.clips fixed clips of the data each get a latent, and G learns to draw each clip's log "
        "spectrograms from its latent, partials and onsets included. RUN_DIR/export is then a generator for "
        "`mp3net generate` (z ~ N(0, I) drawn near the table's latents, docs/training.md#the-sampler; with "
        "band normalisation its levels calibrated to the data's) and the start of a GAN: `mp3net train --run "
        "RUN2 --init-from RUN_DIR`. --init-from MODEL starts the decoder from a trained model (e.g. "
        "`pretrained`) with a new table for your clips: the fast path when hours are short. Every checkpoint "
        "prints and logs the export's metrics against the data (docs/training.md#metrics-during-training). "
        "With no --preset a new run takes the laptop preset: the shipped model's network and the default "
        "recipe (every term from the start, 8 000 steps, the rates decayed from step 6 000; "
        "docs/training.md#the-default-recipe). Checkpoints go to RUN_DIR/pretrain every pretrain.ckpt_every "
        "steps and on exit (Ctrl-C or SIGTERM finish the current step first); running the same command again "
        "continues exactly where it stopped. Several GPUs: `torchrun --nproc_per_node N -m mp3net -- "
        "pretrain ...` (each rank its own pretrain.batch_size rows, the table shared; "
        "docs/training.md#data-parallel)."
    )
    add_run_arguments(parser)
    parser.add_argument(
        "--steps", type=int, help="train until this many steps in all (default pretrain.steps)"
    )
    parser.add_argument(
        "--init-from",
        metavar="MODEL_OR_RUN",
        help="a new run starts G from this model (an export, `pretrained`, a pretraining or GAN run "
        "directory) and takes its network; the latent table is new, one latent per clip of --data",
    )
    add_device_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mp3net.train.checkpoint import write_json
    from mp3net.train.pretrain import Pretrainer

    if args.steps is not None and args.steps < 1:
        raise MP3NetError(f"--steps must be a positive number of steps, got {args.steps}")
    cfg = resolve_config(args)
    if args.init_from and not (args.config or args.preset or (Path(args.run) / "config.json").exists()):
        # the source's network, the default recipe: its own pretrain section may be an older recipe's
        # the levels are the data's, measured when the run starts: G's unit output in band k is band_rms[k]
        model = dataclasses.replace(source_config(args.init_from).model, sampler="gaussian", band_rms=())
        cfg = dataclasses.replace(preset(DEFAULT_PRESET), model=model).override(list(args.override))
    info = Path(args.run) / DATA_INFO
    data = args.data
    if data is None:
        if not info.exists():
            raise MP3NetError("--data OUT_DIR is required for a new run")
        data = json.loads(info.read_text())["data"]
    trainer = Pretrainer(
        cfg,
        data,
        args.run,
        # under torchrun each rank takes its own GPU (init_distributed), none touches cuda:0 before
        device=args.device if int(os.environ.get("WORLD_SIZE", "1")) > 1 else usable_device(args.device),
        progress=not args.quiet,
        init_from=args.init_from,
    )
    try:
        if trainer.is_main:
            write_json(info, {"data": str(Path(data).resolve())})
        step = trainer.run(args.steps)
    finally:
        trainer.close()
    if trainer.is_main:
        print(
            f"step {step}: generator in {Path(args.run) / 'export'}; start a GAN from it with "
            f"`mp3net train --run NEW_RUN --init-from {args.run}`"
        )
    return 0
