"""Running external commands: argv lists only (never a shell), a timeout, bounded output.

Static collectors use this for the few facts that have no file to read (``rpm -qa``, ``git diff``,
the watched job's interpreter). Periodic collectors run no commands.

``run_command(argv, timeout_s=..., max_output_bytes=...)`` returns a ``CommandResult`` whatever
the exit status; it raises ``CommandNotFound`` when the program does not exist and
``CommandTimedOut`` when it outlives its timeout (the whole process group is killed first, so a
hung child cannot outlive us either).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import IO, Mapping, Optional, Sequence

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_OUTPUT_BYTES = 4 * 1024 * 1024
_MAX_STDERR_BYTES = 64 * 1024
_READ_CHUNK_BYTES = 64 * 1024


class CommandError(Exception):
    """A command could not be run to completion; ``argv`` is the command as given."""

    def __init__(self, message: str, argv: Sequence[str]):
        super().__init__(message)
        self.argv = list(argv)


class CommandNotFound(CommandError):
    """The program (``argv[0]``) does not exist or is not executable."""


class CommandTimedOut(CommandError):
    """The command ran longer than its timeout and was killed."""

    def __init__(self, message: str, argv: Sequence[str], timeout_s: float):
        super().__init__(message, argv)
        self.timeout_s = timeout_s


@dataclass(frozen=True)
class CommandResult:
    """What a finished command produced.

    ``stdout`` holds at most ``max_output_bytes``; ``stdout_total_bytes`` counts everything the
    command wrote (the rest was read and discarded so the command never blocks on a full pipe),
    and ``stdout_truncated`` says whether anything was cut.
    """

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes
    stdout_total_bytes: int
    stdout_truncated: bool
    duration_s: float

    @property
    def ok(self) -> bool:
        """True when the command exited with status 0."""
        return self.returncode == 0

    def text(self, errors: str = "replace") -> str:
        """``stdout`` decoded as UTF-8 (undecodable bytes replaced)."""
        return self.stdout.decode("utf-8", errors)


class _BoundedReader(threading.Thread):
    """Drains one pipe to its end, keeping the first ``limit_bytes`` and counting the rest."""

    def __init__(self, stream: IO[bytes], limit_bytes: int):
        super().__init__(name="comet-agent-command-reader", daemon=True)
        self._stream = stream
        self._limit_bytes = limit_bytes
        self._chunks: list[bytes] = []
        self._kept_bytes = 0
        self.total_bytes = 0

    def run(self) -> None:
        try:
            while True:
                chunk = (
                    self._stream.read1(_READ_CHUNK_BYTES)
                    if hasattr(self._stream, "read1")
                    else self._stream.read(_READ_CHUNK_BYTES)
                )
                if not chunk:
                    break
                self.total_bytes += len(chunk)
                room = self._limit_bytes - self._kept_bytes
                if room > 0:
                    kept = chunk[:room]
                    self._chunks.append(kept)
                    self._kept_bytes += len(kept)
        except (OSError, ValueError):  # the pipe was closed under us after a kill
            pass

    def data(self) -> bytes:
        return b"".join(self._chunks)


def find_program(name: str) -> Optional[str]:
    """The absolute path of ``name`` on ``PATH`` (or ``name`` itself when it is an executable path), else None."""
    if os.sep in name:
        return name if os.access(name, os.X_OK) and os.path.isfile(name) else None
    return shutil.which(name)


def run_command(
    argv: Sequence[str],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    cwd: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
    stdin_bytes: Optional[bytes] = None,
) -> CommandResult:
    """Run ``argv`` (no shell) and return its exit status and bounded output.

    Args:
        argv: the program and its arguments; the program is looked up on ``PATH``.
        timeout_s: seconds after which the command and its process group are killed.
        max_output_bytes: how much of stdout to keep; the rest is counted, not stored.
        cwd: working directory for the command (default: ours).
        env: the command's complete environment (default: ours).
        stdin_bytes: fed to the command's stdin; without it stdin is ``/dev/null``.

    Returns:
        A ``CommandResult`` (also for non-zero exit statuses).

    Raises:
        CommandNotFound: the program does not exist or cannot be executed.
        CommandTimedOut: the command ran past ``timeout_s`` (it has been killed).
        ValueError: ``argv`` is empty.

    Example:
        >>> run_command(["echo", "hi"], timeout_s=5).text()
        'hi\\n'
    """
    argv = [str(a) for a in argv]
    if not argv:
        raise ValueError("run_command needs a program to run; argv is empty")
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin_bytes is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            # Its own session, so a timeout can kill the command and everything it started.
            start_new_session=True,
            close_fds=True,
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        if cwd is not None and not os.path.isdir(cwd):
            raise CommandError(f"cannot run {argv[0]!r}: working directory {cwd!r} does not exist", argv) from None
        raise CommandNotFound(f"{argv[0]!r} not found or not executable ({exc.strerror})", argv) from None
    assert process.stdout is not None and process.stderr is not None  # both are PIPE above
    stdout_reader = _BoundedReader(process.stdout, max_output_bytes)
    stderr_reader = _BoundedReader(process.stderr, _MAX_STDERR_BYTES)
    stdout_reader.start()
    stderr_reader.start()
    if stdin_bytes is not None and process.stdin is not None:
        try:
            process.stdin.write(stdin_bytes)
        except BrokenPipeError:
            pass
        finally:
            process.stdin.close()
    try:
        returncode = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        stdout_reader.join(1.0)
        stderr_reader.join(1.0)
        raise CommandTimedOut(
            f"{argv[0]!r} did not finish within {timeout_s:g} s and was killed", argv, timeout_s
        ) from None
    # The command exited, but a child it left behind may still hold the pipes open: bound the wait.
    remaining_s = max(0.5, timeout_s - (time.monotonic() - started))
    stdout_reader.join(remaining_s)
    stderr_reader.join(0.5)
    if stdout_reader.is_alive():
        _kill_group(process)
        stdout_reader.join(1.0)
    for stream in (process.stdout, process.stderr):
        try:
            stream.close()
        except OSError:
            pass
    return CommandResult(
        argv=tuple(argv),
        returncode=returncode,
        stdout=stdout_reader.data(),
        stderr=stderr_reader.data(),
        stdout_total_bytes=stdout_reader.total_bytes,
        stdout_truncated=stdout_reader.total_bytes > max_output_bytes,
        duration_s=time.monotonic() - started,
    )


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(timeout=2.0)
    except subprocess.TimeoutExpired:  # pragma: no cover - a process that survives SIGKILL
        logger.warning("process %d did not exit after SIGKILL", process.pid)
