"""Training: the GAN trainer (:mod:`.gan`) and autoencoder pretraining (:mod:`.pretrain`) on one run loop
(:mod:`.solver`), the GAN objective (:mod:`.losses`), fine-tuning (:mod:`.finetune`), checkpoints and the
export (:mod:`.checkpoint`) and run logging (:mod:`.logging`)."""

from __future__ import annotations

from typing import Any

__all__ = ["Trainer", "train"]


def __getattr__(name: str) -> Any:
    # lazy, so that `mp3net.train.losses` does not pull in the data and logging stack
    if name in __all__:
        from mp3net.train import gan

        return getattr(gan, name)
    raise AttributeError(name)
