"""Can a generator draw a real clip at all? Each variant of the tiny generator is regressed, with no GAN, onto
the MDCT of one real chorale clip from one fixed latent, for the same number of Adam steps; then its fit is
compared with the clip: the relative error weighted towards quiet bins (what the gaps between partials need),
the tonality of the fit against the clip's, and a spectrogram pair.

A generator that cannot fit one clip's partials and onsets in a few thousand steps cannot learn them from a
discriminator either: this isolates the architecture (width, upsampling) from the training recipe, in minutes.

    python benchmarks/bench_fit.py --data ~/data/chorales-tiny --variants tiny wide32 transposed --steps 2500

Results go to the table between ``<!-- bench_fit:start -->`` and ``<!-- bench_fit:end -->`` in
benchmarks/README.md (``--report FILE`` rewrites it from a ``--json`` file) and the pictures to
benchmarks/images/fit-<variant>.png.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from _common import cpu_model, write_section

IMAGES = Path(__file__).resolve().parent / "images"

# the old tiny network this study was made on: the laptop preset's grid with the linear output, no band
# normalisation and 16 channels at the detail end (the variants with a gain of 64 were retired at v0.1-lab)
BASE: dict[str, object] = {"output": "linear", "band_norm": False, "min_channels": 16}
# config overrides of that network per variant
VARIANTS: dict[str, dict[str, object]] = {
    "tiny": {},
    "transposed": {"upsample": "transposed"},
    "wide32": {"min_channels": 32},
    "wide32-base8": {"min_channels": 32, "base_channels": 8},
}
DEFAULT_STEPS = 2500
FLOOR = 0.03  # the weight 1/(|A| + FLOOR·rms): quiet bins count up to 1/FLOOR² times more than loud ones


@dataclass
class FitResult:
    variant: str
    params: int
    steps: int
    cpu_seconds: float
    weighted_error: float  # mean ((fit - A)/(|A| + FLOOR·rms))², 1 = as bad as silence
    plain_error: float  # mean (fit - A)² / mean A²
    tonality_fit: float
    tonality_clip: float
    when: str = ""  # UTC date and time of the fit


def loud_clip(data: Path, clip_samples: int, sample_rate: int):
    """``[1, C, T]``: the loudest of 200 evenly spaced clips of the dataset (a full chord, not a pause)."""
    from mp3net.data import ClipDataset

    ds = ClipDataset(data, clip_samples, sample_rate, 2)
    picks = range(0, len(ds), max(1, len(ds) // 200))
    return ds[max(picks, key=lambda i: float(ds[i].pow(2).mean()))][None]


def fit(variant: str, data: Path, steps: int, lr: float, lines: bool = False) -> FitResult:
    import torch

    from bench_learning import spectrogram_row
    from mp3net.config import preset
    from mp3net.dsp import imdct, mdct
    from mp3net.evaluate import mean_tonality
    from mp3net.model import Generator

    torch.set_num_threads(1)
    torch.manual_seed(0)
    m = preset("tiny").model
    for k, v in {**BASE, **VARIANTS[variant]}.items():
        setattr(m, k, v)
    m.validate()
    x = loud_clip(data, m.clip_samples, m.sample_rate)
    A = mdct(x, m.n_bands)  # [1, C, M, K]
    rms = A.pow(2).mean().sqrt()
    weight = 1.0 / (A.abs() + FLOOR * rms)
    G = Generator(m)
    z = torch.randn(1, m.latent_dim)
    opt = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.9, 0.99))
    t0 = time.process_time()
    for _ in range(steps):
        loss = ((G(z) - A) * weight).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    cpu = time.process_time() - t0
    with torch.no_grad():
        out = G(z)
    weighted = float(((out - A) * weight).pow(2).mean() / (A * weight).pow(2).mean())
    audio = imdct(out, trim=True)[0]
    if lines:  # where the fit's partials sit against the clip's, in the long-window view
        from look import line_report

        print(f"{variant}: {line_report(x[0], audio, m.sample_rate, m.n_bands)}", flush=True)
        name = image_name(variant, steps).replace(".png", "-long.png")
        spectrogram_row(
            [x[0], audio], m.sample_rate, IMAGES / name, f"clip | {variant} fit", long_window=True
        )
    else:
        spectrogram_row(
            [x[0], audio], m.sample_rate, IMAGES / image_name(variant, steps), f"clip | {variant} fit"
        )
    return FitResult(
        variant=variant,
        params=sum(p.numel() for p in G.parameters()),
        steps=steps,
        cpu_seconds=cpu,
        weighted_error=weighted,
        plain_error=float((out - A).pow(2).mean() / A.pow(2).mean()),
        tonality_fit=mean_tonality([audio], m.sample_rate),
        tonality_clip=mean_tonality([x[0]], m.sample_rate),
        when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    )


def image_name(variant: str, steps: int) -> str:
    """The fit's picture: fit-<variant>.png, with -<steps> when not the default number of steps."""
    return f"fit-{variant}.png" if steps == DEFAULT_STEPS else f"fit-{variant}-{steps}.png"


def table(results: list[FitResult]) -> str:
    rows = [
        "| variant | G params | steps | CPU s | weighted error | plain error | tonality fit / clip "
        "| picture |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        rows.append(
            f"| {r.variant} | {r.params:,} | {r.steps} | {r.cpu_seconds:.0f} | {r.weighted_error:.3f} | "
            f"{r.plain_error:.3f} | {r.tonality_fit:.1%} / {r.tonality_clip:.1%} | "
            f"![](images/{image_name(r.variant, r.steps)}) |"
        )
    whens = sorted({r.when for r in results if r.when})
    span = "" if not whens else whens[0] if len(whens) == 1 else f"{whens[0]} to {whens[-1]}"
    rows.append(f"\n{cpu_model()}, one thread, {span}.")
    return "\n".join(rows)


def write_table(results: list[FitResult]) -> None:
    write_section("bench_fit", f"<!-- bench_fit:start -->\n{table(results)}\n<!-- bench_fit:end -->")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, help="prepared dataset at the tiny preset's rate")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--report", type=Path, help="only rewrite the README table from this --json file")
    p.add_argument(
        "--lines",
        action="store_true",
        help="print where the fit's held lines sit against the clip's (benchmarks/look.py) and draw the "
        "long-window view; the README table is left as it is",
    )
    a = p.parse_args()
    if a.steps < 1:
        p.error("--steps must be at least 1")
    from mp3net.utils import MP3NetError, first_line

    try:
        run(a)
    except (MP3NetError, OSError, ValueError, KeyError, TypeError) as e:  # bad dataset or --report file
        p.error(first_line(e))


def run(a: argparse.Namespace) -> None:
    if a.report:
        write_table([FitResult(**r) for r in json.loads(a.report.read_text())])
        return
    if a.data is None:
        raise ValueError("--data is required (unless --report)")
    results = []
    for v in a.variants:
        r = fit(v, a.data.expanduser(), a.steps, a.lr, lines=a.lines)
        print(json.dumps(asdict(r)), flush=True)
        results.append(r)
    if a.json:
        a.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    if not a.lines:
        write_table(results)


if __name__ == "__main__":
    main()
