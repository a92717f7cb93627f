"""Data-parallel training under ``torchrun --nproc_per_node 2`` with gloo on CPU."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FAST, fast_config

from mp3net.train import checkpoint as ckpt
from mp3net.train.pretrain import Pretrainer

WORKER = """
import hashlib, json, os, sys
import torch
from mp3net import preset
from mp3net.train.gan import train

data, run, out = sys.argv[1:4]
cfg = preset("tiny").override(sys.argv[4:])
records = []

def digest(m):
    h = hashlib.sha256()
    for t in m.state_dict().values():
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()

def hook(tr):
    records.append({"step": tr.step, "G": digest(tr.G), "D": digest(tr.D),
                    "G_ema": digest(tr.G_ema), "first_batch": tr.reals.sampler.batch(0)})

tr = train(cfg, data, run, steps=6, progress=False, hooks=[hook])
with open(os.path.join(out, f"rank{tr.rank}.json"), "w") as f:
    json.dump({"rank": tr.rank, "world": tr.world, "records": records}, f)
"""


# rank 0's checkpoint writes fail (a full disk); every rank must stop with an error, none may hang
FAILING_WORKER = """
import json, os, sys
from mp3net import preset
from mp3net.train import checkpoint as ckpt
from mp3net.train.gan import Trainer
from mp3net.utils import MP3NetError

def full_disk(*args, **kwargs):
    raise OSError(28, "No space left on device")

ckpt.save_checkpoint = full_disk
data, run, out = sys.argv[1:4]
tr = Trainer(preset("tiny").override(sys.argv[4:]), data, run, progress=False)
try:
    tr.run(3)
    outcome = "finished"
except MP3NetError as e:
    outcome = str(e)
with open(os.path.join(out, f"rank{tr.rank}.json"), "w") as f:
    json.dump({"rank": tr.rank, "outcome": outcome}, f)
sys.exit(0 if outcome == "finished" else 1)
"""

# pretraining: two steps, then a new trainer on every rank resumes from the checkpoint and goes on to four
PRETRAIN_WORKER = """
import hashlib, json, os, sys
import torch
from mp3net import preset
from mp3net.train import distributed as ddp
from mp3net.train.pretrain import Pretrainer

data, run, out = sys.argv[1:4]
cfg = preset("tiny").override(sys.argv[4:])
records = []

def digest(*tensors):
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()

def hook(t):
    records.append({"step": t.step, "G": digest(*t.G.state_dict().values()),
                    "table": digest(t.latents.weight), "rows": t.batch(t.step - 1).tolist(),
                    "every": t.global_batch(t.step - 1).tolist(), "loss": t.last["loss"]})

first = Pretrainer(cfg, data, run, progress=False)
start = first.latents.weight.detach().clone()
first.hooks.append(hook)
first.run(2)
first.logger.close()
t = Pretrainer(cfg, data, run, progress=False)
resumed = t.step
t.hooks.append(hook)
t.run(4)
changed = (t.latents.weight != start).any(1).nonzero().flatten().tolist()
# a non-finite loss on rank 1 alone: both ranks skip the step
import mp3net.train.pretrain as pretrain
loss = pretrain.spectral_reconstruction
pretrain.spectral_reconstruction = lambda *a, **k: loss(*a, **k) * (float("nan") if t.rank == 1 else 1.0)
skipped = {"ok": t.train_step().get("ok", 1.0), "step": t.step, "G": digest(*t.G.state_dict().values()),
           "table": digest(t.latents.weight)}
pretrain.spectral_reconstruction = loss
# a table gradient of known values: rank r's rows r and 4 hold r + 1 (rows 0, 4, 1, 4 in all)
w = torch.nn.Parameter(torch.zeros(6, 2))
w.grad = torch.sparse_coo_tensor(torch.tensor([[t.rank, 4]]), torch.full((2, 2), t.rank + 1.0), (6, 2))
ddp.allreduce_sparse_grad(w, torch.tensor([0, 4, 1, 4]), t.world)
shared = {"indices": w.grad.coalesce().indices().tolist(), "dense": w.grad.to_dense().tolist()}
result = {"rank": t.rank, "world": t.world, "resumed": resumed, "start": digest(start), "changed": changed,
          "records": records, "shared": shared, "skipped": skipped}
t.close()
# the threads left (Linux): none of gloo's may outlive close() into the interpreter's exit
tasks = "/proc/self/task"
tids = os.listdir(tasks) if os.path.isdir(tasks) else []
result["threads"] = [open(f"{tasks}/{x}/comm").read().strip() for x in tids]
with open(os.path.join(out, f"rank{t.rank}.json"), "w") as f:
    json.dump(result, f)
"""
# the same with pretraining, whose rank 0 writes in the step (the disk's error itself on rank 0)
PRETRAIN_FAILING_WORKER = FAILING_WORKER.replace(
    "from mp3net.train.gan import Trainer", "from mp3net.train.pretrain import Pretrainer as Trainer"
).replace("except MP3NetError as e:", "except (MP3NetError, OSError) as e:")
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent))
needs_torchrun = pytest.mark.skipif(TORCHRUN is None, reason="torchrun not installed")


def _torchrun(worker: str, tmp_path: Path, data: Path, *overrides: str) -> subprocess.CompletedProcess:
    """Two gloo ranks of ``worker`` (argv: data, run, out, overrides); they write to ``tmp_path/out``."""
    run, out = tmp_path / "run", tmp_path / "out"
    out.mkdir()
    script = tmp_path / "worker.py"
    script.write_text(worker)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    port = str(29500 + (os.getpid() + len(overrides)) % 1000)
    cmd = [
        TORCHRUN,
        "--nproc_per_node",
        "2",
        "--master_port",
        port,
        str(script),
        str(data),
        str(run),
        str(out),
    ]
    return subprocess.run([*cmd, *FAST, *overrides], capture_output=True, text=True, env=env, timeout=300)


@needs_torchrun
def test_a_failed_checkpoint_write_stops_every_rank(notes_dataset, tmp_path):
    """Only rank 0 writes; when its write fails (here the final one, waited for after the loop), every rank
    stops with a one-line error instead of waiting forever in a collective."""
    proc = _torchrun(FAILING_WORKER, tmp_path, notes_dataset, "train.ckpt_every=0", "train.ckpt_minutes=0")
    assert proc.returncode != 0
    r0, r1 = (json.loads((tmp_path / "out" / f"rank{i}.json").read_text()) for i in range(2))
    assert "No space left on device" in r0["outcome"] and "\n" not in r0["outcome"]
    assert "rank 0 could not write its checkpoint" in r1["outcome"]


@needs_torchrun
def test_a_failed_pretraining_checkpoint_write_stops_every_rank(notes_dataset, tmp_path):
    proc = _torchrun(PRETRAIN_FAILING_WORKER, tmp_path, notes_dataset, *PRE, "pretrain.batch_size=2")
    assert proc.returncode != 0
    r0, r1 = (json.loads((tmp_path / "out" / f"rank{i}.json").read_text()) for i in range(2))
    assert "No space left on device" in r0["outcome"]
    assert "rank 0 could not write its checkpoint" in r1["outcome"]


@needs_torchrun
def test_torchrun_two_ranks_stay_in_sync_and_write_once(notes_dataset, tmp_path):
    run = tmp_path / "run"
    proc = _torchrun(WORKER, tmp_path, notes_dataset, "train.ckpt_every=3", "train.log_every=1")
    out = tmp_path / "out"
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((out / f"rank{i}.json").read_text()) for i in range(2))
    assert r0["world"] == r1["world"] == 2
    # identical weights on both ranks after every step, and the weights do change
    assert [x["step"] for x in r0["records"]] == [x["step"] for x in r1["records"]] == list(range(1, 7))
    for a, b in zip(r0["records"], r1["records"], strict=True):
        assert (a["G"], a["D"], a["G_ema"]) == (b["G"], b["D"], b["G_ema"]), a["step"]
    assert len({x["D"] for x in r0["records"]}) == 6
    # ...while each rank reads its own crops
    assert r0["records"][0]["first_batch"] != r1["records"][0]["first_batch"]
    # one set of logs and checkpoints: no duplicated metrics lines, one event file, checkpoints of both ranks'
    # random streams
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))
    assert len(list((run / "tb").glob("events.out.tfevents.*"))) == 1
    assert [s for s, _ in ckpt.list_checkpoints(run)] == [3, 6]
    state, _ = ckpt.load_latest(run)
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert state["rng"][0]["sampler"]["rank"] == 0 and state["rng"][1]["sampler"]["rank"] == 1
    digest = hashlib.sha256()
    for t in state["D"].values():
        digest.update(t.contiguous().numpy().tobytes())
    assert digest.hexdigest() == r0["records"][-1]["D"]


PRE = ["pretrain.clips=8", "pretrain.ckpt_every=1000", "pretrain.eval_clips=0", "pretrain.ffts=[256, 512]"]


@needs_torchrun
def test_torchrun_pretraining_shares_the_table_and_is_the_larger_batch(notes_dataset, tmp_path, one_thread):
    """Two ranks of batch 2 pretrain on their own rows of each step's four; G's and the table's gradients
    are averaged, so both ranks hold the same G and table after every step (the table's rows trained by
    either rank change on both), a resume under torchrun continues on every rank, rank 0 alone writes, and
    the run is the single-process run of batch 4 up to rounding."""
    run = tmp_path / "run"
    proc = _torchrun(PRETRAIN_WORKER, tmp_path, notes_dataset, *PRE, "pretrain.batch_size=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / "out" / f"rank{i}.json").read_text()) for i in range(2))
    assert r0["world"] == r1["world"] == 2 and r0["resumed"] == r1["resumed"] == 2
    assert r0["start"] == r1["start"]  # rank 0's principal-component start, everywhere
    assert [x["step"] for x in r0["records"]] == [x["step"] for x in r1["records"]] == [1, 2, 3, 4]
    for a, b in zip(r0["records"], r1["records"], strict=True):
        assert (a["G"], a["table"], a["loss"]) == (b["G"], b["table"], b["loss"]), a["step"]
        # one global batch of four rows, each rank its own half
        assert a["every"] == b["every"] and len(a["every"]) == 4
        assert a["rows"] == a["every"][:2] and b["rows"] == a["every"][2:]
    assert len({x["G"] for x in r0["records"]}) == len({x["table"] for x in r0["records"]}) == 4
    assert any(a["rows"] != b["rows"] for a, b in zip(r0["records"], r1["records"], strict=True))
    # the rows either rank trained moved on both ranks, and no other row did
    trained = sorted({i for x in r0["records"] for i in x["every"]})
    only_1 = {i for x in r1["records"] for i in x["rows"]} - {i for x in r0["records"] for i in x["rows"]}
    assert r0["changed"] == r1["changed"] == trained and only_1
    # rank 0 wrote once: one row per step, fit rows at the two checkpoints
    pre = run / "pretrain"
    assert [json.loads(x)["step"] for x in (pre / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    assert [json.loads(x)["step"] for x in (pre / "fit.jsonl").read_text().splitlines()] == [2, 4]
    assert [s for s, _ in ckpt.list_checkpoints(pre)] == [2, 4]
    state, _ = ckpt.load_latest(pre)
    digest = hashlib.sha256()
    digest.update(state["latents"]["weight"].contiguous().numpy().tobytes())
    assert digest.hexdigest() == r0["records"][-1]["table"]
    # the process group was torn down with its worker threads (else a rare SIGABRT at exit)
    assert not [x for x in r0["threads"] + r1["threads"] if "gloo" in x]
    # rank 1's non-finite loss: neither rank stepped
    last = {k: r0["records"][-1][k] for k in ("G", "table")}
    assert r0["skipped"] == r1["skipped"] == {"ok": 0.0, "step": 4, **last}
    # the table's gradient is the mean over ranks (sum / 2) over every rank's rows
    for r in (r0, r1):
        assert r["shared"]["indices"] == [[0, 1, 4]]
        assert r["shared"]["dense"] == [[0.5] * 2, [1.0] * 2, [0.0] * 2, [0.0] * 2, [1.5] * 2, [0.0] * 2]
    # the single-process run with the whole batch: the same up to rounding (measured: 2e-6 for the table,
    # 8e-6 for G, which moved 2e-3 in the 4 steps)
    one = Pretrainer(
        fast_config(*PRE, "pretrain.batch_size=4"), notes_dataset, tmp_path / "1", progress=False
    )
    one.run(4)
    torch.testing.assert_close(state["latents"]["weight"], one.latents.weight.detach(), rtol=0, atol=3e-5)
    for k, v in one.G.state_dict().items():
        torch.testing.assert_close(state["G"][k], v, rtol=0, atol=3e-5, msg=lambda m, k=k: f"{k}: {m}")
