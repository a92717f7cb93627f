"""Request handling of ``mp3net serve`` over real HTTP, without a browser: generate, grid, interpolate,
download, training-run watching, bad requests, and that only generated files are served."""

from __future__ import annotations

import http.client
import io
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mp3net import generate as gen
from mp3net.config import Config
from mp3net.serve import App, make_server
from mp3net.serve import jobs as jobs_mod
from mp3net.train.checkpoint import export_generator
from mp3net.train.logging import RunLogger
from mp3net.utils import MP3NetError

SR = 11008  # the shipped tiny model


class Client:
    def __init__(self, port: int) -> None:
        self.port = port

    def request(self, method: str, path: str, body=None, headers=None, raw: bytes | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        res = conn.getresponse()
        payload = res.read()
        conn.close()
        return res.status, dict(res.getheaders()), payload

    def json(self, method: str, path: str, body=None, **kw):
        status, _, payload = self.request(method, path, body, **kw)
        return status, json.loads(payload)

    def run(self, body: dict, timeout: float = 60) -> dict:
        status, job = self.json("POST", "/api/jobs", body)
        assert status == 202, job
        deadline = time.monotonic() + timeout
        seen = [job["progress"]]
        while job["status"] not in ("done", "error"):
            assert time.monotonic() < deadline, job
            time.sleep(0.02)
            job = self.json("GET", f"/api/jobs/{job['id']}")[1]
            seen.append(job["progress"])
        assert seen == sorted(seen) and 0 <= seen[0] and seen[-1] <= 1, seen
        return job

    def audio(self, url: str) -> tuple[np.ndarray, int, dict]:
        status, headers, payload = self.request("GET", url)
        assert status == 200, payload[:200]
        x, sr = sf.read(io.BytesIO(payload), dtype="float32", always_2d=True)
        return x.T, sr, headers


def _serve(app: App):
    app.start()
    server = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, Client(server.server_address[1])


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = App(["pretrained"], out_dir=tmp_path_factory.mktemp("serve-out"))
    server, c = _serve(app)
    c.app = app
    yield c
    server.shutdown()
    server.server_close()
    app.close()


def _wav16(x: torch.Tensor) -> np.ndarray:
    """What a float track becomes in a 16-bit WAV (soundfile's rounding), for exact comparisons."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(x.numpy().T, -1, 1), SR, format="WAV", subtype="PCM_16")
    return sf.read(io.BytesIO(buf.getvalue()), dtype="float32", always_2d=True)[0].T


def test_models_lists_pretrained_with_rate_clip_and_parameters(client):
    status, data = client.json("GET", "/api/models")
    assert status == 200
    (m,) = data["models"]
    G = gen.from_pretrained()
    assert m["id"] == "pretrained" and m["status"] == "ready"
    assert m["sample_rate"] == G.cfg.sample_rate == SR
    assert m["clip_seconds"] == pytest.approx(G.cfg.clip_samples / SR)
    assert m["parameters"] == sum(p.numel() for p in G.parameters())
    assert "fp32" in data["precisions"]


def test_page_and_assets_are_served(client):
    for path, kind in (("/", "text/html"), ("/app.js", "text/javascript"), ("/style.css", "text/css")):
        status, headers, body = client.request("GET", path)
        assert status == 200 and headers["Content-Type"].startswith(kind) and body
    page = client.request("GET", "/")[2].decode()
    assert 'id="generate"' in page and "http" not in page.replace("http-equiv", "")  # no external assets


def test_generate_is_the_api_track_of_that_seed_and_duration(client):
    job = client.run({"model": "pretrained", "kind": "generate", "seed": 5, "duration": 2.5})
    assert job["status"] == "done" and job["progress"] == 1.0
    (t,) = job["tracks"]
    x, sr, headers = client.audio(t["audio"])
    assert sr == SR and x.shape == (2, round(2.5 * SR))
    ref, _ = gen.generate(gen.from_pretrained(), [5], duration=2.5, precision="fp32")  # the page default
    np.testing.assert_array_equal(x, _wav16(ref[0]))
    # the card's level: the generated samples' peak and the share the WAV clipped
    assert t["peak_dbfs"] == pytest.approx(20 * np.log10(float(ref[0].abs().max())), abs=0.01)
    assert t["clipped_share"] == pytest.approx(float((ref[0].abs() > 1).float().mean()))
    status, headers, png = client.request("GET", t["spectrogram"])
    assert status == 200 and headers["Content-Type"] == "image/png" and png[:8] == b"\x89PNG\r\n\x1a\n"


def test_random_seed_is_reported_and_reproducible(client):
    a = client.run({"model": "pretrained", "kind": "generate", "seed": "random"})
    seed = a["seeds"][0]
    b = client.run({"model": "pretrained", "kind": "generate", "seed": seed})
    xa, xb = client.audio(a["tracks"][0]["audio"])[0], client.audio(b["tracks"][0]["audio"])[0]
    assert xa.shape == (2, gen.from_pretrained().cfg.clip_samples)  # no duration: one training clip
    np.testing.assert_array_equal(xa, xb)


def test_grid_gives_n_consecutive_seeds_each_its_own_track(client):
    job = client.run({"model": "pretrained", "kind": "grid", "n": 3, "seed": 10, "duration": 1})
    assert [t["seed"] for t in job["tracks"]] == [10, 11, 12]
    xs = [client.audio(t["audio"])[0] for t in job["tracks"]]
    single = client.run({"model": "pretrained", "kind": "generate", "seed": 11, "duration": 1})
    np.testing.assert_array_equal(xs[1], client.audio(single["tracks"][0]["audio"])[0])
    assert not np.array_equal(xs[0], xs[1]) and not np.array_equal(xs[1], xs[2])


def test_interpolation_runs_from_seed_a_to_seed_b(client):
    job = client.run({"model": "pretrained", "kind": "interpolate", "seed_a": 3, "seed_b": 8, "steps": 4})
    tracks = job["tracks"]
    assert len(tracks) == 4 and tracks[0]["seed"] == 3 and tracks[-1]["seed"] == 8
    xs = [client.audio(t["audio"])[0] for t in tracks]
    ends, _ = gen.generate(gen.from_pretrained(), [3, 8], precision="fp32")  # the page default
    np.testing.assert_array_equal(xs[0], _wav16(ends[0]))
    np.testing.assert_array_equal(xs[-1], _wav16(ends[1]))
    dist = [float(np.abs(x - xs[0]).mean()) for x in xs]
    assert dist[0] == 0 < dist[1] and dist[1] < dist[-1]  # moves away from A


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg"])
def test_download_formats_keep_rate_length_and_name(client, fmt):
    job = client.run({"model": "pretrained", "kind": "generate", "seed": 42, "duration": 1.5})
    url = job["tracks"][0]["downloads"][fmt]
    x, sr, headers = client.audio(url)
    assert sr == SR and x.shape == (2, round(1.5 * SR))
    assert headers["Content-Disposition"] == f'attachment; filename="mp3net-pretrained-seed-0042.{fmt}"'
    wav = client.audio(job["tracks"][0]["audio"])[0]
    if fmt == "ogg":  # lossy: the same sound at the same level, not the same samples (0.90, 0.1 dB)
        assert np.corrcoef(x.ravel(), wav.ravel())[0, 1] > 0.8
        assert abs(20 * np.log10(np.sqrt((x**2).mean() / (wav**2).mean()))) < 1
    else:
        np.testing.assert_array_equal(x, wav)


def test_byte_ranges_for_seeking(client):
    job = client.run({"model": "pretrained", "kind": "generate", "seed": 1})
    url = job["tracks"][0]["audio"]
    whole = client.request("GET", url)[2]
    status, headers, part = client.request("GET", url, headers={"Range": "bytes=100-199"})
    assert status == 206 and part == whole[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
    assert client.request("GET", url, headers={"Range": f"bytes={len(whole)}-"})[0] == 416


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "nope"}, "unknown model 'nope'"),
        ({"model": "pretrained", "duration": -1}, "duration must be a positive"),
        ({"model": "pretrained", "duration": "abc"}, "duration must be a number"),
        ({"model": "pretrained", "duration": 1e9}, "GiB of memory"),
        ({"model": "pretrained", "truncation": 0}, "truncation must be positive"),
        ({"model": "pretrained", "seed": -3}, "seed must be between"),
        ({"model": "pretrained", "seed": 1.5}, "seed must be a whole number"),
        ({"model": "pretrained", "kind": "dance"}, "unknown kind 'dance'"),
        ({"model": "pretrained", "kind": "grid", "n": 0}, "n must be between 1 and 64"),
        ({"model": "pretrained", "kind": "grid", "n": 1000}, "n must be between 1 and 64"),
        ({"model": "pretrained", "kind": "interpolate", "steps": 1}, "steps must be between 2 and 64"),
        ({"model": "pretrained", "precision": "fp8"}, "precision 'fp8' is not available"),
        (["not", "an", "object"], "must be a JSON object"),
    ],
)
def test_bad_requests_get_a_one_line_message(client, body, message):
    status, data = client.json("POST", "/api/jobs", body)
    assert status == 400
    assert message in data["error"] and "\n" not in data["error"] and "Traceback" not in data["error"]


def test_malformed_bodies_are_rejected(client):
    assert client.json("POST", "/api/jobs", raw=b"{nope")[1]["error"] == "the request body is not valid JSON"
    assert client.request("POST", "/api/jobs", raw=b"")[0] == 400
    assert client.request("POST", "/api/jobs", raw=b" " * (65 * 1024))[0] == 400
    assert client.request("POST", "/api/elsewhere", body={})[0] == 404


def test_too_long_for_the_disk_is_refused(client, monkeypatch):
    monkeypatch.setattr(jobs_mod.shutil, "disk_usage", lambda p: type("U", (), {"free": 300 * 2**20})())
    status, data = client.json("POST", "/api/jobs", {"model": "pretrained", "duration": 3600})
    assert status == 400 and "MiB of disk" in data["error"]


def test_a_failing_generation_is_a_message_not_a_traceback(client, monkeypatch, capsys):
    def boom(*a, **kw):
        raise RuntimeError("kernel exploded\nsecond line")

    monkeypatch.setattr(jobs_mod.gen, "generate", boom)
    job = client.run({"model": "pretrained", "seed": 1})
    assert job["status"] == "error" and job["error"] == "generation failed: kernel exploded"
    monkeypatch.undo()
    assert client.run({"model": "pretrained", "seed": 1})["status"] == "done"  # the worker lives on


@pytest.mark.parametrize(
    "path",
    [
        "/files/../../etc/passwd",
        "/files/%2e%2e/%2e%2e/etc/passwd",
        "/files/000000000000/0.wav",
        "/files/{job}/../{job}/0.wav",
        "/files/{job}/0.wav/../../../pyproject.toml",
        "/files/{job}/7.wav",
        "/files/{job}/0.txt",
        "/files/{job}/meta.json",
        "/static/app.js",
        "/app.js/../../serve/app.py",
        "/api/jobs/..%2f..%2fetc",
    ],
)
def test_only_generated_files_are_served(client, path):
    job = client.run({"model": "pretrained", "seed": 2})
    status, _, body = client.request("GET", path.format(job=job["id"]))
    assert status == 404, body[:200]
    assert b"root:" not in body and b"[build-system]" not in body


@pytest.mark.parametrize("error", [BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "reset")])
def test_a_client_hanging_up_is_no_traceback_other_errors_are(error, capsys):
    server = make_server(None, "127.0.0.1", 0)  # type: ignore[arg-type]  # handle_error never reads the app
    try:
        for exc in (error, RuntimeError("handler bug")):
            try:
                raise exc
            except Exception:
                server.handle_error(None, ("127.0.0.1", 1))
    finally:
        server.server_close()
    err = capsys.readouterr().err
    assert type(error).__name__ not in err
    assert "RuntimeError: handler bug" in err


def test_foreign_host_names_are_refused(client):
    status, data = client.json("GET", "/api/models", headers={"Host": "attacker.example:8000"})
    assert status == 403 and "attacker.example" in data["error"]
    assert client.request("GET", "/", headers={"Host": "localhost:1234"})[0] == 200


def _slow_generate(monkeypatch, seconds: float, calls: list | None = None):
    """Make every forward pass take ``seconds`` longer (counting how many run at once in ``calls``)."""
    real, lock = gen.generate, threading.Lock()
    running = [0]

    def slow(*a, **kw):
        with lock:
            running[0] += 1
            if calls is not None:
                calls.append(running[0])
        try:
            time.sleep(seconds)
            return real(*a, **kw)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(jobs_mod.gen, "generate", slow)


def _wait_done(c: Client, job_id: str) -> dict:
    while (job := c.json("GET", f"/api/jobs/{job_id}")[1])["status"] not in ("done", "error"):
        time.sleep(0.02)
    return job


def test_jobs_of_a_model_run_one_at_a_time_while_the_api_answers(client, monkeypatch):
    calls: list[int] = []
    _slow_generate(monkeypatch, 0.5, calls)
    ids = [client.json("POST", "/api/jobs", {"model": "pretrained", "seed": s})[1]["id"] for s in range(3)]
    time.sleep(0.1)
    t0 = time.monotonic()
    assert client.json("GET", "/api/models")[0] == 200
    states = [client.json("GET", f"/api/jobs/{i}")[1]["status"] for i in ids]
    assert time.monotonic() - t0 < 0.4  # answered while the worker is busy
    assert states == ["running", "queued", "queued"]
    assert all(_wait_done(client, i)["status"] == "done" for i in ids)
    assert calls == [1, 1, 1]


def test_a_long_track_reports_progress_while_it_runs(client, monkeypatch):
    _slow_generate(monkeypatch, 1.5)
    slot = client.app.slots["pretrained"]
    monkeypatch.setattr(slot, "seconds_per_sample", 2.0 / (30 * SR))  # the estimate: 2 s for 30 s
    job = client.json("POST", "/api/jobs", {"model": "pretrained", "seed": 0, "duration": 30})[1]
    seen = []
    while job["status"] != "done":
        time.sleep(0.05)
        job = client.json("GET", f"/api/jobs/{job['id']}")[1]
        seen.append(job["progress"])
    assert any(0.2 < p < 0.95 for p in seen), seen
    assert seen == sorted(seen) and seen[-1] == 1.0


def test_a_full_queue_is_refused(client, monkeypatch):
    monkeypatch.setattr(jobs_mod, "MAX_QUEUED", 2)
    _slow_generate(monkeypatch, 0.3)
    ids = [client.json("POST", "/api/jobs", {"model": "pretrained", "seed": 0})[1]["id"]]
    while client.json("GET", f"/api/jobs/{ids[0]}")[1]["status"] == "queued":
        time.sleep(0.01)
    ids += [client.json("POST", "/api/jobs", {"model": "pretrained", "seed": s})[1]["id"] for s in (1, 2)]
    status, data = client.json("POST", "/api/jobs", {"model": "pretrained", "seed": 9})
    assert status == 400 and "2 jobs are already waiting" in data["error"]
    assert all(_wait_done(client, i)["status"] == "done" for i in ids)
    assert client.run({"model": "pretrained", "seed": 9})["status"] == "done"


def _export(run: Path, G, step: int) -> None:
    cfg = Config(model=G.cfg)
    export_generator(run / "export", cfg, G.state_dict(), step)


def test_a_watched_run_picks_up_new_exports_and_shows_its_curves(tmp_path):
    run = tmp_path / "run"
    log = RunLogger(run, 0)
    app = App([str(run)], out_dir=tmp_path / "out", watch_interval=0.05)
    server, c = _serve(app)
    try:
        (m,) = c.json("GET", "/api/models")[1]["models"]
        assert m["id"] == "run" and m["status"] == "waiting" and m["run"] and m["watched"]
        assert c.json("POST", "/api/jobs", {"model": "run"})[0] == 400  # nothing to generate with yet

        G = gen.from_pretrained()
        _export(run, G, step=100)
        m = _wait_model(c, lambda m: m["status"] == "ready")
        assert m["step"] == 100 and m["version"] == 1
        first = c.audio(c.run({"model": "run", "seed": 4})["tracks"][0]["audio"])[0]

        with torch.no_grad():
            for p in G.parameters():
                p.mul_(0.5)
        _export(run, G, step=200)
        m = _wait_model(c, lambda m: m["version"] == 2)
        assert m["step"] == 200
        job = c.run({"model": "run", "seed": 4})
        assert job["model_step"] == 200
        assert not np.array_equal(first, c.audio(job["tracks"][0]["audio"])[0])

        for step, (fake, fd) in enumerate([(0.1, 300.0), (0.2, 200.0), (0.3, 100.0)]):
            log.scalars(step * 10, {"tonality/fake": fake, "tonality/real": 0.38, "eval/fd": fd, "loss/d": 1})
        log.flush()
        series = c.json("GET", "/api/models/run/metrics")[1]["series"]
        assert series["tonality/fake"] == [[0, 0.1], [10, 0.2], [20, 0.3]]
        assert series["eval/fd"] == [[0, 300.0], [10, 200.0], [20, 100.0]]
        assert "loss/d" not in series
        assert c.request("GET", "/api/models/other/metrics")[0] == 404
    finally:
        log.close()
        server.shutdown()
        server.server_close()
        app.close()


def _wait_model(c: Client, ok, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        (m,) = c.json("GET", "/api/models")[1]["models"]
        if ok(m):
            return m
        assert time.monotonic() < deadline, m
        time.sleep(0.05)


def test_a_broken_export_is_an_error_at_start(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    app = App([str(tmp_path)], out_dir=tmp_path / "out")
    with pytest.raises(MP3NetError, match="model.safetensors is missing"):
        app.start()
    app.close()


def test_unknown_model_name_is_an_error_before_serving():
    with pytest.raises(MP3NetError, match="not found"):
        App(["no-such-model"])


def test_precision_is_offered_and_passed_on_once_the_api_has_it(client, monkeypatch):
    assert client.json("GET", "/api/models")[1]["precisions"] == list(gen.PRECISIONS)  # API has precision=
    got = []
    real_generate, real_interpolate = gen.generate, gen.interpolate

    def generate(model, seeds, duration=None, truncation=None, batch_size=1, precision="auto"):
        got.append(precision)
        return real_generate(model, seeds, duration, truncation, batch_size)

    def interpolate(model, a, b, steps, duration=None, truncation=None, batch_size=1, precision="auto"):
        got.append(precision)
        return real_interpolate(model, a, b, steps, duration, truncation, batch_size)

    monkeypatch.setattr(gen, "generate", generate)
    monkeypatch.setattr(gen, "interpolate", interpolate)
    assert client.json("GET", "/api/models")[1]["precisions"] == list(gen.PRECISIONS)
    assert client.run({"model": "pretrained", "seed": 1, "precision": "bf16"})["precision"] == "bf16"
    client.run({"model": "pretrained", "kind": "interpolate", "steps": 2})
    assert got == ["bf16", "fp32"]  # fp32 is asked for explicitly, not left to the API's default
