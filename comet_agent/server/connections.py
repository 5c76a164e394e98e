"""Bounds on the local server's connections: how many may be open, and how slowly each may talk.

aiohttp waits as long as a client likes for a request's head and body, so a few hundred
connections that send a byte now and then ("slowloris") would hold the server's file
descriptors for good. ``ConnectionGuard`` sits between the listening socket and aiohttp:

- **Waiting for a request**: from connecting, or from the end of the previous response, a
  connection has ``header_timeout_s`` to deliver a complete request head; then it is closed.
  An idle keep-alive connection is closed the same way (clients reconnect transparently). A
  response the client is still reading counts as progress, so a slow download is not cut.
- **Receiving a body**: a body must keep arriving at ``min_body_rate_bytes_per_s`` on average,
  after a grace of ``body_timeout_s`` (Apache's ``mod_reqtimeout`` rule: ``body=30,MinRate=...``);
  trickling a byte a second does not keep a connection.
- **At most ``max_connections`` open**: a connection beyond it evicts the one that has waited
  longest for its request (an idle keep-alive or a slowloris), else the one that has been
  receiving a body longest; when every connection is busy answering, the newcomer is closed.
  A normal client therefore gets through while an attacker holds slow connections.

The guard knows when a request starts and ends through ``track_request`` (called by the error
middleware for every request) and closes connections with ``transport.abort()``: no reply is
owed to a client that did not send its request in time. Everything runs on the server's event
loop thread; nothing here locks.
"""

from __future__ import annotations

import asyncio
import resource
import time
from typing import Any, Callable, Optional

from aiohttp import web

DEFAULT_HEADER_TIMEOUT_S = 20.0
DEFAULT_BODY_TIMEOUT_S = 30.0
DEFAULT_MIN_BODY_RATE_BYTES_PER_S = 16 * 1024
#: Upper bound of the default connection cap; the default is also at most half the process's
#: file-descriptor limit, so the store, uploads and logs always have descriptors left.
DEFAULT_MAX_CONNECTIONS = 1024


def default_max_connections() -> int:
    """The default cap: ``DEFAULT_MAX_CONNECTIONS``, or half the soft ``RLIMIT_NOFILE`` if lower."""
    try:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return DEFAULT_MAX_CONNECTIONS
    if soft == resource.RLIM_INFINITY:
        return DEFAULT_MAX_CONNECTIONS
    return max(16, min(DEFAULT_MAX_CONNECTIONS, soft // 2))


class _Connection:
    """What the guard knows of one connection."""

    __slots__ = ("transport", "waiting_since", "body_started", "request", "write_buffer_bytes")

    def __init__(self, transport: asyncio.Transport, now: float):
        self.transport = transport
        self.waiting_since: Optional[float] = now  # None while a request is being handled
        self.body_started: Optional[float] = None
        self.request: Optional[web.BaseRequest] = None
        self.write_buffer_bytes = 0

    def receiving_body(self) -> bool:
        return self.request is not None and not self.request.content.is_eof()


class _GuardedProtocol(asyncio.Protocol):
    """Forwards everything to aiohttp's protocol, and tells the guard when the connection comes and goes."""

    def __init__(self, guard: "ConnectionGuard", inner: asyncio.Protocol):
        self._guard = guard
        self._inner = inner
        self._transport: Optional[asyncio.Transport] = None
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._guard._admit(transport):  # type: ignore[arg-type]
            self._refused = True
            transport.abort()  # type: ignore[attr-defined]
            return
        self._transport = transport  # type: ignore[assignment]
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self._refused:
            return
        self._guard._forget(self._transport)
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            self._inner.data_received(data)

    def eof_received(self) -> Optional[bool]:
        return None if self._refused else self._inner.eof_received()

    def pause_writing(self) -> None:
        if not self._refused:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if not self._refused:
            self._inner.resume_writing()


class ConnectionGuard:
    """Caps and timeouts for the connections of one listening socket (see the module docstring).

    Args:
        max_connections: connections open at once (None: ``default_max_connections()``).
        header_timeout_s: seconds a connection may wait before its request head is complete.
        body_timeout_s: grace, in seconds, before a request body's rate is enforced.
        min_body_rate_bytes_per_s: the average rate a body must keep up after the grace.
        clock: monotonic seconds (tests of the policy may pass their own).

    Example::

        guard = ConnectionGuard(max_connections=256)
        server = await loop.create_server(guard.protocol_factory(runner.server), "127.0.0.1", 0)
        guard.start()
    """

    def __init__(
        self,
        max_connections: Optional[int] = None,
        header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
        body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
        min_body_rate_bytes_per_s: float = DEFAULT_MIN_BODY_RATE_BYTES_PER_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        if header_timeout_s <= 0 or body_timeout_s <= 0 or min_body_rate_bytes_per_s <= 0:
            raise ValueError("the connection timeouts and the body rate must be positive")
        self.max_connections = default_max_connections() if max_connections is None else int(max_connections)
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.min_body_rate_bytes_per_s = min_body_rate_bytes_per_s
        self._clock = clock
        self._by_transport: dict[Any, _Connection] = {}
        self._sweeper: Optional[asyncio.TimerHandle] = None
        self.closed_slow = 0  # connections closed for a timeout (status, tests)
        self.evicted = 0  # connections closed to make room for a newcomer
        self.refused = 0  # newcomers closed because every connection was busy

    # -- wiring ---------------------------------------------------------------------------------

    def protocol_factory(self, make_protocol: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """Wrap aiohttp's protocol factory (``runner.server``) for ``loop.create_server``."""

        def factory() -> asyncio.Protocol:
            return _GuardedProtocol(self, make_protocol())

        return factory

    def start(self) -> None:
        """Start the periodic sweep on the running loop (call from the loop thread)."""
        self._schedule()

    def stop(self) -> None:
        """Stop the sweep."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def close_unfinished(self) -> None:
        """Close every connection that waits for a request or is still sending one (at shutdown)."""
        for connection in list(self._by_transport.values()):
            if connection.waiting_since is not None or connection.receiving_body():
                self._close(connection)

    @property
    def open_connections(self) -> int:
        """Connections open now."""
        return len(self._by_transport)

    # -- requests (from the middleware) ---------------------------------------------------------

    def track_request(self, request: web.BaseRequest) -> Callable[[], None]:
        """Mark the request's connection busy; returns the call that marks it waiting again.

        The middleware calls it at the start of every request and arranges the returned callback
        to run once the response is written (the request task's end).
        """
        connection = self._by_transport.get(request.transport)
        if connection is None:
            return _nothing
        now = self._clock()
        connection.waiting_since = None
        connection.request = request
        connection.body_started = now

        def finished() -> None:
            if connection.request is request:
                connection.request = None
                connection.body_started = None
                connection.waiting_since = self._clock()
                transport = connection.transport
                connection.write_buffer_bytes = transport.get_write_buffer_size() if not transport.is_closing() else 0

        return finished

    # -- the policy -----------------------------------------------------------------------------

    def _admit(self, transport: asyncio.Transport) -> bool:
        now = self._clock()
        if len(self._by_transport) >= self.max_connections and not self._evict_one(now):
            self.refused += 1
            return False
        connection = _Connection(transport, now)
        self._by_transport[transport] = connection
        return True

    def _evict_one(self, now: float) -> bool:
        waiting = [c for c in self._by_transport.values() if c.waiting_since is not None]
        if waiting:
            victim = min(waiting, key=lambda c: c.waiting_since)  # type: ignore[arg-type,return-value]
        else:
            receiving = [c for c in self._by_transport.values() if c.receiving_body()]
            if not receiving:
                return False
            victim = min(receiving, key=lambda c: c.body_started)  # type: ignore[arg-type,return-value]
        self.evicted += 1
        self._close(victim)
        return True

    def _forget(self, transport: Optional[asyncio.Transport]) -> None:
        self._by_transport.pop(transport, None)

    def _close(self, connection: _Connection) -> None:
        self._by_transport.pop(connection.transport, None)
        connection.transport.abort()

    def _schedule(self) -> None:
        interval = max(0.05, min(1.0, self.header_timeout_s / 4, self.body_timeout_s / 4))
        self._sweeper = asyncio.get_running_loop().call_later(interval, self._sweep)

    def _sweep(self) -> None:
        now = self._clock()
        for connection in list(self._by_transport.values()):
            transport = connection.transport
            if transport.is_closing():
                self._by_transport.pop(transport, None)
                continue
            if connection.waiting_since is not None:
                buffered = transport.get_write_buffer_size()
                if buffered and buffered != connection.write_buffer_bytes:
                    # The client is still reading the last response: that is progress.
                    connection.write_buffer_bytes = buffered
                    connection.waiting_since = now
                elif now - connection.waiting_since > self.header_timeout_s:
                    self.closed_slow += 1
                    self._close(connection)
            elif connection.receiving_body() and connection.body_started is not None:
                received = connection.request.content.total_bytes  # type: ignore[union-attr]
                allowed_s = self.body_timeout_s + received / self.min_body_rate_bytes_per_s
                if now - connection.body_started > allowed_s:
                    self.closed_slow += 1
                    self._close(connection)
        self._schedule()


def _nothing() -> None:
    return None
