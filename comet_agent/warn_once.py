"""Log a condition once while it lasts, not at every tick.

A collector that fails every second, a server that stays down, a spool on a full disk: each is
worth one line in the journal when it starts, and one more only after it cleared and came back.
Every part of the agent that repeats an action on a clock uses this instead of its own set::

    warn = WarnOnce(log)
    warn(("collector", name, type(exc).__name__), logging.WARNING, "collector %s failed: %s", name, exc)
    ...
    warn.clear(("collector", name, type(exc).__name__))  # it works again: the next failure is news
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Hashable

#: A bound on remembered conditions: a key built from an unbounded message must not grow forever.
MAX_CONDITIONS = 1000


class WarnOnce:
    """Logs each condition (a hashable key) the first time it is seen, at the level given.

    Later calls with the same key log at DEBUG only, until ``clear(key)``. Thread-safe.
    """

    def __init__(self, logger: logging.Logger):
        self._logger = logger
        self._seen: set[Hashable] = set()
        self._lock = threading.Lock()

    def __call__(self, key: Hashable, level: int, message: str, *args: Any) -> bool:
        """Log ``message % args`` at ``level`` if ``key`` is new; returns True when it was logged."""
        with self._lock:
            first = key not in self._seen and len(self._seen) < MAX_CONDITIONS
            if first:
                self._seen.add(key)
        self._logger.log(level if first else logging.DEBUG, message, *args)
        return first

    def seen(self, key: Hashable) -> bool:
        """Whether ``key`` was logged and not cleared since."""
        with self._lock:
            return key in self._seen

    def clear(self, key: Hashable) -> bool:
        """Forget ``key`` (the condition ended); returns True when it had been logged."""
        with self._lock:
            if key in self._seen:
                self._seen.discard(key)
                return True
            return False
