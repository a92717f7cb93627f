"""End to end in a real headless Chromium (system package, driven by Playwright): ``mp3net serve`` as a
subprocess, the page's Generate button, a playable audio element, a real download, a screenshot.

Needs ``pip install -e .[ui-test]`` and ``/usr/bin/chromium`` (``.ci/run`` installs both). A missing
browser is a failure, not a skip, unless ``MP3NET_SKIP_BROWSER=1`` is set.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import soundfile as sf

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SR, CLIP = 11008, 32704  # the shipped tiny model


def _chromium() -> str:
    if os.environ.get("MP3NET_SKIP_BROWSER") == "1":
        pytest.skip("MP3NET_SKIP_BROWSER=1")
    path = os.environ.get("MP3NET_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "no Chromium found: apt-get install chromium (or set MP3NET_SKIP_BROWSER=1)"
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(tmp_path):
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mp3net",
            "serve",
            "pretrained",
            "--port",
            str(port),
            "--out",
            str(tmp_path / "out"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "api/models", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"mp3net serve did not start: {proc.stdout.read()}")
            time.sleep(0.2)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_generate_play_download_in_chromium(server, tmp_path):
    chromium = _chromium()
    from playwright.sync_api import sync_playwright  # pip install -e .[ui-test]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(accept_downloads=True, viewport={"width": 1280, "height": 900})
            page.goto(server)
            page.wait_for_function("document.getElementById('model-info').textContent.includes('11008 Hz')")
            page.fill("#seed", "7")
            page.fill("#duration", "4")
            page.click("#generate")
            page.wait_for_selector(".track audio", timeout=60_000)
            # playable: the browser fetched and decoded the WAV (HAVE_CURRENT_DATA or better)
            page.wait_for_function(
                "(() => { const a = document.querySelector('.track audio');"
                " return a.readyState >= 2 && Math.abs(a.duration - 4) < 0.01; })()",
                timeout=30_000,
            )
            page.wait_for_function("document.querySelector('.track img').naturalWidth > 0")
            assert page.inner_text("#error") == ""
            assert "seed 7" in page.inner_text("#status-text")
            with page.expect_download() as dl:
                page.click(".track a.download-flac")
            path = tmp_path / dl.value.suggested_filename
            dl.value.save_as(path)
            assert path.name == "mp3net-pretrained-seed-0007.flac"
            info = sf.info(str(path))
            assert (info.samplerate, info.channels, info.frames, info.format) == (SR, 2, 4 * SR, "FLAC")
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)

            # interpolation: K tracks, played one after the other from the first
            page.fill("#duration", "")
            page.fill("#steps", "3")
            page.click("#interpolate")
            page.wait_for_selector("#sequence:not([hidden])", timeout=60_000)
            assert page.locator(".track audio").count() == 3
            page.wait_for_function("document.querySelector('.track').classList.contains('playing')")
            assert "3 steps from seed 0 to seed 1" in page.inner_text("#sequence-text")

            # a bad request shows its message on the page, and the page stays usable
            page.fill("#duration", "-2")
            page.click("#generate")
            page.wait_for_function("!document.getElementById('error').hidden")
            assert "duration must be a positive" in page.inner_text("#error")
            assert page.is_enabled("#generate")
        finally:
            browser.close()
    assert (tmp_path / "page.png").stat().st_size > 10_000
