"""Item 6: the server's keys need not be on its command line, where every local user reads them.

``comet-agent server --api-key-file FILE`` (0600, one or more keys per line) and
``$COMET_AGENT_SERVER_API_KEYS`` keep the keys out of ``ps`` and ``/proc/PID/cmdline``; a shared
key file is refused (exit 78, naming the file, never the key); ``--api-key`` still works but
warns; ``--help`` and the systemd example say how.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import requests

from tests.security.cli_support import REPO, cli_argv, cli_env, server_cli

FIRST, SECOND = "file-key-one-" + "1" * 20, "file-key-two-" + "2" * 20


def _visible_to_other_users(pid: int) -> bytes:
    """What any local user can read of a process: ``ps`` and ``/proc/PID/cmdline``."""
    ps = subprocess.run(["ps", "-ww", "-o", "args=", "-p", str(pid)], capture_output=True, timeout=10).stdout
    return ps + Path(f"/proc/{pid}/cmdline").read_bytes()


def _accepted(root: str, key: str) -> bool:
    return (
        requests.get(root + "/api/rest/v2/account-details", headers={"Authorization": key}, timeout=10).status_code
        == 200
    )


def _may_change_intervals(root: str, key: str) -> int:
    return requests.post(
        root + "/local/admin/intervals", json={"heartbeatMs": 4321}, headers={"Authorization": key}, timeout=10
    ).status_code


def test_keys_from_a_file_never_reach_the_command_line(tmp_path):
    """Pass: with --api-key-file (two keys, a comment), both keys are accepted, the first is the
    admin key, and neither is in ps, /proc/PID/cmdline or anything the server printed."""
    key_file = tmp_path / "server-api-keys"
    key_file.write_text(f"# keys of this server\n{FIRST}\n{SECOND}  # the second user\n")
    key_file.chmod(0o600)
    with server_cli(tmp_path, "--data-dir", str(tmp_path / "data"), "--api-key-file", str(key_file)) as server:
        visible = _visible_to_other_users(server.pid)
        assert _accepted(server.root, FIRST) and _accepted(server.root, SECOND)
        assert not _accepted(server.root, "keys")
        assert _may_change_intervals(server.root, SECOND) == 403
        assert _may_change_intervals(server.root, FIRST) == 200
        output = server.stop()
    for key in (FIRST, SECOND):
        assert key.encode() not in visible and key not in output
    assert "from --api-key-file" in output
    assert not (tmp_path / "data" / "api_key").exists(), "no key is generated when keys are given"


def test_keys_from_the_environment_never_reach_the_command_line(tmp_path):
    """Pass: COMET_AGENT_SERVER_API_KEYS="k1, k2" is accepted, and neither key is on the command line."""
    env = cli_env(COMET_AGENT_SERVER_API_KEYS=f"{FIRST}, {SECOND}")
    with server_cli(tmp_path, "--data-dir", str(tmp_path / "data"), env=env) as server:
        visible = _visible_to_other_users(server.pid)
        assert _accepted(server.root, FIRST) and _accepted(server.root, SECOND)
        assert _may_change_intervals(server.root, FIRST) == 200
        output = server.stop()
    for key in (FIRST, SECOND):
        assert key.encode() not in visible and key not in output


def test_a_key_file_other_users_can_read_is_refused_with_exit_78(tmp_path):
    """Pass: a 0644 key file (or an empty one, or a missing one) ends the server at once with
    exit 78 and a message naming the file and what to do; the key is never printed."""
    shared = tmp_path / "shared-keys"
    shared.write_text(FIRST + "\n")
    shared.chmod(0o644)
    empty = tmp_path / "empty-keys"
    empty.write_text("# nothing yet\n")
    empty.chmod(0o600)
    for path, says in ((shared, "chmod 600"), (empty, "holds no key"), (tmp_path / "missing", "Cannot read")):
        result = subprocess.run(
            cli_argv("server", "--port", "0", "--data-dir", str(tmp_path / "data"), "--api-key-file", str(path)),
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 78, result.stderr
        assert str(path) in result.stderr and says in result.stderr
        assert FIRST not in result.stdout + result.stderr


def test_a_key_on_the_command_line_still_works_but_warns(tmp_path):
    """Pass: --api-key KEY is accepted, and the server says on stderr that ps shows it and names
    the two alternatives; the warning does not repeat the key."""
    with server_cli(tmp_path, "--data-dir", str(tmp_path / "data"), "--api-key", FIRST) as server:
        assert _accepted(server.root, FIRST)
        output = server.stop()
    assert "--api-key shows the key to every local user" in output
    assert "--api-key-file" in output and "COMET_AGENT_SERVER_API_KEYS" in output
    assert output.count(FIRST) == 0


def test_help_and_the_systemd_example_say_how():
    """Pass: ``server --help`` names --api-key-file and COMET_AGENT_SERVER_API_KEYS, and the
    shipped unit passes a credential file, never a key, on its command line."""
    help_text = subprocess.run(
        cli_argv("server", "--help"), env=cli_env(), capture_output=True, text=True, timeout=60
    ).stdout
    assert "--api-key-file" in help_text and "COMET_AGENT_SERVER_API_KEYS" in help_text
    unit = (REPO / "systemd" / "comet-agent-server.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert "--api-key-file %d/server-api-keys" in exec_start and "--api-key " not in exec_start
    assert "LoadCredential=server-api-keys:/etc/comet-agent/server-api-keys" in unit
    assert "API_KEY" not in "".join(line for line in unit.splitlines() if line.startswith("Environment="))
