"""Fine-tuning (--init-from): a new run starts from another run's checkpoint or from an exported generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import fast_config

from mp3net.cli import main as cli_main
from mp3net.train import checkpoint as ckpt
from mp3net.train.gan import Trainer, train
from mp3net.utils import MP3NetError


def _equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_init_from_a_run_takes_its_networks_and_optionally_its_optimisers(notes_dataset, tmp_path):
    src = train(fast_config(), notes_dataset, tmp_path / "src", steps=4, progress=False)
    b = Trainer(fast_config(), notes_dataset, tmp_path / "b", progress=False, init_from=tmp_path / "src")
    assert b.step == 0 and b.initialised_from is not None and b.resumed_from is None
    assert _equal(b.G, src.G) and _equal(b.D, src.D) and _equal(b.G_ema, src.G_ema)
    assert b.opt_D.state == {}  # fresh moments unless asked
    b.close()
    c = Trainer(
        fast_config(),
        notes_dataset,
        tmp_path / "c",
        progress=False,
        init_from=tmp_path / "src",
        init_optimizer=True,
    )
    sa, sc = src.opt_D.state_dict()["state"], c.opt_D.state_dict()["state"]
    assert sa.keys() == sc.keys() and all(torch.equal(sa[i]["exp_avg"], sc[i]["exp_avg"]) for i in sa)
    c.close()


def test_init_from_an_export_takes_g_only(notes_dataset, tmp_path):
    src = train(fast_config(), notes_dataset, tmp_path / "src", steps=4, progress=False)
    fresh = Trainer(fast_config(), notes_dataset, tmp_path / "fresh", progress=False)
    b = Trainer(
        fast_config(), notes_dataset, tmp_path / "b", progress=False, init_from=tmp_path / "src" / "export"
    )
    assert _equal(b.G, src.G_ema) and _equal(b.G_ema, src.G_ema)
    assert _equal(b.D, fresh.D) and not _equal(b.D, src.D)
    fresh.close()
    b.close()


def test_init_from_is_ignored_when_the_run_resumes(notes_dataset, tmp_path):
    train(fast_config(), notes_dataset, tmp_path / "src", steps=2, progress=False)
    train(fast_config(), notes_dataset, tmp_path / "b", steps=3, progress=False)
    b = Trainer(fast_config(), notes_dataset, tmp_path / "b", progress=False, init_from=tmp_path / "src")
    assert b.resumed_from is not None and b.initialised_from is None and b.step == 3
    b.close()


def test_incompatible_init_from_is_a_one_line_error(notes_dataset, tmp_path):
    train(fast_config(), notes_dataset, tmp_path / "src", steps=2, progress=False)
    with pytest.raises(MP3NetError, match="different model config"):
        Trainer(
            fast_config("model.max_channels=16"), notes_dataset, tmp_path / "b", init_from=tmp_path / "src"
        )
    with pytest.raises(MP3NetError, match="not found"):
        Trainer(fast_config(), notes_dataset, tmp_path / "c", init_from=tmp_path / "nowhere")


def test_init_from_another_output_head_is_a_one_line_error(notes_dataset, tmp_path):
    """A bank over a linear source has other weights: the usual one-line error, not a partial load."""
    train(fast_config(), notes_dataset, tmp_path / "src", steps=2, progress=False)
    with pytest.raises(MP3NetError, match="different model config"):
        Trainer(fast_config("model.output=bank"), notes_dataset, tmp_path / "c", init_from=tmp_path / "src")


def test_cli_fine_tunes_the_shipped_model_with_its_config(notes_dataset, tmp_path, capsys):
    run = tmp_path / "ft"
    args = ["train", "--data", str(notes_dataset), "--run", str(run), "--init-from", "pretrained"]
    args += [
        "--steps",
        "2",
        "--freeze-deep",
        "1",
        "-q",
        "-o",
        "train.num_workers=0",
        "-o",
        "train.batch_size=2",
    ]
    rc = cli_main(args)
    assert rc == 0 and ckpt.list_checkpoints(run)[-1][0] == 2
    assert cli_main(["train", "--run", str(run), "--init-optimizer", "--steps", "3"]) != 0
    assert "--init-optimizer needs --init-from" in capsys.readouterr().err


@pytest.mark.slow
def test_fine_tuning_the_shipped_model_moves_its_metrics(notes_dataset, tmp_path):
    """On other music (plucked notes instead of chorales), a short fine-tuning run of the shipped model
    changes what it makes: its Bark-band level profile moves by more than a dB on average."""
    from mp3net.evaluate import bark_levels
    from mp3net.generate import generate
    from mp3net.train.checkpoint import source_config

    torch.set_num_threads(1)
    cfg = source_config("pretrained").override(
        ["train.batch_size=4", "train.num_workers=0", "train.sample_every=0", "train.lr=5e-4"]
    )
    sr = cfg.model.sample_rate

    def levels(G) -> np.ndarray:
        fakes, _ = generate(G, list(range(16)), batch_size=8)
        return bark_levels(list(fakes), sr)

    tr = Trainer(cfg, notes_dataset, tmp_path / "ft", progress=False, init_from="pretrained")
    before = levels(tr.G)
    tr.run(40)
    tr.close()
    assert tr.step == 40 and np.isfinite(tr.last["loss/d"])
    assert np.abs(levels(tr.G) - before).mean() > 1.0
