"""Training: WGAN-GP losses (:mod:`.losses`), the loop (:mod:`.loop`), checkpoints and export
(:mod:`.checkpoint`) and run logging (:mod:`.logging`)."""

from __future__ import annotations

from typing import Any

__all__ = ["Trainer", "train"]


def __getattr__(name: str) -> Any:
    # lazy, so that `mp3net.train.losses` does not pull in the data and logging stack
    if name in __all__:
        from mp3net.train import loop

        return getattr(loop, name)
    raise AttributeError(name)
