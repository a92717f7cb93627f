"""The networks of MP3net (docs/networks.md): generator, discriminator and the psychoacoustic noise layer.

This package knows nothing of training or devices: layers hand their maths to :mod:`mp3net.ops`, which
picks the device-specific implementation. Losses and loops live in :mod:`mp3net.train`.
"""

from mp3net.model.discriminator import (
    Activations,
    BlockActivations,
    Discriminator,
    DiscriminatorBlock,
    minibatch_stddev,
)
from mp3net.model.generator import TILE_HALO, Generator, GeneratorBlock
from mp3net.model.noise import NoiseLayer

__all__ = [
    "Generator",
    "GeneratorBlock",
    "Discriminator",
    "DiscriminatorBlock",
    "BlockActivations",
    "Activations",
    "minibatch_stddev",
    "NoiseLayer",
    "TILE_HALO",
]
