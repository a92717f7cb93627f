"""Inference: load a generator, turn seeds into waveforms of any duration, interpolate between seeds.

Tracks longer than the training clip (beyond the paper): the generator is fully convolutional after its dense
head, so one pass over a longer start tensor gives a longer track. The start tensor is laid out from a *latent
path* (the latent-coordinate idea of Musika): one anchor latent per clip length (a seed's noise through the
model's sampler, :meth:`Generator.latents`), placed at the clip centres, and every start frame takes the blend
of its two neighbouring anchors at its own time coordinate: their spherical interpolation, or the straight
line for a table sampler's latents. Because the dense head is linear before its LReLU, each start frame is the
head's output for its own interpolated latent (frame slot f of a clip uses the dense weights of slot f), so a
one-clip track is exactly ``G(z)`` and longer tracks morph continuously from one musical idea to the next: no
crossfades, no seams. A model whose table holds runs of consecutive clips walks it instead
(``sequence="walk"``, :meth:`~mp3net.model.sampler.TableSampler.walk`): each clip's anchor is drawn from what
followed the clip before in the training music, and each clip's start frames hold its own anchor
(docs/long-tracks.md). Synthesis is :meth:`Generator.render`, the one inference path: the widest blocks run in
overlapping time tiles chosen by the device's plan (:meth:`mp3net.ops.ExecutionPlan.tiling`), exact in the
interior, so memory is bounded by the tile size.

Precision: ``auto`` (default) computes in bf16 where :func:`mp3net.ops.bf16_is_fast` and float32
elsewhere; ``fp32`` and ``bf16`` force one (:func:`mp3net.ops.resolve_precision`).

Determinism: a seed's anchors come from ``torch.Generator().manual_seed(seed)``, and batches are always
padded to ``batch_size`` (CPU kernels round differently for different batch sizes), so a seed's track
is bit-for-bit the same on the same device and batch size whichever other seeds are generated with it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from mp3net import ops
from mp3net.artifacts import (  # noqa: F401 - the loading API, re-exported: mp3net.generate.from_pretrained
    PRETRAINED_DIR,
    from_pretrained,
    load_generator,
    pretrained_names,
    resolve_model_path,
)
from mp3net.config import Config
from mp3net.dsp import imdct
from mp3net.model import Generator
from mp3net.model.generator import TILE_HALO
from mp3net.model.sampler import TableSampler
from mp3net.utils import MP3NetError

PRECISIONS = ops.PRECISIONS  # auto | fp32 | bf16
# how a long track's clips follow each other: "walk" the table's runs (a model whose table holds runs of
# consecutive clips, docs/long-tracks.md#the-walk), "independent" latents laid end to end, or "auto" (the walk
# where the model has one)
SEQUENCES = ("auto", "walk", "independent")
# samples per channel of the blocks that synthesize_tiles yields (a window's waveform in pieces), so that
# a writer's conversions (clipping, interleaving, 16-bit) of one block take a few MiB
BLOCK_SAMPLES = 1 << 18


def seed_latents(seed: int, n: int, dim: int, truncation: float | None = None, keep: int = 0) -> torch.Tensor:
    """``[n, dim]`` standard-normal anchors of one seed (the first is the seed's one-clip latent).

    With ``truncation`` T > 0, entries beyond ±T are redrawn (the truncation trick: less variety,
    more typical output), all but the first ``keep`` coordinates of each anchor (a table sampler's
    choices, which must stay uniform). Drawn on the CPU so a seed means the same on every device.
    """
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(n, dim, generator=g, dtype=torch.float32)
    if truncation is not None:
        if truncation <= 0:
            raise MP3NetError(f"truncation must be positive, got {truncation}")
        tail = z[:, keep:]  # a view: redrawn in place
        for _ in range(1000):
            bad = tail.abs() > truncation
            if not bad.any():
                break
            tail[bad] = torch.randn(int(bad.sum()), generator=g)
        tail.clamp_(-truncation, truncation)
    return z


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation ``[..., D]``, keeping Gaussian latents at a typical norm; t=0 → a, t=1 → b."""
    t = t[..., None].to(a.dtype)
    an, bn = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((an * bn).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    out = torch.where(
        so > 1e-6, (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / so, (1 - t) * a + t * b
    )
    return torch.where(t == 0, a, torch.where(t == 1, b, out))


def blend(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, linear: bool) -> torch.Tensor:
    """Between latents ``[..., D]``: the slerp (Gaussian noise, kept at a typical norm) or, with ``linear``,
    the straight line (a table sampler's latents, which sit near the table, not on a sphere)."""
    if not linear:
        return slerp(a, b, t)
    return torch.lerp(a, b, t[..., None].to(a.dtype))


def latent_path(
    anchors: torch.Tensor,
    n_positions: int,
    start_frames: int,
    lo: int = 0,
    hi: int | None = None,
    linear: bool = False,
    hold: bool = False,
) -> torch.Tensor:
    """Latent of every start frame of a track ``n_positions`` clips long (or of frames ``[lo, hi)``).

    Args:
        anchors: ``[..., P, D]`` one latent per clip, P ≥ n_positions, anchor j sits at the centre of
            clip j (time coordinate j + ½ in clip units).
        linear: blend the anchors along straight lines rather than slerps (:func:`blend`).
        hold: every start frame of clip j takes anchor j, as each clip was trained (a walk's anchors are
            consecutive clips, which follow each other without a blend).
    Returns:
        ``[..., n_positions·start_frames, D]`` (``hi - lo`` frames with a range); frame s sits at
        coordinate (s + ½)/start_frames and takes the blend of its two neighbouring anchors (the nearest
        one beyond the first/last centre), or with ``hold`` its own clip's anchor.
    """
    s = torch.arange(lo, n_positions * start_frames if hi is None else hi, dtype=torch.float64)
    if hold:
        return anchors[..., (s // start_frames).long(), :]
    c = (s + 0.5) / start_frames - 0.5  # in anchor-index units
    c = c.clamp(0, n_positions - 1)
    j0 = c.floor().long().clamp(max=max(n_positions - 2, 0))
    j1 = (j0 + 1).clamp(max=n_positions - 1)
    t = (c - j0).to(torch.float32)
    t = torch.where(j0 == j1, torch.zeros_like(t), t)
    a, b = anchors[..., j0, :], anchors[..., j1, :]
    return blend(a, b, t.expand(a.shape[:-1]), linear)


def start_tensor(G: Generator, zpath: torch.Tensor, first: int = 0) -> torch.Tensor:
    """``[B, S, D]`` latents of S start frames (the track's frames ``first, first + 1, ...``) →
    ``[B, ch, S, start_bands]`` (track frame s: dense slot s mod f)."""
    f = G.cfg.start_frames
    h = G.head(zpath)  # [B, ch, S·f, k]: every latent gives all f slots
    s = torch.arange(zpath.shape[1], device=h.device)
    return h[:, :, s * f + (s + first) % f]


def _frames_for(cfg: Config, n_samples: int) -> tuple[int, int]:
    """(positions, frames): clips needed for ``n_samples`` and the MDCT frames they give."""
    m = cfg.model
    need = math.ceil(n_samples / m.n_bands) + 1  # F frames give (F-1)·N samples after trimming
    positions = max(1, math.ceil(need / m.n_frames))
    return positions, positions * m.n_frames


def duration_samples(cfg: Config, duration: float | None) -> int:
    """Samples of a track of ``duration`` seconds (None = one training clip)."""
    if duration is None:
        return cfg.model.clip_samples
    if not math.isfinite(duration) or duration <= 0:
        raise MP3NetError(f"duration must be a positive number of seconds, got {duration}")
    n = round(duration * cfg.model.sample_rate)
    if n < 1:
        raise MP3NetError(f"duration {duration} s is shorter than one sample")
    return n


def _device_of(G: Generator) -> torch.device:
    return next(G.parameters()).device


@torch.no_grad()
def synthesize_tiles(
    G: Generator,
    anchors: torch.Tensor,
    n_samples: int,
    tile_out_frames: int | None = None,
    precision: str = "auto",
    hold: bool = False,
) -> Iterator[torch.Tensor]:
    """``[B, P, D]`` anchor latents (:func:`seed_anchor_sets`) → the track ``[B, C, n_samples]`` as
    consecutive blocks ``[B, C, T_i]`` (on G's device), so that memory does not grow with the duration.

    Each block is one window of start frames (about ``tile_out_frames`` output frames, at least
    ``8·TILE_HALO`` start frames) with ``TILE_HALO`` start frames of context per side: the start tensor
    is made frame by frame from the latent path, and the blocks' interior is exact, so the blocks join
    without seams (equal to one synthesis of the whole track up to float rounding). A block's waveform
    comes from its own frames plus the one before (the inverse MDCT's overlap-add). Each window is
    :meth:`Generator.render` (the one inference path) in the device's plan and ``precision``. ``hold``: each
    clip's start frames take its own anchor (:func:`latent_path`; a walk's consecutive clips).
    """
    cfg = G.cfg
    positions, _ = _frames_for(Config(model=cfg), n_samples)
    dev = _device_of(G)
    dtype = ops.resolve_precision(precision, dev)
    plan = ops.prepare_for(dev)
    anchors = anchors[:, :positions].to(dev)
    tile = tile_out_frames or plan.tile_out_frames
    S, up, N = positions * cfg.start_frames, 4**cfg.n_blocks, cfg.n_bands
    chunk = max(8 * TILE_HALO, -(-tile // up))
    emitted = 0
    before = None  # the last frame of the previous window: the inverse MDCT overlaps it with this one
    for a in range(0, S, chunk):
        b = min(a + chunk, S)
        lo, hi = max(0, a - TILE_HALO), min(S, b + TILE_HALO)
        with ops.autocast(dev, dtype):
            linear = G.sampler is not None
            path = latent_path(anchors, positions, cfg.start_frames, lo, hi, linear=linear, hold=hold)
            x = start_tensor(G, path, first=lo)
        y = G.render(x, plan, dtype, first=lo * up)  # float32, track frames [lo·up, hi·up)
        A = y[:, :, (a - lo) * up : (b - lo) * up]  # track frames [a·up, b·up)
        if before is None:  # the frame before the track is zero padding, whose samples the trim drops
            wave = imdct(torch.cat([A.new_zeros(*A.shape[:2], 1, A.shape[3]), A], dim=2), trim=True)[..., N:]
        else:  # track frames [a·up − 1, b·up) give the samples of frames [a·up, b·up)
            wave = imdct(torch.cat([before, A], dim=2), trim=True)
        before = A[:, :, -1:].clone()  # not a view: the window itself is freed
        wave = wave[..., : n_samples - emitted]
        emitted += wave.shape[-1]
        yield from wave.split(BLOCK_SAMPLES, dim=-1)  # the writer's copies stay small
        if emitted >= n_samples:
            return


@torch.no_grad()
def synthesize_latents(
    G: Generator, anchors: torch.Tensor, n_samples: int, precision: str = "auto", hold: bool = False
) -> torch.Tensor:
    """``[B, P, D]`` anchor latents → waveforms ``[B, C, n_samples]`` float32 (MDCT edge padding trimmed): the
    blocks of :func:`synthesize_tiles` joined."""
    return torch.cat(list(synthesize_tiles(G, anchors, n_samples, precision=precision, hold=hold)), dim=-1)


def stream_batches(
    G: Generator,
    anchor_sets: list[torch.Tensor],
    n_samples: int,
    batch_size: int,
    precision: str = "auto",
    hold: bool = False,
) -> Iterator[tuple[range, Iterator[torch.Tensor]]]:
    """Per batch of tracks: (their indices in ``anchor_sets``, their blocks ``[b, C, T_i]`` on the CPU).

    Batches are padded to ``batch_size`` (fixed shapes: a track does not depend on the other seeds)."""
    for i in range(0, len(anchor_sets), batch_size):
        chunk = anchor_sets[i : i + batch_size]
        z = torch.stack(chunk)
        pad = batch_size - len(chunk)
        if pad:
            z = torch.cat([z, torch.zeros(pad, *z.shape[1:])])
        tiles = synthesize_tiles(G, z, n_samples, precision=precision, hold=hold)
        blocks = (w[: len(chunk)].cpu() for w in tiles)
        yield range(i, i + len(chunk)), blocks


def _run_batched(
    G: Generator,
    anchor_sets: list[torch.Tensor],
    n_samples: int,
    batch_size: int,
    progress: bool = False,
    precision: str = "auto",
    hold: bool = False,
) -> torch.Tensor:
    outs = []
    from tqdm import tqdm

    bar = tqdm(total=len(anchor_sets), unit="track", disable=not progress, dynamic_ncols=True)
    for which, blocks in stream_batches(G, anchor_sets, n_samples, batch_size, precision, hold):
        outs.append(torch.cat(list(blocks), dim=-1))
        bar.update(len(which))
    bar.close()
    return torch.cat(outs)


def _setup(
    model: Generator | str | Path, device: str | torch.device | None, duration: float | None
) -> tuple[Generator, int, int]:
    """(generator, track samples, anchor-latent positions) for a model and a duration."""
    G = model if isinstance(model, Generator) else load_generator(model, device)[0]
    return G, *track_plan(G, duration)


def generate(
    model: Generator | str | Path,
    seeds: Sequence[int],
    duration: float | None = None,
    truncation: float | None = None,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    progress: bool = False,
    precision: str = "auto",
    sequence: str = "auto",
) -> tuple[torch.Tensor, int]:
    """Tracks for the given seeds.

    Args:
        model: a :class:`Generator` or anything :func:`load_generator` accepts.
        seeds: one track per seed.
        duration: seconds (default: the training clip length); longer tracks use one anchor latent per
            clip length (see the module docstring).
        truncation: optional truncation of the latents (see :func:`seed_latents`).
        batch_size: tracks per forward pass (results are bit-identical for the same batch size).
        precision: ``auto`` | ``fp32`` | ``bf16`` (see the module docstring).
        sequence: how the clips of a long track follow each other (``SEQUENCES``, :func:`walks`).
    Returns:
        ``(audio [N, C, T] float32 on the CPU, sample_rate)``.
    """
    G, n, positions = _setup(model, device, duration)
    ops.resolve_precision(precision, _device_of(G))  # a bad precision fails before any work
    walk = walks(G, sequence)
    anchors = seed_anchor_sets(G, seeds, positions, truncation, walk)
    if not anchors:
        return torch.zeros(0, G.cfg.channels, n), G.cfg.sample_rate
    audio = _run_batched(G, anchors, n, max(1, batch_size), progress, precision, hold=walk)
    return audio, G.cfg.sample_rate


def interpolate(
    model: Generator | str | Path,
    seed_a: int,
    seed_b: int,
    steps: int,
    duration: float | None = None,
    truncation: float | None = None,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    progress: bool = False,
    precision: str = "auto",
) -> tuple[torch.Tensor, int]:
    """``steps`` tracks from seed A's latents to seed B's (:func:`interpolation_anchor_sets`; the ends are
    exactly A and B)."""
    if steps < 2:
        raise MP3NetError(f"--steps must be at least 2, got {steps}")
    G, n, positions = _setup(model, device, duration)
    ops.resolve_precision(precision, _device_of(G))
    anchors = interpolation_anchor_sets(G, seed_a, seed_b, steps, positions, truncation)
    return _run_batched(G, anchors, n, max(1, batch_size), progress, precision), G.cfg.sample_rate


def walks(G: Generator, sequence: str = "auto") -> bool:
    """Whether ``sequence`` (``SEQUENCES``) walks G's table: "auto" where its table holds runs of clips;
    "walk" on a model without one is a one-line error."""
    if sequence not in SEQUENCES:
        raise MP3NetError(f"unknown sequence {sequence!r}; choose one of {', '.join(SEQUENCES)}")
    can = G.sampler is not None and G.sampler.walks
    if sequence == "walk" and not can:
        raise MP3NetError(
            "this model cannot walk: its table does not hold runs of consecutive clips (pretrain with "
            "-o pretrain.run_clips=4 for one that does); use --sequence independent"
        )
    return can and sequence != "independent"


def seed_anchor_sets(
    G: Generator, seeds: Sequence[int], positions: int, truncation: float | None = None, walk: bool = False
) -> list[torch.Tensor]:
    """The anchor latents ``[positions, D]`` of each seed's track: its noise (:func:`seed_latents`) through
    G's sampler (:meth:`Generator.latents`), or with ``walk`` a walk of its table
    (:meth:`~mp3net.model.sampler.TableSampler.walk`: each clip follows the one before), on the CPU."""
    draw = _walked if walk else _sampled
    return [draw(G, seed_latents(s, positions, G.cfg.latent_dim, truncation, _kept(G))) for s in seeds]


def interpolation_anchor_sets(
    G: Generator, seed_a: int, seed_b: int, steps: int, positions: int, truncation: float | None = None
) -> list[torch.Tensor]:
    """The anchor latents ``[positions, D]`` of ``steps`` tracks from seed A's to seed B's: the slerp of
    their noise, or with a table sampler the straight line between their latents (:func:`blend`)."""
    if steps < 2:
        raise MP3NetError(f"--steps must be at least 2, got {steps}")
    za = _sampled(G, seed_latents(seed_a, positions, G.cfg.latent_dim, truncation, _kept(G)))
    zb = _sampled(G, seed_latents(seed_b, positions, G.cfg.latent_dim, truncation, _kept(G)))
    linear = G.sampler is not None
    return [blend(za, zb, t.expand(positions), linear) for t in torch.linspace(0, 1, steps)]


def _kept(G: Generator) -> int:
    """Coordinates of z that truncation leaves alone: a table sampler's choices of row, neighbour and walk
    (truncating them would never draw the table's first and last rows)."""
    return 0 if G.sampler is None else TableSampler.CHOICES


@torch.no_grad()
def _sampled(G: Generator, z: torch.Tensor) -> torch.Tensor:
    return G.latents(z.to(_device_of(G))).cpu()


@torch.no_grad()
def _walked(G: Generator, z: torch.Tensor) -> torch.Tensor:
    assert G.sampler is not None  # walks() checked
    return G.sampler.walk(z.to(_device_of(G))).cpu()


def track_plan(G: Generator, duration: float | None) -> tuple[int, int]:
    """(samples, anchor positions) of a track of ``duration`` seconds from ``G``."""
    cfg = Config(model=G.cfg)
    n = duration_samples(cfg, duration)
    return n, _frames_for(cfg, n)[0]


def parse_seeds(text: str) -> list[int]:
    """``"0-7"``, ``"3,5,9"`` or ``"0-3,10"`` → list of ints."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part[1:]:
                a, b = part.split("-", 1) if not part.startswith("-") else (part, "")
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise MP3NetError(f"cannot read seeds {text!r}: use e.g. 0-7 or 1,5,9") from None
    if not seeds:
        raise MP3NetError(f"no seeds in {text!r}")
    if any(s < 0 for s in seeds):
        raise MP3NetError("seeds must be non-negative")
    return seeds
