"""Which sampler draws sharp, new clips from a pretraining run's table (docs/training.md#the-sampler).

For one pretraining run, clips are drawn from its latent table by each sampler and decoded by its G (the
checkpoint's weights, the export's calibrated levels), and `mp3net evaluate`'s metrics taken against as many
real clips of the run's data, with the latents' distance to the table (in units of the table's median
nearest-neighbour distance):

- ``copies``: the table's own latents (reconstructions, an upper bound on sharpness, no novelty);
- ``gaussian``: one Gaussian fitted to the table (what exports drew before, folded into the dense layer);
- ``gmm16``: a mixture of 16 diagonal Gaussians fitted by EM (the baseline GLANN names);
- ``imle``: an IMLE mapper (GLANN, Hoshen, Li & Malik 2019; Li & Malik 2018): an MLP from noise to the
  table, each table latent pulling the nearest of 16·n mapped noises, re-matched every 20 steps;
- ``table``: the shipped :class:`mp3net.model.sampler.TableSampler`.

    python benchmarks/bench_samplers.py ~/runs/recipe1 ~/runs/chorales --n 256
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

IMLE_STEPS = 3000  # Adam steps of the mapper (a few CPU-seconds for a 256 × 64 table)
IMLE_SAMPLES = 16  # noises drawn per table latent at each re-matching
IMLE_REMATCH = 20  # steps between re-matchings
IMLE_LR = 1e-3


class LatentMapper(nn.Module):
    """IMLE's mapper: z ``[..., D]`` → ``mean + std · mlp(z)``, the MLP (3 layers, 256 wide) in the table's
    standardised units."""

    def __init__(self, dim: int, width: int = 256) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(dim, width),
            nn.LeakyReLU(0.2),
            nn.Linear(width, width),
            nn.LeakyReLU(0.2),
            nn.Linear(width, dim),
        )
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.mean + self.std * self.mlp(z)


def standardised(latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Latents ``[n, D]`` → ``(mean [D], std [D], (latents − mean) / std)``."""
    z = latents.detach().float().cpu()
    mean = z.mean(0)
    std = z.std(0).clamp_min(1e-6) if z.shape[0] > 1 else torch.ones(z.shape[1])
    return mean, std, (z - mean) / std


def fit_imle(latents: torch.Tensor, seed: int = 0, steps: int = IMLE_STEPS) -> LatentMapper:
    """An IMLE mapper (noise ``[..., D]`` → latent ``[..., D]``) fitted to a table ``[n, D]``.

    Every ``IMLE_REMATCH`` steps, ``IMLE_SAMPLES · n`` noises are drawn and mapped; each table latent takes
    the nearest mapped noise as its own (several latents may share one); the steps between pull each
    matched noise's image onto its latent (squared distance in standardised units).
    """
    n, dim = latents.shape
    g = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        mapper = LatentMapper(dim)
    mean, std, target = standardised(latents)
    mapper.mean.copy_(mean)
    mapper.std.copy_(std)
    opt = torch.optim.Adam(mapper.mlp.parameters(), lr=IMLE_LR)
    matched = torch.empty(0)
    for step in range(steps):
        if step % IMLE_REMATCH == 0:
            noise = torch.randn(IMLE_SAMPLES * n, dim, generator=g)
            with torch.no_grad():
                nearest = torch.cdist(target, mapper.mlp(noise)).argmin(1)  # [n]
            matched = noise[nearest]
        for group in opt.param_groups:  # the last third settles: half a cosine down to a tenth
            t = max(0.0, (step - 2 * steps / 3) / (steps / 3))
            group["lr"] = IMLE_LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))
        loss = (mapper.mlp(matched) - target).square().sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return mapper.eval()


@dataclass
class GaussianMixture:
    """A mixture of ``k`` diagonal Gaussians over latents: weights ``[k]``, means and stds ``[k, D]``."""

    weights: torch.Tensor
    means: torch.Tensor
    stds: torch.Tensor

    @classmethod
    def fit(cls, latents: torch.Tensor, k: int, seed: int = 0, iters: int = 100) -> GaussianMixture:
        """EM from ``k`` table latents drawn at random; variances floored at 1e-4 of the table's."""
        z = latents.detach().double().cpu()
        n, _ = z.shape
        k = min(k, n)
        g = torch.Generator().manual_seed(int(seed))
        floor = 1e-4 * z.var(0).clamp_min(1e-12)
        means = z[torch.randperm(n, generator=g)[:k]].clone()
        var = z.var(0).expand(k, -1).clone()
        weights = torch.full((k,), 1.0 / k, dtype=z.dtype)
        for _ in range(iters):
            logp = cls._log_joint(z, weights, means, var)  # [n, k]
            r = torch.softmax(logp, 1)
            nk = r.sum(0) + 1e-12
            weights = nk / n
            means = (r.T @ z) / nk[:, None]
            var = (r.T @ z.square()) / nk[:, None] - means.square()
            var = torch.maximum(var, floor)
        return cls(weights.float(), means.float(), var.sqrt().float())

    @staticmethod
    def _log_joint(z: torch.Tensor, w: torch.Tensor, mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        d = (z[:, None] - mu[None]).square() / var[None]  # [n, k, D]
        return w.log()[None] - 0.5 * (d + var.log()[None] + math.log(2 * math.pi)).sum(-1)

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``[n, D]`` latents drawn with a generator seeded by ``seed``."""
        g = torch.Generator().manual_seed(int(seed))
        c = torch.multinomial(self.weights, n, replacement=True, generator=g)
        eps = torch.randn(n, self.means.shape[1], generator=g)
        return self.means[c] + self.stds[c] * eps


SAMPLERS = ("copies", "gaussian", "gmm16", "imle", "table")


def draw(name: str, table: torch.Tensor, n: int, seed: int = 123) -> torch.Tensor:
    """``n`` latents ``[n, D]`` from the sampler ``name`` fitted to ``table`` ``[rows, D]``."""
    from mp3net.model.sampler import TableSampler
    from mp3net.train.pretrain import LatentGaussian

    g = torch.Generator().manual_seed(seed)
    rows, dim = table.shape
    noise = torch.randn(n, dim, generator=g)
    with torch.no_grad():
        if name == "copies":
            return table[torch.randint(rows, (n,), generator=g)]
        if name == "gaussian":
            fit = LatentGaussian.fit(table)
            return fit.mean + noise @ fit.scale.T
        if name == "gmm16":
            return GaussianMixture.fit(table, 16).sample(n, seed)
        if name == "imle":
            return fit_imle(table)(noise)
        if name == "table":
            return TableSampler(dim).fit(table)(noise)
    raise ValueError(f"unknown sampler {name}")


def main() -> None:
    from mp3net.artifacts import load_export
    from mp3net.dsp import imdct
    from mp3net.evaluate import evaluate_clips, load_real_clips
    from mp3net.model import Generator
    from mp3net.train import checkpoint as ckpt

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a pretraining run directory")
    ap.add_argument("data", type=Path, help="its prepared dataset")
    ap.add_argument("--n", type=int, default=256, help="clips per sampler and reals")
    ap.add_argument("--samplers", default=",".join(SAMPLERS))
    ap.add_argument("--json", type=Path, help="write the rows here too")
    args = ap.parse_args()
    torch.set_num_threads(1)
    found = ckpt.load_latest(args.run / "pretrain")
    if found is None:
        raise SystemExit(f"{args.run}: no pretraining checkpoint")
    state, _ = found
    cfg, _ = load_export(args.run / "export")
    model = cfg.model.__class__(**{**cfg.model.__dict__, "sampler": "gaussian"})
    G = Generator(model).eval()
    G.load_state_dict(state["G"])
    table = state["latents"]["weight"].float()
    d = torch.cdist(table, table) + 1e9 * torch.eye(len(table))
    unit = float(d.min(1).values.median())
    reals, sr = load_real_clips(args.data, args.n, model.clip_samples, model.sample_rate, seed=1)
    rows = {}
    print(f"{args.run}: {len(table)} latents, step {state['step']}; {args.n} clips each")
    print(
        "| sampler | FD | tonality | Bark mean / max dB | onset contrast | valley dB | partial spread dB "
        "| memorisation ratio | < real p5 | distance to table | fit CPU s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.samplers.split(","):
        t0 = time.process_time()
        z = draw(name, table, args.n)
        fit_s = time.process_time() - t0
        away = float(torch.cdist(z, table).min(1).values.median()) / unit
        with torch.no_grad():
            fakes = []
            for a in range(0, args.n, 16):
                A = G(z[a : a + 16])
                pad = A.new_zeros(*A.shape[:2], 1, A.shape[3])  # as mp3net generate: the frame before is zero
                fakes += list(imdct(torch.cat([pad, A], dim=2), trim=True)[..., model.n_bands :])
        r = evaluate_clips(reals, fakes, sr)
        h, m = r.headline(), r.memorisation
        rows[name] = {
            **h,
            "memorisation_ratio": m["ratio"],
            "below_p5": m["fake_share_below_real_p5"],
            "distance_to_table": away,
            "fit_cpu_s": fit_s,
        }
        print(
            f"| {name} | {h['fd']:.1f} | {h['tonality_fake']:.1%} ({h['tonality_real']:.1%}) | "
            f"{h['bark_err_mean_db']:.1f} / {h['bark_err_max_db']:.1f} | {h['onset_contrast_fake']:.1f} "
            f"({h['onset_contrast_real']:.1f}) | {h['valley_db_fake']:.1f} ({h['valley_db_real']:.1f}) | "
            f"{h['partial_spread_fake']:.1f} ({h['partial_spread_real']:.1f}) | {m['ratio']:.2f} | "
            f"{m['fake_share_below_real_p5']:.0%} | {away:.2f} | {fit_s:.1f} |",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
