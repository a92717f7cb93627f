"""The demo: a built-in dataset (string quartets, or the Bach chorales, rendered by :mod:`mp3net.synth`), a
short training run, and an HTML report with generated and real audio, spectrograms, the tonality curves of
training (paper figure 5) and the evaluate table.

The scores come from music21's offline corpus (``pip install mp3net[demo]``): the demo's data are Mozart's
and Haydn's string quartet movements (25, about 68 minutes); the shipped model was trained on the few
hundred four-part chorales harmonised by J. S. Bach. Both are played by the same synthesizer and rendered
once into a cache folder (default ``~/.cache/mp3net/<set>-<rate>Hz-v1``); a ``complete.json`` there marks a
finished render, and a re-run renders only what is missing.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mp3net import demo_html
from mp3net.demo_html import Track
from mp3net.synth import Note, render
from mp3net.utils import MP3NetError, atomic_write_text

CACHE_VERSION = 1
DEFAULT_TEMPO = 80.0  # quarter notes per minute when a chorale has no metronome mark


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mp3net"


def _music21():
    try:
        from music21 import corpus
    except ImportError:
        raise MP3NetError(
            "the demo dataset needs music21: pip install 'mp3net[demo]' (or pip install music21)"
        ) from None
    return corpus


# music21 corpus composers of each set the demo renders
CORPUS_SETS = {"chorales": ("bach",), "quartets": ("mozart", "haydn")}


def corpus_paths(kind: str = "chorales", limit: int | None = None) -> list[Path]:
    """The scores of a set of music21's corpus (``CORPUS_SETS``; sorted by composer then path, so ``limit``
    takes a fixed subset)."""
    corpus = _music21()
    paths = [p for c in CORPUS_SETS[kind] for p in sorted(Path(x) for x in corpus.getComposer(c))]
    paths = [p for p in paths if p.suffix in (".mxl", ".xml", ".musicxml", ".krn")]
    if not paths:
        raise MP3NetError(f"music21's corpus has no {kind} (is the corpus installed?)")
    return paths[:limit] if limit else paths


def chorale_paths(limit: int | None = None) -> list[Path]:
    """The Bach chorales of music21's corpus (sorted, so ``limit`` takes a fixed subset)."""
    return corpus_paths("chorales", limit)


def chorale_notes(path: Path, seed: int = 0) -> list[Note]:
    """A score (a chorale, a quartet movement) as notes in seconds: tempo from its metronome mark (±8 % per
    score for variety), ties merged, fermatas held 1.6× longer, voices with slightly different loudness."""
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


def render_corpus(
    kind: str = "chorales",
    out_dir: str | Path | None = None,
    sample_rate: int = 22016,
    limit: int | None = None,
    progress: bool = True,
) -> Path:
    """Render a set of scores (``CORPUS_SETS``) to FLAC files in ``out_dir`` (default: the cache); files
    already there are kept.

    Returns the folder, ready for ``mp3net prepare``.
    """
    from tqdm import tqdm

    from mp3net.audio import write_audio

    out = Path(out_dir) if out_dir else default_cache_dir() / f"{kind}-{sample_rate}Hz-v{CACHE_VERSION}"
    paths = corpus_paths(kind, limit)
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
    bar = tqdm(paths, unit="score", desc=f"rendering {kind}", disable=not progress, dynamic_ncols=True)
    seconds = 0.0
    for i, p in enumerate(bar):
        name = p.stem if kind == "chorales" else f"{p.parent.parent.name}_{p.parent.name}_{p.stem}"
        target = out / f"{name.replace('.', '_')}.flac"
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
        print(f"rendered {seconds / 60:.1f} min of {kind} in {time.perf_counter() - t0:.0f} s into {out}")
    return out


def render_chorales(
    out_dir: str | Path | None = None,
    sample_rate: int = 22016,
    limit: int | None = None,
    progress: bool = True,
) -> Path:
    """:func:`render_corpus` of the Bach chorales (the shipped model's data)."""
    return render_corpus("chorales", out_dir, sample_rate, limit, progress)


# ---------------------------------------------------------------------------------------------------
# the demo pipeline


DEFAULT_MINUTES = 8.0  # training budget: `make demo` (install, render, prepare, train, report) < 15 min
CARD_CURVES = "curves.png"  # the shipped model's training curves, in its card
DEMO_SET = "quartets"  # the demo's music: not the shipped model's (the chorales)
DEFAULT_PIECES: int | None = None  # all 25 quartet movements, ≈ 68 min, rendered in about two minutes
DEMO_START = "pretrained"  # the decoder the demo starts from: `mp3net pretrain --init-from pretrained`
# the demo's pretraining on top of the laptop preset, before the user's -o: a new table of 64 clips of the
# quartets for the shipped model's decoder, and the rates' decay within the steps the budget holds (0.65 s
# a step on two idle AMD EPYC cores: 640 steps and 4 evaluations ≈ 7.3 min; benchmarks/README.md#the-demo)
DEMO_RECIPE = (
    "pretrain.clips=64",
    "pretrain.steps=640",
    "pretrain.lr_decay_start=400",
    "pretrain.lr_decay_steps=240",
    "pretrain.ckpt_every=160",
)


def _pick_threads() -> int:
    """Torch threads for the demo: the cores not already busy (at least 1), unless OMP_NUM_THREADS is set.

    On a shared machine, OpenMP threads competing with other jobs for the same cores wait on each other at
    every barrier: two threads on one free core made a training iteration ~10x slower than one thread.
    """
    import torch

    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    cores = os.cpu_count() or 1
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    n = max(1, min(cores, int(cores - busy + 0.5)))
    torch.set_num_threads(n)
    return n


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, flush=True)


def train_for(
    cfg, data: Path, run: Path, seconds: float, max_steps: int | None, progress: bool, init_from: str | None
) -> int:
    """Pretrain (or continue) a run, a new one from ``init_from``'s decoder, until ``pretrain.steps`` (or
    ``max_steps``) or ``seconds`` of wall time have passed (at least one step); the progress bar shows the
    steps. Returns the step reached."""
    from mp3net.train.pretrain import Pretrainer

    trainer = Pretrainer(cfg, data, run, progress=progress, init_from=init_from)
    try:
        return trainer.run(max_steps or cfg.pretrain.steps, seconds=seconds)
    finally:
        trainer.close()


def read_tonality_curve(run: Path) -> dict[str, list[float]]:
    """Steps and the tonality of fakes and reals (both un-noised) from the evaluations a pretraining run
    logged at its checkpoints (``run/pretrain/metrics.jsonl``)."""
    curve: dict[str, list[float]] = {"step": [], "fake": [], "real": []}
    path = run / "pretrain" / "metrics.jsonl"
    if not path.exists():
        return curve
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if "eval/tonality_fake" in r and "eval/tonality_real" in r:
            curve["step"].append(r["step"])
            curve["fake"].append(r["eval/tonality_fake"])
            curve["real"].append(r["eval/tonality_real"])
    return curve


def _write_tracks(audio, sr: int, n_bands: int, folder: Path, prefix: str, titles: list[str]) -> list[Track]:
    """Write each ``[C, T]`` clip as ``folder/prefix-i.wav`` with its spectrogram ``prefix-i.png``."""
    from mp3net.audio import write_audio
    from mp3net.plots import write_spectrogram

    folder.mkdir(parents=True, exist_ok=True)
    tracks = []
    for i, (x, title) in enumerate(zip(audio, titles, strict=True)):
        x = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
        wav = folder / f"{prefix}-{i}.wav"
        png = folder / f"{prefix}-{i}.png"
        write_audio(wav, x, sr)
        write_spectrogram(x, sr, n_bands, png, title=title)
        tracks.append(Track(title, f"{folder.name}/{wav.name}", f"{folder.name}/{png.name}"))
    return tracks


@dataclass
class DemoSettings:
    """What :func:`run_demo` was asked for."""

    out: Path
    minutes: float = DEFAULT_MINUTES
    pieces: int | None = DEFAULT_PIECES
    cache: Path | None = None
    max_steps: int | None = None
    overrides: list[str] = field(default_factory=list)
    n_tracks: int = 4
    n_eval: int = 32
    quiet: bool = False


def run_demo(
    out: str | Path = "demo",
    minutes: float = DEFAULT_MINUTES,
    pieces: int | None = DEFAULT_PIECES,
    cache: str | Path | None = None,
    max_steps: int | None = None,
    overrides: list[str] | None = None,
    n_tracks: int = 4,
    n_eval: int = 32,
    quiet: bool = False,
) -> Path:
    """Quartets → synth → cache → prepare → pretrain from the shipped model's decoder (the ``laptop`` preset's
    network, :data:`DEMO_RECIPE`, then ``overrides``) for ``minutes`` at most → generate →
    ``out/report.html``. ``pieces``: how many quartet movements to render (None: all).

    ``n_tracks`` generated and real clips are shown, ``n_eval`` clips per side are evaluated. A second run
    with the same ``out`` and a larger ``max_steps`` continues the same run (for ``minutes`` at most).
    Returns the report's path.
    """
    import torch

    settings = DemoSettings(
        Path(out),
        minutes,
        pieces,
        Path(cache) if cache else None,
        max_steps,
        list(overrides or []),
        n_tracks,
        n_eval,
        quiet,
    )
    before = torch.get_num_threads()
    try:
        _log(f"using {_pick_threads()} torch thread(s)", quiet)
        return _run_demo(settings)
    finally:
        torch.set_num_threads(before)


def _run_demo(s: DemoSettings) -> Path:
    from mp3net import generate as gen
    from mp3net.config import preset
    from mp3net.evaluate import evaluate_clips, load_real_clips
    from mp3net.plots import save_png, tonality_curve_figure

    t_start = time.perf_counter()
    s.out.mkdir(parents=True, exist_ok=True)
    overrides = [*DEMO_RECIPE, *s.overrides]
    cfg = preset("laptop").override(overrides)
    m = cfg.model
    data, dataset_summary = _dataset(s, m)
    run = s.out / "run"
    _log(f"[3/5] pretrain from the shipped model for {s.minutes:g} min at most → {run}", s.quiet)
    start = DEMO_START if DEMO_START in ("pretrained", *gen.pretrained_names()) else None
    steps = train_for(cfg, data, run, s.minutes * 60, s.max_steps, not s.quiet, start)

    _log("[4/5] generate and evaluate", s.quiet)
    G, _ = gen.load_generator(run)
    generated = _generated_tracks(G, m, s.out / "generated", s.n_tracks, long_seconds=4 * m.clip_seconds)
    reals, _ = load_real_clips(data, s.n_eval, m.clip_samples, seed=1)
    titles = [f"real clip {i}" for i in range(min(s.n_tracks, len(reals)))]
    real = _write_tracks(reals[: s.n_tracks], m.sample_rate, m.n_bands, s.out / "real", "real", titles)
    fakes, sr = gen.generate(G, list(range(s.n_eval)), batch_size=8)
    report = evaluate_clips(reals, list(fakes), sr)
    curve = read_tonality_curve(run)
    save_png(tonality_curve_figure(curve, f"this demo run ({steps} iterations)"), s.out / "tonality.png", 100)
    pretrained, pre_tracks, pre_rows = _pretrained_section(s, data, reals, sr)
    compare = demo_html.side_by_side(
        {"real": real, "this run": generated[: s.n_tracks], "shipped model": pre_tracks[: s.n_tracks]},
        {"this run": report.rows(), **({"shipped model": pre_rows} if pre_rows else {})},
    )

    _log("[5/5] report", s.quiet)
    page = demo_html.page(
        dataset=dataset_summary,
        model=m,
        steps=steps,
        clips=cfg.pretrain.clips,
        minutes=s.minutes,
        elapsed_minutes=(time.perf_counter() - t_start) / 60,
        out=s.out,
        generated=generated,
        real=real,
        rows=report.rows(),
        n_fake=report.n_fake,
        n_real=report.n_real,
        pretrained=pretrained,
        side_by_side=compare,
        overrides=overrides,
    )
    report_path = s.out / "report.html"
    atomic_write_text(report_path, page)
    atomic_write_text(s.out / "evaluate.json", report.to_json() + "\n")
    return report_path


def _dataset(s: DemoSettings, m) -> tuple[Path, str]:
    """Steps 1-2: render the quartets (cached) and prepare them into ``out/dataset``; returns the dataset
    folder and the prepare summary."""
    from mp3net.data import prepare

    _log(f"[1/5] Mozart and Haydn string quartets → piano synth ({m.sample_rate} Hz)", s.quiet)
    cache_dir = s.cache / f"{DEMO_SET}-{m.sample_rate}Hz-v{CACHE_VERSION}" if s.cache else None
    src = render_corpus(DEMO_SET, cache_dir, m.sample_rate, limit=s.pieces, progress=not s.quiet)
    data = s.out / "dataset"
    _log(f"[2/5] prepare {src} → {data}", s.quiet)
    rep = prepare(src, data, m.sample_rate, m.channels, m.clip_samples, workers=1, progress=not s.quiet)
    _log(rep.summary(), s.quiet)
    return data, rep.summary()


def _generated_tracks(G, m, folder: Path, n_tracks: int, long_seconds: float) -> list[Track]:
    """Tracks of seeds 0..n_tracks-1 (one clip each) and one long track of seed 0."""
    from mp3net import generate as gen

    seeds = list(range(n_tracks))
    audio, sr = gen.generate(G, seeds)
    long_audio, _ = gen.generate(G, [0], duration=long_seconds)
    tracks = _write_tracks(audio, sr, m.n_bands, folder, "seed", [f"seed {i}" for i in seeds])
    long_title = f"seed 0, {long_seconds:.0f} s ({long_seconds / m.clip_seconds:.0f} clips)"
    return tracks + _write_tracks(long_audio, sr, m.n_bands, folder, "long", [long_title])


def _pretrained_section(
    s: DemoSettings, data: Path, reals: list, sr: int
) -> tuple[str, list[Track], list[tuple[str, str, str]]]:
    """HTML on the shipped model (its tracks, evaluation and training curve; "" if none is shipped), its
    tracks and its evaluation rows."""
    import shutil

    from mp3net import generate as gen
    from mp3net.evaluate import evaluate_clips, load_real_clips

    if "tiny-chorales" not in gen.pretrained_names():
        return "", [], []
    try:
        Gp, cfg_p = gen.load_generator("pretrained")
        mp = cfg_p.model
        folder = s.out / "pretrained"
        tracks = _generated_tracks(Gp, mp, folder, s.n_tracks, long_seconds=30.0)
        fakes, psr = gen.generate(Gp, list(range(s.n_eval)), batch_size=8)
        preal = reals if psr == sr else load_real_clips(data, s.n_eval, mp.clip_samples, psr)[0]
        report = evaluate_clips(preal, list(fakes), psr)
    except MP3NetError as e:
        return demo_html.pretrained_error(e), [], []
    # the card's training curves (benchmarks/model_card.py writes them with the card)
    card = gen.PRETRAINED_DIR / "tiny-chorales" / CARD_CURVES
    curve_image = None
    if card.exists():
        shutil.copy(card, folder / CARD_CURVES)
        curve_image = f"pretrained/{CARD_CURVES}"
    return demo_html.pretrained_section(tracks, report.rows(), curve_image), tracks, report.rows()
