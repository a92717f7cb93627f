"""Signal core: MDCT (SPEC §1) and the psychoacoustic model (SPEC §2-3). Pure tensor functions."""

from mp3net.dsp.mdct import imdct, mdct, vorbis_window
from mp3net.dsp.psycho import PsychoacousticModel, tonality

__all__ = ["mdct", "imdct", "vorbis_window", "PsychoacousticModel", "tonality"]
