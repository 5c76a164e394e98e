"""Signals handled on a thread of their own, for the long-running commands (run, daemon, server).

Why not a plain ``signal.signal`` handler: Python runs a handler on the main thread only, at its
next bytecode, and that fails two ways for a process that mostly waits:

- A process-directed signal (``kill PID``, systemd's SIGTERM) goes to any thread that does not
  block it. When the kernel picks one of our worker threads, the main thread stays asleep in its
  lock wait or ``waitpid()`` and never runs the handler until that call returns on its own: a
  ``run`` that outlived SIGTERM by 30 s under CI load was this.
- A handler interrupts the main thread between any two bytecodes, possibly while it holds a lock
  the handler then takes (``Event.set()`` while ``Event.wait()`` holds the event's condition, or a
  ``Thread.start()`` inside another's): a deadlock.

``SignalRelay`` installs do-nothing Python handlers and a wake-up fd: CPython's C-level handler
writes each signal's number to that fd from whichever thread received it, and a relay thread
blocked on the other end calls ``on_signal(signum)`` at once, where taking locks is safe.

Example::

    with SignalRelay((signal.SIGINT, signal.SIGTERM), lambda _signum: stop.set()):
        stop.wait()
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Callable, Iterable, Optional

log = logging.getLogger(__name__)


def _ignore(_signum: int, _frame: object) -> None:
    # The relay thread does the work; this handler only replaces the default action.
    return None


class SignalRelay:
    """Calls ``on_signal(signum)`` on its own thread for each of ``signals`` the process receives.

    A context manager, entered on the main thread (``signal.set_wakeup_fd`` requires it); leaving it
    restores the previous handlers and wake-up fd and ends the thread. ``on_signal`` may take locks
    and start threads; an exception in it is logged and the relay goes on.
    """

    def __init__(self, signals: Iterable[int], on_signal: Callable[[int], None], name: str = "comet-agent-signals"):
        self.signals = frozenset(int(sig) for sig in signals)
        self.on_signal = on_signal
        self.name = name
        self._thread: Optional[threading.Thread] = None
        self._write_fd = -1
        self._previous_fd = -1
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "SignalRelay":
        read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)  # set_wakeup_fd requires it: a handler must never block
        try:
            self._previous_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
            self._previous = {sig: signal.signal(sig, _ignore) for sig in self.signals}
        except BaseException:
            self._restore()
            os.close(read_fd)
            raise
        self._thread = threading.Thread(target=self._relay, args=(read_fd,), name=self.name, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._restore()
        if self._thread is not None:
            self._thread.join(5.0)  # the closed write end ends its read at once
            self._thread = None

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous = {}
        if self._write_fd >= 0:
            signal.set_wakeup_fd(self._previous_fd)
            os.close(self._write_fd)
            self._write_fd = -1

    def _relay(self, read_fd: int) -> None:
        try:
            while True:
                data = os.read(read_fd, 64)
                if not data:  # the write end closed: the relay was left
                    return
                for signum in data:  # one byte per signal, its number
                    if signum in self.signals:
                        try:
                            self.on_signal(signum)
                        except Exception:
                            log.exception("handling signal %d failed", signum)
        finally:
            os.close(read_fd)
