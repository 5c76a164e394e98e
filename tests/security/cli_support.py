"""Running the real ``comet-agent`` CLI as a subprocess for the security tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

REPO = Path(__file__).resolve().parents[2]


def cli_env(**extra: str) -> dict[str, str]:
    """The test's environment without any Comet setting, with this checkout importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env.update(
        {
            "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
            "PYTHONUNBUFFERED": "1",
            "COMET_ERROR_TRACKING_ENABLE": "false",
        }
    )
    env.update(extra)
    return env


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "comet_agent", *args]


class ServerProcess:
    """``comet-agent server`` running in a subprocess: its root URL once it listens, and its output."""

    def __init__(self, process: subprocess.Popen, root: str, lines: list[str]):
        self.process = process
        self.root = root
        self.lines = lines

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> str:
        """SIGTERM, wait, and return everything it printed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        rest = self.process.stdout.read() if self.process.stdout else ""
        return "\n".join(self.lines) + "\n" + rest


@contextlib.contextmanager
def server_cli(
    tmp_path: Path, *args: str, env: Optional[dict[str, str]] = None, timeout_s: float = 30
) -> Iterator[ServerProcess]:
    """Start ``comet-agent server --port 0 ARGS`` and yield it once it prints its URL."""
    process = subprocess.Popen(
        cli_argv("server", "--port", "0", *args),
        cwd=tmp_path,
        env=env or cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    server = None
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if line.startswith("COMET_URL_OVERRIDE="):
                root = line.strip().split("=", 1)[1][: -len("/clientlib/")]
                server = ServerProcess(process, root, lines)
                break
        assert server is not None, "the server did not start:\n" + "\n".join(lines)
        yield server
    finally:
        if server is not None:
            server.stop()
        elif process.poll() is None:
            process.kill()
            process.wait()
