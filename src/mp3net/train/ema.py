"""The exponential moving average of the generator's weights (the EMA generator that samples, evaluations
and the export use; docs/training.md#ema-of-the-generator)."""

from __future__ import annotations

import copy

import torch

from mp3net.config import TrainConfig
from mp3net.model import Generator


class EMA:
    """``model``: a copy of G whose weights follow G's with the decay of :meth:`beta` after every G step."""

    def __init__(self, G: Generator, cfg: TrainConfig, world: int = 1) -> None:
        self.model = copy.deepcopy(G).requires_grad_(False).eval()
        self.cfg, self.clips_per_step = cfg, cfg.batch_size * world

    def beta(self, g_steps: int) -> float:
        """The decay after G step ``g_steps`` (from 1): a half-life in clips (ramped up with the clips seen,
        as in StyleGAN2-ADA), or ``ema_decay`` with a short warm-up so early samples do not average over
        the random initialisation."""
        tc = self.cfg
        if tc.ema_half_life <= 0:
            return min(tc.ema_decay, (1 + g_steps) / (10 + g_steps))
        half_life = tc.ema_half_life
        if tc.ema_rampup > 0:
            half_life = min(half_life, g_steps * self.clips_per_step * tc.ema_rampup)
        return 0.5 ** (self.clips_per_step / max(half_life, 1e-8))

    @torch.no_grad()
    def update(self, G: Generator, g_steps: int) -> None:
        decay = self.beta(g_steps)
        ema: list[torch.Tensor] = list(self.model.parameters())
        torch._foreach_lerp_(ema, [p.detach() for p in G.parameters()], 1.0 - decay)
        for be, b in zip(self.model.buffers(), G.buffers(), strict=True):
            be.copy_(b)
