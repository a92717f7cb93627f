"""What a GAN run shows of itself as it goes (rank 0): fixed-seed samples in the logs, and `mp3net evaluate`'s
metrics of fixed-seed fakes against fixed training clips (docs/training.md#metrics-during-training). Neither
draws from the training's random streams, so training goes on exactly as without them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from mp3net.config import Config
from mp3net.dsp import imdct
from mp3net.model import Generator
from mp3net.train.logging import RunLogger
from mp3net.utils import derive_seed


class Monitor:
    """Samples of ``train.n_samples`` fixed latents and evaluations of ``train.eval_clips`` fixed latents
    against as many clips of ``data_dir`` (the same at every evaluation: a comparable curve)."""

    def __init__(self, cfg: Config, data_dir: Path, device: torch.device, say: Callable[[str], None]) -> None:
        self.cfg, self.data_dir, self.device, self.say = cfg, data_dir, device, say
        tc, mc = cfg.train, cfg.model
        zg = torch.Generator().manual_seed(derive_seed(tc.seed, 2**31 - 1))
        self.z_fixed = torch.randn(tc.n_samples, mc.latent_dim, generator=zg).to(device)
        self._eval_reals: list[torch.Tensor] | None = None
        self.z_eval: torch.Tensor | None = None  # [eval_clips, latent], drawn at the first evaluation

    def sample(self, G: Generator, step: int, logger: RunLogger) -> None:
        """Fixed-seed fakes of ``G`` → audio and images in the logs."""
        if self.cfg.train.n_samples <= 0:
            return
        with torch.no_grad():
            A = G(self.z_fixed).float()
            audio = imdct(A, trim=True)
        logger.samples(step, A.cpu(), audio.cpu(), self.cfg.model.sample_rate)

    def evaluate(self, G: Generator, step: int, logger: RunLogger) -> dict[str, float]:
        """The metrics of ``G``'s fakes for the fixed latents, logged as ``eval/*`` and printed."""
        from mp3net import evaluate as ev

        tc, mc = self.cfg.train, self.cfg.model
        if self._eval_reals is None or self.z_eval is None:
            self._eval_reals, _ = ev.load_real_clips(self.data_dir, tc.eval_clips, mc.clip_samples, seed=1)
            zg = torch.Generator().manual_seed(derive_seed(tc.seed, 2**31 - 2))
            self.z_eval = torch.randn(tc.eval_clips, mc.latent_dim, generator=zg)
        fakes = [
            imdct(G.generate(z.to(self.device)), trim=True).cpu() for z in self.z_eval.split(tc.batch_size)
        ]
        head = ev.evaluate_clips(self._eval_reals, list(torch.cat(fakes)), mc.sample_rate).headline()
        stats = {f"eval/{k}": v for k, v in head.items()}
        logger.scalars(step, stats)
        self.say(f"step {step}: {ev.headline_text(head)}")
        return stats
