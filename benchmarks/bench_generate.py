"""Generation speed: one 95 s stereo track (``95s`` preset) and a ``5s`` clip on this CPU, random weights.

Each case runs in its own subprocess (so its peak RSS is its own): build the generator, warm up once, then
``--reps`` timed runs of forward pass + inverse MDCT + writing a 16-bit WAV. Reported: median wall time and
its parts, real-time factor, peak RSS, achieved GFLOP/s (FLOPs counted from the conv shapes) next to this
machine's float32 matmul GFLOP/s measured in the same process, and the time of a matmul with the same FLOP
count. Baselines in the same run: plain NCHW (``mp3net.ops.enabled(False)``), channels-last untiled; "fast" =
``Generator.generate``, the one inference path (channels-last, 1×1 convs as GEMMs, the device plan's time
tiles), in float32 and in bf16 (separate processes for their peak RSS, and side by side in the 95 s
process for the ratio). A per-block profile of the fast 95 s pass follows. Then the audibility of bf16:
the share of MDCT coefficients where |A_bf16 − A_fp32| exceeds the psychoacoustic masking threshold of the
fp32 output, for the shipped model and the (random, output-scaled) 95 s model. Then the ``mp3net generate``
path (shipped or tiny model): load, clip, batch, 5 min, fp32 and auto precision.

Results go into benchmarks/README.md between the ``bench_generate:start`` / ``bench_generate:end`` markers.

    python benchmarks/bench_generate.py [--reps 3] [--cases 95s-b1 ...] [--no-write]
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
import tempfile
import time
from pathlib import Path

import torch

from _common import README, cpu_model, matmul_gflops, write_section

START, END = "<!-- bench_generate:start -->", "<!-- bench_generate:end -->"
GOAL_S, GOAL_GIB = 1.6, 1.5

# name: (preset, batch, mode)
CASES = {
    "95s-b1-nchw": ("95s", 1, "nchw"),
    "95s-b1-cl": ("95s", 1, "cl"),
    "95s-b1": ("95s", 1, "fast"),
    "95s-b1-bf16": ("95s", 1, "bf16"),
    "95s-b4": ("95s", 4, "fast"),
    "5s-b1": ("5s", 1, "fast"),
}
NOTES = [
    "Notes: a 95 s pass costs 0.408 TFLOP, so at this CPU's measured float32 GEMM rate (≈180 GFLOP/s on "
    "2 threads, AVX2) no implementation can take less than ≈2.2 s here: the issue's 1.6 s goal assumed "
    "≈310 GFLOP/s. Judge the forward pass by its share of a same-FLOP matmul. Channels-last is 1.5× "
    "faster than NCHW (oneDNN's native layout); 1×1 convs went to PyTorch's slow im2col path and now run "
    "as one GEMM each; `torch.compile` (inductor, freezing) gained 5 % for a 46 s compile and is not used; "
    "`Generator.generate` (also what `mp3net generate` and the trainer's fakes run) tiles by "
    "`mp3net.ops.prepare_for(device).tiling`: on CPU the two widest blocks in 64-frame tiles (cache "
    "locality) inside tiles of 16384 output frames (bounded memory for any duration).",
]
MODE_TEXT = {
    "nchw": "NCHW, untiled",
    "cl": "channels-last, untiled",
    "fast": "fast (channels-last, tiled), fp32",
    "bf16": "fast, bf16 autocast",
}
BF16 = torch.bfloat16


def audible_share(G, z: torch.Tensor) -> float:
    """Share of MDCT coefficients where bf16 generation differs from fp32 by more than the masking threshold
    of the fp32 output (:class:`mp3net.dsp.PsychoacousticModel`): the bf16 error our own model hears."""
    from mp3net.dsp import PsychoacousticModel

    a32 = G.generate(z, dtype=torch.float32)
    a16 = G.generate(z, dtype=BF16)
    thr = PsychoacousticModel(G.cfg.sample_rate, G.cfg.n_bands).threshold(a32)
    return float(((a16 - a32).abs() > thr).float().mean())


def scale_output_to(G, z: torch.Tensor, rms: float) -> None:
    """Scale a random generator's output layer so its output has the given RMS (Glorot init leaves the raw
    output near 1e-6, far below the absolute threshold of hearing, which would make any error inaudible)."""
    with torch.no_grad():
        for _ in range(3):
            cur = float(G.generate(z[:1], dtype=torch.float32).square().mean().sqrt())
            G.output_head.weight.mul_(rms / cur)
            G.output_head.bias.mul_(rms / cur)


def forward_flops(cfg) -> tuple[float, list[float]]:
    """FLOPs of one generator forward pass (batch 1) and of each block, counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    from mp3net.model import Generator

    with torch.device("meta"):
        G = Generator(cfg)
        z = torch.empty(1, cfg.latent_dim)
        with FlopCounterMode(display=False) as total:
            G(z)
        per_block, h = [], G.head(z)
        for b in G.blocks:
            with FlopCounterMode(display=False) as fc:
                h = b(h)
            per_block.append(fc.get_total_flops())
        with FlopCounterMode(display=False) as fc:
            G._output(h)
    return total.get_total_flops(), per_block + [fc.get_total_flops()]


def worker(case: str, reps: int) -> dict:
    import soundfile as sf

    from mp3net import ops
    from mp3net.config import preset
    from mp3net.dsp import imdct
    from mp3net.model import Generator

    name, batch, mode = CASES[case]
    cfg = preset(name).model.with_unit_levels()
    flops, block_flops = forward_flops(cfg)
    torch.manual_seed(0)
    G = Generator(cfg).eval()
    z = torch.randn(batch, cfg.latent_dim)
    rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    out_dir = Path(tempfile.mkdtemp(prefix="mp3net-bench-"))

    def forward() -> torch.Tensor:
        if mode in ("fast", "bf16"):
            return G.generate(z, dtype=BF16 if mode == "bf16" else torch.float32)
        with torch.inference_mode(), ops.enabled(mode == "cl"):
            return G.synthesize(G.head(z)).contiguous()

    def once() -> tuple[float, float, float]:
        t0 = time.perf_counter()
        A = forward()
        t1 = time.perf_counter()
        with torch.inference_mode():
            wav = imdct(A, trim=True)
        del A
        t2 = time.perf_counter()
        for i in range(batch):
            sf.write(out_dir / f"track{i}.wav", wav[i].T.numpy(), cfg.sample_rate, subtype="PCM_16")
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2

    t_first = sum(once())
    runs = [once() for _ in range(reps)]
    mm = matmul_gflops()
    fwd = statistics.median(r[0] for r in runs)
    res = {
        "case": case,
        "preset": name,
        "batch": batch,
        "mode": mode,
        "threads": torch.get_num_threads(),
        "clip_seconds": cfg.clip_seconds,
        "gflop": flops * batch / 1e9,
        "first": t_first,
        "forward": fwd,
        "imdct": statistics.median(r[1] for r in runs),
        "write": statistics.median(r[2] for r in runs),
        "total": statistics.median(sum(r) for r in runs),
        "matmul_gflops": mm,
        "rss_model_gib": rss_model,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    if case == "95s-b1":
        res["blocks"] = block_profile(G, z, block_flops, reps)
        res["precision"] = precision_side_by_side(G, z, reps)
        scale_output_to(G, z, REFERENCE_RMS)
        res["audible_95s"] = audible_share(G, z)
    for f in out_dir.iterdir():
        f.unlink()
    out_dir.rmdir()
    return res


# RMS of the shipped tiny model's MDCT output (8 seeds): the level the random 95 s model is scaled to
REFERENCE_RMS = 0.0098


def precision_side_by_side(G, z: torch.Tensor, reps: int) -> dict:
    """Forward time in fp32 and bf16, interleaved in this process, with both GEMM rates."""
    ts = {"fp32": [], "bf16": []}
    for _ in range(reps):
        for key, dtype in (("fp32", torch.float32), ("bf16", BF16)):
            t = time.perf_counter()
            G.generate(z, dtype=dtype)
            ts[key].append(time.perf_counter() - t)
    out = {k: statistics.median(v) for k, v in ts.items()}
    out["mm_fp32"], out["mm_bf16"] = matmul_gflops(), matmul_gflops(dtype=BF16)
    return out


def block_profile(G, z: torch.Tensor, block_flops: list[float], reps: int) -> list[dict]:
    """Median time of each deep block and of the tiled tail (last two blocks + output layer), fast layout."""
    from mp3net.ops import TileLevel

    n = len(G.blocks)
    rows = []
    with torch.inference_mode():
        h = G.head(z).contiguous(memory_format=torch.channels_last)
        for i in range(n - 2):
            ts = []
            for _ in range(reps):
                t = time.perf_counter()
                y = G.blocks[i](h)
                ts.append(time.perf_counter() - t)
            h = y
            rows.append({"name": f"block {i}", "gflop": block_flops[i] / 1e9, "s": statistics.median(ts)})
        for label, tile in (("untiled", None), ("256-frame tiles", 256), ("64-frame tiles", 64)):
            ts = []
            for _ in range(reps):
                t = time.perf_counter()
                y = G.synthesize(h, [TileLevel(2, tile)] if tile else [], first_block=n - 2)
                ts.append(time.perf_counter() - t)
                del y
            rows.append(
                {
                    "name": f"blocks {n - 2}–{n - 1} + output, {label}",
                    "gflop": sum(block_flops[n - 2 :]) / 1e9,
                    "s": statistics.median(ts),
                }
            )
    return rows


def run_case(case: str, reps: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", case, "--reps", str(reps)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{case} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt_case(r: dict) -> str:
    rt = r["batch"] * r["clip_seconds"] / r["total"]
    rate = r["gflop"] / r["forward"]
    same_flop_mm = r["gflop"] / r["matmul_gflops"]
    return (
        f"| {r['preset']} | {r['batch']} | {MODE_TEXT[r['mode']]} | **{r['total']:.2f}** "
        f"| {r['forward']:.2f} "
        f"| {r['imdct'] * 1000:.0f} | {r['write'] * 1000:.0f} | {rt:.0f}× | {r['peak_rss_gib']:.2f} "
        f"| {rate:.0f} | {r['matmul_gflops']:.0f} | {same_flop_mm:.2f} ({same_flop_mm / r['forward']:.0%}) "
        f"| {r['first']:.2f} |"
    )


def generate_path_rows(rounds: int = 3) -> tuple[str, list[str]]:
    """The ``mp3net generate`` code path: model load, one clip, 8 clips, a 5-minute track (2 threads)."""
    from mp3net import generate as gen
    from mp3net import ops
    from mp3net.config import preset
    from mp3net.model import Generator

    def timed(f) -> float:
        ts = []
        for _ in range(rounds):
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
        return statistics.median(ts)

    if "tiny-chorales" in gen.pretrained_names():
        source = "pretrained (tiny-chorales)"
        t_load = timed(lambda: gen.load_generator("pretrained"))
        G, _ = gen.load_generator("pretrained")
    else:
        source = "random tiny generator (no shipped model found)"
        t_load = float("nan")
        torch.manual_seed(0)
        G = Generator(preset("laptop").model.with_unit_levels()).eval()
    m = G.cfg
    rows = []
    for precision in ("fp32", "auto"):
        gen.generate(G, [0], precision=precision)
        t_clip = timed(lambda p=precision: gen.generate(G, [0], precision=p))
        t_batch = timed(lambda p=precision: gen.generate(G, list(range(8)), batch_size=8, precision=p))
        t_long = timed(lambda p=precision: gen.generate(G, [0], duration=300.0, precision=p))
        shown = f"auto (= {'bf16' if ops.resolve_precision('auto', 'cpu') == BF16 else 'fp32'})"
        rows.append(
            f"| {precision if precision == 'fp32' else shown} | {t_load:.2f} s "
            f"| {t_clip * 1000:.0f} ms ({m.clip_seconds / t_clip:.0f}×) "
            f"| {t_batch:.2f} s ({8 * m.clip_seconds / t_batch:.0f}×) "
            f"| {t_long:.2f} s ({300 / t_long:.0f}×) |"
        )
    z = torch.stack([gen.seed_latents(s, 1, m.latent_dim)[0] for s in range(8)])
    rows.append(f"AUDIBLE {audible_share(G, z)}")
    return f"{source}, {m.sample_rate} Hz stereo, clip {m.clip_seconds:.2f} s", rows


def render(results: list[dict], gen_source: str | None, gen_rows: list[str], reps: int) -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    lines = [
        START,
        f"### bench_generate — {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, Python "
        f"{platform.python_version()}; load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        f"(a shared machine: other jobs ran at the same time, so compare rows with the matmul rate measured "
        f"in the same process). Random weights, {results[0]['threads'] if results else '?'} "
        "threads; "
        f"medians of {reps} runs after one warm-up run.",
        "",
        f"Goal (issue 3): one 95 s stereo track in < {GOAL_S} s wall with peak RSS < {GOAL_GIB} GiB. "
        "total = forward + inverse MDCT + 16-bit WAV write. ×RT = seconds of audio per second. "
        "same-FLOP matmul = time a float32 GEMM at the measured rate needs for the forward pass's FLOPs "
        "(and its share of the forward time: the conv efficiency). first = first run in a fresh process "
        "(oneDNN primitive creation).",
        "",
        "| preset | batch | layout | total s | forward s | imdct ms | write ms | ×RT | peak RSS GiB "
        "| conv GFLOP/s | matmul GFLOP/s | same-FLOP matmul s | first s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *[fmt_case(r) for r in results],
    ]
    prof = next((r for r in results if "blocks" in r), None)
    if prof:
        lines += [
            "",
            f"Per block, 95 s fast pass (batch 1; matmul {prof['matmul_gflops']:.0f} GFLOP/s in that "
            "process):",
            "",
            "| part | GFLOP | s | GFLOP/s |",
            "|---|---|---|---|",
            *[
                f"| {b['name']} | {b['gflop']:.1f} | {b['s']:.3f} | {b['gflop'] / b['s']:.0f} |"
                for b in prof["blocks"]
            ],
        ]
    audible = [float(r.split()[1]) for r in gen_rows if r.startswith("AUDIBLE")]
    gen_rows = [r for r in gen_rows if not r.startswith("AUDIBLE")]
    prec = next((r for r in results if "precision" in r), None)
    if prec:
        pr = prec["precision"]
        lines += [
            "",
            "fp32 vs bf16 autocast, 95 s track, batch 1, side by side in one process (forward pass; "
            "medians, interleaved):",
            "",
            "| precision | forward s | GEMM GFLOP/s in that process | conv GFLOP/s |",
            "|---|---|---|---|",
            f"| fp32 | {pr['fp32']:.2f} | {pr['mm_fp32']:.0f} | {prec['gflop'] / pr['fp32']:.0f} |",
            f"| bf16 | {pr['bf16']:.2f} | {pr['mm_bf16']:.0f} | {prec['gflop'] / pr['bf16']:.0f} |",
            f"| ratio bf16/fp32 | {pr['bf16'] / pr['fp32']:.2f} | {pr['mm_fp32'] / pr['mm_bf16']:.2f} | |",
        ]
    if prec or audible:
        share_95 = f"{prec['audible_95s']:.2%}" if prec else "not measured"
        share_tiny = f"{audible[0]:.2%}" if audible else "not measured"
        lines += [
            "",
            "Audibility of bf16 (share of MDCT coefficients where |A_bf16 − A_fp32| exceeds the masking "
            "threshold `PsychoacousticModel.threshold` of the fp32 output): "
            f"shipped tiny model, 8 seeds: **{share_tiny}**; 95 s model (random weights, output layer "
            f"scaled to the shipped model's output RMS {REFERENCE_RMS}), 1 clip: **{share_95}**. Rule: "
            "`--precision auto` picks bf16 where `mp3net.ops.bf16_is_fast` and while this share stays "
            "≤ 1 %.",
        ]
    if gen_source:
        lines += [
            "",
            f"`mp3net generate` path ({gen_source}; 5-minute track = one pass over a latent path with the "
            "widest blocks in tiles):",
            "",
            "| precision | model load | one clip | 8 clips, batch 8 | 5-minute stereo track |",
            "|---|---|---|---|---|",
            *gen_rows,
        ]
    lines += ["", *NOTES, "", "Reproduce: `python benchmarks/bench_generate.py`.", END]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--no-generate-path", action="store_true", help="skip the `mp3net generate` table")
    p.add_argument("--no-write", action="store_true", help="print only, leave benchmarks/README.md alone")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.reps)))
        return
    results = []
    for case in args.cases:
        r = run_case(case, args.reps)
        print(fmt_case(r), flush=True)
        results.append(r)
    gen_source, gen_rows = (None, []) if args.no_generate_path else generate_path_rows()
    section = render(results, gen_source, gen_rows, args.reps)
    print(section)
    if not args.no_write:
        write_section("bench_generate", section)
        print(f"updated {README}")


if __name__ == "__main__":
    main()
