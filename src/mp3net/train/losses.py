"""GAN objectives (docs/training.md#recipes): the paper's WGAN-GP with drift, and two zero-centred recipes.

With x~ the tensors after the psychoacoustic noise layer (paper §3.2) and softplus(t) = log(1 + eᵗ):

- ``"wgan-gp"`` (paper §3.2, with the original code's defaults λ = 3, ε = 0.1):
  D: mean D(fake~) − mean D(real~) + ε·mean D(real~)² + λ·mean (‖∇D(x̂)‖ − 1)², x̂ between real~ and fake~;
  G: −mean D(fake~).
- ``"ns-r1"`` (non-saturating, StyleGAN2): D: softplus(D(fake~)) + softplus(−D(real~)) + γ/2·‖∇D(real~)‖²;
  G: softplus(−D(fake~)).
- ``"rpgan-r1r2"`` (relativistic pairing, R3GAN): D: softplus(D(fake~) − D(real~)) + γ/2·(‖∇D(real~)‖² +
  ‖∇D(fake~)‖²); G: softplus(D(real~) − D(fake~)).

The penalties are taken on the noised inputs, the ones D sees, with ∇ with respect to D's input u (x~ in D's
unit scale x~·``model.amplitude_gain``, compressed by ``model.d_compress``; docs/networks.md#amplitude-gain),
so λ and γ mean the same at any gain.
With ``model.d_spectral_channels``, D's spectral view S (docs/networks.md#spectral-discriminator) is a second
discriminator with the recipe's adversarial terms on its own scores (:func:`spectral_d_loss`,
:func:`spectral_g_loss`) and R1 on its own input, the log spectrogram v of the noised reals
(:func:`spectral_r1`): γ_s/2·‖∇_v S‖², every step or lazily with the MDCT view's penalty.

Optionally G's loss adds w·W₁ of the pooled level changes (:func:`change_matching`,
docs/training.md#change-matching) and of the pooled level contrasts (:func:`contrast_matching`,
docs/training.md#contrast-matching), W₁ of the partials' changes between segments of a clip
(:func:`partial_change_matching`, docs/training.md#partial-change-matching), and mode seeking
(:func:`mode_seeking`, docs/training.md#mode-seeking).

Stats are detached 0-d tensors (no device sync); call ``.item()`` when logging.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mp3net.dsp import pooled_level_change, pooled_level_contrast
from mp3net.dsp.spectral import (
    log_envelope,
    log_power,
    log_spectrogram,
    mid_side,
    partial_changes,
    power_spectrogram,
    spectral_detail,
)
from mp3net.model import Discriminator, SpectralDiscriminator


def _sq_norms(grad: torch.Tensor) -> torch.Tensor:
    """Per-sample ‖g‖² ``[B]`` of ``[B, C, M, K]``, summed in float32 at least."""
    grad = grad if grad.dtype == torch.float64 else grad.float()
    return grad.square().flatten(1).sum(dim=1)


def _unit_gradient(D: Discriminator, x: torch.Tensor) -> torch.Tensor:
    """∇D at amplitudes ``x`` ``[B, C, M, K]`` with respect to D's input u (x·gain, compressed by
    ``model.d_compress``)."""
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
    """The recipe's weighted regulariser of D on the noised ``real``/``fake`` ``[B, C, M, K]``:
    λ·GP, γ/2·R1, or γ/2·(R1 + R2). Returns (term, stats with ``gp`` or ``r1``/``r2`` un-weighted)."""
    if loss == "wgan-gp":
        gp = gradient_penalty(D, real, fake, generator=generator) if gp_lambda else real.new_zeros(())
        return gp_lambda * gp, {"gp": gp.detach()}
    r1 = r1_penalty(D, real)
    if loss == "ns-r1":
        return 0.5 * r1_gamma * r1, {"r1": r1.detach()}
    r2 = r1_penalty(D, fake)
    return 0.5 * r1_gamma * (r1 + r2), {"r1": r1.detach(), "r2": r2.detach()}


def adversarial_d(loss: str, d_real: torch.Tensor, d_fake: torch.Tensor, drift: float = 0.1) -> torch.Tensor:
    """D's adversarial term from scores ``[B, 1]`` (drift only in WGAN-GP)."""
    if loss == "wgan-gp":
        return d_fake.mean() - d_real.mean() + drift * d_real.square().mean()
    if loss == "ns-r1":
        return F.softplus(d_fake).mean() + F.softplus(-d_real).mean()
    return F.softplus(d_fake - d_real).mean()


def adversarial_g(loss: str, d_fake: torch.Tensor, d_real: torch.Tensor | None = None) -> torch.Tensor:
    """G's adversarial term from scores ``[B, 1]``; the relativistic loss also needs the reals' scores."""
    if loss == "wgan-gp":
        return -d_fake.mean()
    if loss == "ns-r1":
        return F.softplus(-d_fake).mean()
    if d_real is None:
        raise ValueError("the relativistic loss needs the reals' scores")
    return F.softplus(d_real.detach() - d_fake).mean()


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
        difference), ``drift`` (mean D(real~)²) and the penalty's stats (``gp`` or ``r1``/``r2``).
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


def g_loss(
    D: nn.Module, fake_noised: torch.Tensor, loss: str = "wgan-gp", real_noised: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """G's loss; gradients flow through D (its parameters are not stepped) into G. The relativistic loss
    scores ``real_noised`` too (no gradient).

    Returns:
        (loss, stats) with stats ``g_loss`` and ``d_fake``.
    """
    d_fake = D(fake_noised)
    d_real = None
    if loss == "rpgan-r1r2":
        with torch.no_grad():
            d_real = D(real_noised)
    out = adversarial_g(loss, d_fake, d_real)
    return out, {"g_loss": out.detach(), "d_fake": d_fake.mean().detach()}


def spectral_r1(spec: SpectralDiscriminator, x: torch.Tensor) -> torch.Tensor:
    """R1 of D's spectral view at noised amplitudes ``x`` ``[B, C, M, K]`` (detached): mean over the batch of
    ‖∇S‖², ∇ with respect to its input (:meth:`SpectralDiscriminator.view`), differentiable in its weights."""
    with torch.no_grad():
        v = spec.view(x.detach())
    v.requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(spec.score_view(v).sum(), v, create_graph=True)
    return _sq_norms(grad).mean()


def spectral_penalty(
    spec: SpectralDiscriminator,
    real_noised: torch.Tensor,
    fake_noised: torch.Tensor,
    loss: str,
    r1_gamma: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The spectral view's weighted zero-centred penalty, as :func:`penalty`: γ/2·R1 on the noised reals,
    γ/2·(R1 + R2) with the relativistic recipe (both ``[B, C, M, K]``, detached). Returns (term, stats with
    ``spectral_r1``, the un-weighted sum)."""
    r1 = spectral_r1(spec, real_noised)
    if loss == "rpgan-r1r2":
        r1 = r1 + spectral_r1(spec, fake_noised)
    return 0.5 * r1_gamma * r1, {"spectral_r1": r1.detach()}


def spectral_d_loss(
    spec: SpectralDiscriminator,
    real_noised: torch.Tensor,
    fake_noised: torch.Tensor,
    loss: str,
    r1_gamma: float,
    reg_scale: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The spectral view's D loss on noised ``[B, C, M, K]`` reals and (detached) fakes: the recipe's
    adversarial term plus ``reg_scale`` × :func:`spectral_penalty` (0 skips it: lazy regularisation).
    Returns (loss, stats ``spectral_real``, ``spectral_fake`` and, when taken, ``spectral_r1``)."""
    s_real, s_fake = spec(real_noised), spec(fake_noised.detach())
    total = adversarial_d(loss, s_real, s_fake)
    stats = {"spectral_real": s_real.mean().detach(), "spectral_fake": s_fake.mean().detach()}
    if reg_scale:
        reg, reg_stats = spectral_penalty(spec, real_noised, fake_noised, loss, r1_gamma)
        total = total + reg_scale * reg
        stats.update(reg_stats)
    return total, stats


def spectral_g_loss(
    spec: SpectralDiscriminator, fake_noised: torch.Tensor, loss: str, real_noised: torch.Tensor | None = None
) -> torch.Tensor:
    """G's adversarial term against the spectral view (its parameters are not stepped)."""
    s_real = None
    if loss == "rpgan-r1r2":
        with torch.no_grad():
            s_real = spec(real_noised)
    return adversarial_g(loss, spec(fake_noised), s_real)


CHANGE_STEP_SECONDS = 8 * 64 / 11008  # ≈ 46 ms: evaluate's spectral-change step at the tiny preset's rate
CHANGE_FLOOR_DB = 60.0


def _w1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1-D Wasserstein distance of two equally many samples (any shape): mean |sorted a − sorted b|."""
    return (a.flatten().sort().values - b.flatten().sort().values).abs().mean()


def change_matching(
    fake: torch.Tensor,
    real: torch.Tensor,
    pool: int,
    lags: tuple[int, ...] = (1,),
    floor_db: float = CHANGE_FLOOR_DB,
) -> torch.Tensor:
    """How far fakes' spectral motion is from the reals' (dB): at each lag, the 1-D Wasserstein distance
    between the batches' pooled level changes per bin (steady partials: most bins still most of the time)
    plus that between their means over the bins per step (onsets: many bins moving at the same step).

    Args:
        fake: G's amplitudes ``[B, C, M, K]`` (gradient flows).
        real: reals ``[B, C, M, K]`` in the same scale (no gradient needed).
        pool: frames per step of :func:`mp3net.dsp.pooled_level_change`.
        lags: the steps apart compared; more than lag 1 tells a held change from a click.
    """
    Ef, Er = fake.float().square().mean(1), real.float().square().mean(1).detach()  # [B, M, K]
    total = fake.new_zeros((), dtype=torch.float32)
    for lag in lags:
        cf = pooled_level_change(Ef, pool, floor_db, lag)  # [B, M / pool - lag, K]
        cr = pooled_level_change(Er, pool, floor_db, lag)
        total = total + _w1(cf, cr) + _w1(cf.mean(-1), cr.mean(-1))
    return total


def contrast_matching(
    fake: torch.Tensor,
    real: torch.Tensor,
    pool: int,
    width: int = 2,
    floor_db: float = CHANGE_FLOOR_DB,
) -> torch.Tensor:
    """How far the depth of fakes' valleys between sustained partials is from the reals' (dB): the 1-D
    Wasserstein distance between the batches' pooled level contrasts per bin
    (:func:`mp3net.dsp.pooled_level_contrast`: 0 on a held peak, deep between held partials, shallow in
    noise or where peaks flicker) plus that between their means over the bins per step.

    Args:
        fake: G's amplitudes ``[B, C, M, K]`` (gradient flows).
        real: reals ``[B, C, M, K]`` in the same scale (no gradient needed).
        pool: frames per step, as change matching's.
        width: bins on each side of a peak.
    """
    Ef, Er = fake.float().square().mean(1), real.float().square().mean(1).detach()  # [B, M, K]
    cf = pooled_level_contrast(Ef, pool, floor_db, width)  # [B, M / pool, K]
    cr = pooled_level_contrast(Er, pool, floor_db, width)
    return _w1(cf, cr) + _w1(cf.mean(-1), cr.mean(-1))


def partial_change_matching(
    fake: torch.Tensor, real: torch.Tensor, n_fft: int, frames: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """How far the way fakes' partials change along a clip is from the reals' (dB;
    docs/training.md#partial-change-matching): the 1-D Wasserstein distance between the batches'
    :func:`~mp3net.dsp.spectral.partial_changes` per bin (a chord change: a few lines move by tens of dB)
    plus that between their means over the bins per segment boundary.

    Args:
        fake: G's amplitudes ``[B, C, M, K]`` (gradient flows).
        real: reals ``[B, C, M, K]`` in the same scale (no gradient needed).
        n_fft: the long window (``model.d_spectral_fft``); frames: its frames per segment.
    Returns:
        (loss, the fakes' mean change in dB, detached).
    """
    cf = partial_changes(log_spectrogram(fake.float(), n_fft).mean(1), frames)  # [B, S - 1, F]
    with torch.no_grad():
        cr = partial_changes(log_spectrogram(real.float(), n_fft).mean(1), frames)
    loss = _w1(cf, cr) + _w1(cf.mean(-1), cr.mean(-1))
    return loss, cf.detach().mean()


# keeps the mode-seeking ratio's inverse finite when two fakes coincide (MSGAN's ε)
MODE_SEEKING_EPS = 1e-5


def mode_seeking(fake: torch.Tensor, z: torch.Tensor, n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mode seeking (Mao et al. 2019, MSGAN) on the long-window spectrum (docs/training.md#mode-seeking).

    The batch's first half is paired with its second half; per pair, the mean absolute difference of the
    two fakes' :func:`~mp3net.dsp.spectral.spectral_detail` (of the time-averaged log spectrogram,
    channels averaged) over that of their latents. The loss is 1 / (mean ratio + ε): large
    when different latents give the same partials, such as a comb drawn whatever the latent (a difference
    of level or envelope alone does not count).

    Args:
        fake: G's amplitudes ``[B, C, M, K]`` (gradient flows), B ≥ 2.
        z: their latents ``[B, latent]``.
    Returns:
        (loss, the mean ratio, detached).
    """
    h = fake.shape[0] // 2
    if h < 1:
        raise ValueError("mode seeking needs a batch of at least 2 fakes")
    spectrum = spectral_detail(log_spectrogram(fake.float(), n_fft).mean(dim=(1, 2)))  # [B, F]
    d_spec = (spectrum[:h] - spectrum[h : 2 * h]).abs().mean(1)
    d_z = (z[:h] - z[h : 2 * h]).float().abs().mean(1)
    ratio = (d_spec / d_z).mean()
    return 1.0 / (ratio + MODE_SEEKING_EPS), ratio.detach()


def spectral_reconstruction(
    fake: torch.Tensor,
    real: torch.Tensor,
    ffts: tuple[int, ...],
    envelope: float = 0.0,
    stereo_mid_side: bool = False,
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

    Args:
        fake: G's amplitudes ``[B, C, M, K]`` (gradient flows).
        real: the target amplitudes ``[B, C, M, K]`` (no gradient).
        ffts: the STFT windows.
        envelope: the weight of the envelope distance.
        stereo_mid_side: measure mid and side rather than left and right.
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
        total = total + (log_power(power) - log_power(target)).abs().mean()
        if envelope > 0:
            total = total + envelope * (log_envelope(power) - log_envelope(target)).abs().mean()
    return total / len(ffts)
