"""The psychoacoustic noise layer (paper §2.2 eq. 15 and §3.2; docs/psychoacoustics.md#noise-layer).

Before the discriminator, reals and fakes alike get Gaussian noise scaled by their own masking threshold:
A~ = A + thr(A) ⊙ ε, ε ~ N(0, σ²), drawn afresh on every call. The fakes' threshold is computed in-graph from
the un-noised generator output, so the generator's gradient flows through it.
"""

from __future__ import annotations

import torch
from torch import nn

from mp3net.config import ModelConfig
from mp3net.dsp import PsychoacousticModel


class NoiseLayer(nn.Module):
    """A ``[..., F, N]`` (the trainer's ``[B, C, M, K]``) → A + σ·thr(A)·N(0, 1), same shape (float32,
    float64 for float64 input).

    Args:
        cfg: the model config (sample rate, bands, Bark bands, α of the psychoacoustic model), or a
            ready :class:`PsychoacousticModel` (analysis at other band counts than the model's).
        sigma: noise scale relative to the threshold; ``TrainConfig.noise_sigma`` (1/6 as in the original
            code, ±3σ spans the threshold; the paper's eq. 15 reads as 1/2).
    """

    def __init__(self, cfg: ModelConfig | PsychoacousticModel, sigma: float = 1 / 6) -> None:
        super().__init__()
        self.sigma = float(sigma)
        if isinstance(cfg, PsychoacousticModel):
            self.psycho = cfg
        else:
            self.psycho = PsychoacousticModel(
                cfg.sample_rate, cfg.n_bands, n_bark=cfg.n_bark, alpha=cfg.alpha
            )

    def threshold(self, A: torch.Tensor) -> torch.Tensor:
        """Masking threshold amplitudes, shaped like ``A`` (in-graph, differentiable)."""
        return self.psycho.threshold(A)

    def forward(
        self, A: torch.Tensor, generator: torch.Generator | None = None, threshold: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Noised ``A``; the threshold is computed in-graph (gradients flow through it) unless given."""
        if self.sigma == 0:
            return A.float() if A.dtype not in (torch.float32, torch.float64) else A
        thr = self.threshold(A) if threshold is None else threshold
        eps = torch.randn(thr.shape, generator=generator, dtype=thr.dtype, device=thr.device)
        return torch.addcmul(A.to(thr.dtype), thr, eps, value=self.sigma)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:.4g}"
