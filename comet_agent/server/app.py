"""The local Comet-compatible server: aiohttp application, ``LocalServer`` and ``comet-agent server``.

Why aiohttp (and not ``http.server``): it is one dependency that is both a mature asyncio HTTP
server (keep-alive, pipelining, lingering close, request size limits, transparent
``Content-Encoding: gzip`` request bodies) and the multipart/streaming parser the SDK's uploads
need. Many agents push to one server concurrently; an event loop serves them without a thread
per connection, and the loop thread owning the single SQLite connection serialises writes, so
"database is locked" cannot happen. It also runs in-process on port 0, which is what the tests
and the embedded default need (``LocalServer``).

Mounting: the server lives at the host root and serves ``/clientlib/isAlive/ver``,
``/api/rest/v2/*`` and ``/clientlib/rest/v2/*`` (aliases) plus the clientlib batch endpoints
(``rest/``, table in ``rest/routes.py``), then the HTML pages (``pages/``). Point the SDK at it
with ``COMET_URL_OVERRIDE=http://HOST:PORT/clientlib/``.

Recommended intervals (what ``update_status()`` answers): set at start, changed while running
with ``LocalServer.set_intervals(...)`` or, for a server in another process, the admin endpoint::

    POST /local/admin/intervals   Authorization: <the admin key: the server's first key>
    {"heartbeatMs": 5000, "cpuIntervalMs": 1000, "gpuIntervalMs": "garbage"}
    -> {"isAliveBeatDurationMillis": 5000, "cpuMonitorIntervalMillis": 1000,
        "gpuMonitorIntervalMillis": "garbage", "sampleIntervalMillis": 1000}
    GET /local/admin/intervals    -> the current values

Besides Comet's three keys, the reply carries ``sampleIntervalMillis`` (``sampleIntervalMs`` above),
a comet-agent extension: how often agents sample. Its default, 1 s, with the push cadence left at
Comet's documented 68 s / 60 s, gives a short run a chart of one point per second (each push
carries every sample of its window) for the cost of sampling, not of more requests
(bench/README.md, "Full resolution").

Values are stored verbatim, garbage included (strings, negatives, null), so that agent tests can
make ``update_status()`` return garbage. They persist in the store: at start, an interval given
explicitly (a ``LocalServer`` argument that is not None, a command-line flag that differs from
its default) wins; otherwise the stored value, else the default, is used.

API keys: ``--api-key-file FILE`` (repeatable; one or more keys per line, the file 0600),
``$COMET_AGENT_SERVER_API_KEYS`` (keys separated by commas or whitespace) and ``--api-key KEY``
(repeatable, but every local user can read a command line in ``ps``: a warning says so). Without
any, a key is generated on first start, stored 0600 as ``<data dir>/api_key``, and reused
afterwards; its location (never the key) is printed. The first key (``--api-key``, then the
files in order, then the variable; or the generated one) is the admin key (``state.py``).

Access log: off by default; ``--access-log PATH`` (or ``-`` for stderr) writes one line per
request, the key never in it (``access_log.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Mapping

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from comet_agent.config import SERVER_API_KEYS_ENV, parse_key_list, read_key_list_file
from comet_agent.errors import ConfigError
from comet_agent.paths import default_data_dir, ensure_private_dir, write_private_file
from comet_agent.redaction import register_secret
from comet_agent.server.access_log import AccessLogger, close_access_log, open_access_log
from comet_agent.server.connections import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_MIN_BODY_RATE_BYTES_PER_S,
    ConnectionGuard,
)
from comet_agent.server.discovery import PROOF_KEY, new_proof_secret
from comet_agent.server.pages.routes import add_page_routes
from comet_agent.server.rest.common import ApiError, error_response
from comet_agent.server.rest.routes import add_routes
from comet_agent.server.state import INTERVALS_SETTING, STATE_KEY, ServerState, set_intervals
from comet_agent.server.store import API_KEY_FILE_NAME, SERVER_INFO_FILE_NAME, Store
from comet_agent.signals import SignalRelay

logger = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_MS = 10000
DEFAULT_CPU_INTERVAL_MS = 68000
DEFAULT_GPU_INTERVAL_MS = 60000
#: How often agents sample (``sampleIntervalMillis``, our extension): a 20 s run charts 20 points.
DEFAULT_SAMPLE_INTERVAL_MS = 1000
DEFAULT_MAX_UPLOAD_BYTES = 200 * 2**20
_START_TIMEOUT_S = 30.0


CONNECTIONS_KEY = web.AppKey("connections", ConnectionGuard)


@web.middleware
async def _error_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Turn every failure into a Comet-style JSON error; unexpected ones become a logged 500.

    It also tells the connection guard when a request starts and when its response is written
    (the end of the request's task), which is when the connection waits for its next request.
    """
    state: ServerState = request.app[STATE_KEY]
    guard = request.app.get(CONNECTIONS_KEY)
    if guard is not None:
        finished = guard.track_request(request)
        task = asyncio.current_task()
        if task is not None:
            task.add_done_callback(lambda _task: finished())
    try:
        declared = request.content_length
        if declared is not None and declared > state.max_upload_bytes:
            raise ApiError(
                413,
                f"the request body ({declared} bytes) exceeds the "
                f"{state.max_upload_bytes} byte limit (--max-upload-mb)",
            )
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.msg, exc.sdk_error_code)
    except web.HTTPRequestEntityTooLarge:
        return error_response(
            413, f"the request body exceeds the {state.max_upload_bytes} byte limit (--max-upload-mb)"
        )
    except RequestPayloadError as exc:  # e.g. a body declared gzip that does not inflate
        return error_response(400, f"unreadable request body: {exc}")
    except ConnectionError:
        # The client went away, or the guard closed it for sending too slowly: nobody reads an
        # answer, and it is not the server's error (no log line per dropped attacker).
        return error_response(400, "the connection was closed before the request was complete")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason or "error")
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("unexpected error serving %s %s", request.method, request.path)
        return error_response(500, "internal server error (see the server log)")


def build_application(state: ServerState, connections: ConnectionGuard | None = None) -> web.Application:
    """The aiohttp application serving ``state`` (no socket is opened).

    ``connections``: the guard of the socket it will be served on (``LocalServer`` passes it).
    """
    # client_max_size bounds what read()/post() accept; the middleware rejects declared sizes
    # early. A little slack covers the multipart framing around a file at the limit.
    app = web.Application(middlewares=[_error_middleware], client_max_size=state.max_upload_bytes)
    app[STATE_KEY] = state
    if connections is not None:
        app[CONNECTIONS_KEY] = connections
    add_routes(app)
    add_page_routes(app)  # after the REST routes: their fixed paths win
    return app


def load_or_create_api_key(data_dir: Path) -> tuple[str, Path, bool]:
    """The key stored in ``<data_dir>/api_key``, created 0600 if absent.

    Returns:
        (key, key file path, whether it was generated now).

    Raises:
        OSError: the file cannot be read or written.
        ValueError: the file exists but is empty.
    """
    path = Path(data_dir) / API_KEY_FILE_NAME
    if path.exists():
        key = path.read_text(encoding="utf-8").strip()
        if not key:
            raise ValueError(f"the API key file {path} is empty; delete it to generate a new key")
        return key, path, False
    key = secrets.token_hex(20)
    write_private_file(path, (key + "\n").encode("utf-8"))
    return key, path, True


class LocalServer:
    """The local server running in a background thread with its own event loop.

    Args:
        data_dir: where the SQLite store and uploads live (created 0700).
        host: address to listen on.
        port: port to listen on; 0 picks a free one (see ``.port`` after ``start()``).
        api_keys: accepted API keys; None or empty: the key stored in ``<data_dir>/api_key``,
            generated on first start.
        heartbeat_ms, cpu_interval_ms, gpu_interval_ms, sample_interval_ms: what ``update_status()``
            recommends, in milliseconds; None: the value persisted by an earlier run, else
            10000 / 68000 / 60000 / 1000.
        max_upload_bytes: largest accepted request body; larger ones get 413.
        max_connections: connections open at once (None: 1024, or half the file-descriptor
            limit if lower); beyond it the connection waiting longest for its request is closed.
        header_timeout_s: seconds a connection may take to send a complete request head (and
            stay idle between requests).
        body_timeout_s, min_body_rate_bytes_per_s: a request body must arrive at that average
            rate after that grace (see ``comet_agent.server.connections``).

    Example::

        with LocalServer(tmp_path, api_keys=["k"]) as server:
            os.environ["COMET_URL_OVERRIDE"] = server.clientlib_url
    """

    def __init__(
        self,
        data_dir: Path | str,
        host: str = "127.0.0.1",
        port: int = 0,
        api_keys: list[str] | None = None,
        heartbeat_ms: Any = None,
        cpu_interval_ms: Any = None,
        gpu_interval_ms: Any = None,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        max_connections: int | None = None,
        header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
        body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
        min_body_rate_bytes_per_s: float = DEFAULT_MIN_BODY_RATE_BYTES_PER_S,
        access_log: str | None = None,
        sample_interval_ms: Any = None,
    ):
        if max_upload_bytes <= 0:
            raise ValueError(f"max_upload_bytes must be positive, got {max_upload_bytes}")
        self.data_dir = Path(data_dir)
        self.host = host
        self._requested_port = port
        self._given_keys = [k for k in (api_keys or []) if k]
        self._given_intervals = {
            "heartbeat_ms": heartbeat_ms,
            "cpu_interval_ms": cpu_interval_ms,
            "gpu_interval_ms": gpu_interval_ms,
            "sample_interval_ms": sample_interval_ms,
        }
        self.max_upload_bytes = int(max_upload_bytes)
        self.connections = ConnectionGuard(
            max_connections,
            header_timeout_s=header_timeout_s,
            body_timeout_s=body_timeout_s,
            min_body_rate_bytes_per_s=min_body_rate_bytes_per_s,
        )
        self._listener: asyncio.AbstractServer | None = None
        # What /local/discovery/proof proves knowledge of; filled once the URL is known.
        self._identity: dict[str, str] = {}
        self.generated_key_file: Path | None = None
        self.key_file: Path | None = None
        self._state: ServerState | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self.access_log = access_log
        self._access_logger: logging.Logger | None = None

    def __repr__(self) -> str:
        return f"LocalServer(url={self.url if self._port else None!r}, data_dir={str(self.data_dir)!r})"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "LocalServer":
        """Open the store and start listening; returns once the socket accepts connections.

        Raises:
            OSError: the data directory or the port is unusable.
            ValueError: the stored API key file is empty.
        """
        if self._thread is not None:
            raise RuntimeError("the server is already started")
        ensure_private_dir(self.data_dir)
        keys = list(self._given_keys)
        if not keys:
            key, self.key_file, generated = load_or_create_api_key(self.data_dir)
            keys = [key]
            if generated:
                self.generated_key_file = self.key_file
        for key in keys:
            register_secret(key)
        if self.access_log is not None and self._access_logger is None:
            self._access_logger = open_access_log(self.access_log)  # an unusable path fails start()
        store = Store(self.data_dir)
        try:
            intervals = {
                "isAliveBeatDurationMillis": DEFAULT_HEARTBEAT_MS,
                "cpuMonitorIntervalMillis": DEFAULT_CPU_INTERVAL_MS,
                "gpuMonitorIntervalMillis": DEFAULT_GPU_INTERVAL_MS,
                "sampleIntervalMillis": DEFAULT_SAMPLE_INTERVAL_MS,
            }
            stored = store.get_setting(INTERVALS_SETTING)
            if isinstance(stored, dict):
                intervals.update({k: v for k, v in stored.items() if k in intervals})
            self._state = ServerState(store, keys, intervals, self.max_upload_bytes)
            given = {k: v for k, v in self._given_intervals.items() if v is not None}
            set_intervals(self._state, **given)
        except BaseException:
            store.close()
            raise
        self._loop = loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._serve, args=(loop, started, failure), name="comet-agent-server", daemon=True
        )
        self._thread.start()
        if not started.wait(_START_TIMEOUT_S):
            raise TimeoutError(f"the server did not start listening within {_START_TIMEOUT_S} s")
        if failure:
            self._thread.join()
            self._thread = None
            if self._access_logger is not None:
                close_access_log(self._access_logger)
                self._access_logger = None
            raise failure[0]
        logger.info("local Comet server listening on %s (data in %s)", self.url, self.data_dir)
        self._write_discovery_file()
        return self

    def _write_discovery_file(self) -> None:
        # Lets `comet-agent run` with no configuration find and reuse this server
        # (comet_agent.embedded), once the server proves it knows proof_secret (server/discovery.py).
        info = {"url": self.url, "pid": os.getpid(), "proof_secret": self._identity["secret"]}
        try:
            write_private_file(self.data_dir / SERVER_INFO_FILE_NAME, json.dumps(info).encode("utf-8"))
        except OSError as exc:
            logger.warning(
                "cannot write %s (%s); agents will not find this server by themselves",
                self.data_dir / SERVER_INFO_FILE_NAME,
                exc,
            )

    def _remove_discovery_file(self) -> None:
        path = self.data_dir / SERVER_INFO_FILE_NAME
        try:
            if json.loads(path.read_text(encoding="utf-8")).get("url") == self.url:
                path.unlink()
        except (OSError, ValueError, AttributeError):
            pass

    def _serve(self, loop: asyncio.AbstractEventLoop, started: threading.Event, failure: list[BaseException]) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:  # handed to start(), which raises it
            failure.append(exc)
            loop.run_until_complete(self._cleanup())
            loop.close()
            started.set()
            return
        started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._cleanup())
            # What aiohttp leaves behind on closed connections (a lingering read of a body the
            # server refused early) ends here, not as "Task was destroyed" at interpreter exit.
            leftover = asyncio.all_tasks(loop)
            for task in leftover:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
            loop.close()

    async def _listen(self) -> None:
        app = build_application(self._started_state, self.connections)
        app[PROOF_KEY] = self._identity
        # aiohttp's own idle timeout (its default is an hour) backs the guard's up.
        self._runner = runner = web.AppRunner(
            app,
            access_log=self._access_logger,  # None: no access log
            access_log_class=AccessLogger,
            handle_signals=False,
            keepalive_timeout=2 * self.connections.header_timeout_s,
        )
        await runner.setup()
        if runner.server is None:  # set by setup()
            raise RuntimeError("aiohttp's AppRunner has no server after setup()")
        # Our own listening socket instead of web.TCPSite: every connection goes through the
        # guard (caps and timeouts aiohttp does not have).
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            self.connections.protocol_factory(runner.server),
            self.host,
            self._requested_port,
            backlog=1024,
            reuse_address=True,
        )
        self.connections.start()
        self._port = self._listener.sockets[0].getsockname()[1]  # the real port when 0 was asked
        # A new secret per start: a proof from an earlier run of this data directory proves nothing.
        self._identity.update(secret=new_proof_secret(), url=self.url)

    async def _cleanup(self) -> None:
        if self._listener is not None:
            self._listener.close()
        self.connections.stop()
        # Connections still waiting for, or still sending, a request have nothing to finish.
        self.connections.close_unfinished()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._state is not None:
            self._state.store.close()

    def stop(self) -> None:
        """Stop listening, finish in-flight requests, close the store. Idempotent."""
        loop = self._loop
        if self._thread is None or loop is None:  # the loop is set before the thread starts
            return
        self._remove_discovery_file()
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join()
        self._thread = None
        if self._access_logger is not None:
            close_access_log(self._access_logger)
            self._access_logger = None

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ----------------------------------------------------------------- properties

    @property
    def _started_state(self) -> ServerState:
        """The shared state, set by ``start()`` (it outlives ``stop()``). Raises RuntimeError before start."""
        if self._state is None:
            raise RuntimeError("the server is not started")
        return self._state

    @property
    def port(self) -> int:
        """The listening port (the real one when 0 was asked). Raises RuntimeError before start."""
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def open_connections(self) -> int:
        """Client connections open now (the guard's count)."""
        return self.connections.open_connections

    @property
    def url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:41234``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def clientlib_url(self) -> str:
        """The value for ``COMET_URL_OVERRIDE``: ``url + "/clientlib/"``."""
        return self.url + "/clientlib/"

    @property
    def api_keys(self) -> list[str]:
        """The accepted API keys (after ``start()`` this includes a generated one)."""
        return list(self._state.api_keys) if self._state else list(self._given_keys)

    @property
    def api_key(self) -> str:
        """The first accepted API key."""
        keys = self.api_keys
        if not keys:
            raise RuntimeError("no API key yet: start the server first")
        return keys[0]

    @property
    def intervals(self) -> dict[str, Any]:
        """What update_status() answers now (camelCase keys)."""
        return dict(self._started_state.intervals)

    def set_intervals(
        self,
        heartbeat_ms: Any = None,
        cpu_interval_ms: Any = None,
        gpu_interval_ms: Any = None,
        sample_interval_ms: Any = None,
    ) -> None:
        """Change what update_status() answers from the next call on (None leaves one as is).

        Values are used verbatim (any JSON value) and persisted in the store.
        """
        given = {
            k: v
            for k, v in (
                ("heartbeat_ms", heartbeat_ms),
                ("cpu_interval_ms", cpu_interval_ms),
                ("gpu_interval_ms", gpu_interval_ms),
                ("sample_interval_ms", sample_interval_ms),
            )
            if v is not None
        }
        loop = self._loop
        if self._thread is None or loop is None:
            raise RuntimeError("the server is not started")
        state = self._started_state

        async def apply() -> None:  # on the loop thread, which owns the store
            set_intervals(state, **given)

        asyncio.run_coroutine_threadsafe(apply(), loop).result(timeout=10)


def server_api_keys(
    given: list[str] | None = None, files: list[str] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[list[str], list[str]]:
    """The keys ``comet-agent server`` accepts, and where they came from (for one printed line).

    In order: ``--api-key`` values, the keys of each ``--api-key-file``, then
    ``$COMET_AGENT_SERVER_API_KEYS``; duplicates are kept once, at their first place (the first
    key is the admin key). Empty lists: none given, a key is generated.

    Raises:
        ConfigError: a key file is unreadable, shared with other users, or empty.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    keys: list[str] = []
    sources: list[str] = []
    if given:
        keys.extend(k.strip() for k in given if k.strip())
        sources.append("--api-key")
    for path in files or []:
        keys.extend(read_key_list_file(path))
        sources.append(f"--api-key-file {path}")
    from_env = parse_key_list(env.get(SERVER_API_KEYS_ENV, ""))
    if from_env:
        keys.extend(from_env)
        sources.append(f"${SERVER_API_KEYS_ENV}")
    return list(dict.fromkeys(keys)), sources


def serve_from_args(args) -> int:
    """Run ``comet-agent server`` until SIGINT/SIGTERM. Returns the exit status (0 on a clean stop)."""
    from comet_agent.errors import ExitStatus

    max_upload_mb = getattr(args, "max_upload_mb", 200.0)
    if max_upload_mb is None or max_upload_mb <= 0:
        print(f"comet-agent server: --max-upload-mb must be positive, got {max_upload_mb}", file=sys.stderr)
        return ExitStatus.USAGE
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir() / "server"
    try:
        api_keys, key_sources = server_api_keys(getattr(args, "api_key", None), getattr(args, "api_key_file", None))
    except ConfigError as exc:
        print(f"comet-agent server: {exc}", file=sys.stderr)
        return ExitStatus.CONFIG
    if getattr(args, "api_key", None):
        print(
            "comet-agent server: warning: --api-key shows the key to every local user (ps, /proc/PID/cmdline); "
            f"put it in a 0600 file for --api-key-file, or in ${SERVER_API_KEYS_ENV}",
            file=sys.stderr,
            flush=True,
        )
    server = LocalServer(
        data_dir,
        host=args.host,
        port=args.port,
        api_keys=api_keys,
        # None when the flag was not given (the CLI's default): the stored value applies.
        heartbeat_ms=args.heartbeat_ms,
        cpu_interval_ms=args.cpu_interval_ms,
        gpu_interval_ms=args.gpu_interval_ms,
        sample_interval_ms=getattr(args, "sample_interval_ms", None),
        max_upload_bytes=int(max_upload_mb * 2**20),
        access_log=getattr(args, "access_log", None),
    )
    try:
        ensure_private_dir(data_dir)
    except OSError as exc:
        print(f"comet-agent server: cannot use the data directory {data_dir}: {exc}", file=sys.stderr)
        return ExitStatus.CONFIG
    try:
        server.start()
    except ValueError as exc:  # an unusable stored key file
        print(f"comet-agent server: {exc}", file=sys.stderr)
        return ExitStatus.CONFIG
    except OSError as exc:  # typically the address is in use or not ours to bind
        if server.access_log is not None and getattr(exc, "filename", None) == server.access_log:
            print(f"comet-agent server: cannot open the access log {server.access_log}: {exc}", file=sys.stderr)
            return ExitStatus.CONFIG
        print(f"comet-agent server: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return ExitStatus.FAILURE
    stop_requested = threading.Event()
    # Set from the relay's thread: a handler on the main thread could deadlock on the event's lock
    # (comet_agent/signals.py).
    with SignalRelay((signal.SIGINT, signal.SIGTERM), lambda _signum: stop_requested.set()):
        try:
            print(f"comet-agent server listening on {server.url}", flush=True)
            print(f"COMET_URL_OVERRIDE={server.clientlib_url}", flush=True)
            print(f"data directory: {data_dir}", flush=True)
            if server.generated_key_file is not None:
                print(f"generated an API key, stored in {server.generated_key_file} (mode 0600)", flush=True)
            elif server.key_file is not None:
                print(f"API key: read from {server.key_file}", flush=True)
            else:
                print(f"API keys: {len(api_keys)}, from {', '.join(key_sources)}", flush=True)
            stop_requested.wait()
        finally:
            server.stop()
    return ExitStatus.OK
