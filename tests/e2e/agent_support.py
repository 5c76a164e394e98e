"""Helpers for end-to-end tests: run ``comet-agent`` as a subprocess against a local server."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parents[2]


def agent_env(server, data_dir: Path, **extra: str) -> dict:
    """Environment for an agent subprocess talking to ``server``, with its own data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env.update(
        {
            "COMET_URL_OVERRIDE": server.clientlib_url,
            "COMET_API_KEY": server.api_key,
            "COMET_AGENT_DATA_DIR": str(data_dir),
            "COMET_ERROR_TRACKING_ENABLE": "false",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        }
    )
    env.update(extra)
    return env


def agent_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "comet_agent", *args]


def start_agent(server, data_dir: Path, *args: str, **extra_env: str) -> subprocess.Popen:
    return subprocess.Popen(
        agent_argv(*args),
        env=agent_env(server, data_dir, **extra_env),
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def run_agent(
    server, data_dir: Path, *args: str, timeout_s: float = 60, input_bytes: Optional[bytes] = None, **extra_env: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        agent_argv(*args),
        env=agent_env(server, data_dir, **extra_env),
        cwd=str(REPO),
        capture_output=True,
        timeout=timeout_s,
        input=input_bytes,
    )


def wait_for(condition: Callable[[], object], timeout_s: float = 30, interval_s: float = 0.1, what: str = "condition"):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def spool_entries(data_dir: Path, experiment_key: str) -> list[tuple]:
    """(endpoint, payload JSON, request_id) of every entry waiting in an agent's spool (read-only)."""
    path = data_dir / "spool" / f"{experiment_key}.db"
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("SELECT endpoint, payload, request_id FROM entries ORDER BY seq").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def experiment_key_from(stderr_text: str) -> str:
    for line in stderr_text.splitlines():
        if line.startswith("comet-agent: experiment "):
            return line.split()[2].rstrip(":")
    raise AssertionError(f"no experiment key in the agent's output:\n{stderr_text}")


def nothing_configured_env(home: Path, **extra: str) -> dict:
    """This process's environment with nothing of Comet's, no proxies and its own HOME."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("COMET_", "XDG_"))
        and name != "STATE_DIRECTORY"
        and name.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""), **extra)
    return env
