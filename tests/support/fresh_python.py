"""Run a snippet in a fresh interpreter: what a new process imports, without this one's modules."""

from __future__ import annotations

import subprocess
import sys


def run_fresh(code: str, timeout_s: float = 60) -> list[str]:
    """Run ``code`` with this interpreter in a new process; its stdout lines (it must exit 0)."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()
