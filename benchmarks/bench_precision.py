"""fp32 vs bf16 on this CPU, side by side in one process: a 95 s track and a 95 s D step (batch 1), and the
same fp32 numbers for an earlier revision of the code (``--before REV``, in its own process), each next to
the GEMM rates measured in its process (the machine is shared: compare ratios, not raw seconds).

track = ``Generator.generate`` + inverse MDCT of one 95 s stereo clip; D step = what ``Trainer.train_step``
does for D: fakes without grad, the noise layer on reals and fakes, the WGAN-GP critic loss with its
penalty backpropagated term by term, one Adam step. Random weights.

    python benchmarks/bench_precision.py [--before 321049d] [--reps 3] [--d-reps 1] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

from _common import cpu_model, matmul_gflops, write_section

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
START, END = "<!-- bench_precision:start -->", "<!-- bench_precision:end -->"
GOAL_TRACK_S, GOAL_D_S = 1.2, 16.0


def autocast(dtype: torch.dtype):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)


def worker(precisions: list[str], reps: int, d_reps: int, name: str) -> dict:
    from mp3net.config import preset
    from mp3net.dsp import imdct
    from mp3net.model import Discriminator, Generator, NoiseLayer
    from mp3net.train.losses import d_loss

    cfg = preset(name)
    m, tc = cfg.model, cfg.train
    torch.manual_seed(0)
    m = m.with_unit_levels()
    G, D, noise = Generator(m).eval(), Discriminator(m), NoiseLayer(m)
    opt = torch.optim.Adam(D.parameters(), tc.lr, betas=tuple(tc.betas))
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(1, m.latent_dim)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    out: dict = {
        "preset": name,
        "threads": torch.get_num_threads(),
        "mm_fp32": matmul_gflops(dtype=torch.float32),
    }
    out["mm_bf16"] = matmul_gflops(dtype=torch.bfloat16)

    def track(dtype: torch.dtype) -> tuple[float, float]:
        t, c = time.perf_counter(), time.process_time()
        with torch.no_grad(), autocast(dtype):
            A = G.generate(z)
        imdct(A, trim=True)
        return time.perf_counter() - t, time.process_time() - c

    def d_step(dtype: torch.dtype) -> tuple[float, float]:
        real = torch.rand(1, m.channels, m.n_frames, m.n_bands, generator=gen) * 0.05
        t, c = time.perf_counter(), time.process_time()
        with torch.no_grad(), autocast(dtype):
            fake = G(torch.randn(1, m.latent_dim, generator=gen), tile_frames=64).float()
        cl = torch.channels_last
        real_n = noise(real, generator=gen).contiguous(memory_format=cl)
        fake_n = noise(fake, generator=gen).contiguous(memory_format=cl)
        with autocast(dtype):
            d_loss(D, real_n, fake_n, tc.gp_lambda, tc.drift, gen, backward=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t, time.process_time() - c

    for p in precisions:
        track(dtypes[p])  # warm-up
    times: dict = {p: [] for p in precisions}
    for _ in range(reps):  # interleaved: both precisions see the same machine load
        for p in precisions:
            times[p].append(track(dtypes[p]))
    for p in precisions:
        out[f"track_{p}"] = statistics.median(w for w, _ in times[p])
        out[f"track_cpu_{p}"] = statistics.median(c for _, c in times[p])
    if d_reps:
        for p in precisions:
            d_step(dtypes[p])  # warm-up: oneDNN primitives, allocator
        dtimes: dict = {p: [] for p in precisions}
        for _ in range(d_reps):
            for p in precisions:
                dtimes[p].append(d_step(dtypes[p]))
        for p in precisions:
            out[f"d_{p}"] = statistics.median(w for w, _ in dtimes[p])
            out[f"d_cpu_{p}"] = statistics.median(c for _, c in dtimes[p])
    out["mm_fp32_end"], out["mm_bf16_end"] = (
        matmul_gflops(dtype=torch.float32),
        matmul_gflops(dtype=torch.bfloat16),
    )
    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


def run_worker(src: Path, precisions: list[str], reps: int, d_reps: int, name: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src))
    cmd = [sys.executable, __file__, "--worker", ",".join(precisions), "--reps", str(reps)]
    cmd += ["--d-reps", str(d_reps), "--preset", name]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=HERE)
    if proc.returncode:
        raise SystemExit(f"worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def checkout(rev: str, into: Path) -> Path:
    """The ``src/`` tree of git revision ``rev``."""
    tar = into / "src.tar"
    with open(tar, "wb") as f:
        subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], stdout=f, check=True)
    with tarfile.open(tar) as t:
        t.extractall(into, filter="data")
    return into / "src"


def rev_name(rev: str) -> str:
    r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], capture_output=True, text=True)
    return r.stdout.strip() or rev


def render(new: dict, old: dict | None, before: str | None, reps: int, d_reps: int) -> str:
    load = os.getloadavg()
    rows = []

    def row(label: str, r: dict, p: str) -> str:
        mm = r[f"mm_{p}"]
        d = f"{r[f'd_{p}']:.1f} ({r[f'd_cpu_{p}']:.1f})" if f"d_{p}" in r else "—"
        return f"| {label} | {r[f'track_{p}']:.2f} ({r[f'track_cpu_{p}']:.2f}) | {d} | {mm:.0f} |"

    if old:
        rows.append(row(f"before ({before}), fp32", old, "fp32"))
    rows.append(row("now, fp32", new, "fp32"))
    rows.append(row("now, bf16 autocast", new, "bf16"))
    ratio_d = "—"
    if "d_bf16" in new and "d_fp32" in new:
        ratio_d = f"{new['d_bf16'] / new['d_fp32']:.2f} ({new['d_cpu_bf16'] / new['d_cpu_fp32']:.2f})"
    ratio_t = new["track_bf16"] / new["track_fp32"]
    ratio_tc = new["track_cpu_bf16"] / new["track_cpu_fp32"]
    rows.append(
        f"| ratio bf16 / fp32 (same process) | {ratio_t:.2f} ({ratio_tc:.2f}) | {ratio_d} "
        f"| {new['mm_bf16'] / new['mm_fp32']:.2f} (bf16 / fp32 GEMM) |"
    )
    lines = [
        START,
        f"### bench_precision — {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores (AVX512_BF16), torch {torch.__version__}, Python "
        f"{platform.python_version()}, {new['threads']} threads; load average at the end {load[0]:.1f} / "
        f"{load[1]:.1f} (shared with other jobs: compare within a row's process, against its GEMM rate). "
        f"{new['preset']} preset, random weights, batch 1. Track: median of {reps} interleaved runs; D step: "
        f"median of {d_reps} after one warm-up step each. Goal with bf16: track < {GOAL_TRACK_S} s, "
        f"D step < {GOAL_D_S:.0f} s; fp32 unchanged.",
        "",
        "| code, precision | track s | D step s | fp32 / bf16 GEMM GFLOP/s in that process |",
        "|---|---|---|---|",
        *rows,
        "",
        "Cells: wall seconds (process CPU seconds, summed over threads: less sensitive to other jobs). "
        f"GEMM column: the precision's own rate (fp32 rows: fp32; bf16 row: bf16). Peak RSS of the process "
        f"running both precisions: {new['peak_rss_gib']:.1f} GiB.",
        "",
        "Reproduce: `python benchmarks/bench_precision.py --before REV`.",
        END,
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", help="git revision to measure in fp32 for the before column")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--d-reps", type=int, default=1, help="timed D steps per precision (0: none)")
    ap.add_argument("--preset", default="95s", help="model preset (tiny: a quick check of the script)")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker.split(","), args.reps, args.d_reps, args.preset)))
        return
    old = None
    if args.before:
        with tempfile.TemporaryDirectory() as tmp:
            old = run_worker(checkout(args.before, Path(tmp)), ["fp32"], args.reps, args.d_reps, args.preset)
        print("before:", old, flush=True)
    new = run_worker(ROOT / "src", ["fp32", "bf16"], args.reps, args.d_reps, args.preset)
    print("now:", new, flush=True)
    section = render(new, old, rev_name(args.before) if args.before else None, args.reps, args.d_reps)
    print(section)
    if not args.no_write:
        write_section("bench_precision", section)


if __name__ == "__main__":
    main()
