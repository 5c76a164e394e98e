"""``comet-agent run``: record a run beside a job (``--pid``), wrapping it (``-- CMD``), or until stopped.

The job never waits for the agent: the wrapped command starts before any network call, and a
server that is down, slow or rejecting the key at start only means everything waits in the spool
(one warning says where); the exit status is the command's own.

A wrapped command gets the experiment in its environment (``agent.child_environment``): a
training script that calls ``comet_ml.start()`` records into the same experiment, with
comet_ml's own system loggers off. ``--no-share-experiment`` turns that off.

``run`` wraps a command or watches a pid: the child runs in its own session so that a terminal's
Ctrl-C reaches it once, through us; SIGINT, SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 are forwarded; its
stdout and stderr pass through unchanged, byte for byte, and are recorded line by line (decoded
as UTF-8, undecodable bytes shown as U+FFFD) into ``log_output`` with the stderr flag; the agent
exits with the child's exit status (128 + N when a signal N ended it).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from typing import IO, Optional

from comet_agent.agent import Agent
from comet_agent.cli.common import err
from comet_agent.errors import AgentError, ExitStatus
from comet_agent.signals import SignalRelay
from comet_agent.sources.procfs import pid_alive

log = logging.getLogger(__name__)

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
#: Longest line recorded as one output line; longer ones are recorded in pieces (passed through whole).
MAX_OUTPUT_LINE_BYTES = 1 << 20
OUTPUT_FLUSH_INTERVAL_S = 1.0
OUTPUT_FLUSH_LINES = 500


# ------------------------------------------------------------------------------------------------
# run
# ------------------------------------------------------------------------------------------------


class OutputRecorder:
    """Collects a child's output lines and hands them to the agent in batches, in order.

    Consecutive lines of the same stream go out as one ``log_output`` record; a batch is flushed
    every ``OUTPUT_FLUSH_INTERVAL_S`` or ``OUTPUT_FLUSH_LINES`` lines, and at the end.
    """

    def __init__(self, agent: Agent):
        self._agent = agent
        self._lines: list[tuple[bool, str]] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._pending = threading.Event()  # set by the first line after a flush
        self._thread = threading.Thread(target=self._flush_periodically, name="comet-agent-output", daemon=True)
        self._thread.start()

    def add(self, line: bytes, stderr: bool) -> None:
        text = line.decode("utf-8", errors="replace")
        with self._lock:
            self._lines.append((stderr, text))
            full = len(self._lines) >= OUTPUT_FLUSH_LINES
        if full:
            self.flush()
        else:
            self._pending.set()

    def flush(self) -> None:
        with self._lock:
            lines, self._lines = self._lines, []
        start = 0
        while start < len(lines):
            stderr = lines[start][0]
            end = start
            while end < len(lines) and lines[end][0] == stderr:
                end += 1
            self._agent.log_output("".join(text for _, text in lines[start:end]), stderr=stderr)
            start = end

    def _flush_periodically(self) -> None:
        # Asleep while the job prints nothing (no wake-up a second on a quiet job); once a line
        # arrives, it waits the flush interval so the lines of that second go as one record.
        while True:
            self._pending.wait()
            if self._done.wait(OUTPUT_FLUSH_INTERVAL_S):
                return
            self._pending.clear()
            self.flush()

    def close(self) -> None:
        self._done.set()
        self._pending.set()
        self._thread.join(5)
        self.flush()


def _pump(source: IO[bytes], sink: IO[bytes], recorder: OutputRecorder, stderr: bool) -> None:
    """Copy a child's stream to ours unchanged and record it line by line."""
    while True:
        try:
            line = source.readline(MAX_OUTPUT_LINE_BYTES)
        except (OSError, ValueError):
            break
        if not line:
            break
        try:
            sink.write(line)
            sink.flush()
        except (OSError, ValueError):
            pass  # our own stdout closed (a pipe reader went away): keep recording
        recorder.add(line, stderr)


def _exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _agent_from_args(args, command=None) -> Agent:
    return Agent(
        args.experiment,
        workspace=args.workspace,
        project_name=args.project,
        experiment_name=args.name,
        data_dir=args.data_dir,
        pid=args.pid,
        directory=args.directory,
        sample_interval_s=args.sample_interval,
        resolution=getattr(args, "resolution", None),
        stop_timeout_s=args.stop_timeout,
        include_os_packages=not args.no_os_packages,
        include_git=not args.no_git,
        include_gpu=not args.no_gpu,
        tags=args.tag or (),
        command=command,
        spool_max_bytes=_spool_max_bytes(getattr(args, "spool_max_mb", None)),
        prometheus_listen=getattr(args, "prometheus_listen", None),
        node_id=getattr(args, "node_id", None),
    )


def _spool_max_bytes(max_mb: Optional[float] = None) -> int:
    """The spool cap: ``--spool-max-mb``, else ``COMET_AGENT_SPOOL_MAX_BYTES`` (bytes), else the
    default; a value that is not a positive number is refused loudly and the default used."""
    from comet_agent.delivery.spool import DEFAULT_MAX_BYTES

    if max_mb is not None:
        if max_mb > 0:
            return int(max_mb * 2**20)
        err(f"ignoring --spool-max-mb {max_mb} (not positive); using {DEFAULT_MAX_BYTES} bytes")
        return DEFAULT_MAX_BYTES
    text = os.environ.get("COMET_AGENT_SPOOL_MAX_BYTES")
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        err(
            f"ignoring COMET_AGENT_SPOOL_MAX_BYTES={text!r} (not a positive number of bytes); using {DEFAULT_MAX_BYTES}"
        )
        return DEFAULT_MAX_BYTES
    return value


def run_from_args(args) -> int:
    """``comet-agent run``: start recording, then wait for the job to end or for a signal."""
    command = list(args.command or [])
    if command and command[0] == "--":
        command = command[1:]
    if command and args.pid is not None:
        err("give either --pid or a command after --, not both")
        return ExitStatus.USAGE
    if args.pid is not None and not pid_alive(args.pid):
        err(f"--pid {args.pid}: no such process")
        return ExitStatus.USAGE
    from comet_agent.config import systemd_credential_problem
    from comet_agent.sdnotify import Notifier, WatchdogPinger

    problem = systemd_credential_problem()  # under systemd: a missing or shared key file is EX_CONFIG
    if problem:
        err(problem)
        return ExitStatus.CONFIG
    agent = _agent_from_args(args, command=command or None)
    try:
        agent.prepare()  # configuration and the spool only: no network call
    except AgentError as exc:
        err(str(exc))
        return exc.exit_status
    err(f"experiment {agent.experiment_key}: recording to {agent.server_url}")
    if agent.exporter is not None:
        err(f"Prometheus metrics on {agent.exporter.url}")
    notifier = Notifier.from_environment()
    notifier.ready(status=f"experiment {agent.experiment_key}")
    # Pings only while the agent runs and its sampling thread is alive (a crashed sampler stops them).
    pinger = WatchdogPinger(notifier, agent.healthy).start()
    try:
        if command:
            env = None if args.no_share_experiment else agent.child_environment()
            status = _run_wrapped(agent, command, env)
        else:
            status = _run_watching(agent)
    finally:
        pinger.stop()
        notifier.stopping()
    _say_where_to_look(agent)
    return status


def _run_wrapped(agent: Agent, command: list[str], env: Optional[dict[str, str]]) -> int:
    try:
        child = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, env=env
        )
    except OSError as exc:
        err(f"cannot run {command[0]!r}: {exc.strerror or exc}")
        agent.begin()
        agent.log_other("comet_agent.exit_code", ExitStatus.COMMAND_NOT_FOUND)
        agent.stop()
        return ExitStatus.COMMAND_NOT_FOUND

    def forward(signum: int) -> None:
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    # Forwarded from the relay's thread: the main thread sits in waitpid() and may never see a
    # signal the kernel gave another thread (comet_agent/signals.py).
    with SignalRelay(FORWARDED_SIGNALS, forward, name="comet-agent-forward"):
        agent.begin(pid=child.pid)
        from comet_agent.redaction import mask_command_line

        agent.log_other("comet_agent.command", " ".join(mask_command_line(command, secrets=agent.secrets)))
        agent.log_other("comet_agent.cwd", os.getcwd())
        recorder = OutputRecorder(agent)
        pumps = [
            threading.Thread(target=_pump, args=(child.stdout, sys.stdout.buffer, recorder, False), daemon=True),
            threading.Thread(target=_pump, args=(child.stderr, sys.stderr.buffer, recorder, True), daemon=True),
        ]
        for pump in pumps:
            pump.start()
        returncode = child.wait()
        for pump in pumps:
            pump.join(10)
        recorder.close()
        status = _exit_status(returncode)
        agent.log_other("comet_agent.exit_code", status)
    if not agent.stop():
        err("not everything was delivered yet; run `comet-agent flush` later to send the rest")
    return status


def _run_watching(agent: Agent) -> int:
    def request_stop(_signum: int) -> None:
        agent.request_stop()

    # One wait until the watched process exits or SIGINT/SIGTERM arrives: polling five times a
    # second cost as much CPU as sampling every second. The relay's thread ends the wait whichever
    # thread the kernel gave the signal to (comet_agent/signals.py).
    with SignalRelay((signal.SIGINT, signal.SIGTERM), request_stop, name="comet-agent-stop"):
        agent.begin()
        agent.wait()
    delivered = agent.stop()
    if not delivered:
        err("not everything was delivered yet; run `comet-agent flush` later to send the rest")
    return 0


def _say_where_to_look(agent: Agent) -> None:
    if agent.url is None:
        print(
            f"comet-agent: experiment {agent.experiment_key} waits in the spool until {agent.server_url} can be "
            "reached; `comet-agent flush` sends it",
            file=sys.stderr,
            flush=True,
        )
    elif agent.local_server is not None or (agent.server_url or "").startswith("http://127.0.0.1"):
        from comet_agent.embedded import serve_hint

        print(f"comet-agent: {serve_hint(agent.url, agent.data_dir)}", file=sys.stderr, flush=True)
    else:
        print(f"comet-agent: see {agent.url}", file=sys.stderr, flush=True)
