"""benchmarks/real_music.py without network, apt or audio: its licence table, its arguments and its errors."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "real_music.py"


@pytest.fixture(scope="module")
def rm():
    spec = importlib.util.spec_from_file_location("real_music", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["real_music"] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("real_music", None)


def test_licence_table(rm):
    assert len([s for s in rm.SETS.values() if s.kind == "package"]) >= 2
    assert any(s.kind == "scores" for s in rm.SETS.values())
    for name, s in rm.SETS.items():
        assert s.kind in {"package", "scores"}, name
        assert s.shippable in {"yes", "with conditions", "no"}, name
        assert s.licence and s.conditions and s.attribution and s.description and s.packages, name
        if s.kind == "package":
            assert Path(s.audio_dir).is_absolute(), name
    for package, path, licence, credit in rm.SOUNDFONTS.values():
        assert package and Path(path).is_absolute() and licence and credit


def test_score_lists(rm):
    quartets = rm.score_list("quartets")
    assert len(quartets) == len(set(quartets)) > 20
    assert all(path.endswith((".mxl", ".xml")) and composer for path, composer in quartets)
    assert rm.stem("mozart/k80/movement1.mxl") == "mozart_k80_movement1"
    assert rm.needed_packages("piano", "fluid") == ["fluidsynth", "fluid-soundfont-gm"]
    assert rm.needed_packages("drascula", "fluid") == ["drascula-music"]


def test_help_and_list(rm, capsys):
    with pytest.raises(SystemExit) as e:
        rm.main(["--help"])
    assert e.value.code == 0 and "--limit" in capsys.readouterr().out
    assert rm.main(["--list"]) == 0
    assert "singularity" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--set", "nope"], "invalid choice"),
        ([], "--set is required"),
        (["--set", "piano", "--limit", "0"], "at least 1"),
        (["--set", "piano", "--limit", "x"], "invalid int"),
    ],
)
def test_bad_input_is_one_line(rm, argv, words):
    with pytest.raises(SystemExit) as e:
        rm.main(argv)
    message = str(e.value.code)
    assert words in message and "\n" not in message and message.startswith("real_music.py: error:")


def test_missing_package_names_the_fix(rm, monkeypatch, tmp_path):
    s = rm.SETS["drascula"]
    monkeypatch.setitem(rm.SETS, "drascula", type(s)(**{**s.__dict__, "audio_dir": str(tmp_path / "none")}))
    with pytest.raises(SystemExit) as e:
        rm.check_tools("drascula", "fluid")
    assert "--install" in str(e.value.code) and "drascula-music" in str(e.value.code)
