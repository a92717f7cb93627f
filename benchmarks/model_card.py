"""The shipped model's card: evaluate every checkpoint of a training run (its EMA generator, 64 clips against
64 real ones), plot the curves over clips seen, draw the spectrograms of its tracks next to real clips, and
write ``OUT/README.md`` with the command, the cost and the numbers; copy the run's export to ``OUT``.

    python benchmarks/model_card.py --run ~/runs/ship --data ~/data/chorales-tiny \\
        --out src/mp3net/pretrained/tiny-chorales --command "mp3net train ..."

Evaluations are cached in RUN/card_eval.json, so a second call only evaluates new checkpoints;
OUT/card_eval.json keeps every stage's rows, for ``--history`` when the next model starts from this one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

N_EVAL = 64


def _generator_of(state: dict):
    """A checkpoint's EMA generator (its plain one when it has none; a pretraining checkpoint's as its export
    draws: with its sampler and calibrated levels), in eval mode, and its config."""
    from mp3net.config import Config
    from mp3net.model import Generator
    from mp3net.train.pretrain import checkpoint_export

    if "latents" in state:
        return checkpoint_export(state)
    cfg = Config.from_dict(state["config"])
    G = Generator(cfg.model)
    G.load_state_dict(state["G_ema"] if state.get("G_ema") is not None else state["G"])
    return G.eval(), cfg


def _evaluate(state: dict, data: Path) -> dict:
    from mp3net.evaluate import evaluate_clips, load_real_clips
    from mp3net.generate import generate

    G, cfg = _generator_of(state)
    fakes, sr = generate(G, list(range(N_EVAL)), batch_size=8)
    reals, _ = load_real_clips(data, N_EVAL, cfg.model.clip_samples, seed=1)
    rep = evaluate_clips(reals, list(fakes), sr)
    return {
        "step": int(state["step"]),
        "clips_seen": int(state["step"])
        * (cfg.pretrain.batch_size if "latents" in state else cfg.train.batch_size),
        "fd_real_halves": rep.fd_real_halves,
        **rep.headline(),
    }


def _checkpoints(run: Path) -> list[tuple[int, Path]]:
    """A GAN run's checkpoints, or a pretraining run's (``mp3net pretrain``)."""
    from mp3net.train import checkpoint as ckpt
    from mp3net.train.pretrain import PRETRAIN_DIR

    return ckpt.list_checkpoints(run) or ckpt.list_checkpoints(run / PRETRAIN_DIR)


def evaluate_run(run: Path, data: Path) -> list[dict]:
    from mp3net.train import checkpoint as ckpt

    cache = run / "card_eval.json"
    done = {r["step"]: r for r in json.loads(cache.read_text())} if cache.exists() else {}
    for step, path in _checkpoints(run):
        if step not in done:
            done[step] = _evaluate(ckpt.load_checkpoint(path), data)
            ckpt.write_json(cache, sorted(done.values(), key=lambda r: r["step"]))
            print(f"step {step}: FD {done[step]['fd']:.0f}, tonality {done[step]['tonality_fake']:.1%}")
    return sorted(done.values(), key=lambda r: r["step"])


def staged_rows(earlier: list[str], run: Path, data: Path) -> list[dict]:
    """The evaluations of a run trained in stages: each ``RUN@STEP`` of ``earlier`` up to that step (the
    checkpoint the next stage started from, ``--init-from``), then ``run``; clips seen and steps counted
    from the first stage's start, each row naming its ``stage``."""
    rows, clips, steps = [], 0, 0
    for spec in earlier:
        where, _, upto = spec.rpartition("@")
        if not where or not upto.isdigit():
            raise SystemExit(f"--earlier {spec!r}: expected RUN@STEP")
        stage = [r for r in evaluate_run(Path(where), data) if r["step"] <= int(upto)]
        if not stage:
            raise SystemExit(f"--earlier {spec!r}: no checkpoint up to step {upto} in {where}")
        rows += [_shifted(r, clips, steps, Path(where).name) for r in stage]
        per_step = stage[-1]["clips_seen"] / max(stage[-1]["step"], 1)
        clips, steps = clips + round(int(upto) * per_step), steps + int(upto)
    return rows + [_shifted(r, clips, steps, run.name) for r in evaluate_run(run, data)]


def with_history(history: Path | None, rows: list[dict]) -> list[dict]:
    """The rows of a card's earlier stages (``card_eval.json`` of the model this run started from,
    ``--init-from``), then ``rows`` counted on from the history's last clips and steps."""
    if history is None:
        return rows
    old = json.loads(history.read_text())
    clips, steps = old[-1]["clips_seen"], old[-1]["step"]
    return old + [{**r, "clips_seen": r["clips_seen"] + clips, "step": r["step"] + steps} for r in rows]


def _shifted(r: dict, clips: int, steps: int, stage: str) -> dict:
    return {**r, "clips_seen": r["clips_seen"] + clips, "step": r["step"] + steps, "stage": stage}


def progress_table(rows: list[dict], run: Path, images: Path) -> str:
    """The README's "expected progress" table: per checkpoint, clips seen → metrics and a spectrogram
    of seeds 0–1 (``images/progress-<clips>.png``)."""
    from mp3net.generate import generate
    from mp3net.train import checkpoint as ckpt

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_learning import spectrogram_row

    paths = dict(_checkpoints(run))
    lines = [
        "| clips seen | FD | tonality fake / real | Bark error mean / max | hum | seeds 0–1 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["step"] not in paths:
            continue
        G, _ = _generator_of(ckpt.load_checkpoint(paths[r["step"]]))
        fakes, sr = generate(G, [0, 1])
        name = f"progress-{r['clips_seen']}.png"
        spectrogram_row(list(fakes), sr, images / name, f"{r['clips_seen']} clips")
        lines.append(
            f"| {r['clips_seen']} | {r['fd']:.0f} | {r['tonality_fake']:.1%} / {r['tonality_real']:.1%} | "
            f"{r['bark_err_mean_db']:.1f} / {r['bark_err_max_db']:.1f} dB | {r['hum_db']:+.1f} dB | "
            f"![{r['clips_seen']}](benchmarks/images/{name}) |"
        )
    return "\n".join(lines)


def curves(rows: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    from mp3net.plots import save_png

    fig = Figure(figsize=(15, 2.8))
    for ax, key, label in zip(
        fig.subplots(1, 5),
        ("fd", "tonality_fake", "bark_err_mean_db", "onset_contrast_fake", "valley_db_fake"),
        (
            "Fréchet distance",
            "tonality of fakes",
            "Bark-band level error, dB",
            "onset contrast of fakes",
            "valley depth of fakes, dB",
        ),
        strict=True,
    ):
        have = [r for r in rows if r.get(key) is not None]
        ax.plot([r["clips_seen"] / 1000 for r in have], [r[key] for r in have], marker=".")
        if key in ("tonality_fake", "onset_contrast_fake", "valley_db_fake"):
            ax.axhline(have[-1][key.replace("fake", "real")], color="k", ls="--", lw=0.8, label="reals")
            ax.legend(fontsize=7)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("thousand clips seen", fontsize=8)
    fig.tight_layout()
    save_png(fig, path, 90)


def spectrograms(out: Path, data: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_learning import spectrogram_row
    from mp3net.evaluate import load_real_clips
    from mp3net.generate import generate, load_generator

    G, cfg = load_generator(out)
    fakes, sr = generate(G, [0, 1, 2, 3])
    reals, _ = load_real_clips(data, 4, cfg.model.clip_samples, seed=1)
    spectrogram_row(list(fakes), sr, out / "fakes.png", "generated, seeds 0-3")
    spectrogram_row(reals, sr, out / "reals.png", "real clips")
    # the 1024-sample view up to 2.75 kHz, where a held partial is one line (benchmarks/look.py)
    spectrogram_row(list(fakes), sr, out / "fakes-long.png", "generated, seeds 0-3", long_window=True)
    spectrogram_row(reals, sr, out / "reals-long.png", "real clips", long_window=True)


LONG_SECONDS = 60  # the pictures' track and real excerpt
LONG_STATS_SECONDS = 30  # the statistics' tracks and excerpts (33 of the 60 chorales are this long)
LONG_STATS_N = 33


def long_tracks(out: Path, data: Path) -> dict:
    """A 60 s track (seed 0, the model's default sequence) and a real 60 s excerpt as spectrogram +
    chromagram (``long-fake.png``, ``long-real.png``), and the long-form measures of 33 tracks of 30 s
    against up to 33 real excerpts (:func:`mp3net.longform.evaluate_long`); returns the report as a dict."""
    import dataclasses

    from mp3net.generate import generate, load_generator, walks
    from mp3net.longform import evaluate_long, load_real_excerpts
    from mp3net.plots import long_track_figure, save_png

    G, cfg = load_generator(out)
    how = "a walk of its table" if walks(G) else "independent latents"
    fake, sr = generate(G, [0], duration=LONG_SECONDS)
    real = load_real_excerpts(data, 1, LONG_SECONDS, sr, cfg.model.channels)[0]
    save_png(
        long_track_figure(fake[0], sr, f"generated, seed 0, {LONG_SECONDS} s ({how})"),
        out / "long-fake.png",
        80,
    )
    save_png(
        long_track_figure(real, sr, f"real, the first {LONG_SECONDS} s of a track of the data"),
        out / "long-real.png",
        80,
    )
    report = evaluate_long(data, out, LONG_STATS_N, LONG_STATS_SECONDS)
    return {"how": how, **dataclasses.asdict(report)}


def long_section(long: dict, call: str) -> str:
    """The card's long-track section: the pictures and the measures' table."""
    from mp3net.longform import LABELS, MEASURES

    rows = "\n".join(f"| {LABELS[k]} | {long['fake'][k]:.3f} | {long['real'][k]:.3f} |" for k in MEASURES)
    return f"""## Long tracks

`mp3net generate {call} --duration 60` ({long["how"]}, docs/long-tracks.md), seed 0, next to the first
{LONG_SECONDS} s of a real track: the 1024-sample spectrogram up to 2.75 kHz and the chromagram (each half
second's pitch classes, its strongest black):

![generated, 60 s](long-fake.png)
![real, 60 s](long-real.png)

`mp3net evaluate --long --n {LONG_STATS_N} --duration {LONG_STATS_SECONDS}`: {long["n_fake"]} generated
tracks against {long["n_real"]} real excerpts of {LONG_STATS_SECONDS} s (every track that long, at most
{LONG_STATS_N}; one from the start of each):

| measure | generated | real |
|---|---|---|
{rows}
"""


def _what(pretrained: bool, sampler: str = "gaussian") -> tuple[str, str]:
    """How the card names the shipped generator: (the whole sentence, the short form)."""
    if pretrained:
        draws = (
            "its table sampler (latents near its table's, docs/training.md#the-sampler)"
            if sampler == "table"
            else "the latents' Gaussian folded into its head"
        )
        return (
            "`config.json` + `model.safetensors` are the generator exactly as `mp3net pretrain` exported it: "
            f"the decoder of its latent table with {draws} and its output "
            "levels calibrated to the data's (docs/training.md#autoencoder-pretraining), no GAN.",
            "export",
        )
    return (
        "`config.json` + `model.safetensors` are the EMA generator exactly as `mp3net train` exported it.",
        "EMA generator",
    )


ABOUT_CHORALES = (
    "The small model shipped with mp3net (`mp3net generate pretrained`): the `tiny` preset's grid (11008 Hz "
    "stereo, 2.97 s clips, 512 frames × 64 bands; its widths and recipe are the command's below) trained on "
    "the demo's 60 Bach chorales rendered by mp3net's own piano synthesizer."
)


def readme(
    rows: list[dict],
    out: Path,
    command: str,
    cost: str,
    remarks: str = "",
    pretrained: bool = False,
    long: dict | None = None,
    about: str = ABOUT_CHORALES,
) -> str:
    from mp3net.config import Config

    last = rows[-1]
    sampler = Config.load(out / "config.json").model.sampler if (out / "config.json").exists() else "gaussian"
    what, short = _what(pretrained, sampler)
    table = "| stage | clips seen | FD (real halves) | tonality fake / real | Bark error mean / max | hum | "
    table += "onset contrast fake / real | valley depth fake / real |\n|---|---|---|---|---|---|---|---|\n"
    for r in rows:
        onsets = valleys = "–"  # the earlier stages were evaluated before these measures existed
        if r.get("onset_contrast_fake") is not None:
            onsets = f"{r['onset_contrast_fake']:.1f} / {r['onset_contrast_real']:.1f}"
        if r.get("valley_db_fake") is not None:
            valleys = f"{r['valley_db_fake']:.1f} / {r['valley_db_real']:.1f} dB"
        table += (
            f"| {r.get('stage', '')} | {r['clips_seen']} | {r['fd']:.0f} ({r['fd_real_halves']:.0f}) | "
            f"{r['tonality_fake']:.1%} / "
            f"{r['tonality_real']:.1%} | {r['bark_err_mean_db']:.1f} / {r['bark_err_max_db']:.1f} dB | "
            f"{r['hum_db']:+.1f} dB | {onsets} | {valleys} |\n"
        )
    name = out.name
    call = "pretrained" if name == "tiny-chorales" else name
    longs = long_section(long, call) if long else ""
    commands = [
        (f"mp3net generate {call} --seeds 0-7 --out tracks", "2.97 s clips"),
        (f"mp3net generate {call} -n 1 --duration 300 --out long", "a 5-minute stereo track"),
        (f"mp3net evaluate --long --real DATASET --fake {call}", "its long tracks against real ones"),
        (f"mp3net pretrain --data MY_DATA --run ft --init-from {call}", "a start for your own music"),
    ]
    width = max(len(c) for c, _ in commands) + 2
    usage = "\n".join(f"{c.ljust(width)}# {why}" for c, why in commands)
    return f"""# {name}

{about} It plays any length (see Long tracks below). {what}

```bash
{usage}
```

```python
from mp3net.generate import from_pretrained, generate

G = from_pretrained("{call}")
audio, sr = generate(G, seeds=[0, 1], duration=60.0)  # [2, 2, 660480] float32, 11008
```

Trained with

```
{command}
```

{cost}

Its tracks ({short}, seeds 0–3) next to real clips of the training data:

![generated](fakes.png)
![real](reals.png)

The same clips in a 1024-sample window up to 2.75 kHz, where a held partial is one line:

![generated, long window](fakes-long.png)
![real, long window](reals-long.png)

{remarks}

{longs}
## Over training

Over training (each checkpoint's {short}, {N_EVAL} clips against {N_EVAL} real ones, `mp3net evaluate`'s
metrics):

![curves](curves.png)

{table}
Last checkpoint: step {last["step"]}.
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--command", required=True, help="the training command, for the README")
    ap.add_argument("--cost", default="", help="a sentence on the training cost, for the README")
    ap.add_argument("--remarks", default="", help="what the spectrograms show, for the README")
    ap.add_argument("--about", default=ABOUT_CHORALES, help="the card's first paragraph: what the model is")
    ap.add_argument(
        "--licences",
        type=Path,
        metavar="LICENSES_MD",
        help="the data's licences and sources (benchmarks/real_music.py writes one), copied to the card",
    )
    ap.add_argument(
        "--earlier",
        nargs="*",
        default=[],
        metavar="RUN@STEP",
        help="earlier stages of a staged run (each up to the step the next one started from), in order",
    )
    ap.add_argument(
        "--history",
        type=Path,
        metavar="CARD_EVAL_JSON",
        help="the evaluations of the stages before --run (the source model's card_eval.json)",
    )
    ap.add_argument(
        "--progress", type=Path, metavar="IMAGES", help="only print the expected-progress table (images here)"
    )
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    rows = with_history(args.history, staged_rows(args.earlier, args.run, args.data))
    if args.progress:
        print(progress_table(rows, args.run, args.progress))
        return 0
    from mp3net.train import checkpoint as ckpt
    from mp3net.utils import atomic_write_text

    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(args.run / "export" / name, args.out / name)
    atomic_write_text(args.out / "card_eval.json", json.dumps(rows, indent=1) + "\n")
    curves(rows, args.out / "curves.png")
    spectrograms(args.out, args.data)

    pretrained = not ckpt.list_checkpoints(args.run)  # a pretraining run keeps its checkpoints in pretrain/
    if args.licences:
        shutil.copy(args.licences, args.out / "LICENSES.md")
    long = long_tracks(args.out, args.data)
    text = readme(rows, args.out, args.command, args.cost, args.remarks, pretrained, long, args.about)
    atomic_write_text(args.out / "README.md", text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
