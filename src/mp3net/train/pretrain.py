"""Autoencoder pretraining of the generator (docs/training.md#autoencoder-pretraining).

Generative latent optimisation (Bojanowski et al. 2018, GLO): ``pretrain.clips`` fixed clips spread evenly
over the dataset each own a latent, a row of a table; G and the table are fitted together so that G(latent)
has the clip's log spectrograms (:func:`~mp3net.train.losses.spectral_reconstruction`). No discriminator:
every step tells G exactly which partials, where, and which onsets, when, for the latent it was given, which
is what the GAN recipes did not teach it (benchmarks/README.md). The export draws from z ~ N(0, I) like any
MP3net generator: through a table sampler fitted to the latents (:class:`~mp3net.model.sampler.TableSampler`,
``pretrain.sampler="table"``), or with a Gaussian fitted to them folded into G's head
(:meth:`~mp3net.model.Generator.fold_latent_gaussian`). ``mp3net train --init-from RUN_DIR`` starts a GAN
from the folded generator and the table.

A run directory holds ``config.json``, ``pretrain/`` (resumable checkpoints: G, the table, both optimisers,
the step; ``metrics.jsonl``) and ``export/`` (the folded generator). Re-running resumes exactly: batch n is
drawn from a generator seeded by (seed, n), and nothing else is random.

Data parallel (``torchrun``, docs/training.md#data-parallel): step n's rows are ``batch_size`` × ranks
drawn as above, each rank trains on its own slice of them, G's gradients are averaged over ranks and the
table's sparse gradient too (:func:`~mp3net.train.distributed.allreduce_sparse_grad`), so G, the table and
both optimisers stay identical on every rank: the run is the single-process run with the larger batch.
Rank 0 writes the checkpoints, the export, its evaluation, ``fit.jsonl`` and the logs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mp3net import ops
from mp3net.artifacts import EXPORT_DIR
from mp3net.config import LR_DECAY_FLOOR, Config
from mp3net.data import ClipDataset, clip_indices, table_runs
from mp3net.dsp import mdct
from mp3net.dsp.spectral import log_spectrogram, partial_similarity
from mp3net.model import Generator
from mp3net.model.sampler import TableSampler
from mp3net.train import checkpoint as ckpt
from mp3net.train import distributed as ddp
from mp3net.train.band_levels import calibrated_levels, with_band_levels
from mp3net.train.losses import spectral_reconstruction
from mp3net.train.monitor import Monitor
from mp3net.train.solver import Solver
from mp3net.utils import MP3NetError, derive_seed

# not "checkpoints": a GAN --init-from a pretraining run takes its folded G (and table), not a GAN state
PRETRAIN_DIR = "pretrain"
FIT = "fit.jsonl"  # at every checkpoint: how well the latents draw their clips' partials
FIT_CLIPS = 64  # table clips measured (spread evenly over the table)
# the clips' features for the latents' principal-component start: the log spectrogram at this window,
# averaged into this many time segments (≈ 0.19 s each at the tiny preset), every frequency bin kept
PCA_FFT = 1024
PCA_SEGMENTS = 16
# added to the latents' covariance before its Cholesky factor: a table with fewer clips than dimensions,
# or latents that never moved apart, still gives a usable (if flat) Gaussian
COV_JITTER = 1e-5


@dataclass
class LatentGaussian:
    """The latents' Gaussian: ``mean`` ``[latent]`` and ``scale`` ``[latent, latent]``, the Cholesky factor
    of their covariance, so ``mean + scale @ z`` with z ~ N(0, I) has their mean and covariance."""

    mean: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def fit(cls, latents: torch.Tensor) -> LatentGaussian:
        """Fit to latents ``[n, latent]``, n ≥ 2."""
        z = latents.detach().double()
        cov = torch.cov(z.T) + COV_JITTER * torch.eye(z.shape[1], dtype=z.dtype)
        return cls(z.mean(0).float(), torch.linalg.cholesky(cov).float())


def clip_features(amplitudes: torch.Tensor) -> torch.Tensor:
    """Amplitudes ``[B, C, M, K]`` → features ``[B, PCA_SEGMENTS · (PCA_FFT/2 + 1)]``: the channel-mean log
    spectrogram averaged over ``PCA_SEGMENTS`` segments of the clip: when the notes sound, and which."""
    S = log_spectrogram(amplitudes, PCA_FFT).mean(1)  # [B, T, F]
    return F.adaptive_avg_pool2d(S[:, None], (PCA_SEGMENTS, S.shape[-1]))[:, 0].flatten(1)


def pca_latents(features: torch.Tensor, dim: int) -> torch.Tensor:
    """Features ``[n, d]`` → their first principal components ``[n, dim]``, each scaled to unit variance
    (components beyond n − 1 or d are zero): latents whose neighbours are like clips."""
    X = features.double()
    X = X - X.mean(0)
    U, _, _ = torch.linalg.svd(X, full_matrices=False)
    k = min(dim, X.shape[0] - 1, X.shape[1])
    z = torch.zeros(X.shape[0], dim, dtype=torch.float64)
    z[:, :k] = U[:, :k] * (X.shape[0] - 1) ** 0.5
    return z.float()


def folded_generator(cfg: Config, weights: dict[str, torch.Tensor], latents: torch.Tensor) -> Generator:
    """A CPU generator with ``weights`` and the Gaussian of ``latents`` ``[n, latent]`` folded into its head:
    z ~ N(0, I) then draws like the latents (:meth:`~mp3net.model.Generator.fold_latent_gaussian`)."""
    G = Generator(cfg.model)
    G.load_state_dict({k: v.detach().cpu() for k, v in weights.items()})
    g = LatentGaussian.fit(latents.detach().cpu())
    G.fold_latent_gaussian(g.mean, g.scale)
    return G.eval()


def successors(run_lengths: list[int]) -> list[int]:
    """The table row that follows each row in its recording, −1 at the end of a run: runs of
    ``run_lengths`` rows laid one after the other (:func:`~mp3net.data.table_runs`)."""
    nxt, row = [], 0
    for n in run_lengths:
        nxt += list(range(row + 1, row + n)) + [-1]
        row += n
    return nxt


def table_generator(
    cfg: Config,
    weights: dict[str, torch.Tensor],
    latents: torch.Tensor,
    successor: torch.Tensor | None = None,
) -> Generator:
    """A CPU generator with ``weights`` and a table sampler fitted to ``latents`` ``[n, latent]`` and their
    ``successor`` rows ``[n]`` (default: none follows another) (``model.sampler="table"``,
    :class:`~mp3net.model.sampler.TableSampler`)."""
    G = Generator(dataclasses.replace(cfg.model, sampler="table"))
    sampler = TableSampler(cfg.model.latent_dim).fit(latents.detach().cpu(), successor=successor)
    state = {k: v.detach().cpu() for k, v in weights.items()}
    state.update({f"sampler.{k}": v for k, v in sampler.state_dict().items()})
    G.load_state_dict(state)
    return G.eval()


def exported_generator(
    cfg: Config,
    weights: dict[str, torch.Tensor],
    latents: torch.Tensor,
    device: torch.device | None = None,
    successor: torch.Tensor | None = None,
) -> tuple[Generator, Config]:
    """The generator a pretraining run exports (on the CPU), and its config: with ``pretrain.sampler``
    "table" :func:`table_generator`, with "gaussian" :func:`folded_generator`; then with
    ``pretrain.calibrate`` (and band normalisation) its output levels matched to the data's band by band
    (:func:`~mp3net.train.band_levels.calibrated_levels`, in the config's ``model.band_rms``), its samples
    drawn on ``device`` (default the CPU)."""
    if cfg.pretrain.sampler == "table":
        G = table_generator(cfg, weights, latents, successor)
        cfg = dataclasses.replace(cfg, model=G.cfg)
    else:
        G = folded_generator(cfg, weights, latents)
    if not (cfg.pretrain.calibrate and cfg.model.band_norm):
        return G, cfg
    model = dataclasses.replace(cfg.model, band_rms=calibrated_levels(G.to(device or "cpu")))
    G.cpu().cfg = model
    return G, dataclasses.replace(cfg, model=model)


def checkpoint_export(state: dict[str, Any]) -> tuple[Generator, Config]:
    """The generator a pretraining checkpoint exports, and its config (:func:`exported_generator`)."""
    successor = torch.tensor(state["successor"]) if "successor" in state else None  # older: none
    return exported_generator(
        Config.from_dict(state["config"]), state["G"], state["latents"]["weight"], successor=successor
    )


class Pretrainer(Solver):
    """G and its latent table on one device (under torchrun: a copy on each rank's, data parallel).
    ``run(total_steps)`` trains until ``step == total_steps`` or a stop request (Ctrl-C, SIGTERM), then
    writes a checkpoint and the export. The run loop is :class:`~mp3net.train.solver.Solver`'s; the scalars
    go to ``pretrain/metrics.jsonl`` and TensorBoard.

    Args:
        cfg: the run's config (its ``pretrain`` section is the recipe).
        data_dir: a folder made by ``mp3net prepare`` with the same preset.
        run_dir: where config, ``pretrain/`` and ``export/`` go.
        device: "cpu", "cuda", ... (default: CUDA if available). Under torchrun each rank uses
            cuda:LOCAL_RANK.
        progress: show a tqdm bar.
        init_from: a new run's G starts from this model's (:func:`~mp3net.train.finetune.load_start`;
            its network must be ``cfg.model``'s but for the levels, which are the data's); the table starts
            as without it.
    """

    name = "pretrain"
    log_every = 1

    def __init__(
        self,
        cfg: Config,
        data_dir: str | Path,
        run_dir: str | Path,
        device: str | None = None,
        progress: bool = True,
        init_from: str | Path | None = None,
    ) -> None:
        if cfg.model.sampler != "gaussian":
            raise MP3NetError(
                f"model.sampler={cfg.model.sampler} is what an export draws from: "
                "choose it with pretrain.sampler"
            )
        rank, world, dev = ddp.init_distributed(device)
        self.cfg = cfg
        self.checkpoint_dir = Path(run_dir) / PRETRAIN_DIR
        self.ckpt_every = cfg.pretrain.ckpt_every
        self.setup_run(Path(run_dir), dev, rank, world, progress)
        self.amp = self.resolve_amp(cfg.train.amp)
        ops.configure_process(dev)
        mc = cfg.model
        self.dataset = ClipDataset(data_dir, mc.clip_samples, mc.sample_rate, mc.channels)
        saved = self.run_dir / "config.json"
        if saved.exists():
            ckpt.check_compatible(json.loads(saved.read_text()), cfg, saved, frozenset({"band_rms"}))
        if mc.band_norm and not mc.band_rms:
            # measured once, the same levels on every rank. A decoder starting on new music (init_from) draws
            # it at the new data's levels, its output's unit per band (docs/networks.md#band-normalisation)
            if self.is_main:
                cfg = with_band_levels(cfg, self.dataset, self.run_dir, say=self.say)
            levels = ddp.broadcast_object(cfg.model.band_rms)
            cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, band_rms=levels))
        self.cfg, pc = cfg, cfg.pretrain
        runs = table_runs(self.dataset, self._table_size(pc.clips), pc.run_clips)
        self.clips = [i for run in runs for i in run]
        self.successor = successors([len(run) for run in runs])
        torch.manual_seed(derive_seed(cfg.train.seed, 0))
        self.G = Generator(cfg.model).to(self.device)
        self.latents = nn.Embedding(len(self.clips), mc.latent_dim, sparse=True).to(self.device)
        with torch.no_grad():
            self.latents.weight.normal_(generator=self._generator(derive_seed(cfg.train.seed, 1)))
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=pc.lr, betas=pc.betas)
        self.opt_z = torch.optim.SparseAdam(self.latents.parameters(), lr=pc.latent_lr, betas=pc.betas)
        self.cpu_seconds = 0.0
        if self.resume(require=False) is None:
            if init_from is not None:
                self._start_from(init_from)
            if pc.latent_init == "pca" and self.is_main:  # rank 0's, broadcast below
                with torch.no_grad():
                    self.latents.weight.copy_(self._pca_start().to(self.device))
        # under torchrun: rank 0's G and table on every rank (a resumed run's are one checkpoint's already)
        ddp.broadcast_module(self.G)
        ddp.broadcast_module(self.latents)
        steps = ddp.gather_objects(self.step, self.world)
        if len(set(steps)) > 1:
            raise MP3NetError(
                f"the ranks resumed at different steps ({steps}): {self.checkpoint_dir} must be on a "
                "filesystem every rank reads"
            )
        if self.is_main:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            cfg.save(saved)
        self.start_logging(self.checkpoint_dir)
        # the evaluation's clips and noise are fixed (seed 1 and the run's seed), so its rows make a curve
        evaluating = dataclasses.replace(cfg.train, eval_clips=pc.eval_clips, batch_size=pc.batch_size)
        self.monitor = Monitor(dataclasses.replace(cfg, train=evaluating), Path(data_dir), dev, self.say)

    def _table_size(self, wanted: int) -> int:
        """``wanted`` rows, or as many clips as the data holds without overlap (said in one line); a one-line
        error below 2 (a sampler needs two latents)."""
        clip = self.cfg.model.clip_samples
        available = sum(int(t["frames"]) // clip for t in self.dataset.tracks)
        seconds = clip / self.cfg.model.sample_rate
        if available < 2:
            raise MP3NetError(
                f"the data holds {available} clip(s) of {seconds:.2f} s within its tracks: pretraining needs "
                "at least two (longer tracks, or more of them)"
            )
        if available < wanted:
            self.say(
                f"the data holds {available} clips of {seconds:.2f} s: a table of {available} latents "
                f"(pretrain.clips = {wanted})"
            )
        return min(wanted, available)

    def _start_from(self, source: str | Path) -> None:
        """G's weights from ``source`` (its sampler, if any, stays behind: the table is this run's)."""
        from mp3net.train.finetune import load_start, load_weights  # finetune reads pretraining runs

        differ = frozenset({"sampler", "band_rms", "bank_gate"})  # the gate has no weights
        if self.cfg.model.output == "sines":  # a bank's weights are a sine bank's (SineBankHead)
            differ |= {"output"}
        start = load_start(source, self.cfg, self.device, False, may_differ=differ)
        weights = {k: v for k, v in start.G.items() if not k.startswith("sampler.")}
        load_weights(self.G, weights, start.where)
        self.say(f"G starts from {start.where}")

    @torch.no_grad()
    def _pca_start(self) -> torch.Tensor:
        """The table's principal-component start ``[clips, latent]`` (:func:`pca_latents` of
        :func:`clip_features`)."""
        feats = []
        for a in range(0, len(self.clips), 32):
            audio = self.dataset.stack(self.clips[a : a + 32])
            feats.append(clip_features(mdct(audio, self.cfg.model.n_bands)))
        return pca_latents(torch.cat(feats), self.cfg.model.latent_dim)

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)

    # ---- state ---------------------------------------------------------------------------------------
    def keep_last(self) -> int:
        return self.cfg.train.keep_last

    def state(self) -> dict[str, Any]:
        return {
            "config": self.cfg.to_dict(),
            "step": self.step,
            "cpu_seconds": self.cpu_seconds,
            "clips": self.clips,
            "successor": self.successor,
            "G": self.G.state_dict(),
            "latents": self.latents.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_z": self.opt_z.state_dict(),
        }

    def load_state(self, state: dict[str, Any], where: Path) -> None:
        ckpt.check_compatible(state["config"], self.cfg, where)
        if state["clips"] != self.clips:
            raise MP3NetError(f"{where} was pretrained on other clips (another dataset or pretrain.clips)")
        try:
            self.G.load_state_dict(state["G"])
            self.latents.load_state_dict(state["latents"])
            self.opt_G.load_state_dict(state["opt_G"])
            self.opt_z.load_state_dict(state["opt_z"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise MP3NetError(f"{where} does not match this model: {str(e).splitlines()[0]}") from None
        self.step, self.cpu_seconds = int(state["step"]), float(state["cpu_seconds"])

    def reseed(self) -> None:
        """Nothing to reseed: step n's batch depends on n alone, and the loss has no noise; a rollback
        retries the same steps from the checkpoint's weights."""

    def save(self) -> None:
        """A checkpoint of the whole state (the newest ``train.keep_last`` are kept), the export, its metrics
        (``pretrain.eval_clips``) and a row of :meth:`fit` in ``pretrain/fit.jsonl``. Their CPU time counts
        as training's (in the next checkpoint).

        Under torchrun rank 0 writes while the others wait; collective: when its writes fail, every rank
        stops with an error (rank 0's own, the others' one line) instead of waiting in the next step."""
        error: Exception | None = None
        if self.is_main:
            try:
                self._write()
            except Exception as e:
                if self.world == 1:
                    raise
                error = e
        if self.world > 1 and ddp.any_rank(error is not None, self.device):
            if error is not None:
                raise error
            raise MP3NetError("training stopped: rank 0 could not write its checkpoint (see its message)")
        self.checkpointed()

    def _write(self) -> None:
        """What :meth:`save` writes (rank 0)."""
        ckpt.save_checkpoint(self.checkpoint_dir, self.state(), self.step, self.keep_last())
        t0 = time.process_time()
        G = self.export()
        if self.cfg.pretrain.eval_clips > 0:
            self.monitor.evaluate(G.to(self.device), self.step, self.logger)
        row = {"step": self.step, **{k: round(v, 4) for k, v in self.fit().items()}}
        with open(self.checkpoint_dir / FIT, "a") as f:
            f.write(json.dumps(row) + "\n")
        self.cpu_seconds += time.process_time() - t0

    @torch.no_grad()
    def fit(self) -> dict[str, float]:
        """Whether the latents draw their own clips' partials (docs/training.md#autoencoder-pretraining).

        For up to ``FIT_CLIPS`` table clips, the :func:`~mp3net.dsp.spectral.partial_similarity` (at the
        longest window of ``pretrain.ffts``) of each drawn clip to its own clip (``partials_own``) and to
        the others (``partials_other``), and the share of drawn clips most like their own
        (``partials_found``). A G that draws one comb for every latent has own ≈ other."""
        rows = clip_indices(len(self.clips), FIT_CLIPS)
        real = mdct(self.dataset.stack(self.clips[i] for i in rows), self.cfg.model.n_bands)
        fake = []
        for a in range(0, len(rows), self.cfg.pretrain.batch_size):
            z = self.latents.weight[rows[a : a + self.cfg.pretrain.batch_size]]
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                fake.append(self.G(z).float().cpu())
        n_fft = max(self.cfg.pretrain.ffts)  # the finest pitch resolution the distance trains
        S = partial_similarity(
            log_spectrogram(torch.cat(fake), n_fft).mean(1), log_spectrogram(real, n_fft).mean(1)
        )
        n = len(rows)
        own = S.diagonal()
        return {
            "partials_own": float(own.mean()),
            "partials_other": float((S.sum() - own.sum()) / max(1, n * n - n)),
            "partials_found": float((S.argmax(1) == torch.arange(n)).float().mean()),
        }

    def export(self) -> Generator:
        """Write ``run_dir/export``: G with its sampler, its levels calibrated (:func:`exported_generator`);
        returns that generator (on the CPU)."""
        G, cfg = exported_generator(
            self.cfg, self.G.state_dict(), self.latents.weight, self.device, torch.tensor(self.successor)
        )
        ckpt.export_generator(self.run_dir / EXPORT_DIR, cfg, G.state_dict(), self.step)
        return G

    def gaussian(self) -> LatentGaussian:
        return LatentGaussian.fit(self.latents.weight.detach().cpu())

    # ---- training ----------------------------------------------------------------------------------------
    def global_batch(self, n: int) -> torch.Tensor:
        """Every rank's table rows of step ``n``, ``[batch_size · ranks]``: drawn by a generator seeded by
        (seed, n); rank r trains on the r-th ``batch_size`` of them (one process: all of them)."""
        g = torch.Generator().manual_seed(derive_seed(self.cfg.train.seed, 2, n))
        return torch.randint(len(self.clips), (self.cfg.pretrain.batch_size * self.world,), generator=g)

    def batch(self, n: int, rows: torch.Tensor | None = None) -> torch.Tensor:
        """This rank's table rows ``[batch_size]`` of step ``n`` (its slice of ``rows``, default
        :meth:`global_batch`)."""
        B = self.cfg.pretrain.batch_size
        rows = self.global_batch(n) if rows is None else rows
        return rows[self.rank * B : (self.rank + 1) * B]

    def lr_scale(self, step: int) -> float:
        """The share of ``pretrain.lr`` and ``latent_lr`` at ``step``: 1, then from ``lr_decay_start`` half a
        cosine down to ``LR_DECAY_FLOOR`` over ``lr_decay_steps``, then that."""
        pc = self.cfg.pretrain
        if pc.lr_decay_steps == 0 or step <= pc.lr_decay_start:
            return 1.0
        t = min(1.0, (step - pc.lr_decay_start) / pc.lr_decay_steps)
        return LR_DECAY_FLOOR + (1 - LR_DECAY_FLOOR) * 0.5 * (1 + math.cos(math.pi * t))

    def train_step(self) -> dict[str, float]:
        """One Adam step of G and the batch's latents; its loss (dB / 20) and the process CPU seconds.
        Under torchrun: of the global batch (every rank's rows), the loss this rank's."""
        t0 = time.process_time()
        scale, pc = self.lr_scale(self.step), self.cfg.pretrain
        for opt, lr in ((self.opt_G, pc.lr), (self.opt_z, pc.latent_lr)):
            for group in opt.param_groups:  # set every step: a resumed optimiser brings its saved rate
                group["lr"] = lr * scale
        every = self.global_batch(self.step)
        rows = self.batch(self.step, every)
        audio = self.dataset.stack(self.clips[int(i)] for i in rows).to(self.device)
        real = mdct(audio, self.cfg.model.n_bands)  # [B, C, M, K]
        rows = rows.to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            fake = self.G(self.latents(rows))
        loss = spectral_reconstruction(fake, real, pc.ffts, pc.envelope, pc.mid_side, pc.floor_db)
        self.opt_G.zero_grad(set_to_none=True)
        self.opt_z.zero_grad(set_to_none=True)
        loss.backward()
        value = float(loss.detach())
        # under torchrun the gradients of the global batch's mean loss on every rank, and one decision
        ddp.allreduce_grads(list(self.G.parameters()), self.world)
        ddp.allreduce_sparse_grad(self.latents.weight, every, self.world)
        if not ddp.all_agree(math.isfinite(value), self.device):
            return {"ok": 0.0}
        self.opt_G.step()
        self.opt_z.step()
        self.step += 1
        self.cpu_seconds += time.process_time() - t0
        return {"loss": round(value, 5), "cpu_seconds": round(self.cpu_seconds, 1), "lr_scale": scale}

    def postfix(self) -> str:
        return f"loss {self.last.get('loss', math.nan):.4f}"

    def run(self, total_steps: int | None = None, seconds: float | None = None) -> int:
        """Train until ``step == total_steps`` (default ``pretrain.steps``), for ``seconds``, or until a
        stop request; checkpoint every ``pretrain.ckpt_every`` steps and at the end. Returns the step."""
        step = super().run(self.cfg.pretrain.steps if total_steps is None else total_steps, seconds)
        missing = self.is_main and not (self.run_dir / EXPORT_DIR).is_dir()
        if ddp.any_rank(missing, self.device) if self.world > 1 else missing:  # rank 0's view, for all
            self.save()
        return step
