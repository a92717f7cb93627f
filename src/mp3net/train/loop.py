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
import os
import signal
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mp3net.config import Config
from mp3net.data import ClipDataset, CropSampler
from mp3net.dsp import imdct, mdct, tonality
from mp3net.model import Discriminator, Generator, NoiseLayer
from mp3net.train import checkpoint as ckpt
from mp3net.train.logging import RunLogger
from mp3net.train.losses import d_loss, g_loss
from mp3net.utils import MP3NetError, keep_freed_memory

MAX_BAD_STEPS = 8  # consecutive non-finite steps before rolling back to the last checkpoint
MAX_ROLLBACKS = 3  # rollbacks before giving up
RUN_INFO = "run.json"


# ---------------------------------------------------------------------------------------------------------
# distributed helpers
# ---------------------------------------------------------------------------------------------------------
def _dist() -> Any:
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def init_distributed(device: str | None) -> tuple[int, int, torch.device]:
    """(rank, world size, device). Initialises the process group when launched by torchrun."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    want = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise MP3NetError("--device cuda requested but no CUDA device is available")
    if world > 1:
        if want.startswith("cuda"):
            dev = torch.device("cuda", local)
            torch.cuda.set_device(dev)
        else:
            dev = torch.device(want)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        return rank, world, dev
    return 0, 1, torch.device(want)


def _allreduce_grads(params: list[nn.Parameter], world: int) -> None:
    """Average the gradients of ``params`` over ranks (one flat all-reduce)."""
    dist = _dist()
    if dist is None or world == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def _allreduce_mean(values: dict[str, float], world: int, device: torch.device) -> dict[str, float]:
    dist = _dist()
    if dist is None or world == 1:
        return values
    keys = sorted(values)
    # collectives run on the training device (NCCL only reduces CUDA tensors)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / world for k, v in zip(keys, t.tolist(), strict=True)}


def _broadcast_module(m: nn.Module) -> None:
    dist = _dist()
    if dist is None:
        return
    for t in list(m.parameters()) + list(m.buffers()):
        dist.broadcast(t.data, src=0)


# ---------------------------------------------------------------------------------------------------------
# model surgery: freezing and activation checkpointing
# ---------------------------------------------------------------------------------------------------------
def trainable_parameters(G: Generator, D: Discriminator, freeze_deep: int) -> tuple[list, list]:
    """Parameters of G and D that train. With ``freeze_deep = k > 0`` only the k shallowest blocks of each
    (plus G's output layer and D's input layer, which sit on the shallow side) train: paper §4.3.1."""
    if freeze_deep <= 0:
        return list(G.parameters()), list(D.parameters())
    k = min(freeze_deep, len(G.blocks))
    g = [p for b in list(G.blocks)[-k:] for p in b.parameters()] + list(G.to_out.parameters())
    d = list(D.from_in.parameters()) + [p for b in list(D.blocks)[:k] for p in b.parameters()]
    return g, d


def enable_grad_checkpoint(blocks: nn.ModuleList) -> None:
    """Recompute each block's activations in the backward pass instead of storing them.

    Non-reentrant checkpointing supports the gradient penalty's double backward. The module structure and
    state-dict keys are unchanged (only the instances' ``forward`` is wrapped).
    """
    from torch.utils.checkpoint import checkpoint

    for block in blocks:
        inner = block.forward

        def forward(x: torch.Tensor, masks: list | None = None, _inner: Callable = inner) -> torch.Tensor:
            if masks is not None:  # D.input_gradient's recording pass: not checkpointed
                return _inner(x, masks)
            if torch.is_grad_enabled():
                return checkpoint(_inner, x, use_reentrant=False)
            return _inner(x)

        block.forward = forward


def _state_of(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


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
    ) -> None:
        self.cfg, self.run_dir, self.data_dir = cfg, Path(run_dir), Path(data_dir)
        self.rank, self.world, self.device = init_distributed(device)
        self.is_main = self.rank == 0
        self.progress, self.hooks = progress and self.is_main, list(hooks or [])
        tc, mc = cfg.train, cfg.model
        amp = tc.amp if tc.amp != "auto" else ("bf16" if self.device.type == "cuda" else "off")
        if amp not in ("bf16", "off"):
            raise MP3NetError(f"train.amp must be auto, bf16 or off, got {tc.amp!r}")
        self.amp = amp == "bf16"
        if self.device.type == "cpu":
            keep_freed_memory()  # reuse freed activation memory instead of page-faulting it in afresh

        # data (fails early, before the models are built, on a wrong or empty dataset)
        self.dataset = ClipDataset(self.data_dir, mc.clip_samples, mc.sample_rate, mc.channels)

        # models: identical initialisation on every rank (same seed), then broadcast to be sure
        torch.manual_seed(tc.seed)
        self.G = Generator(mc).to(self.device)
        self.D = Discriminator(mc).to(self.device)
        _broadcast_module(self.G)
        _broadcast_module(self.D)
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False).eval() if tc.ema else None
        if tc.grad_checkpoint:
            enable_grad_checkpoint(self.G.blocks)
            enable_grad_checkpoint(self.D.blocks)
        self.noise = NoiseLayer(mc, tc.noise_sigma).to(self.device)
        self.g_params, self.d_params = trainable_parameters(self.G, self.D, tc.freeze_deep)
        # the optimisers hold every parameter, so a frozen run resumes a full one (and back): frozen
        # parameters get no gradient and Adam leaves them, and their moments, untouched
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=tc.lr, betas=tuple(tc.betas))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=tc.lr, betas=tuple(tc.betas))

        self.step = 0  # D iterations done
        self.g_steps = 0
        self.consumed = 0  # data batches consumed by this rank
        self.rollbacks = 0
        self.bad_steps = 0
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(_seed(tc.seed, self.rank, 0))
        self.sampler = CropSampler(len(self.dataset), tc.batch_size, seed=tc.seed, rank=self.rank)
        zg = torch.Generator().manual_seed(_seed(tc.seed, 2**31 - 1))
        self.z_fixed = torch.randn(tc.n_samples, mc.latent_dim, generator=zg).to(self.device)
        self.last: dict[str, float] = {}
        self._stop = False
        self._loader = None
        self._last_ckpt_step = -1
        self.resumed_from: Path | None = None

        if self.is_main:
            ckpt.remove_partial(self.run_dir)
        self._resume(require_checkpoint)
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            cfg.save(self.run_dir / "config.json")
            ckpt.write_json(
                self.run_dir / RUN_INFO, {"data": str(self.data_dir.resolve()), "world_size": self.world}
            )
        self.logger = RunLogger(self.run_dir, self.step, enabled=self.is_main)

    # ---- state -----------------------------------------------------------------------------------------
    def _rng_state(self) -> dict[str, Any]:
        return {
            "gen": self.gen.get_state(),
            "torch_cpu": torch.get_rng_state(),
            "sampler": self.sampler.state_dict(self.consumed),
        }

    def state_dict(self) -> dict[str, Any]:
        """The full training state. Collective under torchrun: every rank must call it."""
        rng = [self._rng_state()]
        dist = _dist()
        if dist is not None and self.world > 1:
            gathered: list[Any] = [None] * self.world
            mine = {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in rng[0].items()}
            dist.all_gather_object(gathered, mine)
            rng = gathered
        return {
            "format": "mp3net-train",
            "step": self.step,
            "g_steps": self.g_steps,
            "rollbacks": self.rollbacks,
            "world_size": self.world,
            "config": self.cfg.to_dict(),
            "G": _state_of(self.G),
            "D": _state_of(self.D),
            "G_ema": _state_of(self.G_ema) if self.G_ema is not None else None,
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "rng": rng,
        }

    def load_state_dict(self, state: dict[str, Any], where: str | Path) -> None:
        if state.get("format") != "mp3net-train":
            raise MP3NetError(f"{where} is not an mp3net training checkpoint")
        ckpt.check_compatible(state["config"], self.cfg, where)
        try:
            self.G.load_state_dict(state["G"])
            self.D.load_state_dict(state["D"])
            if self.G_ema is not None:
                self.G_ema.load_state_dict(state["G_ema"] if state.get("G_ema") is not None else state["G"])
            self.opt_G.load_state_dict(state["opt_G"])
            self.opt_D.load_state_dict(state["opt_D"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise MP3NetError(f"{where} does not match this model: {str(e).splitlines()[0]}") from None
        self.step, self.g_steps = int(state["step"]), int(state["g_steps"])
        self.rollbacks = int(state.get("rollbacks", 0))
        for opt in (self.opt_G, self.opt_D):  # a changed lr/betas in the config wins over the checkpoint's
            for group in opt.param_groups:
                group["lr"], group["betas"] = self.cfg.train.lr, tuple(self.cfg.train.betas)
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
            self.gen.manual_seed(_seed(self.cfg.train.seed, self.rank, self.step + 1))
            self.sampler.seed = _seed(self.cfg.train.seed, self.step + 1)
            self.consumed = self.sampler.start = 0
        self._last_ckpt_step = self.step

    def _resume(self, require: bool) -> None:
        found = ckpt.load_latest(self.run_dir, map_location=self.device)
        if found is None:
            if require:
                raise MP3NetError(f"--resume: no checkpoint in {self.run_dir / ckpt.CKPT_DIR}")
            return
        state, path = found
        self.load_state_dict(state, path)
        self.resumed_from = path

    def save(self) -> Path | None:
        """Write a checkpoint of the current step and the generator export (rank 0). Collective.

        Non-finite weights are reported and not written (the previous checkpoint stays the latest)."""
        state = self.state_dict()
        path = None
        if self.is_main:
            try:
                path = ckpt.save_checkpoint(self.run_dir, state, self.step, self.cfg.train.keep_last)
                G = self.G_ema if self.G_ema is not None else self.G
                ckpt.export_generator(self.run_dir / ckpt.EXPORT_DIR, self.cfg, _state_of(G), self.step)
            except ckpt.NonFiniteWeights as e:
                self._say(str(e))
        self._last_ckpt_step = self.step
        return path

    def _rollback(self) -> None:
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
        self.rollbacks = rollbacks
        # new random streams, or the same batch and noise would diverge again
        self.gen.manual_seed(_seed(self.cfg.train.seed, self.rank, self.step, rollbacks))
        self.sampler.seed = _seed(self.cfg.train.seed, rollbacks)
        self._loader = None
        self.bad_steps = 0
        self._say(f"rolled back to {path.name} (step {self.step}) with fresh random streams")

    # ---- data ------------------------------------------------------------------------------------------
    def _batches(self):
        from torch.utils.data import DataLoader

        self.sampler.start = self.consumed
        nw = max(0, self.cfg.train.num_workers)
        loader = DataLoader(
            self.dataset,
            batch_sampler=self.sampler,
            num_workers=nw,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if nw else None,
            persistent_workers=False,
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
        _allreduce_grads(params, self.world)
        gn = _grad_norm(params)
        ok = math.isfinite(gn) and math.isfinite(float(loss.detach()))
        dist = _dist()
        if dist is not None and self.world > 1:  # every rank must take the same decision
            flag = torch.tensor([0.0 if ok else 1.0], device=self.device)
            dist.all_reduce(flag)
            ok = float(flag) == 0.0
        if ok:
            opt.step()
        opt.zero_grad(set_to_none=True)
        return gn, ok

    def _update_ema(self) -> None:
        if self.G_ema is None:
            return
        # short warm-up so early samples do not average over the random initialisation
        decay = min(self.cfg.train.ema_decay, (1 + self.g_steps) / (10 + self.g_steps))
        with torch.no_grad():
            ema = list(self.G_ema.parameters())
            cur = [p.detach() for p in self.G.parameters()]
            torch._foreach_lerp_(ema, cur, 1.0 - decay)
            for be, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
                be.copy_(b)

    def train_step(self) -> dict[str, float]:
        """One D iteration (and the G step when it is due). Returns this rank's scalars."""
        tc = self.cfg.train
        t0 = time.perf_counter()
        real = self._next_real()
        t_data = time.perf_counter() - t0
        stats: dict[str, float] = {}

        # ---- discriminator
        self._phase(train_g=False)
        with torch.no_grad(), self._autocast():
            # on CPU the inference path's time tiles keep the widest blocks' activations in cache
            fake = self.G(self._z(), tile_frames=64 if self.device.type == "cpu" else None).float()
        # D runs channels-last: oneDNN's fast layout, with mp3net.model.conv's weight gradient on CPU
        real_n = self.noise(real, generator=self.gen).contiguous(memory_format=torch.channels_last)
        fake_n = self.noise(fake, generator=self.gen).contiguous(memory_format=torch.channels_last)
        with self._autocast():  # backpropagated term by term inside: one graph alive at a time
            loss, st = d_loss(self.D, real_n, fake_n, tc.gp_lambda, tc.drift, self.gen, backward=True)
        gn_d, ok_d = self._apply(self.opt_D, self.d_params, loss)
        stats.update(
            {
                "loss/d": float(st["d_loss"]),
                "w_distance": float(st["w_distance"]),
                "gp": float(st["gp"]),
                "drift": float(st["drift"]),
                "score/real": float(st["d_real"]),
                "score/fake": float(st["d_fake"]),
                "grad_norm/d": gn_d,
            }
        )
        # tonality of fakes and reals alike, un-noised (docs/differences.md#logging-and-evaluation)
        with torch.no_grad():
            stats["tonality/fake"] = float(tonality(fake).mean())
            stats["tonality/real"] = float(tonality(real).mean())
        del fake, fake_n, real_n, loss
        ok = ok_d

        # ---- generator, after every n_critic D steps
        if (self.step + 1) % max(1, tc.n_critic) == 0:
            self._phase(train_g=True)
            with self._autocast():
                fake = self.G(self._z()).float()
            fake_n = self.noise(fake, generator=self.gen)  # in-graph threshold: G's gradient flows through it
            fake_n = fake_n.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                loss_g, st_g = g_loss(self.D, fake_n)
            loss_g.backward()
            gn_g, ok_g = self._apply(self.opt_G, self.g_params, loss_g)
            if ok_g:
                self.g_steps += 1
                self._update_ema()
            stats.update({"loss/g": float(st_g["g_loss"]), "grad_norm/g": gn_g})
            ok = ok and ok_g
        self._phase(train_g=False)
        self.step += 1
        dt = time.perf_counter() - t0
        stats.update(
            {
                "time/step": dt,
                "time/data_wait": t_data,
                "audio_seconds_per_s": tc.batch_size
                * self.world
                * self.cfg.model.clip_seconds
                / max(dt, 1e-9),
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
        dist = _dist()
        if dist is None or self.world == 1:
            return self._stop
        flag = torch.tensor([1.0 if self._stop else 0.0], device=self.device)
        dist.all_reduce(flag)
        return float(flag) > 0

    def sample(self) -> None:
        """Fixed-seed fakes of the EMA generator → audio and images in the logs (rank 0)."""
        if not self.is_main or self.cfg.train.n_samples <= 0:
            return
        G = self.G_ema if self.G_ema is not None else self.G
        with torch.no_grad():
            A = G(self.z_fixed).float()
            audio = imdct(A, trim=True)
        self.logger.samples(self.step, A.cpu(), audio.cpu(), self.cfg.model.sample_rate)

    def run(self, total_steps: int | None = None) -> int:
        """Train until ``step == total_steps`` (default ``train.max_steps``) or a stop request.

        Returns the step reached."""
        tc = self.cfg.train
        total = tc.max_steps if total_steps is None else int(total_steps)
        handlers = {}
        if self._in_main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, self._on_signal)
        bar = None
        if self.progress and self.step < total:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=self.step, unit="it", dynamic_ncols=True, desc="train")
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
                stats = _allreduce_mean(stats, self.world, self.device)
                self.last.update(stats)
                if bar is not None:
                    bar.update(1)
                    g = self.last.get("loss/g")  # no G step yet in the first n_critic iterations
                    bar.set_postfix_str(
                        f"D {self.last['loss/d']:.3f} G {'-' if g is None else f'{g:.3f}'} "
                        f"W {self.last['w_distance']:.3f}",
                        refresh=False,
                    )
                if self.step % max(1, tc.log_every) == 0 or self.step == 1:
                    self.logger.scalars(self.step, dict(self.last))
                if tc.sample_every > 0 and self.step % tc.sample_every == 0:
                    self.sample()
                if tc.ckpt_every > 0 and self.step % tc.ckpt_every == 0:
                    self.save()
                for hook in self.hooks:
                    hook(self)
        finally:
            if bar is not None:
                bar.close()
            for sig, h in handlers.items():
                signal.signal(sig, h)
        if self._last_ckpt_step != self.step:
            self.save()
        if self._stop:
            self._say(f"stopped at step {self.step}; checkpoint written, resume by running the same command")
        self.logger.flush()
        return self.step

    def close(self) -> None:
        self.logger.close()
        self._loader = None
        dist = _dist()
        if dist is not None and self.world > 1:
            dist.barrier()
            dist.destroy_process_group()

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
) -> Trainer:
    """Build a :class:`Trainer` (resuming from ``run_dir`` when it holds a checkpoint), train to ``steps``
    D iterations, checkpoint, and return it."""
    trainer = Trainer(
        cfg,
        data_dir,
        run_dir,
        device=device,
        require_checkpoint=require_checkpoint,
        progress=progress,
        hooks=hooks,
    )
    try:
        trainer.run(steps)
    finally:
        trainer.close()
    return trainer
