"""GAN objectives (docs/training.md#recipes) and the pretraining distance.

With x~ the tensors after the psychoacoustic noise layer (paper §3.2) and softplus(t) = log(1 + eᵗ):

- ``"wgan-gp"`` (paper §3.2, with the original code's defaults λ = 3, ε = 0.1):
  D: mean D(fake~) − mean D(real~) + ε·mean D(real~)² + λ·mean (‖∇D(x̂)‖ − 1)², x̂ between real~ and fake~;
  G: −mean D(fake~).
- ``"ns-r1"`` (non-saturating, StyleGAN2): D: softplus(D(fake~)) + softplus(−D(real~)) + γ/2·‖∇D(real~)‖²;
  G: softplus(−D(fake~)).

The penalties are taken on the noised inputs, the ones D sees, with ∇ with respect to D's input u (x~ in D's
unit scale: divided by the data's level per band with band normalisation; docs/networks.md), so λ and γ
mean the same at any level. :class:`GANLoss` runs them in phases, as StyleGAN2-ADA's ``loss.py`` does.

Stats are detached 0-d tensors (no device sync); call ``.item()`` when logging.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mp3net.config import TrainConfig
from mp3net.dsp.spectral import log_envelope, log_power, mid_side, power_spectrogram
from mp3net.model import Discriminator, NoiseLayer
from mp3net.train.augment import augment


def _sq_norms(grad: torch.Tensor) -> torch.Tensor:
    """Per-sample ‖g‖² ``[B]`` of ``[B, C, M, K]``, summed in float32 at least."""
    grad = grad if grad.dtype == torch.float64 else grad.float()
    return grad.square().flatten(1).sum(dim=1)


def _unit_gradient(D: Discriminator, x: torch.Tensor) -> torch.Tensor:
    """∇D at amplitudes ``x`` ``[B, C, M, K]`` with respect to D's input u (x in D's unit scale)."""
    _, grad = D.input_gradient(x, wrt_input=True)
    return grad


def gradient_penalty(
    D: Discriminator, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mean over the batch of (‖∇D(x̂)‖ − 1)², x̂ = α·real + (1 − α)·fake with α ~ U(0, 1) per sample.

    The norm is over the whole sample, √(Σ g² + 1e-8). ∇D comes from :meth:`Discriminator.input_gradient`
    (autograd's ``create_graph`` gradient without the zero pass back through the forward graph), so the
    penalty trains D. Both inputs are detached: it is a D-only term.

    Args:
        real, fake: ``[B, C, M, K]`` noised amplitudes.
        generator: RNG for α (reproducible runs).
    Returns:
        0-d tensor, float32 (float64 for float64 inputs).
    """
    real, fake = real.detach(), fake.detach()
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = torch.rand(shape, generator=generator, dtype=real.dtype, device=real.device)
    grad = _unit_gradient(D, alpha * real + (1 - alpha) * fake)
    return (torch.sqrt(_sq_norms(grad) + 1e-8) - 1).square().mean()


def r1_penalty(D: Discriminator, x: torch.Tensor) -> torch.Tensor:
    """Zero-centred gradient penalty mean over the batch of ‖∇D(x)‖² (R1 on reals, R2 on fakes), a D-only
    term (``x`` is detached), differentiable in D's weights. ``x``: ``[B, C, M, K]``; returns a 0-d tensor."""
    grad = _unit_gradient(D, x.detach())
    return _sq_norms(grad).mean()


def penalty(
    D: Discriminator,
    real: torch.Tensor,
    fake: torch.Tensor,
    loss: str = "wgan-gp",
    gp_lambda: float = 3.0,
    r1_gamma: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The recipe's weighted regulariser of D on the noised ``real``/``fake`` ``[B, C, M, K]``: λ·GP or
    γ/2·R1. Returns (term, stats with ``gp`` or ``r1`` un-weighted)."""
    if loss == "wgan-gp":
        gp = gradient_penalty(D, real, fake, generator=generator) if gp_lambda else real.new_zeros(())
        return gp_lambda * gp, {"gp": gp.detach()}
    r1 = r1_penalty(D, real)
    return 0.5 * r1_gamma * r1, {"r1": r1.detach()}


def adversarial_d(loss: str, d_real: torch.Tensor, d_fake: torch.Tensor, drift: float = 0.1) -> torch.Tensor:
    """D's adversarial term from scores ``[B, 1]`` (drift only in WGAN-GP)."""
    if loss == "wgan-gp":
        return d_fake.mean() - d_real.mean() + drift * d_real.square().mean()
    return F.softplus(d_fake).mean() + F.softplus(-d_real).mean()


def adversarial_g(loss: str, d_fake: torch.Tensor) -> torch.Tensor:
    """G's adversarial term from scores ``[B, 1]``."""
    if loss == "wgan-gp":
        return -d_fake.mean()
    return F.softplus(-d_fake).mean()


def d_loss(
    D: Discriminator,
    real_noised: torch.Tensor,
    fake_noised: torch.Tensor,
    gp_lambda: float = 3.0,
    drift: float = 0.1,
    generator: torch.Generator | None = None,
    backward: bool = False,
    loss: str = "wgan-gp",
    r1_gamma: float = 1.0,
    reg_scale: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """D's loss: the adversarial term plus ``reg_scale`` × the penalty (0 skips it: lazy regularisation's
    plain steps; k on its regularisation steps). ``fake_noised`` is detached: this loss only trains D.

    With ``backward``, each term is backpropagated as soon as it is built (the adversarial term, then the
    penalty): the gradients are the loss's, but only one graph is alive at a time, which lowers the peak
    memory (the returned loss is then detached).

    Returns:
        (loss, stats) with ``d_loss``, ``d_real``, ``d_fake`` (mean scores), ``w_distance`` (their
        difference), ``drift`` (mean D(real~)²) and the penalty's stats (``gp`` or ``r1``).
    """

    def backprop(term: torch.Tensor) -> torch.Tensor:
        if backward:
            with torch.autocast(term.device.type, enabled=False):
                term.backward()
            return term.detach()
        return term

    d_real = D(real_noised)
    d_fake = D(fake_noised.detach())
    total = backprop(adversarial_d(loss, d_real, d_fake, drift))
    stats = {
        "w_distance": (d_real.mean() - d_fake.mean()).detach(),
        "d_real": d_real.mean().detach(),
        "d_fake": d_fake.mean().detach(),
        "drift": d_real.square().mean().detach(),
    }
    if reg_scale:
        reg, reg_stats = penalty(D, real_noised, fake_noised, loss, gp_lambda, r1_gamma, generator)
        total = total + backprop(reg_scale * reg)
        stats.update(reg_stats)
    elif loss == "wgan-gp":
        stats["gp"] = d_real.new_zeros(())
    stats["d_loss"] = total.detach()
    return total, stats


def g_loss(D: nn.Module, fake_noised: torch.Tensor, loss: str = "wgan-gp") -> tuple[torch.Tensor, dict]:
    """G's loss; gradients flow through D (its parameters are not stepped) into G.

    Returns:
        (loss, stats) with stats ``g_loss`` and ``d_fake``.
    """
    d_fake = D(fake_noised)
    out = adversarial_g(loss, d_fake)
    return out, {"g_loss": out.detach(), "d_fake": d_fake.mean().detach()}


def relative_floor(power: torch.Tensor, floor_db: float) -> torch.Tensor:
    """``floor_db`` dB under each clip's and channel's mean frame power (the sum over bins of ``power``
    ``[B, C, T, F]``, averaged over frames): ``[B, C, 1, 1]``."""
    return power.sum(-1, keepdim=True).mean(-2, keepdim=True) * 10 ** (floor_db / 10)


def spectral_reconstruction(
    fake: torch.Tensor,
    real: torch.Tensor,
    ffts: tuple[int, ...],
    envelope: float = 0.0,
    stereo_mid_side: bool = False,
    floor_db: float = 0.0,
) -> torch.Tensor:
    """Multi-resolution log-spectrogram distance (docs/training.md#autoencoder-pretraining): the mean over
    the windows ``ffts`` of the mean |log S(fake) − log S(real)| in decibels / 20, S the STFT power of the
    audio the amplitudes encode (:func:`~mp3net.dsp.spectral.log_spectrogram`). Blind to the MDCT's sign
    pattern (any phase of a partial is as good), sharp in time at short windows and in pitch at long ones.

    The absolute difference of logs is least at the median of the log power G can predict, which lies
    below its mean where G is unsure exactly which bin or frame a partial takes: fitted alone, G draws the
    clips several dB too quiet. ``envelope`` > 0 adds that weight times the same distance between the
    :func:`~mp3net.dsp.spectral.log_envelope` (the power averaged over blocks of frames and bins, then
    logged), which is least at the right level.

    Per channel, the distance is blind to how the channels relate: G may draw L and R with independent
    signs, a stereo image as wide as it gets, where the reals' is narrow. With ``stereo_mid_side`` it is
    measured on the mid and side channels (:func:`~mp3net.dsp.spectral.mid_side`) instead.

    With ``floor_db`` < 0 both powers are floored at that many dB under the real clip's mean frame power (per
    clip and channel, the sum over bins averaged over frames) before the log and before the envelope's
    blocks, where the absolute ``LOG_FLOOR`` asks G to draw the reals' noise floor at −90 dB as exactly as
    their partials: a bank draws that floor with faint steady oscillators, a comb of lines in every clip
    (docs/training.md#the-relative-floor).

    Args:
        fake: G's amplitudes ``[B, C, M, K]`` (gradient flows).
        real: the target amplitudes ``[B, C, M, K]`` (no gradient).
        ffts: the STFT windows.
        envelope: the weight of the envelope distance.
        stereo_mid_side: measure mid and side rather than left and right.
        floor_db: the floor relative to each clip's level, dB; 0: the absolute floor only.
    Returns:
        The 0-d loss.
    """
    if stereo_mid_side:
        fake, real = mid_side(fake), mid_side(real)
    total = fake.new_zeros((), dtype=torch.float32)
    for n_fft in ffts:
        with torch.no_grad():
            target = power_spectrogram(real.float(), n_fft)
        power = power_spectrogram(fake.float(), n_fft)
        if floor_db:
            floor = relative_floor(target, floor_db)
            target, power = target + floor, power + floor
        total = total + (log_power(power) - log_power(target)).abs().mean()
        if envelope > 0:
            total = total + envelope * (log_envelope(power) - log_envelope(target)).abs().mean()
    return total / len(ffts)


class GANLoss:
    """The GAN objective in phases (StyleGAN2-ADA's ``loss.py``): :meth:`d_main` (D's adversarial term,
    with the penalty joined to it when it is not lazy), :meth:`d_reg` (the penalty alone, every
    ``reg_every`` D steps scaled by the interval: lazy regularisation) and :meth:`g_main` (G's adversarial
    term through a frozen D). It owns what D sees: the augmentation, then the psychoacoustic noise layer
    (paper §3.2), drawn from the trainer's random stream. Each phase backpropagates its own term, so one
    graph is alive at a time; each returns its detached stats.

    Args:
        cfg: the ``train`` section (loss, gp_lambda, drift, r1_gamma, reg_every, augment).
        noise: the noise layer.
        generator: the random stream of noise, augmentation and the penalty's interpolation.
        autocast: a context factory for the networks' forward passes (bf16 or nothing).
    """

    def __init__(
        self,
        cfg: TrainConfig,
        noise: NoiseLayer,
        generator: torch.Generator,
        autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
    ) -> None:
        self.cfg, self.noise, self.generator, self.autocast = cfg, noise, generator, autocast

    @property
    def lazy(self) -> bool:
        return self.cfg.reg_every > 1

    def regularise_now(self, d_step: int) -> bool:
        """Whether D step ``d_step`` (from 0) carries the lazy penalty."""
        return self.lazy and d_step % self.cfg.reg_every == 0

    def to_d(self, amplitudes: torch.Tensor) -> torch.Tensor:
        """What D sees of amplitudes ``[B, C, M, K]``: augmented (``train.augment``), then noised, the
        masking threshold in-graph so that G's gradient flows through it."""
        x = augment(amplitudes, self.cfg.augment, generator=self.generator)
        return self.noise(x, generator=self.generator)

    def d_main(self, D: Discriminator, real_n: torch.Tensor, fake_n: torch.Tensor) -> dict[str, torch.Tensor]:
        """Backpropagate D's loss on noised reals and fakes ``[B, C, M, K]`` into D's gradients."""
        tc = self.cfg
        with self.autocast():
            _, stats = d_loss(
                D, real_n, fake_n, tc.gp_lambda, tc.drift, self.generator, backward=True,
                loss=tc.loss, r1_gamma=tc.r1_gamma, reg_scale=0.0 if self.lazy else 1.0,
            )  # fmt: skip
        return stats

    def d_reg(self, D: Discriminator, real_n: torch.Tensor, fake_n: torch.Tensor) -> dict[str, torch.Tensor]:
        """Backpropagate the lazy penalty, scaled by ``reg_every``, into D's gradients."""
        tc = self.cfg
        with self.autocast():
            reg, stats = penalty(D, real_n, fake_n, tc.loss, tc.gp_lambda, tc.r1_gamma, self.generator)
            reg = reg * tc.reg_every
        with torch.autocast(reg.device.type, enabled=False):
            reg.backward()
        return {**stats, "d_reg": reg.detach()}

    def g_main(self, D: Discriminator, fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """G's adversarial loss on fakes ``[B, C, M, K]`` (with their graph), through the noise layer and D;
        the caller adds its own terms and backpropagates."""
        with self.autocast():
            return g_loss(D, self.to_d(fake), self.cfg.loss)
