"""The device- and layout-specific choices of a model run, made in one place.

:func:`prepare_for` returns an :class:`ExecutionPlan` for a device: the activation layout the ops want and
the generator's time-tiling policy (:meth:`ExecutionPlan.tiling`). The networks call it themselves (D's and
G's forwards convert their input with :meth:`ExecutionPlan.layout`; ``Generator.generate`` tiles by
:meth:`ExecutionPlan.tiling`), so a caller such as the trainer needs no device branches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Output frames per outer synthesis tile: bounds the generator's memory for any track duration. A long
# track's windows each recompute 2·TILE_HALO start frames of context: at 24576 frames that is 4 % of the
# shipped model's work (6 % at 16384; 32768 saves 2 % more but its 3-hour track peaks at 389 MiB instead
# of ~360; benchmarks/bench_generate_shipped.py).
TILE_OUT_FRAMES = 24576
# Inner tiles on CPU: the two widest blocks run in tiles of 128 frames of their input, which keeps each
# tile's activations in cache and their halo at 3 % (64 frames: 6 %, 4 % slower in all for the shipped
# model; benchmarks/README.md, bench_generate: per-block profile).
CPU_CACHE_TILE = (2, 128)


@dataclass(frozen=True)
class TileLevel:
    """Run the last ``blocks`` generator blocks in time tiles of ``frames`` frames of their input."""

    blocks: int
    frames: int


@dataclass(frozen=True)
class ExecutionPlan:
    """How models run on one device.

    Attributes:
        device: the device.
        channels_last: activations in channels-last layout (oneDNN's fast CPU layout; with the fast path,
            the convs then take :mod:`mp3net.ops.conv`'s kernels).
        tile_out_frames: output frames per outer synthesis tile (memory bound for long tracks).
        cache_tile: inner tiles (blocks, frames) for cache locality, or None.
    """

    device: torch.device
    channels_last: bool
    tile_out_frames: int
    cache_tile: tuple[int, int] | None

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, C, M, K]`` in the plan's layout (no copy when it already is)."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def tiling(self, n_blocks: int) -> tuple[TileLevel, ...]:
        """Time tiles for a generator of ``n_blocks`` blocks, outermost first: the last ``n_blocks − 1``
        blocks in tiles of ``tile_out_frames`` output frames (one tile for anything up to that length),
        and inside them the cache tiles. Tiling is exact in the interior: results equal an untiled run up
        to float rounding."""
        levels = []
        outer = max(1, n_blocks - 1)
        levels.append(TileLevel(outer, max(1, self.tile_out_frames // 4**outer)))
        if self.cache_tile is not None:
            blocks, frames = self.cache_tile
            if blocks < outer:
                levels.append(TileLevel(blocks, frames))
        return tuple(levels)


def prepare_for(device: str | torch.device) -> ExecutionPlan:
    """The plan for ``device``: on CPU channels-last activations and cache tiles (when the fast path is on,
    :data:`mp3net.ops.fast_path`); elsewhere PyTorch's default layout and one tile level for memory only.
    Read at call time, so :func:`mp3net.ops.enabled` and a patched :data:`TILE_OUT_FRAMES` take effect."""
    from mp3net import ops

    dev = torch.device(device)
    cpu = dev.type == "cpu" and ops.fast_path
    return ExecutionPlan(
        device=dev,
        channels_last=cpu,
        tile_out_frames=TILE_OUT_FRAMES,
        cache_tile=CPU_CACHE_TILE if cpu else None,
    )


def configure_process(device: str | torch.device) -> None:
    """Process-wide settings a training run on ``device`` wants: on CPU, the allocator keeps freed
    activation memory for reuse instead of page-faulting every fresh activation in afresh
    (:func:`mp3net.utils.keep_freed_memory`)."""
    from mp3net.utils import keep_freed_memory

    if torch.device(device).type == "cpu":
        keep_freed_memory()
