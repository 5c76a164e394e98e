"""``comet-agent server --access-log``: lines on stderr with ``-``, a clear error for an unusable path."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
import requests

from tests.e2e.agent_support import REPO, agent_argv

pytestmark = pytest.mark.e2e


def _env(data_dir) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env.update(
        COMET_AGENT_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1", COMET_AGENT_SERVER_API_KEYS="test-key-cli-01234567"
    )
    return env


def test_access_log_on_stderr_has_the_request_and_not_the_key(tmp_path):
    process = subprocess.Popen(
        agent_argv("server", "--port", "0", "--access-log", "-"),
        env=_env(tmp_path),
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # "comet-agent server listening on http://127.0.0.1:PORT"
        assert "listening on" in first, first
        url = first.split()[-1]
        answer = requests.get(url + "/api/rest/v2/workspaces", headers={"Authorization": "test-key-cli-01234567"})
        assert answer.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0
    assert '"GET /api/rest/v2/workspaces" 200' in stderr
    assert "test-key-cli-01234567" not in stderr


def test_an_unusable_access_log_path_is_a_configuration_error(tmp_path):
    result = subprocess.run(
        agent_argv("server", "--port", "0", "--access-log", str(tmp_path / "missing" / "access.log")),
        env=_env(tmp_path),
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 78, result.stderr
    assert "cannot open the access log" in result.stderr and "missing/access.log" in result.stderr
