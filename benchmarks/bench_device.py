"""One command for a machine with an accelerator: ``python benchmarks/bench_device.py --device cuda``.

It runs, on the requested device (and fails with one line and a non-zero exit when it is absent):

1. the test suite's device-generic tests (``pytest -m device`` with ``MP3NET_TEST_DEVICE``);
2. a D+G training iteration (D step with the full gradient penalty, noise layer, half a G step as with
   n_critic = 2) of the ``95s`` model at batch 8 under bf16 autocast: iterations per second, peak memory;
3. the generation time of one track (the preset's clip, 95 s) in fp32 and bf16 (``Generator.generate``);
4. agreement with the CPU for the same weights: G's output, and one D step's loss (same inputs, same
   penalty mixing weights) and parameter-gradient norm, in float32. With ``--device cpu`` the reference
   is the CPU's plain path (``mp3net.ops.enabled(False)``) instead;
5. autoencoder pretraining steps (``mp3net pretrain``'s :meth:`~mp3net.train.pretrain.Pretrainer.train_step`:
   MDCT of the clips, G of the batch's latents from a sparse table, the preset's
   :func:`~mp3net.train.losses.spectral_reconstruction`, Adam and SparseAdam) of each preset in
   ``--pretrain-presets`` (laptop, paper-5s, paper-95s) at its ``pretrain.batch_size`` (or
   ``--pretrain-batch``), random clips of the preset's shape, bf16 autocast on CUDA (the preset's
   ``train.amp`` elsewhere): iterations per second and peak memory; a preset that runs out of memory is
   reported as such and the others go on.

``--quick`` uses the ``tiny`` preset and pretrains the laptop preset at batch 2 (a check of the script
itself, seconds on a CPU). Random weights.

    python benchmarks/bench_device.py --device cuda [--preset 95s] [--batch 8] [--iters 3] [--write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from _common import cpu_model, write_section

ROOT = Path(__file__).resolve().parents[1]
PRETRAIN_PRESETS = ("laptop", "paper-5s", "paper-95s")
START, END = "<!-- bench_device:start -->", "<!-- bench_device:end -->"


def fail(msg: str) -> None:
    print(f"bench_device: error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def check_device(name: str) -> torch.device:
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        fail(f"{name!r} is not a device: {str(e).splitlines()[0]}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        fail(f"device {name} requested but torch {torch.__version__} sees no CUDA device")
    try:
        torch.empty(1, device=dev)
    except (RuntimeError, AssertionError) as e:
        fail(f"device {name} is not usable: {str(e).splitlines()[0]}")
    return dev


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def peak_gib(dev: torch.device) -> float:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # process peak RSS


def run_tests(dev: torch.device) -> tuple[bool, str]:
    env = dict(os.environ, MP3NET_TEST_DEVICE=str(dev), PYTHONPATH=str(ROOT / "src"))
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "device",
        "-q",
        "-p",
        "no:cacheprovider",
        str(ROOT / "tests"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    summary = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    if proc.returncode:
        print(proc.stdout[-4000:], proc.stderr[-2000:], sep="\n", file=sys.stderr)
    return proc.returncode == 0, summary


def models(cfg, dev: torch.device):
    from mp3net.model import Discriminator, Generator

    torch.manual_seed(0)
    return Generator(cfg).to(dev), Discriminator(cfg).to(dev)


def training_iteration(cfg, dev: torch.device, batch: int, iters: int) -> dict:
    """Timed D step + half a G step under bf16 autocast (the trainer's order of operations)."""
    from mp3net.model import NoiseLayer
    from mp3net.train.losses import d_loss, g_loss

    G, D = models(cfg, dev)
    noise = NoiseLayer(cfg).to(dev)
    opt_d = torch.optim.Adam(D.parameters(), 1e-4, betas=(0.5, 0.9))
    opt_g = torch.optim.Adam(G.parameters(), 1e-4, betas=(0.5, 0.9))
    gen = torch.Generator(device=dev).manual_seed(0)
    real = torch.rand(batch, cfg.channels, cfg.n_frames, cfg.n_bands, device=dev, generator=gen) * 0.1

    def one(i: int) -> float:
        t = time.perf_counter()
        z = torch.randn(batch, cfg.latent_dim, device=dev, generator=gen)
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            fake = G.generate(z)
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            d_loss(D, noise(real, generator=gen), noise(fake, generator=gen), 3.0, 0.1, gen, backward=True)
        opt_d.step()
        opt_d.zero_grad(set_to_none=True)
        if i % 2 == 1:  # n_critic = 2
            for p in D.parameters():
                p.requires_grad_(False)
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                fake = G(torch.randn(batch, cfg.latent_dim, device=dev, generator=gen)).float()
                loss, _ = g_loss(D, noise(fake, generator=gen))
            loss.backward()
            opt_g.step()
            opt_g.zero_grad(set_to_none=True)
            for p in D.parameters():
                p.requires_grad_(True)
        sync(dev)
        return time.perf_counter() - t

    one(0)
    reset_peak(dev)
    times = [one(i) for i in range(1, 1 + 2 * max(1, iters // 2))]
    return {"s_per_it": statistics.mean(times), "peak_gib": peak_gib(dev)}


def pretraining_steps(name: str, dev: torch.device, batch: int | None, iters: int) -> dict:
    """Timed pretraining steps of preset ``name`` (as ``Pretrainer.train_step``, random clips): seconds per
    step (mean of ``iters`` after one warm-up step), peak memory, the batch and whether under bf16.
    ``{"oom": True, ...}`` when the device runs out of memory."""
    from torch import nn

    from mp3net import ops
    from mp3net.config import preset
    from mp3net.dsp import mdct
    from mp3net.model import Generator
    from mp3net.train.losses import spectral_reconstruction

    cfg = preset(name)
    mc, pc = cfg.model.with_unit_levels(), cfg.pretrain
    batch = batch or pc.batch_size
    amp = dev.type == "cuda" or ops.resolve_amp(cfg.train.amp, dev)
    out: dict = {"batch": batch, "amp": amp, "clip_seconds": mc.clip_seconds}
    gen = torch.Generator().manual_seed(0)
    try:
        torch.manual_seed(0)
        G = Generator(mc).to(dev)
        table = nn.Embedding(pc.clips, mc.latent_dim, sparse=True).to(dev)
        opt_G = torch.optim.Adam(G.parameters(), lr=pc.lr, betas=pc.betas)
        opt_z = torch.optim.SparseAdam(table.parameters(), lr=pc.latent_lr, betas=pc.betas)
        audio = 0.1 * torch.randn(batch, mc.channels, mc.clip_samples, generator=gen)  # as the dataset gives

        def one() -> float:
            t = time.perf_counter()
            rows = torch.randint(pc.clips, (batch,), generator=gen)
            real = mdct(audio.to(dev), mc.n_bands)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                fake = G(table(rows.to(dev)))
            loss = spectral_reconstruction(fake, real, pc.ffts, pc.envelope, pc.mid_side)
            opt_G.zero_grad(set_to_none=True)
            opt_z.zero_grad(set_to_none=True)
            loss.backward()
            opt_G.step()
            opt_z.step()
            out["loss"] = float(loss.detach())  # waits for the device
            return time.perf_counter() - t

        reset_peak(dev)
        out["first_s"] = one()
        times = [one() for _ in range(max(1, iters))]
        out.update(s_per_it=statistics.mean(times), peak_gib=peak_gib(dev))
    except torch.cuda.OutOfMemoryError:
        out.update(oom=True, peak_gib=peak_gib(dev))
    finally:
        G = table = opt_G = opt_z = None  # noqa: F841 - free the preset's memory before the next
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return out


def pretraining_row(name: str, r: dict) -> str:
    """A row of the pretraining table."""
    what = f"pretraining step, {name} ({r['clip_seconds']:.1f} s clips), batch {r['batch']}, "
    what += "bf16 autocast" if r["amp"] else "float32"
    if r.get("oom"):
        return f"| {what} | out of memory (peak {r['peak_gib']:.2f} GiB) |"
    return (
        f"| {what} | {1 / r['s_per_it']:.3f} it/s ({r['s_per_it']:.2f} s; first {r['first_s']:.2f} s), "
        f"peak {r['peak_gib']:.2f} GiB |"
    )


def generation(cfg, dev: torch.device, reps: int) -> dict:
    G, _ = models(cfg, dev)
    G.eval()
    z = torch.randn(1, cfg.latent_dim, device=dev)
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        G.generate(z, dtype=dtype)
        sync(dev)
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            G.generate(z, dtype=dtype)
            sync(dev)
            ts.append(time.perf_counter() - t)
        out[name] = statistics.median(ts)
    return out


def d_step_loss(D, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor) -> tuple[float, float]:
    """The critic loss (WGAN-GP, λ = 3, drift 0.1, as :func:`mp3net.train.losses.d_loss`) with fixed
    penalty mixing weights ``alpha``, and the norm of its parameter gradient."""
    d_real, d_fake = D(real), D(fake)
    _, g = D.input_gradient(alpha * real + (1 - alpha) * fake)
    gp = (torch.sqrt(g.float().square().flatten(1).sum(1) + 1e-8) - 1).square().mean()
    loss = d_fake.mean() - d_real.mean() + 3.0 * gp + 0.1 * d_real.square().mean()
    grads = torch.autograd.grad(loss, list(D.parameters()), allow_unused=True)
    norm = torch.sqrt(sum(t.float().square().sum() for t in grads if t is not None))
    return float(loss.detach()), float(norm)


def agreement(cfg, dev: torch.device) -> dict:
    """Max relative difference of G's output, D-step loss and gradient norm: device vs CPU (float32)."""
    from mp3net import ops

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        g = torch.Generator().manual_seed(1)
        z = torch.randn(2, cfg.latent_dim, generator=g)
        real = torch.rand(2, cfg.channels, cfg.n_frames, cfg.n_bands, generator=g) * 0.1
        alpha = torch.rand(2, 1, 1, 1, generator=g)
        res = {}
        for where in ("ref", "dev"):
            on = torch.device("cpu") if where == "ref" else dev
            with ops.enabled(not (where == "ref" and dev.type == "cpu")):
                G, D = models(cfg, on)
                with torch.no_grad():
                    fake = G(z.to(on))
                res[where] = (fake.cpu(), *d_step_loss(D, real.to(on), fake, alpha.to(on)))
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    (a_ref, l_ref, n_ref), (a_dev, l_dev, n_dev) = res["ref"], res["dev"]
    return {
        "g_out": float((a_dev - a_ref).abs().max() / a_ref.abs().max()),
        "d_loss": abs(l_dev - l_ref) / abs(l_ref),
        "d_grad_norm": abs(n_dev - n_ref) / n_ref,
        "loss": l_ref,
    }


def describe(dev: torch.device) -> str:
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        return f"{p.name}, {p.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}"
    return f"{cpu_model()}, {os.cpu_count()} cores"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", required=True, help="cuda, cuda:N or cpu")
    p.add_argument("--quick", action="store_true", help="tiny preset: checks the script in seconds")
    p.add_argument("--preset", default=None, help="model preset (default 95s; tiny with --quick)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--iters", type=int, default=4, help="timed training iterations (even: D and G steps)")
    p.add_argument("--reps", type=int, default=3, help="timed generation runs")
    p.add_argument("--no-tests", action="store_true", help="skip the device-generic tests")
    p.add_argument(
        "--pretrain-presets",
        default=None,
        help=f"comma-separated presets to pretrain ('' for none; default {','.join(PRETRAIN_PRESETS)}, "
        "laptop with --quick)",
    )
    p.add_argument(
        "--pretrain-batch", type=int, default=None, help="pretraining batch (default: each preset's; 2 quick)"
    )
    p.add_argument("--pretrain-iters", type=int, default=3, help="timed pretraining steps per preset")
    p.add_argument("--write", action="store_true", help="put the results into benchmarks/README.md")
    args = p.parse_args()
    dev = check_device(args.device)
    from mp3net.config import preset

    name = args.preset or ("tiny" if args.quick else "95s")
    cfg = preset(name).model.with_unit_levels()
    tests_ok, tests = (True, "skipped") if args.no_tests else run_tests(dev)
    print(f"device tests: {tests}", flush=True)
    train = training_iteration(cfg, dev, args.batch, args.iters)
    print(f"D+G/2 iteration, batch {args.batch}, bf16: {1 / train['s_per_it']:.3f} it/s", flush=True)
    gen = generation(cfg, dev, args.reps)
    agree = agreement(cfg, dev)
    names = args.pretrain_presets
    names = ("laptop" if args.quick else ",".join(PRETRAIN_PRESETS)) if names is None else names
    pre_batch = args.pretrain_batch or (2 if args.quick else None)
    pretrain = {}
    for n in [x.strip() for x in names.split(",") if x.strip()]:
        pretrain[n] = pretraining_steps(n, dev, pre_batch, 1 if args.quick else args.pretrain_iters)
        print(pretraining_row(n, pretrain[n]), flush=True)
    ref = "CPU plain path" if dev.type == "cpu" else "CPU"
    lines = [
        START,
        f"### bench_device — {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"Device: {dev} ({describe(dev)}); torch {torch.__version__}, Python {platform.python_version()}. "
        f"Preset {name}, random weights.",
        "",
        "| check | result |",
        "|---|---|",
        f"| device-generic tests (`pytest -m device`) | {tests} |",
        f"| D step + ½ G step, batch {args.batch}, bf16 autocast | {1 / train['s_per_it']:.3f} it/s "
        f"({train['s_per_it']:.2f} s), peak {train['peak_gib']:.2f} GiB |",
        f"| one {cfg.clip_seconds:.1f} s track, `Generator.generate` | fp32 {gen['fp32']:.3f} s, "
        f"bf16 {gen['bf16']:.3f} s |",
        f"| G output vs {ref} (max abs diff / max abs, fp32) | {agree['g_out']:.1e} |",
        f"| D-step loss vs {ref} (relative, fp32) | {agree['d_loss']:.1e} (loss {agree['loss']:.4f}) |",
        f"| D-step gradient norm vs {ref} (relative, fp32) | {agree['d_grad_norm']:.1e} |",
        *[pretraining_row(n, r) for n, r in pretrain.items()],
        "",
        "Pretraining: `Pretrainer.train_step`'s work on random clips (MDCT, G of a sparse table's latents, "
        "the preset's spectral distance, Adam + SparseAdam); peak = "
        + (
            "the device's peak allocation in that preset's steps."
            if dev.type == "cuda"
            else "the process's peak RSS so far (every check before included)."
        ),
        "",
        f"Reproduce: `python benchmarks/bench_device.py --device {args.device}"
        f"{' --quick' if args.quick else ''}`.",
        END,
    ]
    section = "\n".join(lines)
    print(section)
    if args.write:
        write_section("bench_device", section)
    bad = [k for k in ("g_out", "d_loss", "d_grad_norm") if not agree[k] < 1e-3]
    if not tests_ok or bad:
        fail(
            f"device tests {'failed' if not tests_ok else 'passed'}; disagreement with {ref}: {bad or 'none'}"
        )


if __name__ == "__main__":
    main()
