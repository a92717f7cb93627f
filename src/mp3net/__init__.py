"""MP3net: a convolutional GAN that generates long stereo music as MDCT amplitudes."""

from mp3net.config import Config, preset

__version__ = "0.1.0"
__all__ = ["Config", "preset", "__version__"]
