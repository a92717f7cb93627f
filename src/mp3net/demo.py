"""The demo: a built-in dataset (Bach chorales rendered by :mod:`mp3net.synth`), a short training run, and an
HTML report with generated and real audio, spectrograms, the tonality curves of training (paper figure 5)
and the evaluate table.

The chorales come from music21's offline corpus (``pip install mp3net[demo]``), a few hundred four-part
chorales harmonised by J. S. Bach. They are rendered once into a cache folder (default
``~/.cache/mp3net/chorales-<rate>Hz-v1``); a ``complete.json`` there marks a finished render, and a
re-run renders only what is missing.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from mp3net.synth import Note, render
from mp3net.utils import MP3NetError, atomic_write_text

CACHE_VERSION = 1
DEFAULT_TEMPO = 80.0  # quarter notes per minute when a chorale has no metronome mark


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mp3net"


def _music21():
    try:
        import music21  # noqa: F401
        from music21 import corpus
    except ImportError:
        raise MP3NetError(
            "the demo dataset needs music21: pip install 'mp3net[demo]' (or pip install music21)"
        ) from None
    return corpus


def chorale_paths(limit: int | None = None) -> list[Path]:
    """The Bach chorales of music21's corpus (sorted, so ``limit`` takes a fixed subset)."""
    corpus = _music21()
    paths = sorted(Path(p) for p in corpus.getComposer("bach"))
    paths = [p for p in paths if p.suffix in (".mxl", ".xml", ".musicxml", ".krn")]
    if not paths:
        raise MP3NetError("music21's corpus has no Bach chorales (is the corpus installed?)")
    return paths[:limit] if limit else paths


def chorale_notes(path: Path, seed: int = 0) -> list[Note]:
    """A chorale as notes in seconds: tempo from its metronome mark (±8 % per chorale for variety),
    ties merged, fermatas held 1.6× longer, voices with slightly different loudness."""
    corpus = _music21()
    from music21 import expressions

    score = corpus.parse(str(path)).stripTies()
    rng = np.random.default_rng(seed)
    marks = score.metronomeMarkBoundaries()
    qpm = DEFAULT_TEMPO
    if marks and marks[0][2].number:
        qpm = float(marks[0][2].getQuarterBPM() or DEFAULT_TEMPO)
    qpm *= float(rng.uniform(0.92, 1.08))
    spq = 60.0 / qpm
    # fermatas stretch time for every voice: collect them first, then map offsets through the stretch
    stretch: dict[float, float] = {}
    for n in score.flatten().notes:
        if any(isinstance(e, expressions.Fermata) for e in n.expressions):
            stretch[float(n.offset)] = max(stretch.get(float(n.offset), 0.0), 0.6 * float(n.quarterLength))
    marks_sorted = sorted(stretch.items())

    def to_sec(q: float) -> float:
        extra = sum(d for o, d in marks_sorted if o < q - 1e-6)
        return (q + extra) * spq

    notes: list[Note] = []
    parts = list(score.parts) or [score]
    for v, part in enumerate(parts):
        base_vel = float(rng.uniform(0.5, 0.7)) + (0.08 if v == 0 else 0.0)
        for n in part.flatten().notes:
            q0, ql = float(n.offset), float(n.quarterLength)
            if ql <= 0:
                continue
            hold = stretch.get(q0, 0.0)
            start, end = to_sec(q0), to_sec(q0 + ql) + hold * spq
            vel = float(np.clip(base_vel + rng.normal(0, 0.05), 0.2, 1.0))
            for p in n.pitches:
                notes.append(Note(start, max(0.05, (end - start) * 0.97), int(p.midi), vel))
    return notes


def render_chorales(
    out_dir: str | Path | None = None,
    sample_rate: int = 22016,
    limit: int | None = None,
    progress: bool = True,
) -> Path:
    """Render the chorales to FLAC files in ``out_dir`` (default: the cache); files already there are kept.

    Returns the folder, ready for ``mp3net prepare``.
    """
    from tqdm import tqdm

    from mp3net.audio import write_audio

    out = Path(out_dir) if out_dir else default_cache_dir() / f"chorales-{sample_rate}Hz-v{CACHE_VERSION}"
    paths = chorale_paths(limit)
    marker = out / "complete.json"
    if marker.exists():
        try:
            done = json.loads(marker.read_text())
            if done.get("version") == CACHE_VERSION and done.get("count", 0) >= len(paths):
                return out
        except (OSError, ValueError):
            pass
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    bar = tqdm(paths, unit="chorale", desc="rendering chorales", disable=not progress, dynamic_ncols=True)
    seconds = 0.0
    for i, p in enumerate(bar):
        target = out / f"{p.stem.replace('.', '_')}.flac"
        if target.exists():
            continue
        notes = chorale_notes(p, seed=i)
        if not notes:
            continue
        audio = render(notes, sample_rate)
        seconds += audio.shape[-1] / sample_rate
        write_audio(target, audio, sample_rate, format="flac")
    n_files = len(list(out.glob("*.flac")))
    atomic_write_text(
        marker,
        json.dumps(
            {"version": CACHE_VERSION, "count": len(paths), "files": n_files, "sample_rate": sample_rate}
        )
        + "\n",
    )
    if progress:
        print(f"rendered {seconds / 60:.1f} min of chorales in {time.perf_counter() - t0:.0f} s into {out}")
    return out
