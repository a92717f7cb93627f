"""The MP3net training loop (paper §3.2 and §4.2; docs/training.md#the-iteration).

One iteration = one discriminator step on a fresh batch of real clips; after every ``n_critic`` D steps a
generator step follows. Both take fresh latents, and both reals and fakes pass the psychoacoustic noise layer
before D. ``step`` counts D iterations (the paper's 750 k for the 95 s model).

Exact resume: every random draw comes from an explicit source whose state is checkpointed: the data
stream from :class:`~mp3net.data.CropSampler` (seeded per batch by (seed, rank, batch index)), latents, noise
and the gradient-penalty α from one ``torch.Generator`` per rank on the training device. A run that is
stopped (Ctrl-C, SIGTERM, ``--steps``) and resumed computes bit-for-bit what an uninterrupted run would.

Data parallel (``torchrun``): each rank draws its own crops and noise, runs G and D on its own batch (so
minibatch-stddev groups stay inside a rank's batch), and the gradients are averaged with one all-reduce per
network and step. The all-reduce is explicit rather than through DistributedDataParallel's hooks because
a D step runs D three times (reals, fakes, the interpolates of the gradient penalty) and backpropagates
through the penalty's second-order gradient, which DDP's one-forward-one-backward bucketing does not
support; the result is the same synchronous data parallelism. Only rank 0 writes logs, samples,
checkpoints and the export.
"""

from __future__ import annotations

import copy
import math
import signal
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mp3net import ops
from mp3net.artifacts import resolve_model_path
from mp3net.config import Config
from mp3net.data import ClipDataset, CropSampler
from mp3net.dsp import imdct, mdct, tonality
from mp3net.model import Discriminator, Generator, NoiseLayer, set_grad_checkpoint
from mp3net.train import checkpoint as ckpt
from mp3net.train import distributed as ddp
from mp3net.train.anchors import ANCHORS_FILE, AnchorTable, from_pretraining, is_pretraining_run
from mp3net.train.augment import augment
from mp3net.train.band_levels import with_band_levels
from mp3net.train.distributed import init_distributed
from mp3net.train.logging import RunLogger
from mp3net.train.losses import (
    CHANGE_STEP_SECONDS,
    change_matching,
    contrast_matching,
    d_loss,
    g_loss,
    mode_seeking,
    partial_change_matching,
    penalty,
    spectral_d_loss,
    spectral_g_loss,
    spectral_penalty,
    spectral_reconstruction,
)
from mp3net.utils import MP3NetError, derive_seed

MAX_BAD_STEPS = 8  # consecutive non-finite steps before rolling back to the last checkpoint
MAX_ROLLBACKS = 3  # rollbacks before giving up
RUN_INFO = "run.json"


# ---------------------------------------------------------------------------------------------------------
# model surgery: freezing and activation checkpointing
# ---------------------------------------------------------------------------------------------------------
def trainable_parameters(G: Generator, D: Discriminator, freeze_deep: int) -> tuple[list, list]:
    """Parameters of G and D that train. With ``freeze_deep = k > 0`` only the k shallowest blocks of each
    (plus G's output layer and D's input layer, pooled branch and spectral view, which sit on the shallow
    side) train:
    paper §4.3.1."""
    if freeze_deep <= 0:
        return list(G.parameters()), list(D.parameters())
    k = min(freeze_deep, len(G.blocks))
    g = [p for b in list(G.blocks)[-k:] for p in b.parameters()]
    g += [p for head in (G.to_out, G.to_osc, G.to_bank) if head is not None for p in head.parameters()]
    d = list(D.from_in.parameters()) + [p for b in list(D.blocks)[:k] for p in b.parameters()]
    d += [p for branch in (D.pooled, D.spectral) if branch is not None for p in branch.parameters()]
    return g, d


# the stats of the losses under the names they are logged with
_STAT_NAMES = {
    "d_real": "score/real",
    "d_fake": "score/fake",
    "spectral_real": "score/spectral_real",
    "spectral_fake": "score/spectral_fake",
    "spectral_loss": "loss/d_spectral",
}


def _grad_norm(params: list[nn.Parameter]) -> float:
    norms = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


# ---------------------------------------------------------------------------------------------------------
# the trainer
# ---------------------------------------------------------------------------------------------------------
class Trainer:
    """Everything one training process holds. ``run(total_steps)`` trains until ``step == total_steps`` or a
    stop request (signal or :meth:`request_stop`), then writes a checkpoint and the export.

    Args:
        cfg: the run's config (checked against the run's checkpoints).
        data_dir: a folder made by ``mp3net prepare`` with the same preset.
        run_dir: where config, checkpoints, export, TensorBoard logs, metrics.jsonl and samples go.
        device: "cpu", "cuda", "cuda:1", ... (default: CUDA if available). Under torchrun each rank uses
            cuda:LOCAL_RANK.
        require_checkpoint: fail unless the run directory holds a checkpoint to resume from (``--resume``).
        progress: show a tqdm bar (rank 0).
        hooks: callables ``hook(trainer)`` run after every iteration (tests, custom monitoring).
    """

    def __init__(
        self,
        cfg: Config,
        data_dir: str | Path,
        run_dir: str | Path,
        device: str | None = None,
        require_checkpoint: bool = False,
        progress: bool = True,
        hooks: list[Callable[[Trainer], None]] | None = None,
        init_from: str | Path | None = None,
        init_optimizer: bool = False,
    ) -> None:
        self.cfg, self.run_dir, self.data_dir = cfg, Path(run_dir), Path(data_dir)
        self.rank, self.world, self.device = init_distributed(device)
        self.is_main = self.rank == 0
        self.progress, self.hooks = progress and self.is_main, list(hooks or [])
        self.amp = ops.resolve_amp(cfg.train.amp, self.device)
        if self.amp and not ops.bf16_is_fast(self.device):
            self._say(
                f"warning: train.amp=bf16 on a {self.device.type} without native bf16 (CPUs: AVX512_BF16 or "
                "AMX) is emulated and many times slower than float32; -o train.amp=auto picks float32 here"
            )
        ops.configure_process(self.device)
        # data first: a wrong or empty dataset fails before the models are built
        mc = cfg.model
        self.dataset = ClipDataset(self.data_dir, mc.clip_samples, mc.sample_rate, mc.channels)
        if mc.band_norm and not mc.band_rms:
            self.cfg = cfg = with_band_levels(cfg, self.dataset, self.run_dir, init_from, self._say)
            mc = cfg.model
        self._build_models()
        self._build_optimizers()
        self.change_pool = max(2, round(CHANGE_STEP_SECONDS * mc.sample_rate / mc.n_bands))  # frames
        if cfg.train.change_match > 0 and max(cfg.train.change_lags) >= mc.n_frames // self.change_pool:
            raise MP3NetError(
                f"train.change_lags: a clip has {mc.n_frames // self.change_pool} steps of "
                f"{self.change_pool} frames; lags must be fewer, got {list(cfg.train.change_lags)}"
            )
        if cfg.train.contrast_match > 0 and cfg.train.contrast_width >= mc.n_bands:
            raise MP3NetError(f"train.contrast_width must be fewer than the {mc.n_bands} bands")
        self._build_rng()
        self.last: dict[str, float] = {}
        self._stop = False
        self._loader = None
        self._last_ckpt_step = -1
        self._ckpt_clock = time.monotonic()
        self.writer = ckpt.CheckpointWriter(self.run_dir, cfg.train.keep_last, self._say)
        self.resumed_from: Path | None = None
        self.initialised_from: Path | None = None
        self._eval_reals: list[torch.Tensor] | None = None
        self.z_eval: torch.Tensor | None = None  # [eval_clips, latent], drawn at the first evaluation
        self._pretrain_table: AnchorTable | None = None  # set by --init-from a pretraining run

        if self.is_main:
            ckpt.remove_partial(self.run_dir)
        self._resume(require_checkpoint)
        if self.resumed_from is None and init_from is not None:
            self._init_from(init_from, init_optimizer)
        self.anchors = self._anchor_table() if cfg.train.anchor > 0 else None
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            cfg.save(self.run_dir / "config.json")
            ckpt.write_json(
                self.run_dir / RUN_INFO, {"data": str(self.data_dir.resolve()), "world_size": self.world}
            )
        self.logger = RunLogger(self.run_dir, self.step, enabled=self.is_main)

    def _build_models(self) -> None:
        """G, D, the EMA copy of G and the noise layer: the same initialisation on every rank."""
        tc, mc = self.cfg.train, self.cfg.model
        torch.manual_seed(tc.seed)
        self.G = Generator(mc).to(self.device)
        self.D = Discriminator(mc).to(self.device)
        ddp.broadcast_module(self.G)
        ddp.broadcast_module(self.D)
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False).eval() if tc.ema else None
        set_grad_checkpoint(self.G, tc.grad_checkpoint)
        set_grad_checkpoint(self.D, tc.grad_checkpoint)
        self.noise = NoiseLayer(mc, tc.noise_sigma).to(self.device)
        self.g_params, self.d_params = trainable_parameters(self.G, self.D, tc.freeze_deep)

    def _build_optimizers(self) -> None:
        """One Adam per network over all its parameters (a frozen run resumes a full one and back: frozen
        parameters get no gradient, so Adam leaves them and their moments untouched)."""
        self.opt_G = torch.optim.Adam(self.G.parameters(), **self._adam("G"))
        self.opt_D = torch.optim.Adam(self.D.parameters(), **self._adam("D"))

    def _adam(self, net: str, warmup: float = 1.0) -> dict[str, Any]:
        """Adam's lr and betas for ``net``: D's compensated for lazy regularisation's extra steps
        (StyleGAN2: with a penalty step every k steps, lr·r and β^r, r = k/(k+1))."""
        tc = self.cfg.train
        lr, (b1, b2) = tc.adam(net)
        k = tc.reg_every
        r = k / (k + 1) if net == "D" and k > 1 else 1.0
        return {"lr": lr * r * warmup, "betas": (b1**r, b2**r)}

    def _build_rng(self) -> None:
        """The step counters and every random stream (docs/training.md#exact-resume)."""
        tc, mc = self.cfg.train, self.cfg.model
        self.step = 0  # D iterations done
        self.g_steps = 0
        self.consumed = 0  # data batches consumed by this rank
        self.rollbacks = 0
        self.bad_steps = 0
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(derive_seed(tc.seed, self.rank, 0))
        self.sampler = CropSampler(len(self.dataset), tc.batch_size, seed=tc.seed, rank=self.rank)
        zg = torch.Generator().manual_seed(derive_seed(tc.seed, 2**31 - 1))
        self.z_fixed = torch.randn(tc.n_samples, mc.latent_dim, generator=zg).to(self.device)

    def _init_from(self, source: str | Path, with_optimizer: bool) -> None:
        """Fine-tuning: a new run starts from another run's latest checkpoint (G, G_ema, D and, with
        ``with_optimizer``, the optimisers) or from an exported generator (G only; D stays fresh)."""
        path = resolve_model_path(source)
        if is_pretraining_run(path):
            # G from the latest pretraining checkpoint (what its export holds) and its table (anchors)
            G, saved, self._pretrain_table = from_pretraining(path)
            ckpt.check_compatible(saved.to_dict(), self.cfg, path, ckpt.FINE_TUNABLE)
            self._load_weights(G.state_dict(), G.state_dict(), None, path)
            where = path
        elif (path / ckpt.CKPT_DIR).is_dir():
            found = ckpt.load_latest(path, map_location=self.device)
            if found is None:
                raise MP3NetError(f"--init-from {source}: no readable checkpoint in {path / ckpt.CKPT_DIR}")
            state, where = found
            ckpt.check_compatible(state["config"], self.cfg, where, ckpt.FINE_TUNABLE)
            self._load_weights(state["G"], state.get("G_ema") or state["G"], state["D"], where)
            if with_optimizer:
                self._load_optimizers(state, where)
        else:
            saved, weights = ckpt.load_export(path / "export" if (path / "export").is_dir() else path)
            ckpt.check_compatible(saved.to_dict(), self.cfg, path, ckpt.FINE_TUNABLE)
            self._load_weights(weights, weights, None, path)
            where = path
        self.initialised_from = Path(where)

    def _anchor_table(self) -> AnchorTable:
        """The anchors (docs/training.md#anchored-gan): the run's own table when it has one (a resumed run),
        else the pretraining run's it started from, written into the run directory for its resumes."""
        own = self.run_dir / ANCHORS_FILE
        if own.exists():
            table = AnchorTable.load(own)
        elif self._pretrain_table is not None:
            table = self._pretrain_table
            if self.is_main:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                table.save(own)
        else:
            raise MP3NetError(
                "train.anchor keeps the clips of a pretraining run: start the run with --init-from a run "
                "directory of `mp3net pretrain`"
            )
        if max(table.clips) >= len(self.dataset):
            raise MP3NetError(
                f"the anchors are clips of another dataset (clip {max(table.clips)}; this one has "
                f"{len(self.dataset)}): train on the data the pretraining run used"
            )
        table.latents = table.latents.to(self.device)
        return table

    def _load_weights(self, g: dict, g_ema: dict, d: dict | None, where: str | Path) -> None:
        try:
            self._load_generator(self.G, g)
            if self.G_ema is not None:
                self._load_generator(self.G_ema, g_ema)
            if d is not None:
                self._load_discriminator(d)
        except (RuntimeError, KeyError, ValueError) as e:
            raise MP3NetError(f"{where} does not match this model: {str(e).splitlines()[0]}") from None

    def _load_generator(self, G: Generator, g: dict) -> None:
        """G's weights; when this run adds oscillators or a bank to the source's linear output, they start
        silent (docs/networks.md#oscillator-output)."""
        heads = [name for name in ("to_osc", "to_bank") if getattr(G, name) is not None]
        fresh = [n for n in heads if G.to_out is not None and not any(k.startswith(n + ".") for k in g)]
        if not fresh:
            G.load_state_dict(g)
            return
        missing, unexpected = G.load_state_dict(g, strict=False)
        if unexpected or any(not k.startswith(tuple(n + "." for n in fresh)) for k in missing):
            G.load_state_dict(g)  # raises with the mismatch
        if G is self.G:
            what = "oscillators start" if "to_osc" in fresh else "oscillator bank starts"
            self._say(f"G's {what} silent (model.output={G.cfg.output})")

    def _load_discriminator(self, d: dict) -> None:
        """D's weights; branches this run adds to the source's D (the pooled branch, the spectral view)
        start fresh."""
        fresh = [name for name in ("pooled", "spectral") if getattr(self.D, name) is not None]
        fresh = [name for name in fresh if not any(k.startswith(name + ".") for k in d)]
        if not fresh:
            self.D.load_state_dict(d)
            return
        missing, unexpected = self.D.load_state_dict(d, strict=False)
        if unexpected or any(k.split(".")[0] not in fresh for k in missing):
            self.D.load_state_dict(d)  # raises with the mismatch
        self._say(f"D's {' and '.join(fresh)} branch starts fresh")

    def _load_optimizers(self, state: dict[str, Any], where: str | Path) -> None:
        try:
            self.opt_G.load_state_dict(state["opt_G"])
            self.opt_D.load_state_dict(state["opt_D"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise MP3NetError(f"{where} does not match this model: {str(e).splitlines()[0]}") from None
        # a changed lr/betas in the config wins over the checkpoint's
        for net, opt in (("G", self.opt_G), ("D", self.opt_D)):
            for group in opt.param_groups:
                group.update(self._adam(net))

    # ---- state -----------------------------------------------------------------------------------------
    def _rng_state(self) -> dict[str, Any]:
        return {
            "gen": self.gen.get_state(),
            "torch_cpu": torch.get_rng_state(),
            "sampler": self.sampler.state_dict(self.consumed),
        }

    def state_dict(self) -> dict[str, Any]:
        """The full training state, every tensor copied to the CPU (training may go on while it is
        written). Collective under torchrun: every rank must call it."""
        mine = {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in self._rng_state().items()}
        return ckpt.snapshot(
            {
                "format": "mp3net-train",
                "step": self.step,
                "g_steps": self.g_steps,
                "rollbacks": self.rollbacks,
                "world_size": self.world,
                "config": self.cfg.to_dict(),
                "G": self.G.state_dict(),
                "D": self.D.state_dict(),
                "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
                "opt_G": self.opt_G.state_dict(),
                "opt_D": self.opt_D.state_dict(),
                "rng": ddp.gather_objects(mine, self.world),
                "last_stats": dict(self.last),  # logged rows carry the latest G stats between G steps
            }
        )

    def load_state_dict(self, state: dict[str, Any], where: str | Path) -> None:
        if state.get("format") != "mp3net-train":
            raise MP3NetError(f"{where} is not an mp3net training checkpoint")
        ckpt.check_compatible(state["config"], self.cfg, where)
        g_ema = state["G_ema"] if state.get("G_ema") is not None else state["G"]
        self._load_weights(state["G"], g_ema, state["D"], where)
        self._load_optimizers(state, where)
        self.step, self.g_steps = int(state["step"]), int(state["g_steps"])
        self.rollbacks = int(state.get("rollbacks", 0))
        self.last = {k: float(v) for k, v in (state.get("last_stats") or {}).items()}
        rngs = state["rng"]
        if self.rank < len(rngs) and len(rngs) == self.world:
            r = rngs[self.rank]
            self.gen.set_state(r["gen"].to("cpu") if torch.is_tensor(r["gen"]) else r["gen"])
            torch.set_rng_state(r["torch_cpu"].cpu())
            self.sampler.load_state_dict(r["sampler"])
            self.consumed = int(r["sampler"]["next_batch"])
        else:
            # another world size: the streams cannot continue exactly; derive fresh per-rank ones
            if self.is_main:
                print(
                    f"note: {where} was written by {len(rngs)} ranks, now {self.world}: "
                    "data and noise streams are re-seeded",
                    file=sys.stderr,
                )
            self.gen.manual_seed(derive_seed(self.cfg.train.seed, self.rank, self.step + 1))
            self.sampler.seed = derive_seed(self.cfg.train.seed, self.step + 1)
            self.consumed = self.sampler.start = 0
        self._last_ckpt_step = self.step

    def _resume(self, require: bool) -> None:
        """Continue from the newest readable checkpoint; one that is unreadable while an older one is
        fine gives one warning line, a run whose checkpoints are all unreadable stops (one line)."""
        warn = self._say if self.is_main else None
        found = ckpt.load_latest(self.run_dir, map_location=self.device, warn=warn)
        if found is None:
            if require:
                raise MP3NetError(f"--resume: no checkpoint in {self.run_dir / ckpt.CKPT_DIR}")
            return
        state, path = found
        self.load_state_dict(state, path)
        self.resumed_from = path
        export = self.run_dir / ckpt.EXPORT_DIR
        if self.is_main and ckpt.export_step(export) != self.step:
            # a kill between checkpoint and export: bring the export up to the checkpoint
            weights = state["G_ema"] if state.get("G_ema") is not None else state["G"]
            ckpt.export_generator(export, self.cfg, weights, self.step)

    def save(self) -> None:
        """Checkpoint the current step and refresh the generator export (rank 0). Collective.

        The state is copied to the CPU here (the only part training waits for) and written by
        :class:`~mp3net.train.checkpoint.CheckpointWriter` in the background (``self.writer.wait()``
        waits for it). Non-finite weights are reported and not written (the previous checkpoint stays the
        latest).
        """
        state = self.state_dict()
        if self.is_main:
            weights = state["G_ema"] if state["G_ema"] is not None else state["G"]
            self.writer.submit(state, self.step, self.cfg, weights)
        self._last_ckpt_step = self.step
        self._ckpt_clock = time.monotonic()

    def _check_writer(self) -> None:
        """Raise a failed background write's error, and stop every other rank with it: under torchrun only
        rank 0 writes, and a rank that kept training would wait forever in the next all-reduce."""
        failed = self.writer.failed  # read once: a write may finish while the ranks compare notes
        if self.world > 1 and ddp.any_rank(failed, self.device) and not failed:
            raise MP3NetError("training stopped: rank 0 could not write its checkpoint (see its message)")
        if failed:
            self.writer.check()

    def _checkpoint_due(self) -> bool:
        """Every ``train.ckpt_every`` steps or ``train.ckpt_minutes`` after the last, whichever first."""
        tc = self.cfg.train
        if tc.ckpt_every > 0 and self.step % tc.ckpt_every == 0:
            return True
        if tc.ckpt_minutes <= 0:
            return False
        late = time.monotonic() - self._ckpt_clock >= 60.0 * tc.ckpt_minutes
        return ddp.any_rank(late, self.device) if self.world > 1 else late

    def _rollback(self) -> None:
        self.writer.wait()
        found = ckpt.load_latest(
            self.run_dir, map_location=self.device
        )  # every rank reads it (shared run dir)
        if found is None:
            raise MP3NetError(
                f"training diverged (non-finite losses) at step {self.step}, before any checkpoint"
            )
        if self.rollbacks >= MAX_ROLLBACKS:
            raise MP3NetError(
                f"training keeps diverging at step {self.step} after {self.rollbacks} rollbacks"
            )
        state, path = found
        rollbacks = self.rollbacks + 1
        self.load_state_dict(state, path)
        self.logger.rewind(self.step)  # the diverged steps are trained again: logged once
        self.rollbacks = rollbacks
        # new random streams, or the same batch and noise would diverge again
        self.gen.manual_seed(derive_seed(self.cfg.train.seed, self.rank, self.step, rollbacks))
        self.sampler.seed = derive_seed(self.cfg.train.seed, rollbacks)
        self._loader = None
        self.bad_steps = 0
        self._say(f"rolled back to {path.name} (step {self.step}) with fresh random streams")

    # ---- data ------------------------------------------------------------------------------------------
    def _batches(self):
        from torch.utils.data import DataLoader

        self.sampler.start = self.consumed
        nw = max(0, self.cfg.train.num_workers)
        seed = derive_seed(self.cfg.train.seed, self.rank, self.consumed)
        loader = DataLoader(
            self.dataset,
            batch_sampler=self.sampler,
            num_workers=nw,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if nw else None,
            persistent_workers=False,
            # its own generator for the workers' base seed: a fresh iterator (each resume) would
            # otherwise draw from the global RNG, which is part of the checkpointed state
            generator=torch.Generator().manual_seed(seed),
        )
        return iter(loader)

    def _next_real(self) -> torch.Tensor:
        if self._loader is None:
            self._loader = self._batches()
        x = next(self._loader)
        self.consumed += 1
        x = x.to(self.device, non_blocking=True)
        return mdct(x, self.cfg.model.n_bands)  # [B, C, M, K], on the training device

    # ---- one iteration ---------------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.amp else nullcontext()

    def _z(self) -> torch.Tensor:
        B, L = self.cfg.train.batch_size, self.cfg.model.latent_dim
        return torch.randn(B, L, generator=self.gen, device=self.device)

    def _phase(self, train_g: bool) -> None:
        for p in self.G.parameters():
            p.requires_grad_(False)
        for p in self.D.parameters():
            p.requires_grad_(False)
        for p in self.g_params if train_g else self.d_params:
            p.requires_grad_(True)

    def _apply(self, opt: torch.optim.Optimizer, params: list, loss: torch.Tensor) -> tuple[float, bool]:
        """Average gradients over ranks; step unless loss or gradients are not finite. (grad norm, ok)."""
        ddp.allreduce_grads(params, self.world)
        gn = _grad_norm(params)
        ok = ddp.all_agree(math.isfinite(gn) and math.isfinite(float(loss.detach())), self.device)
        if ok:
            opt.step()
        opt.zero_grad(set_to_none=True)
        return gn, ok

    def _set_lr(self) -> None:
        """The learning rates of this step: the linear warm-up of ``train.warmup_steps``."""
        w = self.cfg.train.warmup_steps
        if w <= 0:
            return
        f = min(1.0, (self.step + 1) / w)
        for net, opt in (("G", self.opt_G), ("D", self.opt_D)):
            lr = self._adam(net, warmup=f)["lr"]
            for group in opt.param_groups:
                group["lr"] = lr

    def _ema_beta(self) -> float:
        """The EMA decay of this G step: a half-life in clips (ramped up with the clips seen, as in
        StyleGAN2-ADA), or ``ema_decay`` with a short warm-up so early samples do not average over the
        random initialisation."""
        tc = self.cfg.train
        if tc.ema_half_life <= 0:
            return min(tc.ema_decay, (1 + self.g_steps) / (10 + self.g_steps))
        per_step = tc.batch_size * self.world
        half_life = tc.ema_half_life
        if tc.ema_rampup > 0:
            half_life = min(half_life, self.g_steps * per_step * tc.ema_rampup)
        return 0.5 ** (per_step / max(half_life, 1e-8))

    def _update_ema(self) -> None:
        if self.G_ema is None:
            return
        decay = self._ema_beta()
        with torch.no_grad():
            ema = list(self.G_ema.parameters())
            cur = [p.detach() for p in self.G.parameters()]
            torch._foreach_lerp_(ema, cur, 1.0 - decay)
            for be, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
                be.copy_(b)

    def _to_d(self, A: torch.Tensor) -> torch.Tensor:
        """What D sees of amplitudes ``[B, C, M, K]``: augmented (``train.augment``), then noised
        (paper §3.2; the threshold in-graph, so G's gradient flows through it)."""
        A = augment(A, self.cfg.train.augment, generator=self.gen)
        return self.noise(A, generator=self.gen)

    def _fakes(self, grad: bool, z: torch.Tensor | None = None) -> torch.Tensor:
        """A batch of fakes ``[B, C, M, K]`` float32 from latents ``z`` (default: fresh ones): with ``grad``
        through G's forward, else through its inference path (the device's layout and tiles)."""
        z = self._z() if z is None else z
        with self._autocast():
            return self.G(z).float() if grad else self.G.generate(z)

    def d_step(self, real: torch.Tensor) -> tuple[dict[str, float], torch.Tensor, bool]:
        """One D update on reals ``[B, C, M, K]`` and fresh fakes (with the penalty on every
        ``reg_every``-th step: joined to this update when ``reg_every`` is 1, else its own update scaled
        by the interval, StyleGAN2's lazy regularisation). Returns (stats, D's noised reals, ok)."""
        tc = self.cfg.train
        self._phase(train_g=False)
        fake = self._fakes(grad=False)
        real_n, fake_n = self._to_d(real), self._to_d(fake)
        lazy = tc.reg_every > 1
        reg_now = self.step % tc.reg_every == 0
        with self._autocast():  # backpropagated term by term inside: one graph alive at a time
            loss, st = d_loss(
                self.D, real_n, fake_n, tc.gp_lambda, tc.drift, self.gen, backward=True,
                loss=tc.loss, r1_gamma=tc.r1_gamma, reg_scale=0.0 if lazy else 1.0,
            )  # fmt: skip
        if self.D.spectral is not None:
            st.update(self._spectral_d(real_n, fake_n, 0.0 if lazy else 1.0))
        gn, ok = self._apply(self.opt_D, self.d_params, loss)
        if lazy and reg_now:
            with self._autocast():
                reg, reg_st = penalty(self.D, real_n, fake_n, tc.loss, tc.gp_lambda, tc.r1_gamma, self.gen)
                reg = reg * tc.reg_every
                if self.D.spectral is not None:
                    s_reg, s_st = spectral_penalty(
                        self.D.spectral, real_n, fake_n, tc.loss, tc.spectral_r1_gamma
                    )
                    reg = reg + s_reg * tc.reg_every
                    reg_st.update(s_st)
            with torch.autocast(self.device.type, enabled=False):
                reg.backward()
            _, ok_reg = self._apply(self.opt_D, self.d_params, reg)
            ok = ok and ok_reg
            st.update(reg_st)
        stats = {"loss/d": float(st["d_loss"]), "grad_norm/d": gn}
        stats.update({_STAT_NAMES.get(k, k): float(v) for k, v in st.items() if k != "d_loss"})
        # tonality of fakes and reals alike, un-noised (docs/differences.md#logging-and-evaluation)
        with torch.no_grad():
            stats["tonality/fake"] = float(tonality(fake).mean())
            stats["tonality/real"] = float(tonality(real).mean())
        return stats, real_n.detach(), ok

    def _spectral_d(
        self, real_n: torch.Tensor, fake_n: torch.Tensor, reg_scale: float
    ) -> dict[str, torch.Tensor]:
        """Backpropagate D's spectral view's loss on noised ``[B, C, M, K]`` reals and fakes into D's
        gradients (with its penalty when ``reg_scale``); its stats."""
        tc = self.cfg.train
        assert self.D.spectral is not None
        with self._autocast():
            s_loss, st = spectral_d_loss(
                self.D.spectral, real_n, fake_n, tc.loss, tc.spectral_r1_gamma, reg_scale
            )
        with torch.autocast(self.device.type, enabled=False):
            s_loss.backward()
        return {**st, "spectral_loss": s_loss.detach()}

    def g_step(self, real: torch.Tensor, real_n: torch.Tensor) -> tuple[dict[str, float], bool]:
        """One G update through D (frozen) on fresh fakes; ``real`` ``[B, C, M, K]``: this iteration's
        reals (for change and contrast matching), ``real_n``: D's noised view of them (the relativistic
        loss scores them)."""
        tc = self.cfg.train
        self._phase(train_g=True)
        z = self._z()
        fake = self._fakes(grad=True, z=z)
        fake_n = self._to_d(fake)  # one noise draw for both of D's views
        with self._autocast():
            loss, st = g_loss(self.D, fake_n, tc.loss, real_n)
        stats = {"loss/g": float(st["g_loss"])}
        if self.D.spectral is not None:
            with self._autocast():
                s_loss = spectral_g_loss(self.D.spectral, fake_n, tc.loss, real_n)
            loss = loss + tc.spectral_weight * s_loss
            stats["loss/g_spectral"] = float(s_loss.detach())
        if tc.change_match > 0:
            change = change_matching(fake, real, self.change_pool, tc.change_lags)
            loss = loss + tc.change_match * change
            stats["loss/change_match"] = float(change.detach())
        if tc.contrast_match > 0:
            contrast = contrast_matching(fake, real, self.change_pool, tc.contrast_width)
            loss = loss + tc.contrast_match * contrast
            stats["loss/contrast_match"] = float(contrast.detach())
        if tc.mode_seeking > 0:
            seek, ratio = mode_seeking(fake, z, self.cfg.model.d_spectral_fft)
            loss = loss + tc.mode_seeking * seek
            stats.update({"loss/mode_seeking": float(seek.detach()), "mode_seeking/ratio": float(ratio)})
        if tc.partial_change_match > 0:
            pc, moved = partial_change_matching(
                fake, real, self.cfg.model.d_spectral_fft, tc.partial_change_frames
            )
            loss = loss + tc.partial_change_match * pc
            stats.update({"loss/partial_change": float(pc.detach()), "partial_change/fake_db": float(moved)})
        if tc.anchor > 0:
            rec = self._anchor_loss()
            loss = loss + tc.anchor * rec
            stats["loss/anchor"] = float(rec.detach())
        loss.backward()
        gn, ok = self._apply(self.opt_G, self.g_params, loss)
        if ok:
            self.g_steps += 1
            self._update_ema()
        return {**stats, "grad_norm/g": gn}, ok

    def _anchor_loss(self) -> torch.Tensor:
        """The anchor term: ``batch_size`` clips of the table drawn from their latents, their
        :func:`~mp3net.train.losses.spectral_reconstruction` (dB / 20; docs/training.md#anchored-gan)."""
        assert self.anchors is not None
        table = self.anchors
        n, B = len(table.clips), self.cfg.train.batch_size
        rows = torch.randint(n, (B,), generator=self.gen, device=self.device)
        audio = self.dataset.stack(table.clips[int(i)] for i in rows.cpu()).to(self.device)
        target = mdct(audio, self.cfg.model.n_bands)  # [B, C, M, K]
        fake = self._fakes(grad=True, z=table.latents[rows])
        pc = self.cfg.pretrain
        return spectral_reconstruction(fake, target, pc.ffts, pc.envelope, pc.mid_side)

    def train_step(self) -> dict[str, float]:
        """One D iteration (and the G step when it is due). Returns this rank's scalars."""
        tc = self.cfg.train
        t0 = time.perf_counter()
        real = self._next_real()
        t_data = time.perf_counter() - t0
        self._set_lr()
        stats, real_n, ok = self.d_step(real)
        if (self.step + 1) % tc.n_critic == 0:
            g_stats, ok_g = self.g_step(real, real_n)
            stats.update(g_stats)
            ok = ok and ok_g
        self._phase(train_g=False)
        self.step += 1
        dt = time.perf_counter() - t0
        clips = tc.batch_size * self.world
        stats.update(
            {
                "time/step": dt,
                "time/data_wait": t_data,
                "audio_seconds_per_s": clips * self.cfg.model.clip_seconds / max(dt, 1e-9),
                "clips_seen": float(self.step * clips),
            }
        )
        stats["ok"] = 1.0 if ok else 0.0
        return stats

    # ---- the run ---------------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the current iteration, then checkpoint and return from :meth:`run`."""
        self._stop = True

    def _say(self, msg: str) -> None:
        if self.is_main:
            from tqdm import tqdm

            tqdm.write(msg, file=sys.stderr)

    def _should_stop(self) -> bool:
        return ddp.any_rank(self._stop, self.device)

    def sample(self) -> None:
        """Fixed-seed fakes of the EMA generator → audio and images in the logs (rank 0)."""
        if not self.is_main or self.cfg.train.n_samples <= 0:
            return
        G = self.G_ema if self.G_ema is not None else self.G
        with torch.no_grad():
            A = G(self.z_fixed).float()
            audio = imdct(A, trim=True)
        self.logger.samples(self.step, A.cpu(), audio.cpu(), self.cfg.model.sample_rate)

    def evaluate(self) -> dict[str, float]:
        """`mp3net evaluate`'s metrics of ``train.eval_clips`` fakes of the EMA generator for fixed latents
        (``z_eval``) against as many clips of the training data, logged as ``eval/*`` (rank 0;
        docs/training.md#metrics-during-training). It draws from none of the training's random streams, so
        training goes on exactly as without it. Returns the logged scalars ({} on other ranks)."""
        if not self.is_main:
            return {}
        from mp3net import evaluate as ev

        tc, mc = self.cfg.train, self.cfg.model
        if self._eval_reals is None:  # the same reals and latents at every evaluation: a comparable curve
            self._eval_reals, _ = ev.load_real_clips(self.data_dir, tc.eval_clips, mc.clip_samples, seed=1)
            zg = torch.Generator().manual_seed(derive_seed(tc.seed, 2**31 - 2))
            self.z_eval = torch.randn(tc.eval_clips, mc.latent_dim, generator=zg)
        G = self.G_ema if self.G_ema is not None else self.G
        fakes = [
            imdct(G.generate(z.to(self.device)), trim=True).cpu() for z in self.z_eval.split(tc.batch_size)
        ]
        rep = ev.evaluate_clips(self._eval_reals, list(torch.cat(fakes)), mc.sample_rate)
        head = rep.headline()
        stats = {f"eval/{k}": v for k, v in head.items()}
        self.logger.scalars(self.step, stats)
        self._say(
            f"step {self.step}: FD {head['fd']:.0f}, tonality {head['tonality_fake']:.1%} (reals "
            f"{head['tonality_real']:.1%}), Bark-band error {head['bark_err_mean_db']:.1f} / "
            f"{head['bark_err_max_db']:.1f} dB, onset contrast {head['onset_contrast_fake']:.1f} (reals "
            f"{head['onset_contrast_real']:.1f}), valley depth {head['valley_db_fake']:.1f} dB (reals "
            f"{head['valley_db_real']:.1f}), partial spread {head['partial_spread_fake']:.1f} dB (reals "
            f"{head['partial_spread_real']:.1f})"
        )
        return stats

    def _progress_bar(self, total: int, seconds: float | None) -> Any:
        """A tqdm bar over the real work: the steps to go, or the time budget when there is one."""
        if not self.progress or self.step >= total:
            return None
        from tqdm import tqdm

        if seconds is None:
            return tqdm(total=total, initial=self.step, unit="it", dynamic_ncols=True, desc="train")
        fmt = "{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} of the time budget{postfix}"
        return tqdm(total=round(seconds), unit="s", dynamic_ncols=True, desc="train", bar_format=fmt)

    def run(self, total_steps: int | None = None, seconds: float | None = None) -> int:
        """Train until ``step == total_steps`` (default ``train.max_steps``), ``seconds`` of wall time have
        passed (at least one step), or a stop request.

        Returns the step reached."""
        tc = self.cfg.train
        total = tc.max_steps if total_steps is None else int(total_steps)
        handlers = {}
        if self._in_main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, self._on_signal)
        bar = self._progress_bar(total, seconds)
        t_start = self._ckpt_clock = time.monotonic()
        if self.resumed_from is not None:
            self._say(f"resumed from {self.resumed_from} at step {self.step}")
        try:
            while self.step < total and not self._should_stop():
                stats = self.train_step()
                if stats.pop("ok") == 0.0:
                    self.bad_steps += 1
                    self._say(
                        f"step {self.step}: non-finite loss or gradient "
                        f"(D loss {stats['loss/d']:.4g}); update skipped"
                    )
                    if self.bad_steps >= MAX_BAD_STEPS:
                        self._rollback()
                    continue
                self.bad_steps = 0
                stats = ddp.allreduce_mean(stats, self.world, self.device)
                self.last.update(stats)
                elapsed = time.monotonic() - t_start
                if seconds is not None and elapsed >= seconds:
                    self._stop = True
                if bar is not None:
                    bar.update(1 if seconds is None else min(round(elapsed), bar.total) - bar.n)
                    g = self.last.get("loss/g")  # no G step yet in the first n_critic iterations
                    bar.set_postfix_str(
                        f"D {self.last['loss/d']:.3f} G {'-' if g is None else f'{g:.3f}'} "
                        f"W {self.last['w_distance']:.3f}",
                        refresh=False,
                    )
                if self.step % max(1, tc.log_every) == 0 or self.step == 1:
                    self.logger.scalars(self.step, dict(self.last))
                try:
                    if tc.sample_every > 0 and self.step % tc.sample_every == 0:
                        self.sample()
                    if tc.eval_every > 0 and self.step % tc.eval_every == 0:
                        self.evaluate()
                except Exception:
                    # the step itself is complete: keep it before the error ends the run
                    if self._last_ckpt_step != self.step:
                        self.save()
                        self.writer.wait()
                    raise
                if self._checkpoint_due():
                    self.save()
                self._check_writer()
                for hook in self.hooks:
                    hook(self)
        finally:
            if bar is not None:
                bar.close()
            for sig, h in handlers.items():
                signal.signal(sig, h)
        if self._last_ckpt_step != self.step:
            self.save()
        self.writer.wait()
        if self._stop and (seconds is None or time.monotonic() - t_start < seconds):
            self._say(f"stopped at step {self.step}; checkpoint written, resume by running the same command")
        self.logger.flush()
        return self.step

    def close(self) -> None:
        try:
            self.writer.wait()
        finally:
            self.logger.close()
        self._loader = None
        if self.world > 1:
            ddp.close()

    @staticmethod
    def _in_main_thread() -> bool:
        import threading

        return threading.current_thread() is threading.main_thread()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop:  # a second Ctrl-C: stop now (the last checkpoint stays valid)
            raise KeyboardInterrupt
        self._stop = True
        self._say(
            f"{signal.Signals(signum).name}: finishing step {self.step + 1}, then checkpointing "
            "(press Ctrl-C again to abort without)"
        )


def train(
    cfg: Config,
    data_dir: str | Path,
    run_dir: str | Path,
    steps: int | None = None,
    device: str | None = None,
    require_checkpoint: bool = False,
    progress: bool = True,
    hooks: list[Callable[[Trainer], None]] | None = None,
    init_from: str | Path | None = None,
    init_optimizer: bool = False,
    seconds: float | None = None,
) -> Trainer:
    """Build a :class:`Trainer` (resuming from ``run_dir`` when it holds a checkpoint, else starting from
    ``init_from`` when given), train to ``steps`` D iterations (or for ``seconds``), checkpoint, and
    return it."""
    trainer = Trainer(
        cfg,
        data_dir,
        run_dir,
        device=device,
        require_checkpoint=require_checkpoint,
        progress=progress,
        hooks=hooks,
        init_from=init_from,
        init_optimizer=init_optimizer,
    )
    try:
        trainer.run(steps, seconds=seconds)
    finally:
        trainer.close()
    return trainer
