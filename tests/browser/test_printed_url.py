"""A newcomer's path, end to end: ``comet-agent run -- python -c ...`` with nothing configured,
then the URL it printed, served by the exact command it printed last, opened in headless
Chromium through the page login (skips visibly without Chromium). And when a local server was
already running, the run reuses it and its last line names no command."""

from __future__ import annotations

import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from comet_agent.api.page_login import page_url
from tests.browser.pages_support import dump_dom, read_dom, require_chromium
from tests.e2e.agent_support import nothing_configured_env

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
TRAINING = "print('step 1 loss 0.5'); print('step 2 loss 0.25')"
_SERVER_START_TIMEOUT_S = 30
_RUN_TIMEOUT_S = 120


def _comet_agent() -> list[str]:
    """The installed ``comet-agent`` script beside this interpreter (what a user types), or
    ``python -m comet_agent`` where the package is used without being installed."""
    script = Path(sys.executable).with_name("comet-agent")
    return [str(script)] if script.exists() else [sys.executable, "-m", "comet_agent"]


def _environment(home: Path, **extra: str) -> dict:
    """Nothing of Comet's configured, its own HOME, and output unbuffered (the test reads it live)."""
    return nothing_configured_env(home, PYTHONUNBUFFERED="1", **extra)


def _wait_until_serving(process: subprocess.Popen, root: str, log: Path) -> None:
    deadline = time.monotonic() + _SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the hinted server exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            if requests.get(root + "/clientlib/isAlive/ver", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the hinted server did not answer at {root} within {_SERVER_START_TIMEOUT_S} s")


def _start_server(command: list[str], env: dict, cwd: Path, log_path: Path) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen(command, env=env, cwd=str(cwd), stdout=log, stderr=subprocess.STDOUT)


def _stop(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)


def test_the_url_a_run_prints_opens_its_experiment_page(tmp_path):
    require_chromium()
    data_dir = tmp_path / "data"
    # Nothing configured: no COMET_* variable, no ~/.comet.config; only the data directory is
    # moved off the real home, the way the README's COMET_AGENT_DATA_DIR does.
    run = subprocess.run(
        [*_comet_agent(), "run", "--", sys.executable, "-c", TRAINING],
        env=_environment(tmp_path / "home", COMET_AGENT_DATA_DIR=str(data_dir)),
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=_RUN_TIMEOUT_S,
    )
    assert run.returncode == 0, run.stderr
    assert "step 2 loss 0.25" in run.stdout
    first = re.search(r"^comet-agent: experiment (\w+): recording to (\S+)$", run.stderr, re.M)
    assert first, run.stderr
    experiment_key = first.group(1)
    last = run.stderr.rstrip("\n").splitlines()[-1]
    hint = re.fullmatch(r"comet-agent: to open (\S+), run `([^`]+)` and log in with the API key stored in (.+)", last)
    assert hint, run.stderr
    url = hint.group(1)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/local/general/" + experiment_key, url), url
    command, key_file = shlex.split(hint.group(2)), Path(hint.group(3))
    assert key_file == data_dir / "server" / "api_key"
    api_key = key_file.read_text(encoding="utf-8").strip()
    assert api_key not in run.stderr and api_key not in run.stdout

    # The command as printed, from another directory, with another HOME and no data directory
    # in the environment: it alone must name what serves the URL.
    root = url.split("/local/", 1)[0]
    server_log = tmp_path / "server.log"
    other_home = tmp_path / "other-home"
    server = _start_server(command, _environment(other_home), other_home, server_log)
    try:
        _wait_until_serving(server, root, server_log)
        profile = tmp_path / "chromium-profile"
        # The URL as printed leads to the login form (not a 404) ...
        anonymous = dump_dom(url, profile)
        assert 'action="/local/login"' in anonymous, anonymous[:2000]
        # ... and through the page login to the experiment page.
        page = read_dom(dump_dom(page_url(root, api_key, url), profile))
        text = "".join(page.text_parts)
        assert "overview" in page.sections and "system" in page.sections, page.sections
        assert experiment_key in text
        assert socket.gethostname() in text
        assert "API key required" not in text
    finally:
        _stop(server)
    assert server.returncode == 0, server_log.read_text()[-2000:]
    assert api_key not in server_log.read_text()


def test_a_run_on_a_running_server_names_no_command(tmp_path):
    data_dir = tmp_path / "data"
    env = _environment(tmp_path / "home", COMET_AGENT_DATA_DIR=str(data_dir))
    log_path = tmp_path / "server.log"
    server = _start_server(
        [*_comet_agent(), "server", "--port", "0", "--data-dir", str(data_dir / "server")], env, tmp_path, log_path
    )
    try:
        info = data_dir / "server" / "server.json"
        deadline = time.monotonic() + _SERVER_START_TIMEOUT_S
        while not info.exists() and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert info.exists(), log_path.read_text()[-2000:]
        root = re.search(r"listening on (\S+)", log_path.read_text()).group(1)
        run = subprocess.run(
            [*_comet_agent(), "run", "--", sys.executable, "-c", TRAINING],
            env=env,
            cwd=str(tmp_path),
            capture_output=True,
            text=True,
            timeout=_RUN_TIMEOUT_S,
        )
        assert run.returncode == 0, run.stderr
        key = re.search(r"^comet-agent: experiment (\w+): recording to ", run.stderr, re.M).group(1)
        url = f"{root}/local/general/{key}"
        last = run.stderr.rstrip("\n").splitlines()[-1]
        assert last == (
            f"comet-agent: open {url} and log in with the API key stored in {data_dir / 'server' / 'api_key'}"
        )
        assert requests.get(url, timeout=10).status_code == 401  # served: the login page, not a 404
    finally:
        _stop(server)
