"""Crashes: `mp3net train` killed with SIGKILL at random moments (in a step, in a checkpoint write, in the
export) and resumed ends bit for bit where an uninterrupted run ends, logs every step once and never loses
more than a checkpoint interval (plus the write that was in flight). Also: checkpoints by time, a full
disk, and a run whose checkpoints are all unreadable."""

from __future__ import annotations

import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import FAST, fast_config

from mp3net.train import checkpoint as ckpt
from mp3net.train.gan import train

CKPT_EVERY, TOTAL = 4, 22
SETTINGS = [*FAST, "train.log_every=1", f"train.ckpt_every={CKPT_EVERY}", "train.ckpt_minutes=0"]

# `mp3net train` whose checkpoint (CRASH_PAUSE=checkpoint) or export (=export) write of step CRASH_AT
# stops after writing its temporary file, as if the machine died right there; the test kills it then
CHILD = """
import os, sys, time
pause, at = os.environ.get("CRASH_PAUSE", ""), int(os.environ.get("CRASH_AT", "-1"))

def hold(what):
    print(f"PAUSED {what}", flush=True)
    time.sleep(600)

if pause == "checkpoint":
    import torch
    real_save = torch.save
    def save(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        if isinstance(obj, dict) and obj.get("step") == at:
            hold("checkpoint")
    torch.save = save
elif pause == "export":
    import safetensors.torch as st
    real_file = st.save_file
    def save_file(tensors, path, metadata=None):
        real_file(tensors, path, metadata=metadata)
        if metadata and int(metadata["step"]) == at:
            hold("export")
    st.save_file = save_file
from mp3net.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _argv(data: Path, run: Path, steps: int) -> list[str]:
    args = ["train", "--data", str(data), "--run", str(run), "--preset", "tiny", "--steps", str(steps), "-q"]
    for o in SETTINGS:
        args += ["-o", o]
    return [sys.executable, "-c", CHILD, *args]


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", **extra)


def _logged_steps(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line)["step"])
        except json.JSONDecodeError:
            continue  # the line a kill cut
    return out


def _resumed_step(stderr: str) -> int:
    m = re.search(r"resumed from \S+ at step (\d+)", stderr)
    return int(m.group(1)) if m else 0


def _kill_when(proc: subprocess.Popen, ready, delay: float = 0.0, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"training ended before the crash: {proc.stderr.read()}")
        assert time.time() < deadline, "the moment to kill never came"
        time.sleep(0.02)
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)


def _paused(proc: subprocess.Popen):
    return lambda: "PAUSED" in (proc.stdout.readline() or "")


def _values(run: Path) -> dict[int, dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: {k: v for k, v in r.items() if not k.startswith(("time", "audio_sec"))} for r in rows}


def _assert_states_equal(a: dict, b: dict, where: str = "") -> None:
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_states_equal(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_states_equal(x, y, f"{where}/{i}")
    else:
        assert a == b, where


@pytest.mark.slow
def test_sigkill_at_random_moments_resumes_bit_for_bit(notes_dataset, tmp_path):
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    note = f"(random seed {seed})"
    # one kill in a step, one in a checkpoint write, one in the export, in increasing step order
    step_kill = rng.randint(2, 6)
    ckpt_kill = CKPT_EVERY * rng.randint(3, 4)
    export_kill = CKPT_EVERY * 5
    ref = subprocess.run(
        _argv(notes_dataset, tmp_path / "ref", TOTAL), capture_output=True, text=True, env=_env()
    )
    assert ref.returncode == 0, ref.stderr

    run = tmp_path / "run"
    kills = [("step", step_kill), ("checkpoint", ckpt_kill), ("export", export_kill)]
    pending_resume = None  # (killed at step, least allowed resume step)
    for kind, at in kills:
        env = _env() if kind == "step" else _env(CRASH_PAUSE=kind, CRASH_AT=str(at))
        proc = subprocess.Popen(
            _argv(notes_dataset, run, TOTAL),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        if kind == "step":  # at a random moment after step `at` was logged
            _kill_when(proc, lambda at=at: max(_logged_steps(run), default=0) >= at, rng.uniform(0, 0.3))
        else:
            _kill_when(proc, _paused(proc))
        resumed = _resumed_step(proc.stderr.read())
        if pending_resume is not None:
            killed, least = pending_resume
            assert resumed >= least, f"resumed at {resumed} after a kill at {killed} {note}"
        killed = max(_logged_steps(run), default=0)
        torn = sorted(int(p.name[6:14]) for p in (run / "checkpoints").glob(".step-*.pt.*.tmp"))
        if kind == "checkpoint":
            # the write of `at` was cut: back to the one before
            assert torn == [at] and ckpt.list_checkpoints(run)[-1][0] == at - CKPT_EVERY, note
        elif kind == "export":
            assert ckpt.list_checkpoints(run)[-1][0] == at, note
        # lost: one interval, plus the steps trained while a write was in flight (if one was cut)
        pending_resume = (killed, (torn[0] if torn else killed) - CKPT_EVERY)

    final = subprocess.run(_argv(notes_dataset, run, TOTAL), capture_output=True, text=True, env=_env())
    assert final.returncode == 0, final.stderr
    killed, least = pending_resume
    assert _resumed_step(final.stderr) >= least, note
    # bit for bit: weights, EMA, optimisers and random streams of the last checkpoint
    a, _ = ckpt.load_latest(tmp_path / "ref")
    b, _ = ckpt.load_latest(run)
    assert a["step"] == b["step"] == TOTAL
    for key in ("G", "D", "G_ema", "opt_G", "opt_D", "rng"):
        _assert_states_equal(a[key], b[key], key)
    # every step logged once, with the uninterrupted run's values
    steps = _logged_steps(run)
    assert steps == list(range(1, TOTAL + 1)), note
    assert _values(run) == _values(tmp_path / "ref"), note
    # the export is the last step's, complete; nothing temporary is left
    assert ckpt.export_step(run / "export") == TOTAL
    assert not list(run.glob(".*")) and not list((run / "checkpoints").glob(".*"))


def test_checkpoints_by_time_as_well_as_by_steps(notes_dataset, tmp_path):
    # ckpt_every far away, ckpt_minutes tiny: a checkpoint after (nearly) every step
    cfg = fast_config("train.ckpt_every=1000", "train.ckpt_minutes=0.00001", "train.keep_last=2")
    tr = train(cfg, notes_dataset, tmp_path / "r", steps=5, progress=False)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "r")] == [4, 5]
    assert ckpt.export_step(tmp_path / "r" / "export") == tr.step == 5


def test_resume_drops_tensorboard_events_and_samples_beyond_the_checkpoint(notes_dataset, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "r"
    cfg = fast_config(
        "train.ckpt_every=4", "train.ckpt_minutes=0", "train.log_every=1", "train.sample_every=3"
    )
    train(cfg, notes_dataset, run, steps=6, progress=False)
    # a run killed after step 6 that had checkpointed at 4 only
    (run / "checkpoints" / "step-00000006.pt").unlink()
    train(cfg, notes_dataset, run, steps=8, progress=False)
    steps: list[int] = []
    for f in sorted((run / "tb").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f), purge_orphaned_data=False)
        acc.Reload()
        steps += [e.step for e in acc.Scalars("loss/d")]
    assert sorted(steps) == list(range(1, 9))  # each step once, without TensorBoard's purge logic
    assert _logged_steps(run) == list(range(1, 9))
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-00000003", "step-00000006"]


def test_all_checkpoints_unreadable_is_an_error_not_a_restart(notes_dataset, tmp_path, capsys):
    from mp3net.cli import main

    run = tmp_path / "r"
    cfg = fast_config("train.ckpt_every=2", "train.ckpt_minutes=0")
    train(cfg, notes_dataset, run, steps=4, progress=False)
    for _, p in ckpt.list_checkpoints(run):
        p.write_bytes(p.read_bytes()[:100])
    argv = ["train", "--run", str(run), "--steps", "6", "-q"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "can be read" in err and "step-00000004.pt" in err and "to start this run over" in err
    assert [s for s, _ in ckpt.list_checkpoints(run)] == [2, 4]  # nothing trained on top
    # one torn checkpoint, a good older one: one warning line and a resume from it
    train(cfg, notes_dataset, tmp_path / "s", steps=4, progress=False)
    p4 = ckpt.checkpoint_path(tmp_path / "s", 4)
    p4.write_bytes(p4.read_bytes()[:100])
    capsys.readouterr()
    tr = train(cfg, notes_dataset, tmp_path / "s", steps=6, progress=False)
    warnings = [x for x in capsys.readouterr().err.splitlines() if "unreadable" in x]
    assert len(warnings) == 1 and "using the older step-00000002.pt" in warnings[0]
    assert tr.resumed_from.name == "step-00000002.pt" and tr.step == 6


def _size_limited(limit: int):
    def setup() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead

    return setup


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(notes_dataset, tmp_path):
    run = tmp_path / "r"
    train(
        fast_config("train.ckpt_every=2", "train.ckpt_minutes=0"), notes_dataset, run, steps=2, progress=False
    )
    size = ckpt.checkpoint_path(run, 2).stat().st_size
    argv = [sys.executable, "-m", "mp3net", "train", "--run", str(run), "--steps", "4", "-q"]
    for o in (*FAST, "train.ckpt_every=2", "train.ckpt_minutes=0"):
        argv += ["-o", o]
    r = subprocess.run(argv, capture_output=True, text=True, env=_env(), preexec_fn=_size_limited(size // 2))
    assert r.returncode == 1, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("resumed from"), err  # the resume note, then the error
    err = err[1]
    assert "cannot write the checkpoint of step 4" in err and "step-00000002.pt is intact" in err, err
    assert [s for s, _ in ckpt.list_checkpoints(run)] == [2]
    state, _ = ckpt.load_latest(run)
    assert state["step"] == 2
    assert not list((run / "checkpoints").glob(".*"))


# a background write of a small checkpoint and a 4 MB export, as a one-line error on failure
EXPORT_4MB = """
import sys, torch
from mp3net import preset
from mp3net.train import checkpoint as ckpt
from mp3net.utils import MP3NetError
w = ckpt.CheckpointWriter(sys.argv[1], 3)
w.submit({"G": {}, "D": {}, "G_ema": None, "step": 2}, 2, preset("tiny"), {"w": torch.ones(10**6)})
try:
    w.wait()
except MP3NetError as e:
    sys.exit(str(e))
"""


def test_full_disk_during_the_export_keeps_the_previous_export(tmp_path):
    from mp3net import preset

    cfg = preset("tiny")
    small = {"w": torch.ones(8)}
    ckpt.export_generator(tmp_path / "export", cfg, small, step=1)
    r = subprocess.run(
        [sys.executable, "-c", EXPORT_4MB, str(tmp_path)],
        capture_output=True,
        text=True,
        env=_env(),
        preexec_fn=_size_limited(1 << 20),
    )
    assert r.returncode == 1, r.stderr
    assert "cannot write the export of step 2" in r.stderr and "previous export is intact" in r.stderr
    assert ckpt.export_step(tmp_path / "export") == 1
    _, weights = ckpt.load_export(tmp_path / "export")
    assert torch.equal(weights["w"], small["w"])
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [2]  # the checkpoint itself fitted
    assert not list(tmp_path.glob(".export*"))
