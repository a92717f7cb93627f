"""The training loop: a short run writes everything, resumes exactly, guards against NaN, freezes blocks."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import fast_config

from mp3net.config import Config
from mp3net.model import Generator
from mp3net.train import checkpoint as ckpt
from mp3net.train.gan import Trainer, train
from mp3net.utils import MP3NetError


def _weights(run_dir) -> dict:
    state, _ = ckpt.load_latest(run_dir)
    return state


def _assert_same_state(a: dict, b: dict) -> None:
    assert a["step"] == b["step"] and a["g_steps"] == b["g_steps"]
    for net in ("G", "D", "G_ema"):
        assert a[net].keys() == b[net].keys()
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), (net, k)
    for opt in ("opt_G", "opt_D"):
        sa, sb = a[opt]["state"], b[opt]["state"]
        assert sa.keys() == sb.keys()
        for i in sa:
            for k in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(sa[i][k], sb[i][k]), (opt, i, k)
    for ra, rb in zip(a["rng"], b["rng"], strict=True):
        assert torch.equal(ra["gen"], rb["gen"]) and ra["sampler"] == rb["sampler"]


def test_short_run_writes_checkpoints_export_and_logs(notes_dataset, tmp_path):
    cfg = fast_config("train.ckpt_every=8", "train.keep_last=2", "train.sample_every=12")
    run = tmp_path / "run"
    tr = train(cfg, notes_dataset, run, steps=24, progress=False)
    assert tr.step == 24 and tr.g_steps == 12
    # losses finite and the logged scalars complete
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1] + list(range(2, 25, 2))
    for key in (
        "loss/d",
        "loss/g",
        "w_distance",
        "gp",
        "drift",
        "score/real",
        "score/fake",
        "tonality/fake",
        "tonality/real",
        "grad_norm/d",
        "grad_norm/g",
        "time/step",
        "audio_seconds_per_s",
    ):
        assert all(x[key] is not None and math.isfinite(x[key]) for x in lines[1:]), key
    assert lines[-1]["tonality/real"] > 0.5  # tonal notes, measured un-noised like the fakes
    # checkpoints every 8 steps, the last 2 kept, no temporary files
    assert [s for s, _ in ckpt.list_checkpoints(run)] == [16, 24]
    assert not list((run / "checkpoints").glob(".*"))
    state = _weights(run)
    assert Config.from_dict(state["config"]).to_dict() == cfg.to_dict()
    assert Config.load(run / "config.json").to_dict() == cfg.to_dict()
    # the export is the EMA generator of the last step and loads into a Generator
    ecfg, weights = ckpt.load_export(run / "export")
    G = Generator(ecfg.model)
    G.load_state_dict(weights)
    for k, v in state["G_ema"].items():
        assert torch.equal(weights[k], v)
    assert any(not torch.equal(state["G_ema"][k], state["G"][k]) for k in state["G"])  # EMA really averages
    # TensorBoard events and the fixed-seed samples (audio + images)
    assert list((run / "tb").glob("events.out.tfevents.*"))
    files = sorted(p.name for p in (run / "samples" / "step-00000012").iterdir())
    assert files == sorted(
        f"fake-{i}{s}" for i in range(2) for s in (".wav", "-mdct.png", "-spectrogram.png")
    )


@pytest.mark.parametrize("stop_at", [5])
def test_exact_resume(notes_dataset, tmp_path, stop_at):
    """2S uninterrupted steps == stop mid-run (as on Ctrl-C) + resume from disk to 2S, bit for bit."""
    cfg = fast_config("train.ckpt_every=4")
    S = 6
    a = train(cfg, notes_dataset, tmp_path / "a", steps=2 * S, progress=False)
    assert a.step == 2 * S

    def stop(tr: Trainer) -> None:
        if tr.step == stop_at:
            tr.request_stop()

    # the interrupted run loads its data with worker processes: the stream must not depend on them
    cfg_b = cfg.override(["train.num_workers=2"])
    b1 = train(cfg_b, notes_dataset, tmp_path / "b", steps=2 * S, progress=False, hooks=[stop])
    assert b1.step == stop_at and ckpt.list_checkpoints(tmp_path / "b")[-1][0] == stop_at
    b2 = train(cfg_b, notes_dataset, tmp_path / "b", steps=2 * S, progress=False, require_checkpoint=True)
    assert b2.resumed_from is not None and b2.step == 2 * S
    _assert_same_state(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    # metrics of the resumed run continue the interrupted one without duplicated steps
    steps = [json.loads(x)["step"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 2 * S


def test_an_error_in_the_evaluation_keeps_the_step_it_ends(notes_dataset, tmp_path, monkeypatch):
    """An exception between steps (evaluation, samples) ends the run, but the completed steps are
    checkpointed first, and the run resumes from there."""
    cfg = fast_config("train.ckpt_every=100", "train.eval_every=3")

    def broken(self: Trainer) -> dict[str, float]:
        raise OSError("disk full")

    monkeypatch.setattr(Trainer, "evaluate", broken)
    with pytest.raises(OSError, match="disk full"):
        train(cfg, notes_dataset, tmp_path / "r", steps=8, progress=False)
    assert ckpt.list_checkpoints(tmp_path / "r")[-1][0] == 3
    monkeypatch.undo()
    tr = train(cfg, notes_dataset, tmp_path / "r", steps=4, progress=False, require_checkpoint=True)
    assert tr.resumed_from is not None and tr.step == 4


def test_resume_with_other_model_config_is_a_clear_error(notes_dataset, tmp_path):
    train(fast_config(), notes_dataset, tmp_path / "r", steps=2, progress=False)
    with pytest.raises(
        MP3NetError, match=r"different model config \(model.max_channels: 32 there vs 16 here"
    ):
        Trainer(fast_config("model.max_channels=16"), notes_dataset, tmp_path / "r", progress=False)
    with pytest.raises(MP3NetError, match="no checkpoint"):
        Trainer(fast_config(), notes_dataset, tmp_path / "empty", progress=False, require_checkpoint=True)


def test_nan_guard_skips_steps_rolls_back_and_never_writes_nan(notes_dataset, tmp_path, capsys):
    cfg = fast_config("train.ckpt_every=4")

    def poison(tr: Trainer) -> None:
        if tr.step == 6 and tr.rollbacks == 0:
            with torch.no_grad():
                next(tr.D.parameters()).fill_(float("nan"))

    tr = train(cfg, notes_dataset, tmp_path / "r", steps=16, progress=False, hooks=[poison])
    err = capsys.readouterr().err
    assert "step 7: non-finite loss or gradient" in err
    assert "rolled back to step-00000004.pt (step 4)" in err
    assert tr.step == 16 and tr.rollbacks == 1
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "r")] == [8, 12, 16]
    logged = [json.loads(x)["step"] for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert logged == sorted(set(logged)) and logged[-1] == 16  # the rolled-back steps are logged once
    for _, path in ckpt.list_checkpoints(tmp_path / "r"):
        state = ckpt.load_checkpoint(path)
        for net in ("G", "D", "G_ema"):
            assert all(torch.isfinite(v).all() for v in state[net].values())
    # a run that ends inside a non-finite streak does not write its weights at exit
    train(cfg, notes_dataset, tmp_path / "r2", steps=9, progress=False, hooks=[poison])
    assert "not writing checkpoint of step 9: non-finite weights in D" in capsys.readouterr().err
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "r2")] == [4]
    # and the writer itself refuses non-finite weights
    state = _weights(tmp_path / "r")
    state["G"][next(iter(state["G"]))].fill_(float("inf"))
    with pytest.raises(ckpt.NonFiniteWeights):
        ckpt.save_checkpoint(tmp_path / "r", state, 99, keep_last=3)
    assert 99 not in [s for s, _ in ckpt.list_checkpoints(tmp_path / "r")]


def test_freeze_deep_trains_only_the_shallowest_blocks(notes_dataset, tmp_path):
    cfg = fast_config("train.freeze_deep=1")
    tr = Trainer(cfg, notes_dataset, tmp_path / "r", progress=False)
    G0 = {k: v.clone() for k, v in tr.G.state_dict().items()}
    D0 = {k: v.clone() for k, v in tr.D.state_dict().items()}
    tr.run(4)
    tr.close()
    n = cfg.model.n_blocks
    g_changed = {
        k.split(".")[0] + ("." + k.split(".")[1] if k.startswith("blocks") else "")
        for k, v in tr.G.state_dict().items()
        if not torch.equal(v, G0[k])
    }
    d_changed = {
        k.split(".")[0] + ("." + k.split(".")[1] if k.startswith("blocks") else "")
        for k, v in tr.D.state_dict().items()
        if not torch.equal(v, D0[k])
    }
    assert g_changed == {f"blocks.{n - 1}", "to_out"}
    assert d_changed == {"from_in", "blocks.0"}


def test_evaluation_during_training_logs_evaluate_metrics_and_leaves_training_unchanged(
    notes_dataset, tmp_path
):
    from mp3net import evaluate as ev
    from mp3net.dsp import imdct

    def run(name: str, *extra: str):
        cfg = fast_config("train.ckpt_every=0", "train.ckpt_minutes=0", *extra)
        return train(cfg, notes_dataset, tmp_path / name, steps=6, progress=False)

    tr = run("on", "train.eval_every=3", "train.eval_clips=4")
    run("off", "train.eval_every=0")
    _assert_same_state(_weights(tmp_path / "on"), _weights(tmp_path / "off"))  # no RNG drawn, nothing moved
    lines = [json.loads(x) for x in (tmp_path / "on" / "metrics.jsonl").read_text().splitlines()]
    evals = [x for x in lines if "eval/fd" in x]
    assert [x["step"] for x in evals] == [3, 6]
    assert not any("eval/fd" in x for x in (tmp_path / "off" / "metrics.jsonl").read_text().splitlines())
    # the logged figures are `mp3net evaluate`'s for the EMA generator of that step (the export at step 6)
    reals, sr = ev.load_real_clips(notes_dataset, 4, tr.cfg.model.clip_samples, seed=1)
    ecfg, weights = ckpt.load_export(tmp_path / "on" / "export")
    G = Generator(ecfg.model)
    G.load_state_dict(weights)
    rep = ev.evaluate_clips(reals, list(imdct(G.generate(tr.monitor.z_eval), trim=True)), sr)
    assert evals[1]["eval/fd"] == pytest.approx(rep.fd, rel=1e-5)
    assert evals[1]["eval/tonality_real"] == pytest.approx(rep.tonality_real, rel=1e-6)
    assert evals[1]["eval/bark_err_max_db"] == pytest.approx(float(abs(rep.bark_error_db).max()), rel=1e-5)
    assert evals[0]["eval/fd"] != evals[1]["eval/fd"]  # a new generator, not a cached figure


def test_a_failed_background_write_stops_every_rank(notes_dataset, tmp_path, monkeypatch):
    """Rank 0's failed checkpoint write is its one-line error; under torchrun the other ranks (which write
    nothing) learn of it through the ranks' vote and stop with their own line instead of waiting in the next
    all-reduce. Two ranks simulated in one process: the vote is the collective's result."""
    from mp3net.train import distributed as ddp

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt, "save_checkpoint", full_disk)
    tr = Trainer(fast_config("train.ckpt_every=2"), notes_dataset, tmp_path / "run", progress=False)
    with pytest.raises(MP3NetError, match="cannot write the checkpoint of step 2 .No space left"):
        tr.run(40)
    assert 2 <= tr.step < 40  # stopped soon after the failed write (steps later: it runs in the background)
    tr.writer._error = None

    votes = []
    monkeypatch.setattr(ddp, "any_rank", lambda flag, device: votes.append(flag) or True)  # rank 0 failed
    tr.world = 2
    with pytest.raises(MP3NetError, match="rank 0 could not write its checkpoint"):
        tr.check_writer()
    assert votes == [False]  # this rank's own writer is fine
