"""The HTTP side of ``mp3net serve``: a JSON API and the static page, on the standard library's server.

Routes (every error is JSON ``{"error": "one line"}`` with a 4xx/5xx status, never a traceback):

- ``GET /`` (and ``/app.js``, ``/style.css``): the page, from the package's ``static/`` folder;
- ``GET /api/models``: the models with sample rate, clip length, parameters, training step, status;
- ``GET /api/models/<id>/metrics``: a run's tonality and FD curves ``{series: {key: [[step, v], ...]}}``;
- ``POST /api/jobs``: queue a ``generate`` / ``grid`` / ``interpolate`` request → ``202 {job}``;
- ``GET /api/jobs/<id>``: its status, progress and tracks;
- ``GET /files/<job>/<n>.<wav|flac|ogg|png>[?download=1]``: a generated file (byte ranges for seeking).

Files are found by job id and track number in the :class:`JobStore`, never by a path from the URL.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
import threading
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mp3net.serve.jobs import (
    BadRequest,
    Job,
    JobStore,
    Worker,
    check_resources,
    encoded,
    parse_request,
    supported_precisions,
)
from mp3net.serve.models import ModelSlot, make_slots
from mp3net.utils import MP3NetError, first_line

STATIC = {
    "/": ("index.html", "text/html"),
    "/app.js": ("app.js", "text/javascript"),
    "/style.css": ("style.css", "text/css"),
}
FILE_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg", "png": "image/png"}
FILE_URL = re.compile(r"^/files/([0-9a-f]{12})/(\d{1,3})\.(wav|flac|ogg|png)$")
JOB_URL = re.compile(r"^/api/jobs/([0-9a-f]{12})$")
METRICS_URL = re.compile(r"^/api/models/([A-Za-z0-9._-]+)/metrics$")
MAX_BODY = 64 * 1024
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


class HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class App:
    """The server's state: model slots, their workers, the job store and the folder of generated files."""

    def __init__(
        self,
        sources: list[str],
        device: str = "cpu",
        out_dir: str | Path | None = None,
        batch_size: int = 1,
        watch_interval: float = 5.0,
        keep_jobs: int = 100,
    ) -> None:
        self.slots: dict[str, ModelSlot] = {s.id: s for s in make_slots(sources, device)}
        self._own_dir = out_dir is None
        self.out_dir = Path(tempfile.mkdtemp(prefix="mp3net-serve-")) if out_dir is None else Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.jobs = JobStore(self.out_dir, keep_jobs)
        self.workers = {k: Worker(s, batch_size) for k, s in self.slots.items()}
        self.watch_interval = watch_interval
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        """Load every model (a model that cannot load and is not a waiting run is an error), start workers."""
        for slot in self.slots.values():
            slot.load()
            if slot.status == "error":
                raise MP3NetError(slot.error)
        for w in self.workers.values():
            w.start()
        if any(s.watched for s in self.slots.values()):
            self._watcher = threading.Thread(target=self._watch, name="mp3net-serve-watch", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.watch_interval):
            for key, slot in self.slots.items():
                if slot.changed_on_disk():
                    self.workers[key].request_reload()

    def close(self) -> None:
        self._stop.set()
        for w in self.workers.values():
            w.stop()
        for w in self.workers.values():
            if w.is_alive():
                w.join(timeout=30)
        if self._own_dir:
            shutil.rmtree(self.out_dir, ignore_errors=True)

    # -- API ----------------------------------------------------------------------------------------

    def models(self) -> dict[str, Any]:
        return {"models": [s.info() for s in self.slots.values()], "precisions": supported_precisions()}

    def metrics(self, model_id: str) -> dict[str, Any]:
        slot = self._slot(model_id)
        return {"model": model_id, "series": slot.metrics.read() if slot.metrics else {}}

    def submit(self, body: Any) -> Job:
        req = parse_request(body, self.slots)
        slot = self.slots[req.model]
        if slot.G is None:
            raise BadRequest(f"model {slot.id} is not loaded yet: {slot.error or 'waiting for an export'}")
        samples = check_resources(req, slot, self.out_dir)
        job = self.jobs.new(req, samples)
        try:
            self.workers[req.model].submit(job)
        except BadRequest:
            self.jobs.discard(job.id)
            raise
        return job

    def job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no job {job_id} on this server (finished jobs expire)")
        return job

    def file(self, job_id: str, index: int, fmt: str) -> Path:
        job = self.job(job_id)
        if index >= len(job.tracks):
            raise HttpError(HTTPStatus.NOT_FOUND, f"job {job_id} has no track {index}")
        return encoded(job.tracks[index], fmt)

    def _slot(self, model_id: str) -> ModelSlot:
        if model_id not in self.slots:
            raise HttpError(HTTPStatus.NOT_FOUND, f"unknown model {model_id!r}")
        return self.slots[model_id]


def _host_name(header: str) -> str:
    """``"127.0.0.1:8000"`` → ``"127.0.0.1"``, ``"[::1]:8000"`` → ``"[::1]"``."""
    if header.startswith("["):
        return header.split("]")[0] + "]"
    return header.rsplit(":", 1)[0]


class Handler(BaseHTTPRequestHandler):
    server: Server  # only ever instantiated by Server
    server_version = "mp3net-serve"
    protocol_version = "HTTP/1.1"

    @property
    def app(self) -> App:
        return self.server.app

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._handle(self._get)

    def do_HEAD(self) -> None:
        self._handle(self._get)

    def do_POST(self) -> None:
        self._handle(self._post)

    def _handle(self, route) -> None:
        try:
            self._check_host()
            route(urlsplit(self.path))
        except HttpError as e:
            self._json({"error": str(e)}, e.status)
        except BadRequest as e:
            self._json({"error": first_line(e)}, HTTPStatus.BAD_REQUEST)
        except MP3NetError as e:
            self._json({"error": first_line(e)}, HTTPStatus.UNPROCESSABLE_ENTITY)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page went away (e.g. a seek aborted a download)
        except Exception as e:  # a bug: one line for the page, the traceback for the server's console
            traceback.print_exc(file=sys.stderr)
            self._json({"error": f"internal error: {first_line(e)}"}, HTTPStatus.INTERNAL_SERVER_ERROR)

    def _check_host(self) -> None:
        """On a loopback address, refuse other Host names (DNS rebinding: a web site posing as localhost)."""
        if self.server.host_port[0] not in ("127.0.0.1", "::1"):
            return
        host = _host_name(self.headers.get("Host") or "")
        if host not in LOOPBACK:
            raise HttpError(HTTPStatus.FORBIDDEN, f"host {host!r} is not served; open http://127.0.0.1")

    def _get(self, url) -> None:
        path = url.path
        if path in STATIC:
            name, ctype = STATIC[path]
            data = (resources.files("mp3net.serve") / "static" / name).read_bytes()
            return self._send(data, ctype + "; charset=utf-8")
        if path == "/api/models":
            return self._json(self.app.models())
        if m := METRICS_URL.match(path):
            return self._json(self.app.metrics(m.group(1)))
        if m := JOB_URL.match(path):
            return self._json(self.app.job(m.group(1)).to_json())
        if m := FILE_URL.match(path):
            return self._file(m.group(1), int(m.group(2)), m.group(3), parse_qs(url.query))
        raise HttpError(HTTPStatus.NOT_FOUND, f"not found: {path[:200]}")

    def _post(self, url) -> None:
        if url.path != "/api/jobs":
            raise HttpError(HTTPStatus.NOT_FOUND, f"not found: {url.path[:200]}")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise HttpError(HTTPStatus.BAD_REQUEST, "bad Content-Length") from None
        if not 0 < length <= MAX_BODY:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"the request body must be 1 to {MAX_BODY} bytes of JSON")
        try:
            body = json.loads(self.rfile.read(length))
        except (ValueError, UnicodeDecodeError):
            raise HttpError(HTTPStatus.BAD_REQUEST, "the request body is not valid JSON") from None
        self._json(self.app.submit(body).to_json(), HTTPStatus.ACCEPTED)

    def _file(self, job_id: str, index: int, fmt: str, query: dict) -> None:
        path = self.app.file(job_id, index, fmt)
        data = path.read_bytes()
        headers = {"Accept-Ranges": "bytes"}
        if "download" in query:
            job = self.app.job(job_id)
            track = job.tracks[index]
            what = f"seed-{track.seed:04d}" if track.seed is not None else f"{job.id}-{index:02d}"
            headers["Content-Disposition"] = f'attachment; filename="mp3net-{job.request.model}-{what}.{fmt}"'
        status, rng = HTTPStatus.OK, self.headers.get("Range")
        if rng and (m := re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())):
            start = int(m.group(1)) if m.group(1) else max(0, len(data) - int(m.group(2) or 0))
            end = int(m.group(2)) if m.group(1) and m.group(2) else len(data) - 1
            if start >= len(data) or end < start:
                self._send(
                    b"",
                    "text/plain",
                    HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                    {"Content-Range": f"bytes */{len(data)}"},
                )
                return
            end = min(end, len(data) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], HTTPStatus.PARTIAL_CONTENT
        self._send(data, FILE_TYPES[fmt], status, headers)

    def _json(self, obj: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(json.dumps(obj).encode(), "application/json", status, {"Cache-Control": "no-store"})

    def _send(
        self, data: bytes, ctype: str, status: HTTPStatus = HTTPStatus.OK, headers: dict | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: App, verbose: bool = False) -> None:
        self.app, self.verbose = app, verbose
        if ":" in address[0]:
            import socket

            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up mid-reply (a browser dropping a media range, a timed-out request) is routine:
        no traceback for it. Any other error in a handler still prints one, as the base server does."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    @property
    def host_port(self) -> tuple[str, int]:
        """The bound host and port (the free port chosen when port 0 was asked for)."""
        addr = self.server_address
        assert isinstance(addr, tuple), addr  # AF_INET/AF_INET6: (host, port[, flowinfo, scope_id])
        return str(addr[0]), int(addr[1])


def make_server(app: App, host: str = "127.0.0.1", port: int = 8000, verbose: bool = False) -> Server:
    """Bind the page's server (``port`` 0: a free port, see ``server.server_address``); raises MP3NetError."""
    try:
        return Server((host, port), app, verbose)
    except OSError as e:
        raise MP3NetError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
