"""The paper's GAN training (paper §3.2 and §4.2; docs/training.md#the-iteration).

One iteration = one discriminator step on a fresh batch of real clips; after every ``n_critic`` D steps a
generator step follows. Both take fresh latents, and both reals and fakes pass the psychoacoustic noise layer
before D (:class:`~mp3net.train.losses.GANLoss`). ``step`` counts D iterations (the paper's 750 k for the
95 s model). The run loop (signals, progress, checkpoints, resume, rollback, logging) is
:class:`~mp3net.train.solver.Solver`'s.

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

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mp3net import ops
from mp3net.config import Config, TrainConfig
from mp3net.data import ClipDataset
from mp3net.dsp import mdct, tonality
from mp3net.model import Discriminator, Generator, NoiseLayer
from mp3net.train import checkpoint as ckpt
from mp3net.train import distributed as ddp
from mp3net.train.anchors import AnchorTable, run_anchor_table
from mp3net.train.band_levels import with_band_levels
from mp3net.train.ema import EMA
from mp3net.train.finetune import Start, load_start, load_weights, trainable_parameters
from mp3net.train.losses import GANLoss, spectral_reconstruction
from mp3net.train.monitor import Monitor
from mp3net.train.real_stream import RealStream
from mp3net.train.solver import Solver
from mp3net.utils import MP3NetError, derive_seed

RUN_INFO = "run.json"
# the stats of the losses under the names they are logged with
_STAT_NAMES = {"d_real": "score/real", "d_fake": "score/fake", "d_loss": "loss/d", "g_loss": "loss/g"}


def _grad_norm(params: list[nn.Parameter]) -> float:
    norms = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


def adam_settings(tc: TrainConfig, net: str, warmup: float = 1.0) -> dict[str, Any]:
    """Adam's lr and betas for ``net`` ("G" or "D"): D's compensated for lazy regularisation's extra steps
    (StyleGAN2: with a penalty step every k steps, lr·r and β^r, r = k/(k+1)), both scaled by ``warmup``."""
    lr, (b1, b2) = tc.adam(net)
    k = tc.reg_every
    r = k / (k + 1) if net == "D" and k > 1 else 1.0
    return {"lr": lr * r * warmup, "betas": (b1**r, b2**r)}


def warm_up(optimizers: dict[str, torch.optim.Optimizer], tc: TrainConfig, step: int) -> None:
    """The learning rates of D step ``step`` (from 0) under the linear warm-up of ``train.warmup_steps``;
    ``optimizers`` by network ("G", "D")."""
    if tc.warmup_steps <= 0:
        return
    f = min(1.0, (step + 1) / tc.warmup_steps)
    for net, opt in optimizers.items():
        for group in opt.param_groups:
            group["lr"] = adam_settings(tc, net, warmup=f)["lr"]


def train_only(modules: list[nn.Module], params: list[nn.Parameter]) -> None:
    """Gradients for ``params`` alone, of all the parameters of ``modules`` (a phase of the iteration)."""
    for m in modules:
        m.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)


class Trainer(Solver):
    """Everything one GAN training process holds. ``run(total_steps)`` trains until ``step ==
    total_steps`` or a stop request (signal or :meth:`request_stop`), then writes a checkpoint and the
    export.

    Args:
        cfg: the run's config (checked against the run's checkpoints).
        data_dir: a folder made by ``mp3net prepare`` with the same preset.
        run_dir: where config, checkpoints, export, TensorBoard logs, metrics.jsonl and samples go.
        device: "cpu", "cuda", "cuda:1", ... (default: CUDA if available). Under torchrun each rank uses
            cuda:LOCAL_RANK.
        require_checkpoint: fail unless the run directory holds a checkpoint to resume from (``--resume``).
        progress: show a tqdm bar (rank 0).
        hooks: callables ``hook(trainer)`` run after every iteration (tests, custom monitoring).
        init_from: fine-tuning: the model a new run starts from (:mod:`mp3net.train.finetune`).
        init_optimizer: with ``init_from`` a GAN run, its optimisers' state too.
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
        rank, world, dev = ddp.init_distributed(device)
        self.cfg, self.data_dir = cfg, Path(data_dir)
        tc = cfg.train
        self.log_every, self.ckpt_every, self.ckpt_minutes = tc.log_every, tc.ckpt_every, tc.ckpt_minutes
        self.checkpoint_dir = Path(run_dir)
        self.setup_run(Path(run_dir), dev, rank, world, progress, hooks)
        if require_checkpoint and not ckpt.list_checkpoints(self.checkpoint_dir):
            raise MP3NetError(f"--resume: no checkpoint in {self.checkpoint_dir / ckpt.CKPT_DIR}")
        self.amp = self.resolve_amp(tc.amp)
        ops.configure_process(dev)
        # data first: a wrong or empty dataset fails before the models are built
        mc = cfg.model
        self.dataset = ClipDataset(self.data_dir, mc.clip_samples, mc.sample_rate, mc.channels)
        if mc.band_norm and not mc.band_rms:
            self.cfg = cfg = with_band_levels(cfg, self.dataset, self.run_dir, init_from, self.say)
        self._build(cfg)
        self.initialised_from: Path | None = None
        self.monitor = Monitor(cfg, self.data_dir, self.device, self.say)
        start: Start | None = None
        if self.is_main:
            ckpt.remove_partial(self.run_dir)
        state = self.resume(require_checkpoint)
        if state is not None:
            if self.is_main:  # a kill between checkpoint and export: bring the export up to it
                ckpt.refresh_export(self.run_dir, self.cfg, state, self.step)
        elif init_from is not None:
            start = load_start(init_from, cfg, self.device, init_optimizer)
            self._load_weights(start.G, start.G_ema, start.D, start.where)
            if start.optimizers is not None:
                self._load_optimizers(start.optimizers, start.where)
            self.initialised_from = start.where
        table = start.table if start is not None else None
        self.anchors = self._anchors(table) if tc.anchor > 0 else None
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            cfg.save(self.run_dir / "config.json")
            info = {"data": str(self.data_dir.resolve()), "world_size": world}
            ckpt.write_json(self.run_dir / RUN_INFO, info)
        self.start_logging(self.run_dir)

    def _build(self, cfg: Config) -> None:
        """G, D, the EMA of G, the noise layer, the optimisers and every random stream: the same on every
        rank (docs/training.md#exact-resume)."""
        tc, mc = cfg.train, cfg.model
        torch.manual_seed(tc.seed)
        self.G = Generator(mc).to(self.device)
        self.D = Discriminator(mc).to(self.device)
        ddp.broadcast_module(self.G)
        ddp.broadcast_module(self.D)
        self.ema = EMA(self.G, tc, self.world) if tc.ema else None
        self.g_params, self.d_params = trainable_parameters(self.G, self.D, tc.freeze_deep)
        # one Adam per network over all its parameters (a frozen run resumes a full one and back: frozen
        # parameters get no gradient, so Adam leaves them and their moments untouched)
        self.opt_G = torch.optim.Adam(self.G.parameters(), **adam_settings(tc, "G"))
        self.opt_D = torch.optim.Adam(self.D.parameters(), **adam_settings(tc, "D"))
        self.g_steps = 0
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(derive_seed(tc.seed, self.rank, 0))
        self.loss = GANLoss(tc, NoiseLayer(mc, tc.noise_sigma).to(self.device), self.gen, self._autocast)
        self.reals = RealStream(self.dataset, tc, self.rank, self.device, mc.n_bands)

    @property
    def G_ema(self) -> Generator | None:
        return self.ema.model if self.ema is not None else None

    def _anchors(self, source: AnchorTable | None) -> AnchorTable:
        """The anchor table on the training device (docs/training.md#anchored-gan; rank 0 keeps it)."""
        table = run_anchor_table(self.run_dir, source, len(self.dataset), write=self.is_main)
        table.latents = table.latents.to(self.device)
        return table

    # ---- state -----------------------------------------------------------------------------------------
    def _load_weights(self, g: dict, g_ema: dict, d: dict | None, where: str | Path) -> None:
        load_weights(self.G, g, where)
        if self.ema is not None:
            load_weights(self.ema.model, g_ema, where)
        if d is not None:
            load_weights(self.D, d, where)

    def _load_optimizers(self, state: dict[str, Any], where: str | Path) -> None:
        load_weights(self.opt_G, state["opt_G"], where)  # type: ignore[arg-type]
        load_weights(self.opt_D, state["opt_D"], where)  # type: ignore[arg-type]
        # a changed lr/betas in the config wins over the checkpoint's
        for net, opt in (("G", self.opt_G), ("D", self.opt_D)):
            for group in opt.param_groups:
                group.update(adam_settings(self.cfg.train, net))

    def state_dict(self) -> dict[str, Any]:
        """The full training state, every tensor copied to the CPU (training may go on while it is
        written). Collective under torchrun: every rank must call it."""
        mine = {"gen": self.gen.get_state().cpu(), "torch_cpu": torch.get_rng_state(), **self.reals.state()}
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
                "G_ema": self.ema.model.state_dict() if self.ema is not None else None,
                "opt_G": self.opt_G.state_dict(),
                "opt_D": self.opt_D.state_dict(),
                "rng": ddp.gather_objects(mine, self.world),
                "last_stats": dict(self.last),  # logged rows carry the latest G stats between G steps
            }
        )

    def load_state(self, state: dict[str, Any], where: Path) -> None:
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
            self.reals.load_state(r)
        else:
            # another world size: the streams cannot continue exactly; derive fresh per-rank ones
            self.say(
                f"note: {where} was written by {len(rngs)} ranks, now {self.world}: "
                "data and noise streams are re-seeded"
            )
            self.gen.manual_seed(derive_seed(self.cfg.train.seed, self.rank, self.step + 1))
            self.reals.restart(derive_seed(self.cfg.train.seed, self.step + 1))

    def reseed(self) -> None:
        seed = self.cfg.train.seed
        self.gen.manual_seed(derive_seed(seed, self.rank, self.step, self.rollbacks))
        self.reals.reseed(derive_seed(seed, self.rollbacks))

    def keep_last(self) -> int:
        return self.cfg.train.keep_last

    def save(self) -> None:
        """Checkpoint the current step and refresh the generator export (rank 0). Collective.

        The state is copied to the CPU here (the only part training waits for) and written by
        :class:`~mp3net.train.checkpoint.CheckpointWriter` in the background. Non-finite weights are
        reported and not written (the previous checkpoint stays the latest)."""
        state = self.state_dict()
        if self.is_main:
            weights = state["G_ema"] if state["G_ema"] is not None else state["G"]
            self.writer.submit(state, self.step, self.cfg, weights)
        self.checkpointed()

    # ---- one iteration ---------------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.amp else nullcontext()

    def _z(self) -> torch.Tensor:
        B, L = self.cfg.train.batch_size, self.cfg.model.latent_dim
        return torch.randn(B, L, generator=self.gen, device=self.device)

    def _phase(self, train_g: bool) -> None:
        train_only([self.G, self.D], self.g_params if train_g else self.d_params)

    def _apply(self, opt: torch.optim.Optimizer, params: list, loss: torch.Tensor) -> tuple[float, bool]:
        """Average gradients over ranks; step unless loss or gradients are not finite. (grad norm, ok)."""
        ddp.allreduce_grads(params, self.world)
        gn = _grad_norm(params)
        ok = ddp.all_agree(math.isfinite(gn) and math.isfinite(float(loss.detach())), self.device)
        if ok:
            opt.step()
        opt.zero_grad(set_to_none=True)
        return gn, ok

    def _fakes(self, grad: bool, z: torch.Tensor | None = None) -> torch.Tensor:
        """A batch of fakes ``[B, C, M, K]`` float32 from latents ``z`` (default: fresh ones): with ``grad``
        through G's forward, else through its inference path (the device's layout and tiles)."""
        z = self._z() if z is None else z
        with self._autocast():
            return self.G(z).float() if grad else self.G.generate(z)

    def d_step(self, real: torch.Tensor) -> tuple[dict[str, float], bool]:
        """One D update on reals ``[B, C, M, K]`` and fresh fakes, then the lazy penalty when it is due."""
        self._phase(train_g=False)
        fake = self._fakes(grad=False)
        real_n, fake_n = self.loss.to_d(real), self.loss.to_d(fake)
        st = self.loss.d_main(self.D, real_n, fake_n)
        gn, ok = self._apply(self.opt_D, self.d_params, st["d_loss"])
        if self.loss.regularise_now(self.step):
            reg = self.loss.d_reg(self.D, real_n, fake_n)
            _, ok_reg = self._apply(self.opt_D, self.d_params, reg.pop("d_reg"))
            ok = ok and ok_reg
            st.update(reg)
        stats = {_STAT_NAMES.get(k, k): float(v) for k, v in st.items()}
        stats["grad_norm/d"] = gn
        # tonality of fakes and reals alike, un-noised (docs/differences.md#logging-and-evaluation)
        with torch.no_grad():
            stats["tonality/fake"] = float(tonality(fake).mean())
            stats["tonality/real"] = float(tonality(real).mean())
        return stats, ok

    def g_step(self) -> tuple[dict[str, float], bool]:
        """One G update through D (frozen) on fresh fakes, with the anchor term when it is on."""
        tc = self.cfg.train
        self._phase(train_g=True)
        loss, st = self.loss.g_main(self.D, self._fakes(grad=True))
        stats = {_STAT_NAMES.get(k, k): float(v) for k, v in st.items() if k != "d_fake"}
        if self.anchors is not None:  # train.anchor > 0
            rec = self._anchor_loss(self.anchors)
            loss = loss + tc.anchor * rec
            stats["loss/anchor"] = float(rec.detach())
        loss.backward()
        gn, ok = self._apply(self.opt_G, self.g_params, loss)
        if ok:
            self.g_steps += 1
            if self.ema is not None:
                self.ema.update(self.G, self.g_steps)
        return {**stats, "grad_norm/g": gn}, ok

    def _anchor_loss(self, table: AnchorTable) -> torch.Tensor:
        """The anchor term (docs/training.md#anchored-gan): ``batch_size`` rows of the table drawn from this
        rank's stream, their clips' :func:`~mp3net.train.losses.spectral_reconstruction` (dB / 20)."""
        rows = torch.randint(
            len(table.clips), (self.cfg.train.batch_size,), generator=self.gen, device=self.device
        )
        target = mdct(table.clips_audio(self.dataset, rows).to(self.device), self.cfg.model.n_bands)
        pc = self.cfg.pretrain
        with self._autocast():  # the table's rows are latents already: past the sampler
            fake = self.G.decode(table.latents[rows]).float()
        return spectral_reconstruction(fake, target, pc.ffts, pc.envelope, pc.mid_side, pc.floor_db)

    def train_step(self) -> dict[str, float]:
        """One D iteration (and the G step when it is due). Returns this rank's scalars, ``ok`` included."""
        tc = self.cfg.train
        t0 = time.perf_counter()
        real = self.reals.next()
        t_data = time.perf_counter() - t0
        warm_up({"G": self.opt_G, "D": self.opt_D}, self.cfg.train, self.step)
        stats, ok = self.d_step(real)
        if (self.step + 1) % tc.n_critic == 0:
            g_stats, ok_g = self.g_step()
            stats.update(g_stats)
            ok = ok and ok_g
        self._phase(train_g=False)
        self.step += 1
        dt = time.perf_counter() - t0
        clips = tc.batch_size * self.world
        stats["time/step"], stats["time/data_wait"] = dt, t_data
        stats["audio_seconds_per_s"] = clips * self.cfg.model.clip_seconds / max(dt, 1e-9)
        stats["clips_seen"] = float(self.step * clips)
        stats["ok"] = 1.0 if ok else 0.0
        return stats

    # ---- between steps ---------------------------------------------------------------------------------
    def postfix(self) -> str:
        g = self.last.get("loss/g")  # no G step yet in the first n_critic iterations
        d, w = self.last.get("loss/d", math.nan), self.last.get("w_distance", math.nan)
        return f"D {d:.3f} G {'-' if g is None else f'{g:.3f}'} W {w:.3f}"

    def periodic(self) -> None:
        tc = self.cfg.train
        if tc.sample_every > 0 and self.step % tc.sample_every == 0:
            self.sample()
        if tc.eval_every > 0 and self.step % tc.eval_every == 0:
            self.evaluate()

    def sample(self) -> None:
        """Fixed-seed fakes of the EMA generator → audio and images in the logs (rank 0)."""
        if self.is_main:
            self.monitor.sample(self.G_ema or self.G, self.step, self.logger)

    def evaluate(self) -> dict[str, float]:
        """`mp3net evaluate`'s metrics of the EMA generator's fixed-seed fakes, logged as ``eval/*`` (rank 0;
        {} on other ranks; :class:`~mp3net.train.monitor.Monitor`)."""
        return self.monitor.evaluate(self.G_ema or self.G, self.step, self.logger) if self.is_main else {}


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
    ``init_from`` when given), train to ``steps`` D iterations (default ``train.max_steps``, or for
    ``seconds``), checkpoint, and return it."""
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
        trainer.run(cfg.train.max_steps if steps is None else steps, seconds=seconds)
    finally:
        trainer.close()
    return trainer
