"""A typo in every option, and hostile server replies, as a user meets them: the real CLI as a
subprocess. Each case ends in one line naming the problem, no traceback, and the exit status that
says which kind of problem it was."""

from __future__ import annotations

import subprocess
import sys

import pytest

from comet_agent.api import API, APIExperiment
from tests.e2e.agent_support import REPO, agent_argv, agent_env, run_agent, spool_entries
from tests.support.recording_server import RecordingServer

pytestmark = pytest.mark.e2e

USAGE, NOT_FOUND, UNREACHABLE = 2, 4, 5
KEY = "f" * 32

#: (subcommand and arguments, exit status, words the one line must contain)
BAD_OPTIONS = [
    (["run", "--sample-interval", "0", "--", "true"], USAGE, "--sample-interval"),
    (["run", "--sample-interval", "-1", "--", "true"], USAGE, "--sample-interval"),
    (["run", "--sample-interval", "nan", "--", "true"], USAGE, "--sample-interval"),
    (["run", "--stop-timeout", "-5", "--", "true"], USAGE, "--stop-timeout"),
    (["run", "--spool-max-mb", "0", "--", "true"], USAGE, "--spool-max-mb"),
    (["run", "--pid", "abc"], USAGE, "--pid"),
    (["run", "--pid", "0"], USAGE, "--pid"),
    (["run", "--pid", "999999"], USAGE, "no such process"),
    (["run", "--pid", "1", "--", "true"], USAGE, "not both"),
    (["server", "--port", "99999"], USAGE, "--port"),
    (["server", "--port", "-1"], USAGE, "--port"),
    (["server", "--heartbeat-ms", "0"], USAGE, "--heartbeat-ms"),
    (["server", "--max-upload-mb", "0"], USAGE, "--max-upload-mb"),
    (["daemon", "--interval", "0"], USAGE, "--interval"),
    (["daemon", "--max-jobs", "0"], USAGE, "--max-jobs"),
    (["daemon", "--registrations-per-minute", "-3"], USAGE, "--registrations-per-minute"),
    (["attach", "--experiment", KEY, "--pid", "x"], USAGE, "--pid"),
    (["attach", "--pid", "1"], USAGE, "--experiment"),
    (["collect", "--pid", "-1"], USAGE, "--pid"),
    (["collect", "--directory", "/no/such/dir"], USAGE, "--directory"),
    (["show"], USAGE, "key"),
    (["frobnicate"], USAGE, "invalid choice"),
]


def _one_line_error(stderr: str) -> list[str]:
    return [
        line
        for line in stderr.splitlines()
        if line.strip() and not line.startswith("usage:") and not line.startswith(" ")
    ]


@pytest.mark.parametrize("args,status,says", BAD_OPTIONS, ids=[" ".join(case[0]) for case in BAD_OPTIONS])
def test_a_bad_option_is_one_line_and_a_usage_status(local_server, tmp_path, args, status, says):
    result = run_agent(local_server, tmp_path / "data", *args, timeout_s=60)
    stderr = result.stderr.decode()
    assert result.returncode == status, stderr
    assert "Traceback" not in stderr
    lines = _one_line_error(stderr)
    assert len(lines) == 1 and says in lines[0], stderr
    assert not (tmp_path / "data" / "spool").exists() or not any((tmp_path / "data" / "spool").iterdir()), (
        "a rejected option starts nothing"
    )


def test_a_zero_stop_timeout_keeps_the_static_snapshot(local_server, tmp_path):
    """Nothing may be lost by an option at its edge: with no time to send, the snapshot stays spooled."""
    api = API(api_key=local_server.api_key, url_override=local_server.clientlib_url)
    key = APIExperiment(api=api, workspace="ws", project_name="edge").id
    result = run_agent(
        local_server,
        tmp_path / "data",
        "run",
        "--stop-timeout",
        "0",
        "--experiment",
        key,
        "--",
        sys.executable,
        "-c",
        "print('ran')",
    )
    assert result.returncode == 0, result.stderr.decode()
    spooled = any(entry[0] == "system_details" for entry in spool_entries(tmp_path / "data", key))
    delivered = bool(APIExperiment(api=api, previous_experiment=key).get_system_details().get("hostname"))
    assert spooled or delivered, "the static snapshot is either delivered or waits in the spool"


HOSTILE_REPLIES = [
    ("a JSON list", []),
    ("an empty object", {}),
    ("a string", "hello"),
    ("HTML", b"<html><body>proxy login</body></html>"),
]


@pytest.mark.parametrize("what,reply", HOSTILE_REPLIES, ids=[case[0] for case in HOSTILE_REPLIES])
def test_show_against_a_hostile_server_is_one_line_naming_it(tmp_path, what, reply):
    with RecordingServer() as server:
        server.api_key = "hostile-canary-key-1234567890"
        for path in (
            "/api/rest/v2/experiment/metadata",
            "/api/rest/v2/account-details",
            "/api/rest/v2/experiment/system-details",
            "/api/rest/v2/experiment/tags",
            "/api/rest/v2/experiment/git/metadata",
            "/api/rest/v2/experiment/metrics/summary",
            "/api/rest/v2/experiment/log-other/summary",
        ):
            server.set_route("GET", path, reply)
        env = agent_env(server, tmp_path / "data", COMET_API_KEY="hostile-canary-key-1234567890")
        env["COMET_URL_OVERRIDE"] = server.clientlib_url
        result = subprocess.run(agent_argv("show", KEY), env=env, cwd=str(REPO), capture_output=True, timeout=60)
    stderr = result.stderr.decode()
    assert result.returncode in (NOT_FOUND, UNREACHABLE), stderr
    assert "Traceback" not in stderr
    lines = _one_line_error(stderr)
    assert len(lines) == 1 and "127.0.0.1" in lines[0], stderr
    assert "hostile-canary-key-1234567890" not in stderr


def test_a_closed_stdout_ends_quietly(local_server, tmp_path):
    """`comet-agent collect | head -1`: the reader goes away; no BrokenPipeError, no traceback."""
    env = agent_env(local_server, tmp_path / "data")
    pipeline = subprocess.run(
        f'{sys.executable} -m comet_agent collect --no-os-packages | head -c 1 >/dev/null; echo "${{PIPESTATUS[0]}}"',
        shell=True,
        executable="/bin/bash",
        env=env,
        cwd=str(REPO),
        capture_output=True,
        timeout=60,
    )
    assert b"Traceback" not in pipeline.stderr and b"BrokenPipe" not in pipeline.stderr, pipeline.stderr
    assert pipeline.stdout.strip() == b"0"
