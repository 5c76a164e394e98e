"""A tiny ``sd_notify`` client: service state messages to systemd over an AF_UNIX datagram socket.

systemd (``Type=notify``) passes the socket in ``$NOTIFY_SOCKET``: a filesystem path, or an
abstract socket written with a leading ``@`` (sent as a leading NUL byte). With ``WatchdogSec=``
it also sets ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``, the process the watchdog is meant for).
No dependency: the protocol is one ``sendto()`` of ``KEY=VALUE`` lines (sd_notify(3)).

Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op that returns False, so callers never
need to ask whether they run under systemd. A send that fails (the socket went away) is logged
once at DEBUG and returns False: a notification must never take the agent down.

Example::

    notifier = Notifier.from_environment()
    notifier.ready()                      # READY=1 once configuration and the spool are usable
    while serving:
        do_one_tick()
        notifier.watchdog_if_due()        # WATCHDOG=1 from the loop itself: a hung loop stops pinging
    notifier.stopping()                   # STOPPING=1
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Callable, Mapping, Optional

log = logging.getLogger(__name__)


def _address(value: str) -> str:
    # "@name" is an abstract socket: Linux names it by a leading NUL byte.
    return "\0" + value[1:] if value.startswith("@") else value


def watchdog_interval_s(environ: Optional[Mapping[str, str]] = None, pid: Optional[int] = None) -> Optional[float]:
    """The watchdog timeout systemd set (``WATCHDOG_USEC``) in seconds, or None when there is none.

    None too when ``WATCHDOG_PID`` names another process (the variable was inherited, e.g. by a
    job the agent wraps) or the value is not a positive integer.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get("WATCHDOG_USEC")
    if not raw:
        return None
    watchdog_pid = environ.get("WATCHDOG_PID")
    if watchdog_pid and watchdog_pid.strip() != str(os.getpid() if pid is None else pid):
        return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None


class Notifier:
    """Sends state messages to ``NOTIFY_SOCKET``; every method is a no-op returning False without one.

    Args:
        socket_path: ``$NOTIFY_SOCKET`` (``@name`` for an abstract socket), or None.
        watchdog_s: the watchdog timeout in seconds (``$WATCHDOG_USEC``), or None; pings are sent
            every half of it, as sd_watchdog_enabled(3) recommends.
        clock: monotonic seconds (tests may inject one).
    """

    def __init__(
        self,
        socket_path: Optional[str],
        watchdog_s: Optional[float] = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.socket_path = socket_path or None
        self.watchdog_s = watchdog_s if self.socket_path else None
        self._clock = clock
        self._last_ping_s: Optional[float] = None
        self._failed_logged = False
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls, environ: Optional[Mapping[str, str]] = None) -> "Notifier":
        """A notifier for ``$NOTIFY_SOCKET`` and ``$WATCHDOG_USEC`` (checked against ``$WATCHDOG_PID``)."""
        environ = os.environ if environ is None else environ
        return cls(environ.get("NOTIFY_SOCKET"), watchdog_interval_s(environ))

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self.socket_path is not None

    def notify(self, message: str) -> bool:
        """Send ``message`` (``"KEY=VALUE"`` lines). Returns True when it was sent."""
        if self.socket_path is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(_address(self.socket_path))
                sock.sendall(message.encode("utf-8"))
            return True
        except OSError as exc:
            with self._lock:
                if not self._failed_logged:
                    self._failed_logged = True
                    log.debug("cannot notify systemd at %s: %s", self.socket_path, exc)
            return False

    def ready(self, status: Optional[str] = None) -> bool:
        """``READY=1`` (with ``MAINPID`` and an optional ``STATUS=`` line)."""
        lines = ["READY=1", f"MAINPID={os.getpid()}"]
        if status:
            lines.append(f"STATUS={status}")
        return self.notify("\n".join(lines))

    def stopping(self) -> bool:
        """``STOPPING=1``: the service is shutting down (flushing its spool)."""
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        """``STATUS=text``: one line shown by ``systemctl status``."""
        return self.notify(f"STATUS={text.splitlines()[0] if text else ''}")

    def watchdog(self) -> bool:
        """``WATCHDOG=1`` now, whether due or not."""
        sent = self.notify("WATCHDOG=1")
        if sent:
            self._last_ping_s = self._clock()
        return sent

    def watchdog_if_due(self) -> bool:
        """``WATCHDOG=1`` when half the watchdog timeout passed since the last ping; False otherwise."""
        if self.watchdog_s is None:
            return False
        now_s = self._clock()
        if self._last_ping_s is not None and now_s - self._last_ping_s < self.watchdog_s / 2:
            return False
        return self.watchdog()

    @property
    def ping_interval_s(self) -> Optional[float]:
        """How often a loop should call ``watchdog_if_due()`` (half the timeout), or None."""
        return self.watchdog_s / 2 if self.watchdog_s else None


class WatchdogPinger:
    """Pings the watchdog from a thread, but only while ``healthy()`` says the work is progressing.

    For loops that cannot ping themselves (``comet-agent run`` blocks in ``wait()``): ``healthy``
    should look at evidence of progress (the agent's sampling thread is alive), so that a hung
    sampler stops the pings and systemd restarts the service.
    """

    def __init__(self, notifier: Notifier, healthy: Callable[[], bool]):
        self._notifier = notifier
        self._healthy = healthy
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "WatchdogPinger":
        """Start pinging (nothing happens without a watchdog)."""
        if self._notifier.ping_interval_s and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="comet-agent-watchdog", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        interval_s = self._notifier.ping_interval_s or 1.0
        while True:
            try:
                healthy = self._healthy()
            except Exception:  # a broken health check counts as unhealthy: let systemd decide
                healthy = False
            if healthy:
                self._notifier.watchdog()
            if self._stop.wait(interval_s):
                return

    def stop(self) -> None:
        """Stop pinging."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
