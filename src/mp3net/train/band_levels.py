"""The data's rms per MDCT band, the unit of band normalisation (docs/networks.md#band-normalisation)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mp3net.config import Config
from mp3net.data import clip_indices
from mp3net.dsp import mdct
from mp3net.model import Generator

# clips the levels are measured on: evenly spread over the dataset, so the same data gives the same levels
LEVEL_CLIPS = 64
# the export's level calibration: samples drawn, rounds of rescaling (the second corrects tanh's bend),
# and the most a band's output is moved either way
CALIBRATION_CLIPS = 64
CALIBRATION_ROUNDS = 2
CALIBRATION_MAX_GAIN = 100.0  # ±40 dB
# a band quieter than this (relative to the loudest) is held at it: an empty top band must not make D's
# unit, 1 / rms, explode
LEVEL_FLOOR = 1e-3


def band_levels(
    dataset: torch.utils.data.Dataset, n_bands: int, clips: int = LEVEL_CLIPS
) -> tuple[float, ...]:
    """The rms of the MDCT amplitudes in each band over ``clips`` clips spread evenly over ``dataset``
    (items ``[C, T]``), channels and frames pooled; at least ``LEVEL_FLOOR`` times the loudest band's.

    Returns:
        ``n_bands`` positive floats, low band first.
    """
    n = len(dataset)  # type: ignore[arg-type]
    idx = clip_indices(n, clips)
    power = torch.zeros(n_bands, dtype=torch.float64)
    for i in idx:
        A = mdct(torch.as_tensor(dataset[int(i)]).double()[None], n_bands)  # [1, C, M, K]
        power += A.square().mean(dim=(0, 1, 2))
    rms = (power / len(idx)).sqrt()
    rms = rms.clamp_min(LEVEL_FLOOR * float(rms.max()) if float(rms.max()) > 0 else 1e-6)
    return tuple(float(v) for v in rms)


def with_band_levels(
    cfg: Config,
    dataset: Any,
    run_dir: str | Path,
    init_from: str | Path | None = None,
    say: Callable[[str], None] = print,
) -> Config:
    """``cfg`` with ``model.band_rms`` filled in (docs/networks.md#band-normalisation): a resumed run keeps
    the levels of its saved config and a fine-tuning run its source's, the unit their weights are in; a new
    run measures ``dataset``'s (items ``[C, T]``)."""
    from mp3net.train.checkpoint import source_config

    saved = Path(run_dir) / "config.json"
    if saved.exists():
        levels = Config.load(saved).model.band_rms
    else:
        levels = source_config(init_from).model.band_rms if init_from is not None else ()
    if not levels:
        levels = band_levels(dataset, cfg.model.n_bands)
        span = 20 * math.log10(max(levels) / min(levels))
        say(f"band normalisation: the data's levels span {span:.0f} dB over the bands")
    out = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, band_rms=tuple(levels)))
    out.validate()
    return out


@torch.no_grad()
def calibrated_levels(G: Generator, clips: int = CALIBRATION_CLIPS, seed: int = 0) -> tuple[float, ...]:
    """``model.band_rms`` for ``G`` such that its samples have the data's rms per band
    (docs/training.md#level-calibration).

    With band normalisation G's amplitudes are tanh(y · band_rms), and band_rms starts as the data's rms
    per band (:func:`band_levels`). ``clips`` samples (z ~ N(0, I) from a generator seeded by ``seed``,
    float32) are drawn, each band's rms measured, and that band's level multiplied by data / drawn
    (at most ``CALIBRATION_MAX_GAIN`` either way), ``CALIBRATION_ROUNDS`` times. ``G`` is left as it was.

    Returns:
        ``n_bands`` positive floats, low band first.
    """
    cfg = G.cfg
    if not cfg.band_norm or not cfg.band_rms:
        raise ValueError("level calibration needs band normalisation (model.band_norm with model.band_rms)")
    target = torch.tensor(cfg.band_rms, dtype=torch.float64)
    z = torch.randn(clips, cfg.latent_dim, generator=torch.Generator().manual_seed(seed))
    levels, device = target.clone(), next(G.parameters()).device
    try:
        for _ in range(CALIBRATION_ROUNDS):
            G.cfg = dataclasses.replace(cfg, band_rms=tuple(float(v) for v in levels))
            A = torch.cat(
                [G(z[a : a + 8].to(device)).double().cpu() for a in range(0, clips, 8)]
            )  # [N, C, M, K]
            drawn = A.square().mean(dim=(0, 1, 2)).sqrt()
            gain = (target / drawn.clamp_min(1e-12)).clamp(1 / CALIBRATION_MAX_GAIN, CALIBRATION_MAX_GAIN)
            levels = levels * gain
    finally:
        G.cfg = cfg
    return tuple(float(v) for v in levels)
