"""Item 1: a stale ``server.json`` never gives the API key away.

``comet-agent run`` with nothing configured reuses the local server recorded in
``<data dir>/server/server.json``. Here the recorded server stopped and an impostor (another
local user, played by a recording server) took its port: it answers ``isAlive`` and anything
else, but cannot prove it knows the secret the real server wrote beside the key. The real CLI
must not send it the key (in no header, query or body), and must record into a server of its
own instead. A real server that can prove it is still reused.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from comet_agent.server.app import LocalServer
from comet_agent.server.discovery import PROOF_PATH
from comet_agent.server.store import store_holds_experiment
from tests.security.cli_support import cli_argv, cli_env
from tests.support.recording_server import RecordingServer

JOB = "print('hello from the job')"


def _run(data_dir: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli_argv(
            "run",
            "--data-dir",
            str(data_dir),
            "--no-os-packages",
            "--no-git",
            "--no-gpu",
            "--",
            sys.executable,
            "-c",
            JOB,
        ),
        env=cli_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _recorded_to(run: subprocess.CompletedProcess) -> tuple[str, str]:
    """(experiment key, server URL) from the run's first line."""
    match = re.search(r"^comet-agent: experiment (\w+): recording to (\S+)", run.stderr, re.M)
    assert match, run.stderr
    return match.group(1), match.group(2)


def _stale_discovery(data_dir: Path) -> tuple[str, int, dict]:
    """Run a real server on the data directory, keep its server.json, stop it, put the file back.

    Returns (its API key, its port, the recorded info): what a crash leaves behind.
    """
    server_dir = data_dir / "server"
    with LocalServer(server_dir, port=0) as server:
        info = json.loads((server_dir / "server.json").read_text())
        key, port = server.api_key, server.port
    (server_dir / "server.json").write_text(json.dumps({**info, "pid": os.getpid()}))  # the pid lives on (recycled)
    (server_dir / "server.json").chmod(0o600)
    return key, port, info


def _leaks(impostor: RecordingServer, key: str) -> list[str]:
    return [
        f"{r.method} {r.path}"
        for r in impostor.requests
        if key in r.path + repr(r.query) + repr(r.headers) + r.body.decode("latin-1")
    ]


@pytest.mark.parametrize("proof_reply", ["none", "wrong proof", "huge"])
def test_an_impostor_on_the_recorded_port_never_receives_the_key(tmp_path, proof_reply):
    """Pass: the impostor answers isAlive (and, per case, nothing, a wrong proof, or 1 MB) on the
    port the crashed server recorded; the run exits 0 having sent the impostor no request that
    holds the key, and its experiment is in a server of its own on the same data directory."""
    data_dir = tmp_path / "data"
    key, port, info = _stale_discovery(data_dir)
    with RecordingServer(port=port) as impostor:
        if proof_reply == "wrong proof":
            impostor.set_route("GET", PROOF_PATH, {"proof": "0" * 64})
        elif proof_reply == "huge":
            impostor.set_route("GET", PROOF_PATH, b'{"proof": "' + b"a" * 2**20 + b'"}')
        assert requests.get(impostor.url + "/clientlib/isAlive/ver", timeout=5).status_code == 200
        run = _run(data_dir, tmp_path)
        leaks = _leaks(impostor, key)
        asked = [r.path for r in impostor.requests]
    assert run.returncode == 0, run.stderr
    assert not leaks, leaks
    assert key not in run.stdout + run.stderr and info["proof_secret"] not in run.stdout + run.stderr
    experiment_key, url = _recorded_to(run)
    assert not url.startswith(impostor.url), url
    assert store_holds_experiment(data_dir / "server", experiment_key)
    assert "did not prove" in run.stderr or PROOF_PATH not in asked


def test_a_server_json_without_a_secret_is_not_trusted(tmp_path):
    """Pass: a server.json written by a version that had no proof secret (url and pid only),
    pointing at a listener that answers isAlive, gets no request carrying the key."""
    data_dir = tmp_path / "data"
    key, port, info = _stale_discovery(data_dir)
    (data_dir / "server" / "server.json").write_text(json.dumps({"url": info["url"], "pid": os.getpid()}))
    with RecordingServer(port=port) as impostor:
        run = _run(data_dir, tmp_path)
        leaks = _leaks(impostor, key)
    assert run.returncode == 0, run.stderr
    assert not leaks, leaks
    assert not _recorded_to(run)[1].startswith(impostor.url)


def test_a_running_server_that_proves_itself_is_reused(tmp_path):
    """Pass: with the real server of the data directory running, the run records into it (no
    second server), and the experiment reads back through it."""
    data_dir = tmp_path / "data"
    with LocalServer(data_dir / "server", port=0) as server:
        run = _run(data_dir, tmp_path)
        assert run.returncode == 0, run.stderr
        experiment_key, url = _recorded_to(run)
        assert url == server.url
        metadata = requests.get(
            server.url + "/api/rest/v2/experiment/metadata",
            params={"experimentKey": experiment_key},
            headers={"Authorization": server.api_key},
            timeout=10,
        )
        assert metadata.status_code == 200


def test_the_proof_endpoint_gives_nothing_away(local_server):
    """Pass: the proof answers a well-formed nonce with 64 hex characters that change with the
    nonce; malformed nonces get a 400; neither the key nor the secret is in any answer."""
    first = requests.get(local_server.url + PROOF_PATH, params={"nonce": "ab" * 32}, timeout=10)
    second = requests.get(local_server.url + PROOF_PATH, params={"nonce": "cd" * 32}, timeout=10)
    assert first.status_code == second.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{64}", first.json()["proof"]) and first.json() != second.json()
    info = json.loads((local_server.data_dir / "server.json").read_text())
    for nonce in ("", "xyz", "ab" * 100, "AB" * 32):
        reply = requests.get(local_server.url + PROOF_PATH, params={"nonce": nonce}, timeout=10)
        assert reply.status_code == 400
    for reply in (first, second):
        assert local_server.api_key not in reply.text and info["proof_secret"] not in reply.text
    assert oct((local_server.data_dir / "server.json").stat().st_mode & 0o777) == "0o600"
