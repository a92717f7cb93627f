"""WGAN-GP losses with a drift term (paper §3.2; docs/training.md#wgan-gp).

D_loss = mean D(fake~) − mean D(real~) + λ·GP + ε·mean D(real~)²,   G_loss = −mean D(fake~),
where ~ marks tensors after the psychoacoustic noise layer. Defaults follow the original code
(λ = 3, ε = 0.1); the paper/ProGAN variant is λ = 10, ε = 0.001
(``TrainConfig.gp_lambda``, ``TrainConfig.drift``).

Stats are returned as detached 0-d tensors (no device sync); call ``.item()`` when logging.
"""

from __future__ import annotations

import torch
from torch import nn

from mp3net.model import Discriminator


def gradient_penalty(
    D: Discriminator, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mean over the batch of (‖∇D(x̂)‖ − 1)², x̂ = α·real + (1 − α)·fake with α ~ U(0, 1) per sample.

    The norm is over the whole sample, √(Σ g² + 1e-8). ∇D comes from :meth:`Discriminator.input_gradient`
    (autograd's ``create_graph`` gradient, computed without backpropagating through the forward graph where
    that contributes nothing), so the penalty trains D. Both inputs are detached: the penalty is a D-only
    term.

    Args:
        real, fake: ``[B, C, M, K]`` noised amplitudes.
        generator: RNG for α (reproducible runs).
    Returns:
        0-d tensor, float32 (float64 for float64 inputs).
    """
    real, fake = real.detach(), fake.detach()
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = torch.rand(shape, generator=generator, dtype=real.dtype, device=real.device)
    x_hat = alpha * real + (1 - alpha) * fake
    _, grad = D.input_gradient(x_hat)
    grad = grad if grad.dtype == torch.float64 else grad.float()  # the sum of squares in float32 at least
    norm = torch.sqrt(grad.square().flatten(1).sum(dim=1) + 1e-8)
    return (norm - 1).square().mean()


def d_loss(
    D: Discriminator,
    real_noised: torch.Tensor,
    fake_noised: torch.Tensor,
    gp_lambda: float,
    drift: float,
    generator: torch.Generator | None = None,
    backward: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Critic loss. ``fake_noised`` is detached here: this loss only trains D.

    With ``backward``, the loss is also backpropagated, term by term as soon as each is built: the
    Wasserstein and drift terms, then the penalty. The gradients are the loss's, but only one of the
    graphs is alive at a time, which lowers the peak memory (the returned loss is then detached).

    Returns:
        (loss, stats) with stats ``w_distance`` (mean D(real~) − mean D(fake~)), ``d_real``, ``d_fake``,
        ``gp`` (un-weighted penalty), ``drift`` (un-weighted mean D(real~)²), ``d_loss``.
    """

    def backprop(term: torch.Tensor) -> torch.Tensor:
        if backward:
            with torch.autocast(term.device.type, enabled=False):
                term.backward()
            return term.detach()
        return term

    d_real = D(real_noised)
    d_fake = D(fake_noised.detach())
    drift_term = d_real.square().mean()
    w = d_real.mean() - d_fake.mean()
    w_loss = backprop(-w + drift * drift_term)
    gp = (
        gradient_penalty(D, real_noised, fake_noised, generator=generator)
        if gp_lambda
        else d_real.new_zeros(())
    )
    loss = w_loss + backprop(gp_lambda * gp)
    stats = {
        "d_loss": loss.detach(),
        "w_distance": w.detach(),
        "d_real": d_real.mean().detach(),
        "d_fake": d_fake.mean().detach(),
        "gp": gp.detach(),
        "drift": drift_term.detach(),
    }
    return loss, stats


def g_loss(D: nn.Module, fake_noised: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Generator loss −mean D(fake~); gradients flow through D (its parameters are not stepped) into G.

    Returns:
        (loss, stats) with stats ``g_loss`` and ``d_fake``.
    """
    d_fake = D(fake_noised)
    loss = -d_fake.mean()
    return loss, {"g_loss": loss.detach(), "d_fake": d_fake.mean().detach()}
