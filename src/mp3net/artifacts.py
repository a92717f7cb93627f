"""Artifacts: the run-directory layout, the shipped models, and reading exports and checkpoints.

A leaf of the package: inference (:mod:`mp3net.generate`, :mod:`mp3net.serve`) reads what training wrote
through this module alone, without importing :mod:`mp3net.train`.

A run directory holds ``config.json``, ``checkpoints/step-NNNNNNNN.pt`` (GAN training: full state) or
``pretrain/`` (autoencoder pretraining), and ``export/`` (``config.json`` + ``model.safetensors``: the
generator alone, what ``mp3net generate`` loads). A shipped model is an export folder inside the package.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mp3net.config import Config, ConfigError
from mp3net.model import Generator
from mp3net.utils import MP3NetError, first_line

CKPT_DIR = "checkpoints"
EXPORT_DIR = "export"
_NAME = re.compile(r"^step-(\d+)\.pt$")
PRETRAINED_DIR = Path(__file__).parent / "pretrained"
PRETRAINED_ALIASES = {"pretrained": "tiny-chorales"}


# ---------------------------------------------------------------------------------------------------------
# shipped models and model paths
# ---------------------------------------------------------------------------------------------------------
def pretrained_names() -> list[str]:
    """Names of the models shipped in the package (folders with a config.json)."""
    if not PRETRAINED_DIR.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / "config.json").exists())


def resolve_model_path(model: str | Path) -> Path:
    """A path as given, or the folder of a shipped model named ``pretrained`` / ``tiny-chorales``."""
    p = Path(model)
    if p.exists():
        return p
    name = PRETRAINED_ALIASES.get(str(model), str(model))
    if (PRETRAINED_DIR / name / "config.json").exists():
        return PRETRAINED_DIR / name
    known = ", ".join(["pretrained", *pretrained_names()])
    raise MP3NetError(f"model {model} not found: give an export or run directory, or one of: {known}")


def source_config(source: str | Path) -> Config:
    """The config of the run directory or export (or shipped model name) a fine-tuning run starts from."""
    path = resolve_model_path(source)
    for candidate in (path / "config.json", path / "export" / "config.json"):
        if candidate.exists():
            return Config.load(candidate)
    raise MP3NetError(f"--init-from {source}: no config.json there (not a run directory or an export)")


# ---------------------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------------------
def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CKPT_DIR / f"step-{step:08d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first."""
    d = Path(run_dir) / CKPT_DIR
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise MP3NetError(
            f"cannot load checkpoint {path}: {str(e).splitlines()[0] if str(e) else e}"
        ) from None


class NoReadableCheckpoint(MP3NetError):
    """A run directory holds checkpoints but none of them can be read."""


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def load_latest(
    run_dir: str | Path,
    map_location: str | torch.device = "cpu",
    warn: Callable[[str], None] | None = _warn,
) -> tuple[dict[str, Any], Path] | None:
    """The newest loadable checkpoint of a run, or None when the run has no checkpoint.

    Unreadable ones (a torn file, a foreign one) are skipped for the previous one, with one ``warn``
    line naming them when an older checkpoint is used. Raises :class:`NoReadableCheckpoint` (one line,
    naming them) when there are checkpoints and none can be read: a caller never silently starts over.
    """
    found = list_checkpoints(run_dir)
    bad: list[tuple[Path, str]] = []
    for _, path in reversed(found):
        try:
            state = load_checkpoint(path, map_location)
        except MP3NetError as e:
            bad.append((path, str(e).split(": ", 1)[-1].split(". ")[0]))
            continue
        if bad and warn is not None:
            names = ", ".join(p.name for p, _ in bad)
            warn(f"{names} unreadable ({bad[0][1]}); using the older {path.name} instead")
        return state, path
    if bad:
        names = ", ".join(p.name for p, _ in bad)
        raise NoReadableCheckpoint(
            f"no checkpoint of {Path(run_dir)} can be read ({names}: {bad[0][1]}); to start this run over, "
            f"delete {Path(run_dir) / CKPT_DIR} or train into another --run directory"
        )
    return None


# ---------------------------------------------------------------------------------------------------------
# exports and generators
# ---------------------------------------------------------------------------------------------------------
def export_step(out_dir: str | Path) -> int | None:
    """The step an export folder was written at (None when it is missing or unreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(str(Path(out_dir) / "model.safetensors"), "pt") as f:
            return int((f.metadata() or {})["step"])
    except Exception:  # missing, torn or foreign: treated as out of date
        return None


def load_export(path: str | Path) -> tuple[Config, dict[str, torch.Tensor]]:
    """Read an export folder (or its ``model.safetensors``): the config and the generator state dict.

    Every problem (a missing file, an unreadable config, corrupt weights) is a one-line
    :class:`MP3NetError`.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    cfg_path, w_path = folder / "config.json", folder / "model.safetensors"
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise MP3NetError(f"{folder} is not a complete exported model: {p.name} is missing")
    try:
        cfg = Config.load(cfg_path)
    except ConfigError as e:
        raise MP3NetError(f"{cfg_path}: {e}") from None
    try:
        weights = load_file(str(w_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise MP3NetError(f"{w_path} is corrupt or unreadable: {first_line(e)}") from None
    return cfg, weights


# ---------------------------------------------------------------------------------------------------------
# generators
# ---------------------------------------------------------------------------------------------------------
def weights_from_run(run: Path) -> tuple[Config, dict[str, torch.Tensor]]:
    export = run / "export"
    if (export / "model.safetensors").exists():
        return load_export(export)

    found = load_latest(run)
    if found is None:
        raise MP3NetError(f"{run} has neither an export/ folder nor a checkpoint to load a generator from")
    state, path = found
    try:
        saved = state["config"]
        cfg = Config.from_dict(saved if isinstance(saved, dict) else json.loads(saved))
    except (KeyError, ConfigError, TypeError, ValueError) as e:
        raise MP3NetError(f"{path} holds no usable config: {first_line(e)}") from None
    weights = state.get("G_ema") or state.get("G")
    if not weights:
        raise MP3NetError(f"{path} holds no generator weights")
    return cfg, weights


def load_generator(model: str | Path, device: str | torch.device | None = None) -> tuple[Generator, Config]:
    """Load a generator in eval mode.

    Args:
        model: an export folder (``config.json`` + ``model.safetensors``), that ``model.safetensors``
            file, a run directory (its ``export/``, else the EMA generator of its newest checkpoint), or
            the name of a shipped model (``pretrained``, ``tiny-chorales``).
        device: where to put it (default CPU).
    Returns:
        ``(generator, config)``. Every problem is a one-line :class:`MP3NetError`.
    """
    path = resolve_model_path(model)
    if path.is_file():
        path = path.parent
    if (
        (path / "config.json").exists()
        and not (path / "checkpoints").is_dir()
        and not (path / "export").is_dir()
    ):
        cfg, weights = load_export(path)
    elif (path / "export").is_dir() or (path / "checkpoints").is_dir():
        cfg, weights = weights_from_run(path)
    elif (path / "model.safetensors").exists():
        cfg, weights = load_export(path)  # reports the missing config.json
    else:
        raise MP3NetError(
            f"{path} is neither an exported model (config.json + model.safetensors) nor a run directory"
        )
    try:
        G = Generator(cfg.model)
    except ConfigError as e:
        raise MP3NetError(f"{path}: invalid model config: {e}") from None
    try:
        G.load_state_dict(weights)
    except RuntimeError as e:
        raise MP3NetError(f"{path}: weights do not match its config ({first_line(e)[:200]})") from None
    if not all(torch.isfinite(p).all() for p in G.parameters()):
        raise MP3NetError(f"{path}: weights contain NaN or Inf")
    return G.to(device or "cpu").eval(), cfg


def from_pretrained(model: str | Path = "pretrained", device: str | torch.device | None = None) -> Generator:
    """The generator of an export/run directory or shipped model name; its config is ``G.cfg``."""
    return load_generator(model, device)[0]


# ---------------------------------------------------------------------------------------------------
# latents
