"""Anchors: a pretraining run's clips and latents, kept in a GAN started from it
(docs/training.md#anchored-gan).

``mp3net pretrain`` teaches G to draw each of its clips from that clip's latent; the GAN that follows
pushes every other latent towards music, and nothing stops it from forgetting the clips (the texture of
every GAN run, benchmarks/README.md#autoencoder-pretraining-glo). With ``train.anchor = w`` each G step also
draws a batch of the table's clips from their latents and adds ``w`` × their
:func:`~mp3net.train.losses.spectral_reconstruction` to G's loss.

The GAN's generator is the pretraining export, whose head has the latents' Gaussian N(μ, L·Lᵀ) folded in
(G_folded(z) = G(μ + L·z)), so a table latent zᵢ becomes L⁻¹(zᵢ − μ) here: G_folded of it is exactly what
the pretrained G drew from zᵢ.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mp3net.config import Config
from mp3net.model import Generator
from mp3net.train import checkpoint as ckpt
from mp3net.train.pretrain import PRETRAIN_DIR, LatentGaussian, folded_generator, table_generator
from mp3net.utils import MP3NetError, atomic_write

ANCHORS_FILE = "anchors.pt"


@dataclass
class AnchorTable:
    """``clips``: dataset indices; ``latents`` ``[n, latent]``: each clip's latent in the folded
    generator's coordinates (z ~ N(0, I) is the latents' Gaussian)."""

    clips: list[int]
    latents: torch.Tensor

    def clips_audio(self, dataset: Any, rows: torch.Tensor) -> torch.Tensor:
        """The audio ``[B, C, T]`` of the table's ``rows`` ``[B]`` in ``dataset``."""
        return dataset.stack(self.clips[int(i)] for i in rows.cpu())

    def save(self, path: str | Path) -> Path:
        """Atomically write the table (it never changes during a run: written once at its start)."""
        blob = {"clips": list(self.clips), "latents": self.latents.detach().cpu()}
        return atomic_write(path, lambda tmp: torch.save(blob, tmp))

    @classmethod
    def load(cls, path: str | Path) -> AnchorTable:
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            return cls([int(c) for c in blob["clips"]], blob["latents"].float())
        except (OSError, RuntimeError, KeyError, TypeError) as e:
            raise MP3NetError(f"{path}: not a readable anchor table ({str(e).splitlines()[0]})") from None


def is_pretraining_run(path: str | Path) -> bool:
    """Whether ``path`` is an ``mp3net pretrain`` run directory (it has pretraining checkpoints)."""
    return (Path(path) / PRETRAIN_DIR / ckpt.CKPT_DIR).is_dir()


def from_pretraining(run: str | Path, sampler: str = "gaussian") -> tuple[Generator, Config, AnchorTable]:
    """The folded generator of a pretraining run's latest checkpoint, its config, and its anchor table,
    all from that one checkpoint (so they agree even when the run stopped between checkpoint and export).
    With ``sampler="table"`` the generator draws through a table sampler fitted to the table's folded
    coordinates (docs/training.md#the-sharpening-stage), and the config says so."""
    found = ckpt.load_latest(Path(run) / PRETRAIN_DIR)
    if found is None:
        raise MP3NetError(f"{run}: no readable pretraining checkpoint in {Path(run) / PRETRAIN_DIR}")
    state, _ = found
    cfg = Config.from_dict(state["config"])
    latents = state["latents"]["weight"].detach().cpu()
    G = folded_generator(cfg, state["G"], latents)
    table = AnchorTable([int(c) for c in state["clips"]], folded_coordinates(latents))
    if sampler == "table":
        G = table_generator(cfg, G.state_dict(), table.latents)
        cfg = dataclasses.replace(cfg, model=G.cfg)
    return G, cfg, table


def folded_coordinates(latents: torch.Tensor) -> torch.Tensor:
    """Latents ``[n, latent]`` → L⁻¹(z − μ) ``[n, latent]`` under their own Gaussian
    (:class:`~mp3net.train.pretrain.LatentGaussian`, the one :func:`folded_generator` folds in)."""
    g = LatentGaussian.fit(latents)
    centred = (latents.float() - g.mean).T  # [latent, n]
    return torch.linalg.solve_triangular(g.scale, centred, upper=False).T.contiguous()


def run_anchor_table(run_dir: Path, source: AnchorTable | None, n_clips: int, write: bool) -> AnchorTable:
    """A GAN run's anchors (docs/training.md#anchored-gan): its own table when it has one (a resumed run),
    else the pretraining run's it started from, written into the run directory (``write``) for its
    resumes. One-line errors: no table, or one of another dataset (``n_clips`` clips)."""
    own = Path(run_dir) / ANCHORS_FILE
    if own.exists():
        table = AnchorTable.load(own)
    elif source is not None:
        table = source
        if write:
            own.parent.mkdir(parents=True, exist_ok=True)
            table.save(own)
    else:
        raise MP3NetError(
            "train.anchor keeps the clips of a pretraining run: start the run with --init-from a run "
            "directory of `mp3net pretrain`"
        )
    if max(table.clips) >= n_clips:
        raise MP3NetError(
            f"the anchors are clips of another dataset (clip {max(table.clips)}; this one has "
            f"{n_clips}): train on the data the pretraining run used"
        )
    return table
