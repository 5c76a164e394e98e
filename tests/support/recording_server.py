"""A small scriptable HTTP server on 127.0.0.1:0, for wire-conformance and fault-injection tests.

It runs in a background thread, records every request (method, path, query, headers, decoded
body, JSON, multipart parts) and answers with plausible Comet REST shapes per endpoint, so that
both the official ``comet_ml`` SDK and our client can be driven against it. Faults are scripted:

    with RecordingServer() as server:
        server.add_fault(Fault(status=503), times=3)                    # next 3 requests: 503
        server.add_fault(Fault(status=429, headers={"Retry-After": "2"}), path="/api/rest/v2/tags")
        server.add_fault(Fault(delay_s=5))                              # answer late (read timeout)
        server.add_fault(Fault(close_connection=True))                  # drop the connection, no reply
        server.add_fault(Fault(body=b"{not json", content_type="application/json"))
        server.add_fault(Fault.html_error_page(502))
        server.set_route("GET", "/api/rest/v2/experiment/tags", {"tags": ["a"]})

Requests are matched against faults in the order the faults were added; a fault with a ``path``
only applies to requests on that path (query excluded). Delays wait on an event that ``stop()``
sets, so a hanging handler never outlives the test.
"""

from __future__ import annotations

import email.parser
import email.policy
import gzip
import io
import json
import threading
import time
import urllib.parse
import uuid
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

REST = "/api/rest/v2/"
CREST = "/clientlib/rest/v2/"

SYSTEM_DETAILS_KEYS = (
    "user",
    "command",
    "env",
    "executable",
    "hostname",
    "ip",
    "machine",
    "os",
    "osRelease",
    "osType",
    "pid",
    "processor",
    "pythonVersion",
    "pythonVersionVerbose",
    "installedPackages",
    "osPackages",
    "gpuStaticInfoList",
    "logAdditionalSystemInfoList",
    "networkInterfaceIps",
    "totalRam",
    "maxTotalMemory",
    "systemMetricNames",
)
_LIST_KEYS = {
    "installedPackages",
    "osPackages",
    "gpuStaticInfoList",
    "logAdditionalSystemInfoList",
    "networkInterfaceIps",
    "systemMetricNames",
}


@dataclass
class MultipartPart:
    """One part of a multipart/form-data body."""

    name: str
    filename: str | None
    content_type: str | None
    content: bytes


@dataclass
class RecordedRequest:
    """What the server saw of one request. ``body`` is gunzipped when it came gzip-encoded."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    was_gzipped: bool = False
    json: Any = None
    parts: dict[str, MultipartPart] = field(default_factory=dict)
    #: the status this server answered with; None while unanswered or when the connection was dropped
    answered_status: int | None = None
    #: ``time.monotonic()`` when the request was read (for gaps such as Retry-After waits)
    received_monotonic_s: float = field(default_factory=time.monotonic)

    @property
    def query_single(self) -> dict[str, str]:
        """The query with each key's last value (what a server framework usually exposes)."""
        return {k: v[-1] for k, v in self.query.items()}

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Fault:
    """A scripted misbehaviour. Fields combine: delay first, then close or answer.

    status/headers/body/content_type: the reply to send instead of the normal one.
    delay_s: wait this long before answering (interrupted by ``stop()``).
    close_connection: read the request, then close the socket without any reply.
    partial_body_bytes: send the headers (with the full Content-Length) and only this many bytes
        of the body, then close: a reply torn mid-body.
    """

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    content_type: str | None = "application/json"
    delay_s: float = 0.0
    close_connection: bool = False
    partial_body_bytes: int | None = None

    @classmethod
    def html_error_page(cls, status: int = 502) -> "Fault":
        """A proxy-style HTML error page (what nginx or a load balancer sends)."""
        page = f"<html><head><title>{status} Bad Gateway</title></head><body><h1>{status}</h1></body></html>"
        return cls(status=status, body=page.encode(), content_type="text/html")

    @classmethod
    def garbage(cls, status: int = 200) -> "Fault":
        """A body that claims to be JSON and is not."""
        return cls(status=status, body=b"\x00\xffnot json{", content_type="application/json")


@dataclass
class _ScriptedFault:
    fault: Fault
    remaining: int
    method: str | None
    path: str | None


Responder = Callable[[RecordedRequest], "tuple[int, dict[str, str], bytes] | dict | list | bytes"]


def _metadata(key: str | None) -> dict:
    return {
        "experimentKey": key,
        "experimentName": "recorded-name",
        "workspaceName": "ws",
        "projectName": "proj",
        "projectId": "p" * 32,
        "archived": False,
        "durationMillis": 1000,
        "startTimeMillis": 1700000000000,
        "endTimeMillis": 1700000001000,
        "filePath": "/train.py",
        "fileName": "train.py",
        "optimizationId": None,
        "running": False,
        "throttle": False,
    }


def _zip_bytes(member: str, content: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, content)
    return buf.getvalue()


def default_reply(request: RecordedRequest) -> dict | list | bytes:
    """The plausible answer for an endpoint; unknown GETs get ``{}``, unknown writes ``{"msg": "Saved"}``."""
    path = request.path
    key = request.query_single.get("experimentKey")
    if path.startswith("/clientlib/isAlive/ver"):
        return {"version": "3.99.0"}
    for base in (REST, CREST):
        if path.startswith(base):
            endpoint = path[len(base) :]
            break
    else:
        endpoint = path.lstrip("/")
    get_replies: dict[str, Any] = {
        "experiment/metadata": lambda: _metadata(key),
        "experiments": lambda: {"experiments": [_metadata("k" * 32)]},
        "workspaces": lambda: {"workspaceNames": ["ws"]},
        "projects": lambda: {"projects": [{"projectName": "proj", "projectId": "p" * 32}]},
        "account-details": lambda: {"userName": "user", "defaultWorkspaceName": "ws"},
        "experiment/system-details": lambda: {k: ([] if k in _LIST_KEYS else None) for k in SYSTEM_DETAILS_KEYS},
        "experiment/asset/list": lambda: {"assets": []},
        "experiment/asset/get-asset": lambda: b"asset-bytes",
        "experiment/model/download": lambda: _zip_bytes("model.bin", b"weights"),
        "experiment/model/asset/list": lambda: {"assets": []},
        "experiment/model": lambda: {"models": [{"modelName": "m"}, {"modelName": "m"}]},
        "experiment/code": lambda: {"code": "print(1)"},
        "experiment/html": lambda: {"html": "<b>x</b>"},
        "experiment/graph": lambda: {"graph": "graph"},
        "experiment/output": lambda: {"output": "line\n"},
        "experiment/tags": lambda: {"tags": ["t1"]},
        "experiment/git/metadata": lambda: {"user": None, "root": None, "branch": None, "parent": None, "origin": None},
        "experiment/git/patch": lambda: b'{"msg":"No patch"}',
        "experiment/metrics/get-all": lambda: {"metrics": []},
        "experiment/metrics/get-metric": lambda: {"metrics": []},
        "experiment/metrics/summary": lambda: {"values": []},
        "experiment/log-other": lambda: {"values": []},
        "experiment/parameters": lambda: {"values": []},
        "project/column-names": lambda: {"columns": []},
        "write/project/symlink": lambda: {"link": "http://127.0.0.1/ws/other/" + (key or "")},
        "write/experiment/set-status": lambda: {
            "isAliveBeatDurationMillis": 10000,
            "gpuMonitorIntervalMillis": 60000,
            "cpuMonitorIntervalMillis": 68000,
        },
        "write/experiment/create": lambda: {"experimentKey": "c" * 32, "link": "http://127.0.0.1/ws/proj/" + "c" * 32},
    }
    if endpoint in get_replies:
        return get_replies[endpoint]()
    if request.method == "GET":
        return {}
    return {"msg": "Saved"}


def _parse_multipart(content_type: str, body: bytes) -> dict[str, MultipartPart]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    parts: dict[str, MultipartPart] = {}
    if not message.is_multipart():
        return parts
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_param("filename", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        parts[str(name)] = MultipartPart(str(name), filename, part.get("Content-Type"), payload)
    return parts


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real server
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read .requests instead
        pass

    def _handle(self) -> None:
        owner = self.server.owner
        split = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = self._read_chunked()
        else:
            raw = self.rfile.read(length) if length else b""
        gzipped = (self.headers.get("Content-Encoding") or "").lower() == "gzip"
        body = gzip.decompress(raw) if gzipped and raw else raw
        request = RecordedRequest(
            method=self.command,
            path=split.path,
            query=urllib.parse.parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            was_gzipped=gzipped,
        )
        content_type = self.headers.get("Content-Type") or ""
        if content_type.startswith("multipart/"):
            request.parts = _parse_multipart(content_type, body)
        elif body:
            try:
                request.json = json.loads(body)
            except ValueError:
                request.json = None
        owner._record(request)

        fault = owner._take_fault(request)
        if fault is not None:
            if fault.delay_s:
                owner._stopping.wait(fault.delay_s)
            if fault.close_connection:
                self.close_connection = True
                self.connection.close()
                return
            if fault.status is not None or fault.body is not None:
                status = fault.status if fault.status is not None else 200
                body_out = fault.body if fault.body is not None else json.dumps({"msg": f"scripted {status}"}).encode()
                headers = dict(fault.headers)
                if fault.content_type is not None:
                    headers.setdefault("Content-Type", fault.content_type)
                if fault.partial_body_bytes is not None:
                    request.answered_status = status
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body_out)))
                    self.end_headers()
                    self.wfile.write(body_out[: fault.partial_body_bytes])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.close()
                    return
                request.answered_status = status
                self._send(status, headers, body_out)
                return
        reply = owner._reply_for(request)
        if isinstance(reply, tuple):
            status, headers, body_out = reply
            request.answered_status = status
            self._send(status, headers, body_out)
        elif isinstance(reply, (bytes, bytearray)):
            request.answered_status = 200
            self._send(200, {"Content-Type": "application/octet-stream"}, bytes(reply))
        else:
            request.answered_status = 200
            self._send(200, {"Content-Type": "application/json"}, json.dumps(reply).encode())

    def _read_chunked(self) -> bytes:
        chunks = []
        while True:
            size = int(self.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (e.g. its read timeout after a scripted delay): nothing to answer

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: "RecordingServer"


class RecordingServer:
    """The scriptable loopback server. Use as a context manager, or call ``start()``/``stop()``.

    Attributes: ``url`` (``http://127.0.0.1:PORT``), ``clientlib_url`` (``url + "/clientlib/"``),
    ``requests`` (a list of ``RecordedRequest``, in arrival order).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._requested_port = port  # 0: any free port; another: take that one (an impostor's)
        self._lock = threading.Lock()
        self._faults: list[_ScriptedFault] = []
        self._routes: dict[tuple[str, str], Responder | dict | list | bytes | tuple] = {}
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.requests: list[RecordedRequest] = []

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "RecordingServer":
        self._server = _Server((self._host, self._requested_port), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="recording-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "RecordingServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def clientlib_url(self) -> str:
        return self.url + "/clientlib/"

    # -- scripting -----------------------------------------------------------------------------
    def add_fault(self, fault: Fault, times: int = 1, *, path: str | None = None, method: str | None = None) -> None:
        """Apply ``fault`` to the next ``times`` matching requests (``path`` excludes the query)."""
        with self._lock:
            self._faults.append(_ScriptedFault(fault, times, method, path))

    def fail_next(self, times: int, status: int, headers: dict[str, str] | None = None, **kwargs: Any) -> None:
        """Shorthand: the next ``times`` requests answer ``status`` with ``headers``."""
        self.add_fault(Fault(status=status, headers=dict(headers or {})), times, **kwargs)

    def remove_faults(self) -> None:
        """Drop every pending fault (recorded requests and routes stay): ends a scripted outage."""
        with self._lock:
            self._faults.clear()

    def set_route(self, method: str, path: str, reply: Responder | dict | list | bytes | tuple) -> None:
        """Override the reply for ``method path``: a JSON-able value, raw bytes, a
        ``(status, headers, body)`` tuple, or a callable taking the ``RecordedRequest``."""
        with self._lock:
            self._routes[(method.upper(), path)] = reply

    def clear(self) -> None:
        """Forget recorded requests and pending faults (routes stay)."""
        with self._lock:
            self.requests.clear()
            self._faults.clear()

    def requests_to(self, path_suffix: str) -> list[RecordedRequest]:
        """Recorded requests whose path ends with ``path_suffix``."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith(path_suffix)]

    def wait_for_requests(self, count: int, timeout_s: float = 5.0) -> list[RecordedRequest]:
        """Poll (bounded) until at least ``count`` requests were recorded; returns them."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.01)
        raise AssertionError(f"expected {count} requests within {timeout_s}s, got {len(self.requests)}")

    # -- used by the handler -------------------------------------------------------------------
    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _take_fault(self, request: RecordedRequest) -> Fault | None:
        with self._lock:
            for scripted in self._faults:
                if scripted.remaining <= 0:
                    continue
                if scripted.path is not None and scripted.path != request.path:
                    continue
                if scripted.method is not None and scripted.method.upper() != request.method:
                    continue
                scripted.remaining -= 1
                return scripted.fault
        return None

    def _reply_for(self, request: RecordedRequest):
        with self._lock:
            route = self._routes.get((request.method, request.path))
        if route is None:
            return default_reply(request)
        if callable(route):
            return route(request)
        return route


def new_experiment_key() -> str:
    """A fresh 32-hex experiment key, like the SDK generates."""
    return uuid.uuid4().hex
