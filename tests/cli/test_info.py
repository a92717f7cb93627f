"""``mp3net info``: presets, run directories and bad input."""

import json
import re

from mp3net.cli import main
from mp3net.config import preset


def test_info_95s_matches_paper(capsys):
    assert main(["info", "95s", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert abs(info["generator"]["params"] / 59e6 - 1) < 0.01
    assert abs(info["discriminator"]["params"] / 59e6 - 1) < 0.01
    assert info["generator"]["blocks"][-1]["shape"] == [2, 16384, 128]
    assert abs(info["clip_seconds"] - 95.25) < 0.01
    # 408 GFLOP for one 95 s track (issue 3); counted from the conv shapes, not hard-coded
    assert 400e9 < info["generator"]["flops_forward"] < 415e9


def test_info_text_and_run_dir(tmp_path, capsys):
    cfg = preset("5s")
    cfg.save(tmp_path / "config.json")
    assert main(["info", str(tmp_path), "-o", "model.d_dense=256"]) == 0
    out = capsys.readouterr().out
    assert "1024 × 128" in out and "5.95 s" in out and "d_dense          256" in out
    counts = re.search(r"parameters: generator ([\d,]+) .*discriminator ([\d,]+)", out)
    assert all(abs(int(c.replace(",", "")) / 64e6 - 1) < 0.01 for c in counts.groups())


def test_info_bad_target(tmp_path, capsys):
    assert main(["info", "no-such-preset"]) == 1
    assert "neither a preset" in capsys.readouterr().err
    assert main(["info", str(tmp_path)]) == 1
    assert "no config.json" in capsys.readouterr().err


def test_info_of_a_band_normalised_preset_before_its_levels_are_measured(capsys):
    """The levels come with the data; shapes, parameters and FLOPs do not depend on them."""
    assert main(["info", "tiny", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["info", "tiny", "--json", "-o", "model.band_norm=true"]) == 0
    normed = json.loads(capsys.readouterr().out)
    assert normed["config"]["model"]["band_norm"] and normed["config"]["model"]["band_rms"] == []
    for net in ("generator", "discriminator"):
        assert normed[net]["params"] == plain[net]["params"] and normed[net]["blocks"] == plain[net]["blocks"]
