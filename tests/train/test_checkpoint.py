"""Checkpoint files: kill -9 in the middle of a write, export round trip and errors, keep_last."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import pytest
import torch
from conftest import FAST, fast_config

from mp3net import preset
from mp3net.train import checkpoint as ckpt
from mp3net.train.gan import train
from mp3net.utils import MP3NetError

# a training process whose second checkpoint write (step 4) stops half way, as if the machine died there
HANGING_WRITER = """
import io, sys, time, torch
from mp3net import preset
from mp3net.train.gan import train

real_save = torch.save
def save(obj, path):
    buf = io.BytesIO()
    real_save(obj, buf)
    data = buf.getvalue()
    with open(path, "wb") as f:
        if obj["step"] < 4:
            f.write(data)
            return
        f.write(data[: len(data) // 2])
        f.flush()
        os.fsync(f.fileno())
    print("HALF-WRITTEN", flush=True)
    time.sleep(600)
import os
torch.save = save
cfg = preset("tiny").override(sys.argv[3:])
train(cfg, sys.argv[1], sys.argv[2], steps=6, progress=False)
"""


def test_kill_9_during_checkpoint_write_leaves_previous_loadable(notes_dataset, tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = [sys.executable, "-c", HANGING_WRITER, str(notes_dataset), str(run), *FAST, "train.ckpt_every=2"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 120
        line = ""
        while time.time() < deadline and "HALF-WRITTEN" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                raise AssertionError(f"writer exited early: {proc.stderr.read()}")
        assert "HALF-WRITTEN" in line
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the half-written file is a temporary: the step-2 checkpoint is still the latest, and it loads
    assert [s for s, _ in ckpt.list_checkpoints(run)] == [2]
    partial = list((run / "checkpoints").glob(".step-00000004.pt.*.tmp"))
    assert len(partial) == 1 and partial[0].stat().st_size > 0
    state, path = ckpt.load_latest(run)
    assert state["step"] == 2 and path.name == "step-00000002.pt"
    # re-running resumes from it, removes the leftover and finishes
    tr = train(fast_config("train.ckpt_every=2"), notes_dataset, run, steps=6, progress=False)
    assert tr.resumed_from == path and tr.step == 6
    assert not list((run / "checkpoints").glob(".*"))


def test_truncated_newest_checkpoint_falls_back_to_previous(tmp_path, capsys):
    state = {"G": {"w": torch.ones(2)}, "D": {"w": torch.zeros(2)}, "G_ema": None, "step": 1}
    ckpt.save_checkpoint(tmp_path, state, 1, keep_last=3)
    ckpt.save_checkpoint(tmp_path, {**state, "step": 2}, 2, keep_last=3)
    p2 = ckpt.checkpoint_path(tmp_path, 2)
    p2.write_bytes(p2.read_bytes()[:50])  # e.g. a disk that filled up outside our atomic write
    got, path = ckpt.load_latest(tmp_path)
    assert got["step"] == 1 and path.name == "step-00000001.pt"
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1  # one clean warning line, not a warning's file/line/source block
    assert "step-00000002.pt unreadable" in err and "using the older step-00000001.pt" in err


def test_keep_last(tmp_path):
    state = {"G": {"w": torch.ones(2)}, "D": {}, "G_ema": None}
    for step in range(1, 6):
        ckpt.save_checkpoint(tmp_path, state, step * 10, keep_last=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [40, 50]


def test_load_export_round_trip_and_one_line_errors(tmp_path):
    cfg = preset("tiny")
    weights = {"a.weight": torch.randn(3, 4), "b.bias": torch.zeros(2)}
    out = ckpt.export_generator(tmp_path / "export", cfg, weights, step=5)
    for where in (out, out / "model.safetensors"):  # the folder or its weights file
        got_cfg, got = ckpt.load_export(where)
        assert got_cfg.to_json() == cfg.to_json()
        assert got.keys() == weights.keys() and all(torch.equal(got[k], weights[k]) for k in weights)
    (out / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(MP3NetError, match="corrupt or unreadable") as e:
        ckpt.load_export(out)
    assert "\n" not in str(e.value)
    (out / "config.json").unlink()
    with pytest.raises(MP3NetError, match="config.json is missing"):
        ckpt.load_export(out)


def test_export_has_plain_permissions(tmp_path):
    """An export is meant to be shared (copied into a package, served): the folder and its files get the
    modes a plain mkdir/open would have, not mkdtemp's 0700 or the weights writer's 0600."""
    old = os.umask(0o022)
    try:
        out = ckpt.export_generator(tmp_path / "export", preset("tiny"), {"w": torch.ones(2)}, step=1)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {
        "config.json": 0o644,
        "model.safetensors": 0o644,
    }


def test_export_interrupted_between_its_renames_is_put_back(tmp_path):
    cfg = preset("tiny")
    ckpt.export_generator(tmp_path / "export", cfg, {"w": torch.ones(3)}, step=5)
    # a kill after `export` → `.export.old` and before the new folder took its place
    os.replace(tmp_path / "export", tmp_path / ".export.old")
    (tmp_path / ".export.abc123.tmp").mkdir()
    (tmp_path / ".export.abc123.tmp" / "model.safetensors").write_bytes(b"half")
    assert ckpt.remove_partial(tmp_path) == 2
    assert ckpt.export_step(tmp_path / "export") == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
