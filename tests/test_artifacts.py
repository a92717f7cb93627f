"""The artifacts leaf: inference reads what training wrote without importing the training package."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mp3net import artifacts
from mp3net.utils import MP3NetError


@pytest.mark.parametrize("module", ["mp3net.generate", "mp3net.serve", "mp3net.artifacts"])
def test_inference_imports_no_training_module(module):
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith('mp3net.train')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_shipped_model_resolves_and_unknown_names_fail_in_one_line():
    assert artifacts.resolve_model_path("pretrained") == artifacts.PRETRAINED_DIR / "tiny-chorales"
    with pytest.raises(MP3NetError, match="not found") as e:
        artifacts.resolve_model_path("no-such-model")
    assert "\n" not in str(e.value) and "pretrained" in str(e.value)
