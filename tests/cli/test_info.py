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


def test_info_counts_the_spectral_views_weights_and_convolutions(capsys):
    """Its 3×3 convs at width 8 over the [2, 514, 128] view of a 256-sample window: 2·cin·9·cout FLOPs per
    output position each (the transforms before them are not counted), cin·9·cout + cout weights."""
    assert main(["info", "tiny", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)["discriminator"]
    assert (
        main(
            ["info", "tiny", "--json", "-o", "model.d_spectral_channels=8", "-o", "model.d_spectral_fft=256"]
        )
        == 0
    )
    spectral = json.loads(capsys.readouterr().out)["discriminator"]
    w, sizes = 8, [(514, 128)]
    for _ in range(5):  # stride 2, padding 1: ⌈n / 2⌉
        sizes.append(tuple((n + 1) // 2 for n in sizes[-1]))
    area = [t * f for t, f in sizes]
    convs = [(2, w, area[0])] + [(w, w, a) for a in area[1:]] + [(w + 1, 1, area[-1])]
    assert spectral["flops_forward"] - plain["flops_forward"] == sum(2 * a * 9 * b * n for a, b, n in convs)
    assert spectral["params"] - plain["params"] == sum(a * 9 * b + b for a, b, _ in convs)


def test_info_of_a_band_normalised_preset_before_its_levels_are_measured(capsys):
    """The levels come with the data; shapes, parameters and FLOPs do not depend on them."""
    assert main(["info", "tiny", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["info", "tiny", "--json", "-o", "model.band_norm=true"]) == 0
    normed = json.loads(capsys.readouterr().out)
    assert normed["config"]["model"]["band_norm"] and normed["config"]["model"]["band_rms"] == []
    for net in ("generator", "discriminator"):
        assert normed[net]["params"] == plain[net]["params"] and normed[net]["blocks"] == plain[net]["blocks"]
