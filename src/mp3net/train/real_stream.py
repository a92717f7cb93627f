"""The GAN's stream of real clips: batches of random crops (:class:`~mp3net.data.CropSampler`), loaded by a
``DataLoader`` and turned into MDCT amplitudes on the training device; its position is part of the
checkpoint, so a resumed run reads the batches an uninterrupted one would (docs/training.md#exact-resume)."""

from __future__ import annotations

from typing import Any

import torch

from mp3net.config import TrainConfig
from mp3net.data import ClipDataset, CropSampler
from mp3net.dsp import mdct
from mp3net.utils import derive_seed


class RealStream:
    """Batches ``[B, C, M, K]`` of one rank's real clips, :meth:`next` after :meth:`next`."""

    def __init__(
        self, dataset: ClipDataset, cfg: TrainConfig, rank: int, device: torch.device, n_bands: int
    ) -> None:
        self.dataset, self.cfg, self.rank, self.device, self.n_bands = dataset, cfg, rank, device, n_bands
        self.sampler = CropSampler(len(dataset), cfg.batch_size, seed=cfg.seed, rank=rank)
        self.consumed = 0  # batches this rank has taken
        self._loader: Any = None

    def _batches(self) -> Any:
        from torch.utils.data import DataLoader

        self.sampler.start = self.consumed
        nw = max(0, self.cfg.num_workers)
        seed = derive_seed(self.cfg.seed, self.rank, self.consumed)
        loader: DataLoader = DataLoader(
            self.dataset,  # type: ignore[arg-type]
            batch_sampler=self.sampler,
            num_workers=nw,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if nw else None,
            persistent_workers=False,
            # its own generator for the workers' base seed: a fresh iterator (each resume) would
            # otherwise draw from the global RNG, which is part of the checkpointed state
            generator=torch.Generator().manual_seed(seed),
        )
        return iter(loader)

    def next(self) -> torch.Tensor:
        """The next batch's amplitudes ``[B, C, M, K]`` on the training device."""
        if self._loader is None:
            self._loader = self._batches()
        x = next(self._loader)
        self.consumed += 1
        return mdct(x.to(self.device, non_blocking=True), self.n_bands)

    def state(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict(self.consumed)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self.consumed = int(state["sampler"]["next_batch"])
        self._loader = None

    def restart(self, seed: int) -> None:
        """From the first batch of a new seed (a checkpoint of another world size)."""
        self.sampler.seed = seed
        self.consumed = self.sampler.start = 0
        self._loader = None

    def reseed(self, seed: int) -> None:
        """Other crops from here on (after a rollback)."""
        self.sampler.seed = seed
        self._loader = None
