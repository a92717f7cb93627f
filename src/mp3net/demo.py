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


# ---------------------------------------------------------------------------------------------------
# the demo pipeline


DEFAULT_MINUTES = 8.0  # training budget: `make demo` (install, render, prepare, train, report) < 15 min
DEFAULT_CHORALES = 60  # ≈ 35 min of music, rendered in about a minute


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


def train_for(cfg, data: Path, run: Path, seconds: float, max_steps: int | None, progress: bool):
    """Train (or continue) a run until ``seconds`` of wall time have passed (at least one step)."""
    from mp3net.train.loop import Trainer

    deadline = time.monotonic() + seconds

    def stop_at_deadline(trainer: Trainer) -> None:
        if time.monotonic() >= deadline:
            trainer.request_stop()

    trainer = Trainer(cfg, data, run, progress=progress, hooks=[stop_at_deadline])
    try:
        trainer.run(max_steps if max_steps else cfg.train.max_steps)
    finally:
        trainer.close()
    return trainer


def read_tonality_curve(run: Path) -> dict[str, list[float]]:
    """Steps and the logged tonality of fakes and reals (both un-noised) from ``run/metrics.jsonl``."""
    curve: dict[str, list[float]] = {"step": [], "fake": [], "real": []}
    path = run / "metrics.jsonl"
    if not path.exists():
        return curve
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if "tonality/fake" in r and "tonality/real" in r:
            curve["step"].append(r["step"])
            curve["fake"].append(r["tonality/fake"])
            curve["real"].append(r["tonality/real"])
    return curve


def plot_tonality_curve(curve: dict[str, list[float]], path: Path, title: str = "") -> Path:
    """Paper figure 5: tonality of generated (left) and real (right) clips over D iterations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mp3net.utils import atomic_write

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
    for ax, key, colour in ((axes[0], "fake", "tab:orange"), (axes[1], "real", "tab:blue")):
        ax.plot(curve["step"], [100 * v for v in curve[key]], ".-", color=colour, ms=3, lw=1)
        ax.set_xlabel("discriminator iteration")
        ax.set_title(f"tonality of {'generated' if key == 'fake' else 'real'} clips")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean tonality τ (%)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return path


def _html_escape(s: str) -> str:
    import html

    return html.escape(str(s))


def _track_cards(items: list[tuple[str, str, str]]) -> str:
    """(title, audio path, spectrogram path) → HTML cards."""
    cards = []
    for title, audio, image in items:
        cards.append(
            f'<div class="card"><h4>{_html_escape(title)}</h4>'
            f'<audio controls preload="none" src="{_html_escape(audio)}"></audio>'
            f'<a href="{_html_escape(image)}"><img src="{_html_escape(image)}" alt="spectrogram of '
            f'{_html_escape(title)}"></a></div>'
        )
    return '<div class="grid">' + "\n".join(cards) + "</div>"


def _table_html(report) -> str:
    rows = "".join(
        f"<tr><td>{_html_escape(a)}</td><td>{_html_escape(b)}</td><td>{_html_escape(c)}</td></tr>"
        for a, b, c in report.rows()
    )
    return f"<table><tr><th>metric</th><th>real</th><th>fake</th></tr>{rows}</table>"


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:1em}
.card{border:1px solid #ddd;border-radius:6px;padding:.6em}.card h4{margin:.2em 0 .4em}
.card img{width:100%}audio{width:100%}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.3em .7em;text-align:right}td:first-child{text-align:left}
code{background:#f4f4f4;padding:0 .3em}.note{color:#555}
"""


def _write_tracks(audio, sr: int, n_bands: int, folder: Path, prefix: str, titles: list[str]):
    from mp3net.analysis import analyze_signal, plot_spectrogram
    from mp3net.audio import write_audio

    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for i, (x, title) in enumerate(zip(audio, titles, strict=True)):
        x = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
        wav = folder / f"{prefix}-{i}.wav"
        png = folder / f"{prefix}-{i}.png"
        write_audio(wav, x, sr)
        plot_spectrogram(analyze_signal(x, sr, n_bands), png, title=title)
        items.append((title, f"{folder.name}/{wav.name}", f"{folder.name}/{png.name}"))
    return items


def run_demo(
    out: str | Path = "demo",
    minutes: float = DEFAULT_MINUTES,
    chorales: int | None = DEFAULT_CHORALES,
    cache: str | Path | None = None,
    max_steps: int | None = None,
    overrides: list[str] | None = None,
    n_tracks: int = 4,
    n_eval: int = 32,
    quiet: bool = False,
) -> Path:
    """Chorales → synth → cache → prepare → train ``tiny`` for ``minutes`` → generate → ``out/report.html``.

    A second run with the same ``out`` continues training the same run for another ``minutes``.
    Returns the report's path.
    """
    import torch

    before = torch.get_num_threads()
    try:
        _log(f"using {_pick_threads()} torch thread(s)", quiet)
        return _run_demo(out, minutes, chorales, cache, max_steps, overrides, n_tracks, n_eval, quiet)
    finally:
        torch.set_num_threads(before)


def _run_demo(
    out: str | Path,
    minutes: float,
    chorales: int | None,
    cache: str | Path | None,
    max_steps: int | None,
    overrides: list[str] | None,
    n_tracks: int,
    n_eval: int,
    quiet: bool,
) -> Path:
    from mp3net import generate as gen
    from mp3net.config import preset
    from mp3net.data import prepare
    from mp3net.evaluate import evaluate_clips, load_real_clips

    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = preset("tiny").override(overrides or [])
    m = cfg.model
    progress = not quiet

    _log(f"[1/5] Bach chorales → piano synth ({m.sample_rate} Hz)", quiet)
    cache_dir = Path(cache) / f"chorales-{m.sample_rate}Hz-v{CACHE_VERSION}" if cache else None
    src = render_chorales(cache_dir, m.sample_rate, limit=chorales, progress=progress)

    _log(f"[2/5] prepare {src} → {out / 'dataset'}", quiet)
    data = out / "dataset"
    rep = prepare(src, data, m.sample_rate, m.channels, m.clip_samples, workers=1, progress=progress)
    if not quiet:
        print(rep.summary())

    run = out / "run"
    _log(f"[3/5] train the tiny model for {minutes:g} min → {run}", quiet)
    trainer = train_for(cfg, data, run, minutes * 60, max_steps, progress)
    steps = trainer.step

    _log("[4/5] generate and evaluate", quiet)
    G, _ = gen.load_generator(run)
    seeds = list(range(n_tracks))
    audio, sr = gen.generate(G, seeds)
    long_audio, _ = gen.generate(G, [0], duration=4 * m.clip_seconds)
    gen_items = _write_tracks(audio, sr, m.n_bands, out / "generated", "seed", [f"seed {s}" for s in seeds])
    gen_items += _write_tracks(
        long_audio,
        sr,
        m.n_bands,
        out / "generated",
        "long",
        [f"seed 0, {4 * m.clip_seconds:.0f} s (4 clips)"],
    )
    reals, _ = load_real_clips(data, n_eval, m.clip_samples, seed=1)
    real_items = _write_tracks(
        reals[:n_tracks],
        sr,
        m.n_bands,
        out / "real",
        "real",
        [f"real clip {i}" for i in range(min(n_tracks, len(reals)))],
    )
    fakes_eval, _ = gen.generate(G, list(range(n_eval)), batch_size=8)
    report = evaluate_clips(reals, list(fakes_eval), sr)
    curve = read_tonality_curve(run)
    plot_tonality_curve(curve, out / "tonality.png", title=f"this demo run ({steps} iterations)")

    pre_html = ""
    if "tiny-chorales" in gen.pretrained_names():
        try:
            Gp, cfg_p = gen.load_generator("pretrained")
            pa, psr = gen.generate(Gp, seeds)
            plong, _ = gen.generate(Gp, [0], duration=30.0)
            pitems = _write_tracks(
                pa, psr, cfg_p.model.n_bands, out / "pretrained", "seed", [f"seed {s}" for s in seeds]
            )
            pitems += _write_tracks(
                plong, psr, cfg_p.model.n_bands, out / "pretrained", "long", ["seed 0, 30 s"]
            )
            pf, _ = gen.generate(Gp, list(range(n_eval)), batch_size=8)
            preal = reals if psr == sr else load_real_clips(data, n_eval, cfg_p.model.clip_samples, psr)[0]
            prep = evaluate_clips(preal, list(pf), psr)
            pcurve_img = ""
            card = gen.PRETRAINED_DIR / "tiny-chorales" / "tonality.png"
            if card.exists():
                import shutil

                shutil.copy(card, out / "pretrained" / "tonality.png")
                pcurve_img = (
                    '<img src="pretrained/tonality.png" alt="tonality over training of the shipped model">'
                )
            pre_html = (
                "<h2>The shipped pretrained model (<code>mp3net generate pretrained</code>)</h2>"
                "<p class='note'>The same tiny model trained on the same chorales for longer; see "
                "<code>src/mp3net/pretrained/tiny-chorales/README.md</code>.</p>"
                + _track_cards(pitems)
                + "<h3>Its evaluation against the chorales</h3>"
                + _table_html(prep)
                + pcurve_img
            )
        except MP3NetError as e:
            pre_html = f"<p>The shipped model could not be loaded: {_html_escape(e)}</p>"

    _log("[5/5] report", quiet)
    elapsed = time.perf_counter() - t_start
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>mp3net demo</title>
<style>{_CSS}</style></head><body>
<h1>mp3net demo: Bach chorales</h1>
<p>{rep.summary() if hasattr(rep, "summary") else ""}<br>
Model: <code>tiny</code> preset ({m.sample_rate} Hz, {m.channels} ch, {m.n_bands} bands, clips of
{m.clip_seconds:.2f} s); trained here for {steps} discriminator iterations ({minutes:g} min budget);
this report took {elapsed / 60:.1f} min. Run <code>mp3net demo --out {_html_escape(out)}</code> again to
train further.</p>
<h2>Generated by this run</h2>
{_track_cards(gen_items)}
<h2>Real clips (the training data)</h2>
{_track_cards(real_items)}
<h2>Tonality over training (paper figure 5)</h2>
<p class="note">Mean tonality τ (eq. 13) of the un-noised MDCT of generated and real training clips, as
logged during training. The paper reports 40–45 % for its fakes and 72–73 % for MAESTRO.</p>
<img src="tonality.png" alt="tonality of fakes and reals over training">
<h2>Evaluation ({report.n_fake} generated vs {report.n_real} real clips)</h2>
{_table_html(report)}
<p class="note">Tonality of both sides measured the same way; Fréchet distance on hand-made audio features
(Bark-band levels, chroma, onset strength, tonality, stereo width) with two halves of the real clips as its
noise floor; memorisation: nearest real clip of each fake versus real-to-real. See
<code>mp3net evaluate --help</code>.</p>
{pre_html}
</body></html>
"""
    report_path = out / "report.html"
    atomic_write_text(report_path, page)
    atomic_write_text(out / "evaluate.json", report.to_json() + "\n")
    return report_path
