"""How fast each training recipe learns: every cell (recipe × preset) trains for the same budget of
**process CPU seconds** on the demo dataset (the chorales), then its EMA generator is evaluated the same way:
clips seen, tonality of fakes vs reals, the Fréchet feature distance, the per-Bark-band level error, the hum
measure (modulation energy at the upsampling periods, fakes against reals), and a row of spectrograms.

CPU seconds, not wall time or iterations: the machine is shared, and a recipe that makes an iteration
cheaper should get more of them. Each cell runs in its own process with one torch thread; a cell that is
interrupted resumes from its checkpoint with its CPU account (kept next to the checkpoints).

    python benchmarks/bench_learning.py --cells paper ns-r1 --minutes 20 --out ~/runs/learning
    python benchmarks/bench_learning.py --report --out ~/runs/learning   # table + pictures → README

The cells' results go to OUT/<cell>/result.json and the table between ``<!-- bench_learning:start -->`` and
``<!-- bench_learning:end -->`` in benchmarks/README.md; the spectrogram rows to benchmarks/images/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
IMAGES = HERE / "images"
START, END = "<!-- bench_learning:start -->", "<!-- bench_learning:end -->"

# the fast recipes' shared settings: 1 D step per G step, Adam β1 = 0, lazy penalty every 8 steps, EMA with
# a half-life in clips ramped with the clips seen
FAST = [
    "train.n_critic=1",
    "train.lr=2e-4",
    "train.betas=[0.0, 0.99]",
    "train.reg_every=8",
    "train.r1_gamma=1.0",
    "train.ema_half_life=2500",
    "train.ema_rampup=0.05",
]
# the paper's network: raw amplitudes (the cells with a gain of 64, input compression, rpgan and kernel4
# were retired at v0.1-lab, whose checkout runs them; docs/experiments.md)
UNIT = ["model.band_norm=false", "model.output=linear"]
# the paper's recipe, pinned (the tiny preset's own defaults may differ)
PAPER = ["train.loss=wgan-gp", "train.n_critic=2", "train.lr=1e-4", "train.betas=[0.5, 0.9]"]
PAPER += ["train.reg_every=1", "train.ema_half_life=0", *UNIT]
WIDE = ["model.min_channels=16"]  # the redesigned tiny: 16 channels in the last block (was 16 → 8 → 4)
CELLS: dict[str, list[str]] = {
    # the paper's recipe on the old tiny widths: the baseline
    "paper": [*PAPER, "model.min_channels=0", "model.upsample=transposed"],
    # the paper's recipe on the redesigned widths with resize-conv upsampling
    "paper-wide": [*PAPER, *WIDE, "model.upsample=resize"],
    # WGAN-GP made cheaper: one D step per G step, the penalty lazily every 4 steps, twice the rate
    "wgan-fast": [
        *PAPER,
        *WIDE,
        "model.upsample=resize",
        "train.n_critic=1",
        "train.lr=2e-4",
        "train.reg_every=4",
        "train.ema_half_life=2500",
        "train.ema_rampup=0.05",
    ],
    "ns-r1": [*FAST, *WIDE, *UNIT, "model.upsample=resize", "train.loss=ns-r1"],
    "ns-r1-transposed": [*FAST, *WIDE, *UNIT, "model.upsample=transposed", "train.loss=ns-r1"],
    "ns-r1-narrow": [*FAST, *UNIT, "model.min_channels=0", "model.upsample=resize", "train.loss=ns-r1"],
}
N_EVAL = 64
# no evaluation during training: the budget is the cells' training alone (each is evaluated after it)
COMMON = [
    "train.sample_every=0",
    "train.eval_every=0",
    "train.log_every=20",
    "train.ckpt_every=500",
    "train.num_workers=0",
]


def cell_config(name: str, seed: int):
    from mp3net.config import preset

    return preset("tiny").override([*COMMON, *CELLS[name], f"train.seed={seed}"])


def train_cell(name: str, data: Path, run: Path, seconds: float, seed: int) -> None:
    """Train one cell until ``seconds`` of this run's process CPU time (across restarts) are spent."""
    import torch

    from mp3net.train.gan import Trainer

    torch.set_num_threads(1)
    account = run / "cpu_seconds.json"
    spent = json.loads(account.read_text())["cpu_seconds"] if account.exists() else 0.0
    start = time.process_time()

    def used() -> float:
        return spent + time.process_time() - start

    def hook(tr: Trainer) -> None:
        if tr._last_ckpt_step == tr.step:  # a checkpoint was just written: keep the account with it
            account.write_text(json.dumps({"cpu_seconds": used(), "step": tr.step}))
        if used() >= seconds:
            tr.request_stop()

    if used() < seconds:
        tr = Trainer(cell_config(name, seed), data, run, progress=False, hooks=[hook])
        try:
            tr.run()
        finally:
            tr.close()
        account.write_text(json.dumps({"cpu_seconds": used(), "step": tr.step}))


def spectrogram_row(clips: list, sr: int, path: Path, title: str, long_window: bool = False) -> None:
    """A row of log-MDCT spectrograms of up to 4 clips ``[C, T]``; with ``long_window`` their 1024-sample
    log spectrograms up to 2.75 kHz instead (D's spectral view), where single partials are lines."""
    import torch

    from mp3net.evaluate import clip_mdct
    from mp3net.plots import long_window_row_figure, save_png, spectrogram_row_figure

    path.parent.mkdir(parents=True, exist_ok=True)
    amplitudes = [clip_mdct(c.to(torch.float64), sr) for c in clips]
    fig = long_window_row_figure(amplitudes, sr, title=title) if long_window else None
    save_png(fig or spectrogram_row_figure(amplitudes, title), path, 70)


def evaluate_cell(name: str, data: Path, run: Path) -> dict:
    """EMA generator of the cell vs real clips: the metrics, and its spectrogram row."""
    import torch

    from mp3net import generate as gen
    from mp3net.evaluate import evaluate_clips, load_real_clips

    torch.set_num_threads(1)
    G, cfg = gen.load_generator(run)
    m = cfg.model
    fakes, sr = gen.generate(G, list(range(N_EVAL)), batch_size=8)
    reals, _ = load_real_clips(data, N_EVAL, m.clip_samples, seed=1)
    rep = evaluate_clips(reals, list(fakes), sr)
    spectrogram_row(list(fakes[:4]), sr, IMAGES / f"learning-{name}.png", name)
    account = json.loads((run / "cpu_seconds.json").read_text())
    err = rep.bark_error_db
    out = {
        "cell": name,
        "overrides": CELLS.get(name.split("@")[0], []),
        "cpu_seconds": account["cpu_seconds"],
        "steps": account["step"],
        "clips_seen": account["step"] * cfg.train.batch_size,
        "tonality_real": rep.tonality_real,
        "tonality_fake": rep.tonality_fake,
        "fd": rep.fd,
        "fd_real_halves": rep.fd_real_halves,
        "bark_err_mean_db": float(abs(err).mean()),
        "bark_err_max_db": float(abs(err).max()),
        "bark_err_db": err.tolist(),
        "hum_db": rep.hum_db,
        "g_params": sum(p.numel() for p in G.parameters()),
    }
    (run / "result.json").write_text(json.dumps(out, indent=2))
    return out


def reals_row(data: Path) -> None:
    from mp3net.config import preset
    from mp3net.evaluate import load_real_clips

    m = preset("tiny").model
    reals, sr = load_real_clips(data, 4, m.clip_samples, seed=1)
    spectrogram_row(reals, sr, IMAGES / "learning-reals.png", "real clips")


def table(results: list[dict]) -> str:
    head = (
        "| cell | CPU min | iterations | clips seen | tonality fake / real | FD (halves) "
        "| Bark error mean / max dB | hum dB |\n|---|---|---|---|---|---|---|---|\n"
    )
    rows = [
        f"| `{r['cell']}` | {r['cpu_seconds'] / 60:.1f} | {r['steps']} | {r['clips_seen']} | "
        f"{r['tonality_fake']:.1%} / {r['tonality_real']:.1%} | {r['fd']:.0f} ({r['fd_real_halves']:.1f}) | "
        f"{r['bark_err_mean_db']:.1f} / {r['bark_err_max_db']:.1f} | {r['hum_db']:+.1f} |"
        for r in results
    ]
    return head + "\n".join(rows)


def write_readme(results: list[dict], note: str) -> None:
    import platform

    text = README.read_text()
    pics = "\n".join(f"![{r['cell']}](images/learning-{r['cell']}.png)" for r in results)
    block = (
        f"{START}\n_{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, one torch "
        f"thread per cell; {note}_\n\n{table(results)}\n\nSpectrograms (4 fakes per cell, EMA generator, "
        f"seeds 0–3; the reals first):\n\n![reals](images/learning-reals.png)\n{pics}\n{END}"
    )
    if START in text:
        a, b = text.index(START), text.index(END) + len(END)
        text = text[:a] + block + text[b:]
    else:
        text += "\n## Learning: recipes × presets\n\n" + block + "\n"
    README.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", nargs="*", default=list(CELLS), help=f"of: {', '.join(CELLS)}")
    ap.add_argument("--minutes", type=float, default=20.0, help="process CPU minutes per cell")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=Path.home() / "data" / "chorales-tiny")
    ap.add_argument("--out", type=Path, default=Path.home() / "runs" / "learning")
    ap.add_argument("--parallel", type=int, default=2, help="cells trained at once (one thread each)")
    ap.add_argument("--report", action="store_true", help="evaluate the finished cells, write the README")
    ap.add_argument("--train-one", metavar="CELL", help=argparse.SUPPRESS)
    args = ap.parse_args()
    unknown = [c for c in args.cells if c not in CELLS]
    if unknown or (args.train_one and args.train_one not in CELLS):
        print(
            f"error: unknown cell(s) {unknown or args.train_one}; known: {', '.join(CELLS)}", file=sys.stderr
        )
        return 2
    suffix = "" if args.seed == 0 else f"@seed{args.seed}"
    if args.train_one:
        train_cell(
            args.train_one, args.data, args.out / f"{args.train_one}{suffix}", args.minutes * 60, args.seed
        )
        return 0
    if args.report:
        reals_row(args.data)
        runs = sorted(p for p in args.out.iterdir() if (p / "cpu_seconds.json").exists())
        results = [evaluate_cell(p.name, args.data, p) for p in runs]
        print(table(results))
        write_readme(results, f"{args.minutes:g} CPU-minute budget per cell, chorale demo dataset")
        return 0
    pending = list(args.cells)
    procs: list[subprocess.Popen] = []
    while pending or procs:
        while pending and len(procs) < args.parallel:
            cell = pending.pop(0)
            cmd = [sys.executable, __file__, "--train-one", cell, "--minutes", str(args.minutes)]
            cmd += ["--seed", str(args.seed), "--data", str(args.data), "--out", str(args.out)]
            procs.append(subprocess.Popen(cmd, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"}))
        time.sleep(5)
        done = [p for p in procs if p.poll() is not None]
        for p in done:
            if p.returncode:
                print(f"a cell failed with exit code {p.returncode}", file=sys.stderr)
            procs.remove(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
