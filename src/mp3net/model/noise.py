"""The psychoacoustic noise layer (paper §2.2 eq. 15 and §3.2; docs/psychoacoustics.md#noise-layer).

Before the discriminator, reals and fakes alike get Gaussian noise scaled by their own masking threshold:
A~ = A + thr(A) ⊙ ε, ε ~ N(0, σ²), drawn afresh on every call. The fakes' threshold is computed in-graph from
the un-noised generator output, so the generator's gradient flows through it.
"""

from __future__ import annotations

import torch
from torch import nn

from mp3net.config import Config, ModelConfig
from mp3net.dsp import PsychoacousticModel


class NoiseLayer(nn.Module):
    """A ``[B, C, M, K]`` → A + σ·thr(A)·N(0, 1), same shape (float32, float64 for float64 input).

    Args:
        cfg: the model config (sample rate, bands, Bark bands, α of the psychoacoustic model).
        sigma: noise scale relative to the threshold; ``TrainConfig.noise_sigma`` (1/6 as in the original
            code, ±3σ spans the threshold; the paper's eq. 15 reads as 1/2).
    """

    def __init__(self, cfg: ModelConfig, sigma: float = 1 / 6) -> None:
        super().__init__()
        self.sigma = float(sigma)
        self.psycho = PsychoacousticModel(cfg.sample_rate, cfg.n_bands, n_bark=cfg.n_bark, alpha=cfg.alpha)

    @classmethod
    def from_config(cls, cfg: Config) -> NoiseLayer:
        return cls(cfg.model, cfg.train.noise_sigma)

    def threshold(self, A: torch.Tensor) -> torch.Tensor:
        """Masking threshold amplitudes ``[B, C, M, K]`` (in-graph, differentiable)."""
        return self.psycho.threshold(A)

    def forward(
        self, A: torch.Tensor, generator: torch.Generator | None = None, threshold: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.sigma == 0:
            return A.float() if A.dtype not in (torch.float32, torch.float64) else A
        return self.psycho.add_noise(A, self.sigma, generator=generator, threshold=threshold)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:.4g}"
