"""Fine-tuning (paper §4.3.1; docs/training.md#fine-tuning-the-shallow-blocks): a new GAN run that starts
from another model (``mp3net train --init-from SOURCE``), optionally training only the shallowest blocks
(``train.freeze_deep``).

A source is a GAN run directory (its newest checkpoint: G, EMA-G, D and, if asked, both optimisers), an
autoencoder-pretraining run directory (its folded generator and its latent table, for the anchor term), or
an export or shipped model (G alone; D starts fresh).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mp3net import artifacts
from mp3net.config import Config
from mp3net.model import Discriminator, Generator
from mp3net.train import checkpoint as ckpt
from mp3net.train.anchors import AnchorTable, from_pretraining, is_pretraining_run
from mp3net.utils import MP3NetError


def trainable_parameters(G: Generator, D: Discriminator, freeze_deep: int) -> tuple[list, list]:
    """Parameters of G and D that train. With ``freeze_deep = k > 0`` only the k shallowest blocks of each
    train, with what sits on their shallow side: G's output layer, D's input layer (paper §4.3.1)."""
    if freeze_deep <= 0:
        return list(G.parameters()), list(D.parameters())
    k = min(freeze_deep, len(G.blocks))
    g = [p for b in list(G.blocks)[-k:] for p in b.parameters()]
    g += [p for name, p in G.named_parameters() if not name.startswith(("dense.", "blocks."))]
    d = list(D.from_in.parameters()) + [p for b in list(D.blocks)[:k] for p in b.parameters()]
    return g, d


@dataclass
class Start:
    """The weights a fine-tuning run starts from (state dicts), where they came from, and, from a
    pretraining run, its latent table."""

    G: dict[str, torch.Tensor]
    G_ema: dict[str, torch.Tensor]
    D: dict[str, torch.Tensor] | None
    optimizers: dict[str, Any] | None  # {"opt_G": ..., "opt_D": ...}
    where: Path
    table: AnchorTable | None = None


def load_start(
    source: str | Path,
    cfg: Config,
    device: torch.device,
    with_optimizer: bool,
    may_differ: frozenset[str] = frozenset(),
) -> Start:
    """Read what ``--init-from source`` starts from; its model config must match ``cfg``'s but for the
    fields ``may_differ`` (one line)."""
    path = artifacts.resolve_model_path(source)
    if is_pretraining_run(path):
        G, saved, table = from_pretraining(path, cfg.model.sampler)
        ckpt.check_compatible(saved.to_dict(), cfg, path, may_differ)
        weights = G.state_dict()
        return Start(weights, weights, None, None, path, table)
    if (path / artifacts.CKPT_DIR).is_dir():
        found = artifacts.load_latest(path, map_location=device)
        if found is None:
            raise MP3NetError(f"--init-from {source}: no readable checkpoint in {path / artifacts.CKPT_DIR}")
        state, where = found
        ckpt.check_compatible(state["config"], cfg, where, may_differ)
        optim = {k: state[k] for k in ("opt_G", "opt_D")} if with_optimizer else None
        return Start(state["G"], state.get("G_ema") or state["G"], state["D"], optim, Path(where))
    export = path / artifacts.EXPORT_DIR
    saved, weights = artifacts.load_export(export if export.is_dir() else path)
    ckpt.check_compatible(saved.to_dict(), cfg, path, may_differ)
    return Start(weights, weights, None, None, path)


def load_weights(module: nn.Module, weights: dict[str, torch.Tensor], where: str | Path) -> None:
    """``module.load_state_dict(weights)`` with a mismatch as one line naming ``where``."""
    try:
        module.load_state_dict(weights)
    except (RuntimeError, KeyError, ValueError) as e:
        raise MP3NetError(f"{where} does not match this model: {str(e).splitlines()[0]}") from None
