"""Signal core, pure tensor functions: the MDCT (docs/mdct.md) and the psychoacoustic model
(docs/psychoacoustics.md)."""

from mp3net.dsp.mdct import imdct, mdct, vorbis_window
from mp3net.dsp.psycho import PsychoacousticModel, tonality

__all__ = ["mdct", "imdct", "vorbis_window", "PsychoacousticModel", "tonality"]
