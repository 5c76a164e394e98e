"""sources.heap: the C heap's free pages go back to the OS after a burst of work."""

from __future__ import annotations

import subprocess
import sys

import pytest

from comet_agent.sources.heap import trim_heap


def _rss_kib(pid: str = "self") -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_trim_returns_what_threads_freed():
    # In a fresh interpreter: threads allocate C-heap blocks (in their own glibc arenas) and free
    # most of them, leaving survivors scattered; the trim must give the free pages back.
    code = (
        "import threading, sys\n"
        "from comet_agent.sources.heap import trim_heap\n"
        "def rss():\n"
        "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS:'))\n"
        "kept = []\n"
        "def burst():\n"
        "    blocks = [bytearray(2000) for _ in range(20000)]\n"
        "    kept.extend(blocks[::64])  # survivors scattered through the arena: no automatic trim\n"
        "    del blocks\n"
        "threads = [threading.Thread(target=burst) for _ in range(4)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "before = rss()\n"
        "print(trim_heap(), before - rss())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    called, released_kib = result.stdout.split()
    if called != "True":
        pytest.skip("this C library has no malloc_trim")
    assert int(released_kib) > 1024  # well over a MiB of the ~150 MiB the threads touched


def test_trim_is_safe_to_call_again():
    assert trim_heap() == trim_heap()
