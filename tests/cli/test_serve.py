"""``mp3net serve`` on the command line: bad arguments are one-line errors, before any page is served."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from mp3net.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "no-such-model"], "model no-such-model not found"),
        (["serve", "--port", "70000"], "--port must be between 0 and 65535"),
        (["serve", "--watch-interval", "0"], "--watch-interval must be positive"),
    ],
)
def test_bad_arguments_are_one_line_errors(argv, message, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_busy_port_is_a_one_line_error(capsys, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", "--port", str(port), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and err.count("\n") == 1


def test_serve_is_listed_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "serve" in capsys.readouterr().out


def test_kill_stops_the_server_and_removes_its_temporary_files():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mp3net", "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        while not (lines and lines[-1].startswith("serving on http://127.0.0.1:")):
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        out = Path(next(x for x in lines if x.startswith("generated files go to")).split()[4])
        assert out.is_dir()
        port = int(lines[-1].split(":")[2].split("/")[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/models", timeout=10) as r:
            assert json.load(r)["models"][0]["status"] == "ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 130
    finally:
        proc.kill()
    assert not out.exists()
