"""Secrets: a canary key never leaves where it belongs; secrets in recorded metadata are masked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.e2e.agent_support import agent_argv, agent_env
from tests.faults.support import BATCH_PATH, EXPERIMENT_KEY, LEAN, backend, delivered_ids, start, terminate, wait_for
from tests.support.recording_server import Fault

CANARY = "CANARY" + "0123456789abcdef0123456789abcdef01234567"
SECRET = "S3cr3tVal"
#: regenerate with UPDATE_GOLDEN=1 (then read the diff: it is the masking contract)
GOLDEN = Path(__file__).parent / "golden"
SYSTEM_DETAILS_PATH = "/clientlib/rest/v2/write/experiment/system-details"
GIT_METADATA_PATH = "/api/rest/v2/write/experiment/git/metadata"
OTHER_PATH = "/api/rest/v2/write/experiment/log-other"


def _everything_but_auth(request) -> str:
    headers = {k: v for k, v in request.headers.items() if k != "authorization"}
    return request.method + request.path + repr(request.query) + repr(headers) + request.body.decode("latin-1")


def _files_holding(directory: Path, needle: bytes) -> list[str]:
    return [str(p) for p in directory.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_a_canary_key_never_appears_outside_the_authorization_header(tmp_path):
    """Pass: with the key CANARY<40 hex> and debug logging, through a rejected write (401) and a wrapped
    job, the key is in no log line, no file of the data directory (spool, WAL, status), not in `ps`
    output or /proc/<pid>/cmdline of the agent, and in no URL, header or body the server received other
    than Authorization (so not in the recorded command or environment)."""
    data_dir = tmp_path / "data"
    job = "import time; time.sleep(4); print('done')"
    with backend(api_key=CANARY) as server:
        server.add_fault(Fault(status=401, body=b'{"msg": "bad key"}'), times=1, path=BATCH_PATH)
        agent = start(server, data_dir, "--", sys.executable, "-c", job)
        try:
            wait_for(lambda: delivered_ids(server, BATCH_PATH), 20, what="a batch after the 401")
            ps = subprocess.run(["ps", "-ww", "-o", "args=", "-p", str(agent.pid)], capture_output=True, timeout=10)
            cmdline = Path(f"/proc/{agent.pid}/cmdline").read_bytes()
            files_while_running = _files_holding(data_dir, CANARY.encode())
        finally:
            out, err = agent.communicate(timeout=60)
        requests = list(server.requests)
    assert agent.returncode == 0, err.decode()
    assert CANARY.encode() not in out + err
    assert CANARY.encode() not in ps.stdout + cmdline
    assert not files_while_running and not _files_holding(data_dir, CANARY.encode())
    leaks = [r.path for r in requests if CANARY in _everything_but_auth(r)]
    assert not leaks, leaks
    assert any(r.header("Authorization") == CANARY for r in requests), "the key was used where it belongs"
    assert "was rejected" in err.decode(), "the 401 was reported (naming the key's source)"


def test_a_canary_key_stays_out_of_debug_logs(tmp_path):
    """Pass: at -vv (DEBUG), including a 401 on a write, the agent's stderr never holds the key."""
    data_dir = tmp_path / "data"
    with backend(api_key=CANARY) as server:
        server.add_fault(Fault(status=401), times=1, path=BATCH_PATH)
        # -vv goes before the subcommand, so the command line is built here rather than by start()
        agent = subprocess.Popen(
            agent_argv("-vv", "run", "--experiment", EXPERIMENT_KEY, *LEAN, "--stop-timeout", "3"),
            env=_env(server, data_dir),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for(lambda: len(delivered_ids(server, BATCH_PATH)) >= 2, 20, what="batches at debug level")
        finally:
            code, stderr = terminate(agent)
    assert code == 0, stderr
    assert " DEBUG " in stderr, "debug logging was on"
    assert CANARY not in stderr


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        timeout=30,
        env=dict(
            os.environ,
            GIT_AUTHOR_NAME="t",
            GIT_AUTHOR_EMAIL="t@example.com",
            GIT_COMMITTER_NAME="t",
            GIT_COMMITTER_EMAIL="t@example.com",
        ),
    )


def test_secrets_in_the_command_line_and_git_remote_are_masked_as_in_the_golden_file(tmp_path):
    """Pass: the recorded command (system details and comet_agent.command) equals the golden file byte for
    byte: --api-key=, --password, --token values, TOKEN=... and URL credentials masked, while
    --num_memory_tokens 8 and ordinary arguments are unchanged; the git origin is recorded without its
    credentials; the secret appears in no request at all."""
    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.txt").write_text("a\n")
    _git(repo, "add", "a.txt")
    _git(repo, "commit", "-q", "-m", "one")
    _git(repo, "remote", "add", "origin", f"https://user:{SECRET}@github.com/o/r.git")
    job_args = [
        f"--api-key={SECRET}",
        "--password",
        SECRET,
        "--token",
        SECRET,
        "--num_memory_tokens",
        "8",
        f"https://u:{SECRET}@host.example/x",
        f"HF_TOKEN={SECRET}",
        "--lr",
        "0.1",
        "plain",
    ]
    data_dir = tmp_path / "data"
    with backend() as server:
        agent = subprocess.Popen(
            agent_argv(
                "run",
                "--experiment",
                EXPERIMENT_KEY,
                "--no-os-packages",
                "--no-gpu",
                "--directory",
                str(repo),
                "--stop-timeout",
                "5",
                "--",
                "python3",
                "-c",
                "pass",
                *job_args,
            ),
            env=_env(server, data_dir),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _, err = agent.communicate(timeout=90)
        details = [r.json for r in server.requests_to(SYSTEM_DETAILS_PATH) if r.json]
        git = [r.json for r in server.requests_to(GIT_METADATA_PATH) if r.json]
        others = {r.json["key"]: r.json["value"] for r in server.requests_to(OTHER_PATH) if r.json}
        requests = list(server.requests)
    assert agent.returncode == 0, err.decode()
    recorded = {
        "system_details.command": details[0]["command"],
        "comet_agent.command": others["comet_agent.command"],
        "git.origin": git[0]["origin"],
    }
    text = json.dumps(recorded, indent=2, sort_keys=True) + "\n"
    golden = GOLDEN / "recorded_command.json"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()
    assert not [r.path for r in requests if SECRET in _everything_but_auth(r)]


def _env(server, data_dir: Path) -> dict:
    return agent_env(SimpleNamespace(clientlib_url=server.clientlib_url, api_key=server.api_key), data_dir)
