"""sources.commands: argv lists, timeouts that kill the whole group, bounded output."""

from __future__ import annotations

import os
import sys
import time

import pytest

from comet_agent.sources.commands import CommandNotFound, CommandTimedOut, find_program, run_command


def test_run_command_returns_output_and_status():
    result = run_command(
        [sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"], timeout_s=20
    )
    assert result.returncode == 3
    assert not result.ok
    assert result.text() == "out\n"
    assert result.stderr.strip() == b"err"
    assert result.stdout_truncated is False
    assert result.stdout_total_bytes == 4


def test_run_command_never_uses_a_shell():
    result = run_command(["echo", "$HOME", ";", "false"], timeout_s=10)
    assert result.ok
    assert result.text() == "$HOME ; false\n"


def test_run_command_caps_output_and_counts_the_rest():
    script = "import sys; sys.stdout.write('x' * 300000)"
    result = run_command([sys.executable, "-c", script], timeout_s=20, max_output_bytes=1000)
    assert result.ok
    assert result.stdout == b"x" * 1000
    assert result.stdout_total_bytes == 300000
    assert result.stdout_truncated is True


def test_run_command_missing_program_raises_command_not_found(tmp_path):
    with pytest.raises(CommandNotFound) as info:
        run_command([str(tmp_path / "no-such-program")], timeout_s=5)
    assert "no-such-program" in str(info.value)


def test_run_command_timeout_kills_the_process_group(tmp_path):
    marker = tmp_path / "child.pid"
    # The command starts a grandchild that would outlive a kill of the direct child only.
    script = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(marker)!r}, 'w').write(str(p.pid))\n"
        "sys.stdout.flush(); time.sleep(60)\n"
    )
    # Generous: two interpreters must start before the timeout, also on a loaded CI machine.
    with pytest.raises(CommandTimedOut) as info:
        run_command([sys.executable, "-c", script], timeout_s=4)
    assert info.value.timeout_s == 4
    grandchild = int(marker.read_text())

    def state_of(pid: int) -> str:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return "gone"

    # The grandchild was killed with its group: it is gone or a zombie awaiting its (dead) parent's
    # reaper. SIGKILL is delivered asynchronously, so allow the kernel a moment.
    deadline = time.monotonic() + 5
    while state_of(grandchild) not in ("gone", "Z", "X") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state_of(grandchild) in ("gone", "Z", "X")


def test_run_command_passes_environment_cwd_and_stdin(tmp_path):
    result = run_command(
        [
            sys.executable,
            "-c",
            "import os, sys; print(os.getcwd()); print(os.environ.get('ONLY_THIS')); print(sys.stdin.read())",
        ],
        timeout_s=20,
        cwd=str(tmp_path),
        env={"ONLY_THIS": "yes", "PATH": os.defpath},
        stdin_bytes=b"fed",
    )
    assert result.text().split("\n")[:3] == [str(tmp_path), "yes", "fed"]


def test_run_command_rejects_empty_argv():
    with pytest.raises(ValueError, match="argv is empty"):
        run_command([], timeout_s=1)


def test_find_program_finds_path_programs_and_rejects_missing(tmp_path):
    assert find_program("sh") is not None
    assert find_program(str(tmp_path / "missing")) is None
    assert find_program("definitely-not-a-program-xyz") is None
