"""Data parallelism for the trainer (docs/training.md#data-parallel): process group set-up and the few
collectives the training loop needs. Every function is a no-op in a single process."""

from __future__ import annotations

import importlib
import os
from typing import Any

import torch
from torch import nn

from mp3net.utils import MP3NetError


def group() -> Any:
    """``torch.distributed`` when a process group is initialised, else None."""
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
            # torch.distributed.nn.functional binds group.WORLD into default arguments when first imported
            # (torch.optim imports it through torch._dynamo): imported once the group exists, it keeps the
            # group alive past destroy_process_group, and gloo's worker threads then outlive the interpreter,
            # a rare SIGABRT at exit ("terminate called without an active exception")
            importlib.import_module("torch.distributed.nn.functional")
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        return rank, world, dev
    return 0, 1, torch.device(want)


def allreduce_grads(params: list[nn.Parameter], world: int) -> None:
    """Average the gradients of ``params`` over ranks (one flat all-reduce)."""
    dist = group()
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


def allreduce_sparse_grad(weight: torch.Tensor, rows: torch.Tensor, world: int) -> None:
    """Average the sparse gradient of an embedding table ``weight`` over ranks, for SparseAdam.

    Each rank's gradient covers its own rows; its dense form is summed over ranks and divided by ``world``
    (the gradient of the mean loss over all ranks' batches, as :func:`allreduce_grads` gives the networks),
    then set back as a sparse gradient over ``rows``, every rank's rows (a tensor all ranks know), so that
    every rank's optimiser updates the same rows by the same amounts and the tables stay identical."""
    dist = group()
    if dist is None or world == 1:
        return
    grad = weight.grad
    dense = grad.to_dense() if grad is not None else torch.zeros_like(weight)
    dist.all_reduce(dense)
    dense /= world
    index = torch.unique(rows.to(dense.device))  # sorted, no repeats: a coalesced gradient
    weight.grad = torch.sparse_coo_tensor(
        index[None], dense[index], dense.shape, is_coalesced=True, check_invariants=False
    )


def allreduce_mean(values: dict[str, float], world: int, device: torch.device) -> dict[str, float]:
    """The mean of each scalar over ranks."""
    dist = group()
    if dist is None or world == 1:
        return values
    keys = sorted(values)
    # collectives run on the training device (NCCL only reduces CUDA tensors)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / world for k, v in zip(keys, t.tolist(), strict=True)}


def all_agree(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` holds on every rank (one decision for all)."""
    dist = group()
    if dist is None:
        return flag
    t = torch.tensor([0.0 if flag else 1.0], device=device)
    dist.all_reduce(t)
    return float(t) == 0.0


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` holds on some rank."""
    return not all_agree(not flag, device)


def broadcast_module(m: nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank."""
    dist = group()
    if dist is None:
        return
    for t in list(m.parameters()) + list(m.buffers()):
        dist.broadcast(t.data, src=0)


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` (picklable) on every rank (``obj`` in a single process)."""
    dist = group()
    if dist is None:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any, world: int) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    dist = group()
    if dist is None or world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def close() -> None:
    dist = group()
    if dist is not None:
        dist.barrier()
        dist.destroy_process_group()
