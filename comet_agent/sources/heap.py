"""The C heap of this process: give its free pages back to the OS after a burst of work.

The static snapshot runs its collectors on a pool of threads; glibc gives each thread its own
malloc arena, and what those threads freed stays mapped in them after they end (~2 MB of RSS
after a snapshot, bench/README.md, memory). ``malloc_trim(0)`` returns the free pages of every
arena. Elsewhere (musl, macOS) there is no such call and nothing is done.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

logger = logging.getLogger(__name__)

_libc: Optional[Any] = None
_looked_up = False


def trim_heap() -> bool:
    """Return the C heap's free pages to the OS (glibc ``malloc_trim(0)``).

    Returns:
        True when the call was made, False where the C library has no ``malloc_trim``.
    """
    global _libc, _looked_up
    if not _looked_up:
        _looked_up = True
        try:
            import ctypes

            libc = ctypes.CDLL(None)
            _libc = libc if hasattr(libc, "malloc_trim") else None
        except (OSError, AttributeError) as exc:
            logger.debug("no malloc_trim here: %s", exc)
    if _libc is None:
        return False
    _libc.malloc_trim(0)
    return True
