"""D's spectral view (docs/networks.md#spectral-discriminator): a second discriminator on a long-window log
spectrogram of the noised amplitudes, with its own score.

MP3net's discriminator sees MDCT frames of 2N samples (23 ms at the tiny preset), where a held partial and a
band of noise of the same level both flicker from frame to frame. A window of ``model.d_spectral_fft``
samples resolves the partial as one narrow, steady line, which a few convolutions tell from a smear.
"""

from __future__ import annotations

import torch
from torch import nn

from mp3net.config import SPECTRAL_DOWNSAMPLES, ModelConfig
from mp3net.dsp.spectral import log_spectrogram
from mp3net.model.layers import Conv3, LeakyReLU, init_weights, minibatch_spread, minibatch_stddev

# log_spectrogram's typical level (dB/20) on music at rms ≈ 0.01, removed so the first conv starts centred
VIEW_OFFSET = -2.0


class SpectralDiscriminator(nn.Module):
    """Noised amplitudes ``[B, C, M, K]`` → :meth:`view`, the log spectrogram ``[B, C, T, F]`` (T, F even)
    → a 3×3 conv, ``SPECTRAL_DOWNSAMPLES`` stride-(2, 2) 3×3 convs (LeakyReLU after each), minibatch stddev
    (as in D's head: partials drawn at the same frequencies for every latent stand out only across the
    batch), a 3×3 conv to one channel: a score per patch of about 2^5·3 frames and bins → their mean,
    ``[B, 1]`` float32 (float64 for a float64 view)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_fft = cfg.d_spectral_fft
        width = cfg.d_spectral_channels
        self.spread = cfg.d_spectral_spread
        layers: list[nn.Module] = [Conv3(cfg.channels + self.spread, width), LeakyReLU(cfg.leaky_slope)]
        for _ in range(SPECTRAL_DOWNSAMPLES):
            layers += [Conv3(width, width, stride=(2, 2)), LeakyReLU(cfg.leaky_slope)]
        self.body = nn.Sequential(*layers)
        self.mbstd_group = cfg.mbstd_group
        self.score = Conv3(width + 1, 1)
        init_weights(self)

    def view_shape(self, cfg: ModelConfig) -> tuple[int, int, int]:
        """(C, T, F) of :meth:`view` for one clip of ``cfg``'s length."""
        hop = self.n_fft // 4
        frames = (cfg.n_frames + 1) * cfg.n_bands // hop + 1
        return cfg.channels, frames // 2 * 2, self.n_fft // 2

    def view(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, M, K]`` → ``[B, C, T, F]``: the log spectrogram, its last frame and Nyquist bin dropped so
        both lengths are even (the first stride-2 conv halves them exactly), centred by ``VIEW_OFFSET``."""
        v = log_spectrogram(x, self.n_fft)
        t, f = v.shape[-2] // 2 * 2, v.shape[-1] // 2 * 2
        return v[..., :t, :f] - VIEW_OFFSET

    def score_view(self, v: torch.Tensor) -> torch.Tensor:
        """A :meth:`view` ``[B, C, T, F]`` → score ``[B, 1]``."""
        if self.spread:
            v = minibatch_spread(v, self.mbstd_group)
        score = self.score(minibatch_stddev(self.body(v), self.mbstd_group))
        return (score if score.dtype == torch.float64 else score.float()).mean(dim=(2, 3)).view(-1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score_view(self.view(x))
