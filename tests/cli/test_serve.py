"""``mp3net serve`` on the command line: bad arguments are one-line errors, before any page is served."""

from __future__ import annotations

import socket

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
