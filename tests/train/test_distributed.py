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
from conftest import FAST

from mp3net.train import checkpoint as ckpt

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
