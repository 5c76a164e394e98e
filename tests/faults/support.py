"""Helpers for the fault suite: a scriptable Comet backend and the agent as a subprocess.

The backend is ``tests.support.recording_server.RecordingServer`` answering ``update_status()``
with 1 s intervals (the fastest the agent accepts), so a run produces a push every second.
Samples are identified by their spool ``request_id``: the sender sends entry ``R`` with the header
``X-Comet-Agent-Request-Id: R/1`` (``R.a/1``, ``R.b/1`` for the halves of a split batch). A backlog
of pushes goes as one coalesced metric batch with the id ``F..L/1`` (its first and last entries);
which entries it carried is told by the sample times of its points (each push's own), so
``delivered_ids`` takes the sample time of every entry seen in the spool (``spool_rows``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator, Optional

from tests.e2e.agent_support import agent_argv, agent_env, wait_for
from tests.support.recording_server import RecordingServer

EXPERIMENT_KEY = "f" * 32
STATUS_PATH = "/api/rest/v2/write/experiment/set-status"
#: Where every push goes: one metric batch per push, each with the series below.
BATCH_PATH = "/clientlib/batch/logger/experiment/metric"
CPU_SERIES = "sys.cpu.percent.avg"
OTHER_PATH = "/api/rest/v2/write/experiment/log-other"
FAST_INTERVALS = {"isAliveBeatDurationMillis": 1000, "cpuMonitorIntervalMillis": 1000, "gpuMonitorIntervalMillis": 1000}
#: the collectors that run commands or need hardware are off: they add start-up time, not coverage
LEAN = ("--no-os-packages", "--no-git", "--no-gpu")


@contextlib.contextmanager
def backend(api_key: str = "fault-suite-key-0123456789") -> Iterator[RecordingServer]:
    """A ``RecordingServer`` that recommends 1 s intervals; ``.api_key`` is the key agents use."""
    with RecordingServer() as server:
        server.set_route("GET", STATUS_PATH, dict(FAST_INTERVALS))
        server.api_key = api_key  # type: ignore[attr-defined]
        yield server


def start(
    server, data_dir: Path, *args: str, env: Optional[dict] = None, stderr_file=None, command: str = "run", **popen
) -> subprocess.Popen:
    """``comet-agent run --experiment EXPERIMENT_KEY`` (lean, stop timeout 3 s) plus ``args``.

    ``stderr_file``: an open file for the agent's stderr, to read while it runs (else a pipe).
    ``command="flush"`` runs ``comet-agent flush`` with the same environment instead."""
    target = SimpleNamespace(clientlib_url=server.clientlib_url, api_key=server.api_key)
    if command == "run":
        argv = agent_argv("run", "--experiment", EXPERIMENT_KEY, *LEAN, "--stop-timeout", "3", *args)
    else:
        argv = agent_argv(command, *args)
    full_env = agent_env(target, data_dir, **(env or {}))
    return subprocess.Popen(
        argv,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=stderr_file if stderr_file is not None else subprocess.PIPE,
        **popen,
    )


def terminate(agent: subprocess.Popen, timeout_s: float = 30) -> tuple[int, str]:
    """SIGTERM, wait (bounded), and return (exit status, stderr text)."""
    if agent.poll() is None:
        agent.send_signal(signal.SIGTERM)
    try:
        _, err = agent.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        agent.kill()
        _, err = agent.communicate()
        raise AssertionError(
            f"the agent did not exit within {timeout_s} s of SIGTERM:\n{(err or b'').decode(errors='replace')}"
        ) from None
    return agent.returncode, (err or b"").decode("utf-8", errors="replace")


def kill(agent: subprocess.Popen) -> str:
    """SIGKILL and reap; returns stderr text."""
    if agent.poll() is None:
        os.kill(agent.pid, signal.SIGKILL)
    _, err = agent.communicate(timeout=30)
    return err.decode("utf-8", errors="replace")


def spool_path(data_dir: Path, key: str = EXPERIMENT_KEY) -> Path:
    return data_dir / "spool" / f"{key}.db"


def _sample_time(endpoint: str, payload: str) -> Optional[int]:
    if endpoint != "metrics_batch":
        return None
    try:
        return max(point["timestamp"] for point in json.loads(payload)["values"])
    except (ValueError, KeyError, TypeError):
        return None


def spool_rows(data_dir: Path, key: str = EXPERIMENT_KEY) -> list[tuple]:
    """(seq, endpoint, request_id, size_bytes, kind, sample time of a push or None) of every waiting
    entry, read-only; [] while absent."""
    path = spool_path(data_dir, key)
    if not path.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return []
    try:
        rows = conn.execute(
            "SELECT seq, endpoint, request_id, size_bytes, kind, payload FROM entries ORDER BY seq"
        ).fetchall()
        return [(*row[:5], _sample_time(row[1], row[5])) for row in rows]
    except sqlite3.Error:
        return []
    finally:
        conn.close()


def dropped_total(data_dir: Path, key: str = EXPERIMENT_KEY) -> int:
    conn = sqlite3.connect(f"file:{spool_path(data_dir, key)}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT total FROM dropped WHERE experiment_key = ?", (key,)).fetchone()
    finally:
        conn.close()
    return row[0] if row else 0


def entry_id(request) -> Optional[str]:
    """The spool request id a recorded request carried (``R`` of ``R/1``; ``R.a`` for a split half)."""
    header = request.header("X-Comet-Agent-Request-Id")
    return header.rsplit("/", 1)[0] if header else None


def cpu_stamp(request) -> Optional[int]:
    """The sample time of the ``sys.cpu.percent.avg`` point a metric batch carried (None: none)."""
    values = request.json.get("values") if isinstance(request.json, dict) else None
    return next((p["timestamp"] for p in values or () if p.get("metricName") == CPU_SERIES), None)


def cpu_pushes(server, status: Optional[int] = 200) -> list:
    """The pushes (metric batches carrying CPU figures) the server answered ``status`` (None: any), in arrival order."""
    return [
        r
        for r in server.requests_to(BATCH_PATH)
        if cpu_stamp(r) is not None and (status is None or r.answered_status == status)
    ]


def delivered_ids(server, path: Optional[str] = None, sample_times: Optional[dict] = None) -> list[str]:
    """Spool ids of the requests the server answered 2xx, in arrival order (optionally one path).

    A coalesced batch (``F..L``) stands for the entries it carried: those of ``sample_times``
    (spool id -> sample time, from ``spool_rows``) whose sample time is among its points'."""
    ids = []
    for request in list(server.requests):
        if (
            (path is not None and request.path != path)
            or request.answered_status is None
            or not 200 <= request.answered_status < 300
            or entry_id(request) is None
        ):
            continue
        if ".." in entry_id(request):
            carried = {point.get("timestamp") for point in (request.json or {}).get("values", ())}
            ids.extend(i for i, stamp in (sample_times or {}).items() if stamp is not None and stamp in carried)
        else:
            ids.append(entry_id(request))
    return ids


def wait_drained(data_dir: Path, timeout_s: float = 40) -> None:
    wait_for(lambda: spool_path(data_dir).exists() and not spool_rows(data_dir), timeout_s, what="the spool to drain")


__all__ = [
    "backend",
    "start",
    "terminate",
    "kill",
    "spool_rows",
    "spool_path",
    "dropped_total",
    "entry_id",
    "delivered_ids",
    "cpu_pushes",
    "cpu_stamp",
    "wait_drained",
    "wait_for",
    "EXPERIMENT_KEY",
    "CPU_SERIES",
    "BATCH_PATH",
    "OTHER_PATH",
    "STATUS_PATH",
    "FAST_INTERVALS",
    "LEAN",
]
