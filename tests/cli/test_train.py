"""`mp3net train` from the command line: Ctrl-C checkpoints and exits 0, re-running resumes, clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from mp3net.cli import main
from mp3net.config import preset
from mp3net.train import checkpoint as ckpt

SMALL = [
    "model.n_blocks=3",
    "model.start_bands=8",
    "model.max_channels=32",
    "model.latent_dim=32",
    "model.d_dense=32",
    "train.batch_size=4",
    "train.log_every=1",
    "train.sample_every=0",
]


def _overrides() -> list[str]:
    return [a for o in SMALL for a in ("-o", o)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_train")
    src = root / "src"
    src.mkdir()
    sr = 11008
    t = np.arange(int(sr * 3.5)) / sr
    for k, f in enumerate((220.0, 330.0, 495.0)):
        sf.write(src / f"tone{k}.wav", 0.3 * np.sin(2 * np.pi * f * t), sr)
    assert main(["prepare", str(src), str(root / "ds"), "--preset", "tiny", "--workers", "1", "-q"]) == 0
    return root / "ds"


def test_ctrl_c_checkpoints_and_rerun_resumes(dataset, tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "mp3net",
        "train",
        "--data",
        str(dataset),
        "--preset",
        "tiny",
        "--run",
        str(run),
        "--steps",
        "100000",
        "-q",
        *_overrides(),
        "-o",
        "train.ckpt_every=0",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        metrics = run / "metrics.jsonl"
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "SIGINT: finishing step" in err and "stopped at step" in err
    ((stopped, path),) = ckpt.list_checkpoints(run)
    assert 3 <= stopped < 100000
    assert (run / "export" / "model.safetensors").exists()
    # re-run with only --run: config and data come from the run directory, training continues
    assert main(["train", "--run", str(run), "--steps", str(stopped + 2), "--resume", "-q"]) == 0
    assert ckpt.list_checkpoints(run)[-1][0] == stopped + 2
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == stopped + 2 and steps == sorted(set(steps))


def test_a_new_run_without_a_preset_takes_the_default_one(tmp_path):
    """`mp3net pretrain --data D --run R` alone builds the shipped model's network (the laptop preset)."""
    import argparse

    from mp3net.cli.train import resolve_config

    args = argparse.Namespace(run=str(tmp_path / "new"), config=None, preset=None, override=[])
    assert resolve_config(args) == preset("laptop")
    args.preset = "5s"  # the old names still work
    assert resolve_config(args) == preset("paper-5s")


def test_train_errors_are_one_line(dataset, tmp_path, capsys):
    def err_of(argv: list[str]) -> str:
        assert main(argv) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        return lines[0]

    assert "not a prepared dataset" in err_of(
        ["train", "--data", str(tmp_path), "--preset", "tiny", "--run", str(tmp_path / "r")]
    )
    assert "model needs 22016 Hz" in err_of(
        ["train", "--data", str(dataset), "--preset", "95s", "--run", str(tmp_path / "r")]
    )
    assert "no checkpoint" in err_of(
        [
            "train",
            "--data",
            str(dataset),
            "--preset",
            "tiny",
            "--run",
            str(tmp_path / "r2"),
            "--resume",
            *_overrides(),
        ]
    )
    assert (
        main(
            [
                "train",
                "--data",
                str(dataset),
                "--preset",
                "tiny",
                "--run",
                str(tmp_path / "r3"),
                "--steps",
                "1",
                "-q",
                *_overrides(),
            ]
        )
        == 0
    )
    capsys.readouterr()
    msg = err_of(
        [
            "train",
            "--data",
            str(dataset),
            "--preset",
            "tiny",
            "--run",
            str(tmp_path / "r3"),
            "--steps",
            "2",
            "-q",
            *_overrides(),
            "-o",
            "model.max_channels=16",
        ]
    )
    assert "different model config" in msg
    assert "unknown config field" in err_of(["train", "--run", str(tmp_path / "r3"), "-o", "train.nope=1"])


@pytest.mark.parametrize("steps", ["-5", "0"])
def test_non_positive_steps_are_refused_before_anything_is_written(dataset, tmp_path, capsys, steps):
    run = tmp_path / "r"
    argv = ["train", "--data", str(dataset), "--preset", "tiny", "--run", str(run), "--steps", steps, "-q"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mp3net train: error: --steps must be a positive") and "\n" not in err
    assert not run.exists()
