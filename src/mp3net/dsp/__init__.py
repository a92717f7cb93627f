"""Signal core, pure tensor functions: the MDCT (docs/mdct.md), the psychoacoustic model
(docs/psychoacoustics.md) and the pooled spectral change (docs/training.md#change-matching)."""

from mp3net.dsp.change import pooled_level_change
from mp3net.dsp.mdct import imdct, mdct, vorbis_window
from mp3net.dsp.psycho import PsychoacousticModel, tonality

__all__ = ["mdct", "imdct", "vorbis_window", "PsychoacousticModel", "tonality", "pooled_level_change"]
