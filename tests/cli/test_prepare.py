"""`mp3net prepare` from the command line: summary, skipped files, exit codes."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from mp3net.cli import main
from mp3net.data import load_manifest


def test_prepare_cli(tmp_path, capsys):
    src = tmp_path / "music"
    src.mkdir()
    t = np.arange(11008 * 4) / 11008
    sf.write(src / "song.wav", 0.2 * np.sin(2 * np.pi * 220 * t), 11008)
    (src / "broken.mp3").write_bytes(b"ID3 this is not an mp3")
    assert main(["prepare", str(src), str(tmp_path / "ds"), "--preset", "tiny", "--workers", "1", "-q"]) == 0
    out = capsys.readouterr().out
    assert "added 1 tracks" in out and "broken.mp3: cannot decode" in out
    m = load_manifest(tmp_path / "ds")
    assert len(m["tracks"]) == 1 and m["channels"] == 2 and m["sample_rate"] == 11008


def test_prepare_cli_nothing_usable_is_one_line_error(tmp_path, capsys):
    src = tmp_path / "music"
    src.mkdir()
    (src / "broken.wav").write_bytes(b"garbage")
    assert main(["prepare", str(src), str(tmp_path / "ds"), "--preset", "tiny", "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no usable audio" in err[0]
