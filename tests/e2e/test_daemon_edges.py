"""The daemon's edges as an operator meets them: one socket rule, a second daemon refused, `status`
listing the daemon's registrations, and `attach` without a key where the daemon serves its own
local server."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from comet_agent.api import API, APIExperiment
from tests.e2e.agent_support import REPO, agent_argv, agent_env, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def short_dir():
    path = Path(tempfile.mkdtemp(prefix="ca-", dir="/tmp"))  # AF_UNIX paths are short
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _bare_env(tmp_path: Path, data_dir: Path, **extra: str) -> dict:
    """Nothing configured: no key, no URL, a fresh HOME (the user who followed the README)."""
    env = agent_env(type("NoServer", (), {"clientlib_url": "", "api_key": ""})(), data_dir, **extra)
    for name in ("COMET_URL_OVERRIDE", "COMET_API_KEY"):
        env.pop(name)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env["HOME"] = str(home)
    return env


def _daemon(env: dict, socket_path: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        agent_argv("daemon", "--socket", str(socket_path), "--interval", "0.5", "--no-gpu"),
        env=env,
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for(lambda: socket_path.exists() or process.poll() is not None, 30, what="the daemon's socket")
    return process


def _stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    return stderr.decode()


def test_a_daemon_on_its_own_local_server_takes_keyless_registrations_and_status_lists_them(tmp_path, short_dir):
    data_dir = tmp_path / "daemon-data"
    socket_path = short_dir / "daemon.sock"
    env = _bare_env(tmp_path, data_dir)
    daemon = _daemon(env, socket_path)
    job = subprocess.Popen(
        [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE
    )
    try:
        assert daemon.poll() is None, daemon.stderr.read().decode()
        info = json.loads((data_dir / "server" / "server.json").read_text())
        key = (data_dir / "server" / "api_key").read_text().strip()
        api = API(api_key=key, url_override=info["url"] + "/clientlib/")
        experiment = APIExperiment(api=api, project_name="daemon")
        assert job.stdout.readline() == b"ready\n"
        # The job's user has no key at all: the daemon's local server is the daemon's own.
        attached = subprocess.run(
            agent_argv("attach", "--experiment", experiment.id, "--pid", str(job.pid), "--socket", str(socket_path)),
            env=_bare_env(tmp_path, tmp_path / "job-data"),
            cwd=str(REPO),
            capture_output=True,
            timeout=60,
        )
        assert attached.returncode == 0, attached.stderr.decode()
        wait_for(lambda: experiment.get_metrics("sys.proc.rss"), 30, what="the job's metrics")

        status = subprocess.run(
            agent_argv("status", "--json"),
            env=_bare_env(tmp_path, tmp_path / "job-data", COMET_AGENT_DAEMON_SOCKET=str(socket_path)),
            cwd=str(REPO),
            capture_output=True,
            timeout=60,
        )
        entries = json.loads(status.stdout)
        assert [(e["via"], e["experiment_key"], e["watching"]) for e in entries] == [
            ("daemon", experiment.id, str(job.pid))
        ]
        text = subprocess.run(
            agent_argv("status"),
            env=_bare_env(tmp_path, tmp_path / "job-data", COMET_AGENT_DAEMON_SOCKET=str(socket_path)),
            cwd=str(REPO),
            capture_output=True,
            timeout=60,
        ).stdout.decode()
        assert f"on {socket_path}" in text and experiment.id in text

        # A second daemon on the live socket refuses, and the first one keeps serving.
        second = subprocess.run(
            agent_argv("daemon", "--socket", str(socket_path), "--no-gpu"),
            env=env,
            cwd=str(REPO),
            capture_output=True,
            timeout=60,
        )
        assert second.returncode == 78
        assert "already listens" in second.stderr.decode()
        assert daemon.poll() is None and socket_path.exists()
    finally:
        job.kill()
        job.wait()
        stderr = _stop(daemon)
    assert "Traceback" not in stderr


def test_an_explicit_socket_in_a_missing_folder_is_refused_not_created(tmp_path, short_dir):
    socket_path = short_dir / "no-such-folder" / "daemon.sock"
    result = subprocess.run(
        agent_argv("daemon", "--socket", str(socket_path), "--no-gpu"),
        env=_bare_env(tmp_path, tmp_path / "data"),
        cwd=str(REPO),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 78
    assert "does not exist" in result.stderr.decode()
    assert not socket_path.parent.exists()


def test_one_socket_rule_for_daemon_attach_and_monitor(tmp_path):
    from comet_agent.daemon import DEFAULT_SOCKET_PATH, socket_path

    assert socket_path("/x/s.sock", environ={}) == Path("/x/s.sock")
    assert socket_path(environ={"COMET_AGENT_DAEMON_SOCKET": "/e/s.sock", "RUNTIME_DIRECTORY": "/r"}) == Path(
        "/e/s.sock"
    )
    assert socket_path(environ={"RUNTIME_DIRECTORY": "/run/comet-agent"}) == Path(DEFAULT_SOCKET_PATH)
    if not Path(DEFAULT_SOCKET_PATH).exists() and __import__("os").geteuid() != 0:
        assert socket_path(environ={"XDG_RUNTIME_DIR": "/run/user/1000"}) == Path(
            "/run/user/1000/comet-agent/daemon.sock"
        )
        assert socket_path(environ={}, data_dir=tmp_path) == tmp_path / "daemon.sock"
    else:  # root (CI), or a system daemon installed: the system socket
        assert socket_path(environ={"XDG_RUNTIME_DIR": "/run/user/1000"}) == Path(DEFAULT_SOCKET_PATH)
