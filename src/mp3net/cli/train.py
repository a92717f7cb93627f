"""``mp3net train --data OUT_DIR --preset NAME --run RUN_DIR``: resumable training and fine-tuning."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from mp3net.cli import add_override_argument
from mp3net.config import DEFAULT_PRESET, PRESET_NAMES, Config, preset
from mp3net.utils import MP3NetError


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Train MP3net's GAN on a dataset made by `mp3net prepare`, with the preset's recipe (train.loss: the "
        "paper's wgan-gp for paper-95s/paper-5s, the fast ns-r1 for laptop, the default; any -o train.* "
        "option changes it, docs/config.md). Checkpoints (full state) go to "
        "RUN_DIR/checkpoints every train.ckpt_every steps or train.ckpt_minutes minutes (default 10), "
        "whichever comes first, written in the background, and on exit (Ctrl-C or SIGTERM finish the "
        "current step first); a kill -9 loses at most that interval. Running "
        "the same command again continues exactly where it stopped. RUN_DIR/export holds the generator "
        "(EMA weights) for `mp3net generate`. Watch it with `tensorboard --logdir RUN_DIR/tb`, or read "
        "RUN_DIR/metrics.jsonl. Multi-GPU / multi-node: launch with "
        "`torchrun --nproc_per_node N -m mp3net -- train ...` (the -- keeps torchrun from reading --run as "
        "its own --run-path)."
    )
    add_run_arguments(parser)
    parser.add_argument(
        "--steps", type=int, help="train until this many D iterations in total (default train.max_steps)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="require a checkpoint in RUN_DIR to continue from (re-running resumes anyway)",
    )
    parser.add_argument(
        "--freeze-deep",
        nargs="?",
        type=int,
        const=2,
        metavar="K",
        help="train only the K shallowest blocks of G and D (paper §4.3.1 fine-tuning; K default 2)",
    )
    parser.add_argument(
        "--init-from",
        metavar="MODEL_OR_RUN",
        help="fine-tune: a new run starts from this run directory's latest checkpoint (G, EMA G and D) or "
        "from an exported generator / `pretrained` (G only, D fresh) or from an `mp3net pretrain` run "
        "(G only; with -o train.anchor=W it keeps drawing that run's clips); the model configs must match",
    )
    parser.add_argument(
        "--init-optimizer",
        action="store_true",
        help="with --init-from a run directory: also take its optimiser state (Adam moments)",
    )
    add_device_arguments(parser)
    parser.set_defaults(func=run)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """--data, --preset and --run, shared with `mp3net pretrain`."""
    parser.add_argument(
        "--data", metavar="OUT_DIR", help="prepared dataset (default: the one the run used before)"
    )
    parser.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        help=f"model preset for a new run (default {DEFAULT_PRESET}; for an existing run: its saved config)",
    )
    parser.add_argument(
        "--run", required=True, metavar="RUN_DIR", help="run directory (created or continued)"
    )


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """--device, --config, -o and -q, shared with `mp3net pretrain`."""
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument(
        "--config", metavar="FILE", help="start from this JSON/YAML config instead of a preset"
    )
    add_override_argument(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def resolve_config(args: argparse.Namespace) -> Config:
    """The run's config: --config or --preset, else the run's saved one (a new fine-tuning run: its
    source's); then -o and --freeze-deep (`mp3net pretrain` has neither --init-from nor --freeze-deep)."""
    saved = Path(args.run) / "config.json"
    init_from, freeze_deep = getattr(args, "init_from", None), getattr(args, "freeze_deep", None)
    if args.config:
        cfg = Config.load(args.config)
    elif init_from and not args.preset and not saved.exists():
        from mp3net.artifacts import resolve_model_path
        from mp3net.train.anchors import is_pretraining_run
        from mp3net.train.checkpoint import source_config

        cfg = source_config(init_from)
        if is_pretraining_run(resolve_model_path(init_from)):  # the GAN draws as the run's export does
            cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, sampler=cfg.pretrain.sampler))
    elif args.preset:
        cfg = preset(args.preset)
    elif saved.exists():
        cfg = Config.load(saved)
    else:
        cfg = preset(DEFAULT_PRESET)
    overrides = list(args.override)
    if freeze_deep is not None:
        overrides.append(f"train.freeze_deep={freeze_deep}")
    return cfg.override(overrides)


def run(args: argparse.Namespace) -> int:
    from mp3net.train.gan import RUN_INFO, train

    if args.steps is not None and args.steps < 1:
        raise MP3NetError(f"--steps must be a positive number of D iterations, got {args.steps}")
    if args.init_optimizer and not args.init_from:
        raise MP3NetError("--init-optimizer needs --init-from RUN_DIR")
    cfg = resolve_config(args)
    data = args.data
    if data is None:
        info = Path(args.run) / RUN_INFO
        if not info.exists():
            raise MP3NetError("--data OUT_DIR is required for a new run")
        data = json.loads(info.read_text())["data"]
    trainer = train(
        cfg,
        data,
        args.run,
        steps=args.steps,
        device=args.device,
        require_checkpoint=args.resume,
        progress=not args.quiet,
        init_from=args.init_from,
        init_optimizer=args.init_optimizer,
    )
    if trainer.is_main:
        print(
            f"step {trainer.step}: checkpoint in {Path(args.run) / 'checkpoints'}, "
            f"generator in {Path(args.run) / 'export'}"
        )
    return 0
