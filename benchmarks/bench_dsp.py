"""Throughput of the signal core on a 95 s stereo track: MDCT, inverse MDCT, masking threshold, noise layer.

Compares, in float32 on the CPU with 1 and 2 torch threads:
  - mp3net: the fold + N/2-point complex FFT DCT-IV (``mp3net.dsp``), the threshold
    (docs/psychoacoustics.md);
  - the 2N-point complex FFT formulation (mp3net's first version, still used for N ≡ 2 mod 4);
  - a direct matrix implementation (frames @ [2N, N] cosine matrix, one GEMM);
  - the PyPI package ``mdct`` (numpy/scipy, float64, 256-sample frames) if it is installed; it is not a
    dependency (``pip install mdct``; it needs a shim for scipy >= 1.13, applied here).

Each round runs every candidate once (interleaved, so load from other processes hits all of them alike);
the table shows the median over the rounds. Results go into benchmarks/README.md between the
``<!-- bench_dsp:start -->`` / ``<!-- bench_dsp:end -->`` markers.

    python benchmarks/bench_dsp.py [--rounds 7] [--threads 1 2] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from _common import README, cpu_model, write_section
from mp3net.dsp import PsychoacousticModel, imdct, mdct, vorbis_window
from mp3net.model import NoiseLayer

mdct_module = sys.modules["mp3net.dsp.mdct"]

SR, N = 22016, 128
M_IN = 16383  # 16384 frames: the 95 s model's clip
START, END = "<!-- bench_dsp:start -->", "<!-- bench_dsp:end -->"
# libgomp's default active waiting makes every parallel region wait for descheduled spinning workers
# when other processes compete for the cores; the child run with OMP_WAIT_POLICY=PASSIVE shows the difference
THREAD_NOTE = " passive" if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE" else ""


def direct_matrices(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[2N, N] forward matrix (window and 1/(√2·N) folded in) and [N, 2N] inverse matrix (window, 2√2)."""
    t = torch.arange(2 * n, dtype=torch.float64)
    k = torch.arange(n, dtype=torch.float64)
    cos = torch.cos(math.pi / n * (t[:, None] + 0.5 - n / 2) * (k[None, :] + 0.5))
    w = vorbis_window(n)[:, None]
    fwd = (w * cos / (math.sqrt(2.0) * n)).float()
    inv = (w * cos * 2.0 * math.sqrt(2.0)).T.contiguous().float()
    return fwd, inv


def direct_mdct(x: torch.Tensor, fwd: torch.Tensor) -> torch.Tensor:
    n = fwd.shape[1]
    frames = torch.nn.functional.pad(x, (n, n)).unfold(-1, 2 * n, n)  # strided view, no copy
    return frames @ fwd


def direct_imdct(A: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
    n = A.shape[-1]
    y = A @ inv  # [..., F, 2N] windowed frames
    out = torch.nn.functional.pad(y[..., :n], (0, 0, 0, 1))
    out[..., 1:, :] += y[..., n:]
    return out.flatten(-2)


def load_pypi_mdct():
    try:
        import scipy
        import scipy.signal
        import scipy.signal.windows

        # mdct 0.4 / stft 0.5 use scipy.signal.kaiser/cosine, scipy.real and numpy.lib.pad, all removed since
        for name in ("kaiser", "cosine"):
            if not hasattr(scipy.signal, name):
                setattr(scipy.signal, name, getattr(scipy.signal.windows, name))
        if not hasattr(scipy, "real"):
            scipy.real = np.real
        if not hasattr(np.lib, "pad"):
            np.lib.pad = np.pad
        import mdct as pypi_mdct
        import stft.utils

        # ... and indexes with a list instead of a tuple
        stft.utils.center_unpad = lambda data, n: data[n // 2 : -n // 2]
        stft.utils.unpad = lambda data, length: data[:length]
    except ImportError:
        return None
    return pypi_mdct


def measure(cands: dict[str, Callable[[], object]], rounds: int) -> dict[str, tuple[float, float]]:
    """Median wall-clock and median process CPU time (all threads) per candidate, in seconds."""
    for f in cands.values():  # warm-up: tables, caches, allocator
        f()
    wall: dict[str, list[float]] = {k: [] for k in cands}
    cpu: dict[str, list[float]] = {k: [] for k in cands}
    for _ in range(rounds):
        for name, f in cands.items():
            c0, t0 = time.process_time(), time.perf_counter()
            f()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in cands}


def check_exact(x: torch.Tensor, pm: PsychoacousticModel, fwd: torch.Tensor, inv: torch.Tensor) -> list[str]:
    """Sanity: all candidates compute the same transform (float32 rounding)."""
    A = mdct(x, N)
    lines = []
    d1 = (direct_mdct(x, fwd) - A).abs().max().item()
    d2 = (mdct_module._mdct_fft2n(x, N) - A).abs().max().item()
    d3 = (imdct(A, trim=True) - x).abs().max().item()
    d4 = (direct_imdct(A, inv)[..., N:-N] - x).abs().max().item()
    lines.append(
        f"max |A_fast − A_direct| = {d1:.1e}, |A_fast − A_2N-FFT| = {d2:.1e}; "
        f"round-trip error fast {d3:.1e}, direct {d4:.1e} (|x| ≤ 1)"
    )
    return lines


def run(threads: list[int], rounds: int) -> tuple[list[str], list[str]]:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(2, M_IN * N, generator=g) * 2 - 1) * 0.5  # stereo, 95.1 s at 22016 Hz
    seconds = x.shape[-1] / SR
    pm = PsychoacousticModel(SR, N)
    noise = NoiseLayer(pm)
    fwd, inv = direct_matrices(N)
    A = mdct(x, N)
    pypi = load_pypi_mdct()
    x_np = x.double().numpy()
    A_np = [pypi.mdct(x_np[c], framelength=2 * N) for c in range(2)] if pypi else None

    rows = []
    for nt in threads:
        torch.set_num_threads(nt)
        with torch.no_grad():
            cands: dict[str, Callable[[], object]] = {
                "mdct/mp3net": lambda: mdct(x, N),
                "imdct/mp3net": lambda: imdct(A),
                "threshold/mp3net": lambda: pm.threshold(A),
                "noise/mp3net": lambda: noise(A),
                "mdct/fft2n": lambda: mdct_module._mdct_fft2n(x, N),
                "imdct/fft2n": lambda: mdct_module._imdct_fft2n(A),
                "mdct/direct": lambda: direct_mdct(x, fwd),
                "imdct/direct": lambda: direct_imdct(A, inv),
            }
            if pypi is not None:
                cands["mdct/pypi"] = lambda: [pypi.mdct(x_np[c], framelength=2 * N) for c in range(2)]
                cands["imdct/pypi"] = lambda: [pypi.imdct(A_np[c], framelength=2 * N) for c in range(2)]
            t = measure(cands, rounds)
        for impl, label in [
            ("mp3net", "mp3net (fold + N/2-point FFT)"),
            ("fft2n", "2N-point complex FFT (first version)"),
            ("direct", "direct matrix (one GEMM)"),
            ("pypi", "PyPI `mdct` 0.4 (numpy, float64)"),
        ]:
            if f"mdct/{impl}" not in t:
                continue
            (tm, cm), (ti, ci) = t[f"mdct/{impl}"], t[f"imdct/{impl}"]
            cells = [f"{nt}{THREAD_NOTE}", label, f"{tm * 1e3:.1f} ({cm * 1e3:.1f})", f"{seconds / tm:,.0f}"]
            cells += [f"{ti * 1e3:.1f} ({ci * 1e3:.1f})", f"{seconds / ti:,.0f}"]
            if impl == "mp3net":
                (tt, ct), (tn, cn) = t["threshold/mp3net"], t["noise/mp3net"]
                total, ctotal = tm + ti + tt, cm + ci + ct
                cells += [
                    f"{tt * 1e3:.1f} ({ct * 1e3:.1f})",
                    f"{seconds / tt:,.0f}",
                    f"{tn * 1e3:.1f} ({cn * 1e3:.1f})",
                ]
                cells += [f"**{total * 1e3:.1f}** ({ctotal * 1e3:.1f})"]
            else:
                cells += ["", "", "", ""]
            rows.append("| " + " | ".join(cells) + " |")
            print(rows[-1], flush=True)
    notes = check_exact(x, pm, fwd, inv)
    return rows, notes


def render(rows: list[str], notes: list[str], threads: list[int], rounds: int) -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    head = [
        START,
        f"### bench_dsp — {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()}; load average at the end {load[0]:.1f} (shared machine: timings "
        f"are medians of {rounds} interleaved rounds).",
        "",
        f"Input: 2 × {M_IN}·{N} samples float32 (stereo, {M_IN * N / SR:.1f} s at {SR} Hz) → "
        f"[2, {M_IN + 1}, {N}] MDCT amplitudes. Cells: median wall-clock ms (median process CPU ms, summed "
        "over threads; less sensitive to other processes than wall time); ×RT = seconds of audio per second "
        "of wall time. noise = threshold + thr·N(0, σ²) (docs/psychoacoustics.md#noise-layer). Goal: MDCT + "
        "IMDCT + threshold < 100 ms.",
        "",
        "| threads | implementation | MDCT ms | MDCT ×RT | IMDCT ms | IMDCT ×RT | threshold ms "
        "| threshold ×RT | noise ms | MDCT+IMDCT+thr ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        *[f"Check: {n}" for n in notes],
        "",
        'Notes: the CPU column is the fairer comparison when the machine is shared. "2" rows use libgomp\'s '
        "default active waiting: when other processes compete for the cores, each parallel region (~15 ms "
        "here) waits for a descheduled spinning worker, so pipelines of many ops (all FFT variants, the "
        'threshold) suffer far more than one big GEMM. "2 passive" rows are the same run in a child process '
        "with `OMP_WAIT_POLICY=PASSIVE` (it must be set before torch is imported), which removes the "
        "effect. The MDCT/IMDCT work in cache-sized chunks of frames (`mp3net.dsp.mdct._CHUNK`), the "
        "threshold likewise (`mp3net.dsp.psycho._CHUNK`).",
        "",
        "Reproduce: `python benchmarks/bench_dsp.py` (`pip install mdct` adds the PyPI column).",
        END,
    ]
    return "\n".join(head)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--no-write", action="store_true", help="print only, leave benchmarks/README.md alone")
    p.add_argument("--rows-only", action="store_true", help=argparse.SUPPRESS)  # child process mode
    args = p.parse_args()
    rows, notes = run(args.threads, args.rounds)
    if args.rows_only:
        return
    multi = [t for t in args.threads if t > 1]
    if multi and not THREAD_NOTE:
        # the same multi-threaded measurement with passive OpenMP waiting (must be set before torch loads)
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        cmd = [
            sys.executable,
            __file__,
            "--rows-only",
            "--rounds",
            str(args.rounds),
            "--threads",
            *map(str, multi),
        ]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        rows += [line for line in out.splitlines() if line.startswith("| ")]
    section = render(rows, notes, args.threads, args.rounds)
    print(section)
    if not args.no_write:
        write_section("bench_dsp", section)
        print(f"updated {README}")


if __name__ == "__main__":
    main()
