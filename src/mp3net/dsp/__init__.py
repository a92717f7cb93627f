"""Signal core, pure tensor functions: the MDCT (docs/mdct.md), the psychoacoustic model
(docs/psychoacoustics.md), the pooled spectral change and contrast (evaluation's measures;
docs/experiments.md#2026-12-02-change-matching, docs/experiments.md#2026-12-02-contrast-matching), the MDCT
of a bank of oscillators per band (docs/networks.md#oscillator-bank)."""

from mp3net.dsp.change import pooled_level_change, pooled_levels
from mp3net.dsp.contrast import pooled_level_contrast
from mp3net.dsp.mdct import imdct, mdct, vorbis_window
from mp3net.dsp.oscillator import bank_mdct
from mp3net.dsp.psycho import PsychoacousticModel, tonality

__all__ = [
    "mdct",
    "imdct",
    "vorbis_window",
    "PsychoacousticModel",
    "tonality",
    "pooled_level_change",
    "pooled_levels",
    "pooled_level_contrast",
    "bank_mdct",
]
