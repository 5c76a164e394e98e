"""Item 10: the host daemon (``comet-agent daemon``, a real subprocess) under hostile local callers.

Per-user limits hold (``--max-jobs``, ``--registrations-per-minute``); a flood of connections by
one user gets bounded threads and does not lock others out; a deeply nested message is refused
with a reason instead of killing its handler; and a caller in another pid namespace can only
register itself or its ancestors there, translated to the daemon's numbers, never a pid that
means a different process on the host.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from comet_agent.api import API, APIExperiment
from comet_agent.daemon import MAX_CONNECTIONS_PER_UID, request
from tests.security.cli_support import cli_argv, cli_env

NOBODY = 65534


@pytest.fixture
def short_dir():
    path = Path(tempfile.mkdtemp(prefix="ca-sec-", dir="/tmp"))  # AF_UNIX paths are short
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class DaemonProcess:
    def __init__(self, process: subprocess.Popen, socket_path: Path):
        self.process, self.socket_path = process, socket_path

    def ask(self, message: dict, timeout_s: float = 30) -> dict:
        return request(self.socket_path, message, timeout_s=timeout_s)

    def threads(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("Threads:")).split()[1])

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, stderr = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
        return stderr.decode()


@pytest.fixture
def daemon(local_server, tmp_path, short_dir):
    """``comet-agent daemon`` writing to ``local_server`` with its key (registrations by root need none)."""
    socket_path = short_dir / "daemon.sock"
    env = cli_env(
        COMET_API_KEY=local_server.api_key,
        COMET_URL_OVERRIDE=local_server.clientlib_url,
        COMET_AGENT_DATA_DIR=str(tmp_path / "daemon-data"),
    )
    process = subprocess.Popen(
        cli_argv(
            "daemon",
            "--socket",
            str(socket_path),
            "--interval",
            "0.5",
            "--no-gpu",
            "--max-jobs",
            "2",
            "--registrations-per-minute",
            "5",
        ),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not socket_path.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if process.poll() is not None or not socket_path.exists():
        process.kill()
        raise AssertionError("the daemon did not start: " + process.communicate()[1].decode()[-2000:])
    running = DaemonProcess(process, socket_path)
    try:
        yield running
    finally:
        stderr = running.stop()
        assert "Traceback" not in stderr, stderr[-3000:]


def _experiments(server, count: int) -> list[str]:
    api = API(api_key=server.api_key, url_override=server.clientlib_url)
    return [APIExperiment(api=api, workspace="ws", project_name="daemon").id for _ in range(count)]


def _sleepers(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]) for _ in range(count)]


def _end(processes) -> None:
    for process in processes:
        process.kill()
        process.wait()


def test_a_user_holds_at_most_max_jobs_and_registers_at_most_the_rate(daemon, local_server):
    """Pass: with --max-jobs 2 and --registrations-per-minute 5, a third job is refused ``full``,
    and the sixth attempt in the minute ``rate_limited``; the daemon keeps answering."""
    keys = _experiments(local_server, 6)
    jobs = _sleepers(6)
    try:
        replies = [daemon.ask({"op": "attach", "experiment_key": key, "pid": job.pid}) for key, job in zip(keys, jobs)]
    finally:
        _end(jobs)
    codes = [reply.get("code") if not reply["ok"] else "ok" for reply in replies]
    assert codes[:2] == ["ok", "ok"], replies
    assert codes[2:5] == ["full", "full", "full"], replies
    assert codes[5] == "rate_limited", replies
    assert daemon.ask({"op": "ping"})["ok"]


def test_deeply_nested_and_oversized_messages_are_refused_with_a_reason(daemon):
    """Pass: 16,000 ``[``, a valid ping with a 10-level value, and 64 KiB without a newline each get
    a ``malformed`` reply (not a dropped connection); the daemon keeps answering, no traceback."""
    nested = json.dumps({"op": "ping", "x": json.loads("[" * 10 + "]" * 10)}).encode()
    for payload in (b"[" * 16000 + b"\n", nested + b"\n", b"{" * 16000 + b"\n", b"x" * 65536):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(15)
            sock.connect(str(daemon.socket_path))
            sock.sendall(payload)
            reply = json.loads(sock.makefile("rb").readline())
        assert reply["ok"] is False and reply["code"] == "malformed", reply
    assert daemon.ask({"op": "ping"})["ok"]


_FLOOD = """
import os, socket, sys, time
sockets = []
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    s.sendall(b'{"op": ')          # a message never finished
    sockets.append(s)
print("holding", flush=True)
time.sleep(float(sys.argv[3]))
"""


def test_a_connection_flood_by_one_user_gets_bounded_threads_and_others_get_through(daemon, short_dir):
    """Pass: another user (uid 65534) opens 100 connections that never finish a message; the
    daemon runs at most MAX_CONNECTIONS_PER_UID handler threads for them, answers the rest
    ``busy``, and root's ping and status still answer within 5 s."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to run the flood as another user")
    # The flood needs only the standard library, from an interpreter another user may run.
    interpreter = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), None)
    if interpreter is None:
        pytest.skip("no system python3 that another user can run")
    daemon.socket_path.chmod(0o666)  # let the other user connect (as --socket-group would)
    baseline = daemon.threads()
    flood = subprocess.Popen(
        [interpreter, "-c", _FLOOD, str(daemon.socket_path), "100", "6"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd="/",
        preexec_fn=lambda: os.setuid(NOBODY),
    )
    try:
        assert flood.stdout.readline() == b"holding\n", flood.stderr.read().decode()
        started = time.monotonic()
        assert daemon.ask({"op": "ping"}, timeout_s=5)["ok"]
        assert daemon.ask({"op": "status"}, timeout_s=5)["ok"]
        assert time.monotonic() - started < 5
        assert daemon.threads() <= baseline + MAX_CONNECTIONS_PER_UID + 2
    finally:
        _end([flood])


_IN_NAMESPACE = """
import json, socket, sys
def ask(message):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(60)
        s.connect(sys.argv[1])
        s.sendall((json.dumps(message) + "\\n").encode())
        return json.loads(s.makefile("rb").readline())
itself = ask({"op": "attach", "experiment_key": sys.argv[2], "pid": 1})
host_pid = ask({"op": "attach", "experiment_key": sys.argv[3], "pid": int(sys.argv[4])})
print(json.dumps([itself, host_pid]), flush=True)
sys.stdin.read()
"""


def test_a_caller_in_another_pid_namespace_registers_only_itself_translated(daemon, local_server):
    """Pass: a process in a new pid namespace (where it is pid 1) registers pid 1: accepted, and the
    daemon watches its real (host) pid, not the host's pid 1. Registering a host pid number (one of
    the host's own processes, same uid) is refused ``namespace``: it means another process there."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a pid namespace here: {probe.stderr.decode().strip()}")
    own_key, host_key = _experiments(local_server, 2)
    victim = _sleepers(1)[0]  # a host process of the same uid the caller tries to claim
    caller = subprocess.Popen(
        [
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            sys.executable,
            "-c",
            _IN_NAMESPACE,
            str(daemon.socket_path),
            own_key,
            host_key,
            str(victim.pid),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        line = caller.stdout.readline()
        assert line, caller.stderr.read().decode()
        itself, host_pid = json.loads(line)
        children = Path(f"/proc/{caller.pid}/task/{caller.pid}/children").read_text().split()
        assert itself["ok"], itself
        assert host_pid["ok"] is False and host_pid["code"] == "namespace", host_pid
        watched = {job["experiment_key"]: job["watching"] for job in daemon.ask({"op": "status"})["jobs"]}
        assert watched == {own_key: children[0]}, (watched, children)
    finally:
        caller.stdin.close()
        _end([caller, victim])
