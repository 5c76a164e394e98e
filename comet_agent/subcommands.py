"""What the ``run``, ``show``, ``status`` and ``flush`` subcommands do (``cli.py`` only parses).

``run`` wraps a command or watches a pid: the child runs in its own session so that a terminal's
Ctrl-C reaches it once, through us; SIGINT, SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 are forwarded; its
stdout and stderr pass through unchanged, byte for byte, and are recorded line by line (decoded
as UTF-8, undecodable bytes shown as U+FFFD) into ``log_output`` with the stderr flag; the agent
exits with the child's exit status (128 + N when a signal N ended it).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Optional

from comet_agent.agent import Agent, AgentError, read_statuses
from comet_agent.paths import default_data_dir

log = logging.getLogger(__name__)

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
#: Longest line recorded as one output line; longer ones are recorded in pieces (passed through whole).
MAX_OUTPUT_LINE_BYTES = 1 << 20
OUTPUT_FLUSH_INTERVAL_S = 1.0
OUTPUT_FLUSH_LINES = 500


def _err(message: str) -> None:
    print(f"comet-agent: {message}", file=sys.stderr, flush=True)


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
        self._thread = threading.Thread(target=self._flush_periodically, name="comet-agent-output", daemon=True)
        self._thread.start()

    def add(self, line: bytes, stderr: bool) -> None:
        text = line.decode("utf-8", errors="replace")
        with self._lock:
            self._lines.append((stderr, text))
            full = len(self._lines) >= OUTPUT_FLUSH_LINES
        if full:
            self.flush()

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
        while not self._done.wait(OUTPUT_FLUSH_INTERVAL_S):
            self.flush()

    def close(self) -> None:
        self._done.set()
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
        args.experiment, workspace=args.workspace, project_name=args.project, experiment_name=args.name,
        data_dir=args.data_dir, pid=args.pid, directory=args.directory, sample_interval_s=args.sample_interval,
        stop_timeout_s=args.stop_timeout, include_os_packages=not args.no_os_packages, include_git=not args.no_git,
        include_gpu=not args.no_gpu, tags=args.tag or (), command=command,
        spool_max_bytes=_spool_max_bytes(getattr(args, "spool_max_mb", None)))


def _spool_max_bytes(max_mb: Optional[float] = None) -> int:
    """The spool cap: ``--spool-max-mb``, else ``COMET_AGENT_SPOOL_MAX_BYTES`` (bytes), else the
    default; a value that is not a positive number is refused loudly and the default used."""
    from comet_agent.delivery.spool import DEFAULT_MAX_BYTES

    if max_mb is not None:
        if max_mb > 0:
            return int(max_mb * 2**20)
        _err(f"ignoring --spool-max-mb {max_mb} (not positive); using {DEFAULT_MAX_BYTES} bytes")
        return DEFAULT_MAX_BYTES
    text = os.environ.get("COMET_AGENT_SPOOL_MAX_BYTES")
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        _err(f"ignoring COMET_AGENT_SPOOL_MAX_BYTES={text!r} (not a positive number of bytes); "
             f"using {DEFAULT_MAX_BYTES}")
        return DEFAULT_MAX_BYTES
    return value


def run_from_args(args) -> int:
    """``comet-agent run``: attach or create, then sample until the job ends or we are told to stop."""
    command = list(args.command or [])
    if command and command[0] == "--":
        command = command[1:]
    if command and args.pid is not None:
        _err("give either --pid or a command after --, not both")
        return 2
    from comet_agent.config import systemd_credential_problem
    from comet_agent.sdnotify import Notifier, WatchdogPinger

    problem = systemd_credential_problem()  # under systemd: a missing or shared key file is EX_CONFIG
    if problem:
        _err(problem)
        return 78
    agent = _agent_from_args(args, command=command or None)
    try:
        agent.prepare()
    except AgentError as exc:
        _err(str(exc))
        return exc.exit_status
    print(f"comet-agent: experiment {agent.experiment_key}: {agent.url}", file=sys.stderr, flush=True)
    notifier = Notifier.from_environment()
    notifier.ready(status=f"experiment {agent.experiment_key}")
    # Pings only while the agent runs and its sampling thread is alive (a crashed sampler stops them).
    pinger = WatchdogPinger(notifier, agent.healthy).start()
    try:
        if command:
            status = _run_wrapped(agent, command)
        else:
            status = _run_watching(agent)
    finally:
        pinger.stop()
        notifier.stopping()
    _say_where_to_look(agent)
    return status


def _run_wrapped(agent: Agent, command: list[str]) -> int:
    try:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        _err(f"cannot run {command[0]!r}: {exc.strerror or exc}")
        agent.begin()
        agent.log_other("comet_agent.exit_code", 127)
        agent.stop()
        return 127
    received: list[int] = []

    def forward(signum, _frame):
        received.append(signum)
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        agent.begin(pid=child.pid)
        from comet_agent.redaction import mask_command_line

        agent.log_other("comet_agent.command", " ".join(mask_command_line(command)))
        agent.log_other("comet_agent.cwd", os.getcwd())
        recorder = OutputRecorder(agent)
        pumps = [threading.Thread(target=_pump, args=(child.stdout, sys.stdout.buffer, recorder, False), daemon=True),
                 threading.Thread(target=_pump, args=(child.stderr, sys.stderr.buffer, recorder, True), daemon=True)]
        for pump in pumps:
            pump.start()
        returncode = child.wait()
        for pump in pumps:
            pump.join(10)
        recorder.close()
        status = _exit_status(returncode)
        agent.log_other("comet_agent.exit_code", status)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not agent.stop():
        _err("not everything was delivered yet; run `comet-agent flush` later to send the rest")
    return status


def _run_watching(agent: Agent) -> int:
    stop = threading.Event()

    def request_stop(signum, _frame):
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        agent.begin()
        while not stop.is_set() and not agent.wait(0.2):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    delivered = agent.stop()
    if not delivered:
        _err("not everything was delivered yet; run `comet-agent flush` later to send the rest")
    return 0


def _say_where_to_look(agent: Agent) -> None:
    if agent.local_server is not None or (agent.server_url or "").startswith("http://127.0.0.1"):
        from comet_agent.embedded import serve_hint

        print(f"comet-agent: {serve_hint(agent.url, agent.data_dir)}", file=sys.stderr, flush=True)
    else:
        print(f"comet-agent: see {agent.url}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# show, status, flush
# ------------------------------------------------------------------------------------------------


class _Server:
    """The configured server, or the local one (reused, or started here for the command's duration)."""

    def __init__(self, data_dir: Optional[str]):
        from comet_agent.api.api import API
        from comet_agent.config import resolve_config

        self.local = None
        config = resolve_config()
        if config.api_key is None and not config.server_configured:
            from comet_agent.embedded import connect_local

            self.local = connect_local(Path(data_dir) if data_dir else None)
            self.api = API(api_key=self.local.api_key, url_override=self.local.clientlib_url)
        else:
            self.api = API(config=config)

    def close(self) -> None:
        self.api.close()
        if self.local is not None:
            self.local.stop()


def _api_error_status(exc) -> int:
    from comet_agent import errors

    if isinstance(exc, errors.Unauthorized):
        return 3
    if isinstance(exc, errors.NotFound):
        return 4
    if isinstance(exc, (errors.ConnectionFailed, errors.ServerError, errors.InvalidReply)):
        return 5
    return 1


def show_from_args(args) -> int:
    """``comet-agent show KEY [--json] [--open]``."""
    from comet_agent import errors
    from comet_agent.api.experiment import APIExperiment

    try:
        server = _Server(args.data_dir)
    except (ValueError, OSError) as exc:
        _err(str(exc))
        return 78
    try:
        experiment = APIExperiment(api=server.api, previous_experiment=args.key)
        if not experiment.id:
            raise errors.NotFound(f"the server knows no experiment {args.key}", status=404)
        report = {
            "experimentKey": experiment.id, "name": experiment.name, "workspace": experiment.workspace,
            "project": experiment.project_name, "url": experiment.url,
            "startTimeMillis": experiment.start_server_timestamp, "endTimeMillis": experiment.end_server_timestamp,
            "tags": experiment.get_tags(), "systemDetails": experiment.get_system_details(),
            "gitMetadata": experiment.get_git_metadata(), "metricsSummary": experiment.get_metrics_summary(),
            "others": experiment.get_others_summary(),
        }
        if args.json:
            print(json.dumps(report, indent=2, default=str))
        else:
            _print_report(report)
        if args.open:
            experiment.display()
            if server.local is not None and server.local.started_here:
                print(f"serving {experiment.url} until Ctrl-C", file=sys.stderr, flush=True)
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    pass
        return 0
    except errors.CometApiError as exc:
        _err(str(exc))
        return _api_error_status(exc)
    finally:
        server.close()


def _print_report(report: dict) -> None:
    details = report.get("systemDetails") or {}
    git = report.get("gitMetadata") or {}
    print(f"experiment  {report['experimentKey']}  {report.get('name') or ''}")
    print(f"url         {report['url']}")
    print(f"tags        {', '.join(report.get('tags') or []) or '-'}")
    print(f"host        {details.get('hostname')}  user {details.get('user')}  pid {details.get('pid')}")
    print(f"os          {details.get('os')}")
    print(f"python      {details.get('pythonVersion')}  {details.get('executable')}")
    print(f"command     {' '.join(details.get('command') or []) if isinstance(details.get('command'), list) else details.get('command')}")
    print(f"packages    {len(details.get('installedPackages') or [])} python, {len(details.get('osPackages') or [])} os")
    print(f"gpus        {len(details.get('gpuStaticInfoList') or [])}")
    print(f"git         {git.get('branch')} @ {git.get('parent')}  origin {git.get('origin') or '-'}")
    summary = report.get("metricsSummary") or []
    print(f"metrics     {len(summary)}")
    for item in summary:
        print(f"  {item.get('name'):<32} min {item.get('valueMin')}  max {item.get('valueMax')}  current {item.get('valueCurrent')}")
    for item in report.get("others") or []:
        print(f"other       {item.get('name')} = {item.get('valueCurrent')}")


def status_from_args(args) -> int:
    """``comet-agent status [--json]``: what the agents running with this data directory are doing."""
    statuses = read_statuses(args.data_dir)
    if args.json:
        print(json.dumps(statuses, indent=2))
        return 0
    if not statuses:
        print(f"no agent is running with the data directory {args.data_dir or default_data_dir()}")
        return 0
    now_ms = int(time.time() * 1000)
    for status in statuses:
        def ago(ms):
            return "never" if not ms else f"{(now_ms - ms) / 1000:.0f} s ago"

        intervals = status.get("intervals_ms") or {}
        print(f"pid {status['pid']}  experiment {status.get('experiment_key')}  {status.get('experiment_url')}")
        print(f"  server {status.get('server')}  watching {status.get('watching') or '-'}")
        print(f"  intervals: heartbeat {intervals.get('heartbeat')} ms, cpu {intervals.get('cpu')} ms, gpu {intervals.get('gpu')} ms;"
              f" sampling every {status.get('sample_interval_s') or 'push'} s")
        print(f"  last push {ago(status.get('last_push_ms'))}, last delivery {ago(status.get('last_success_ms'))}")
        print(f"  spool depth {status.get('spool_depth')}, dropped {status.get('dropped_total')}, rejected {status.get('rejected')}")
        if status.get("last_error"):
            print(f"  last error: {status['last_error']}")
    return 0


def flush_from_args(args) -> int:
    """``comet-agent flush``: send what earlier runs left in the spool, with the current configuration."""
    from comet_agent.api.experiment import APIExperiment
    from comet_agent.delivery.sender import Sender
    from comet_agent.delivery.spool import Spool, SpoolError

    spool_dir = Path(args.data_dir or default_data_dir()) / "spool"
    paths = sorted(spool_dir.glob("*.db")) if spool_dir.is_dir() else []
    if not paths:
        print("nothing to flush")
        return 0
    try:
        server = _Server(args.data_dir)
    except (ValueError, OSError) as exc:
        _err(str(exc))
        return 78
    worst = 0
    try:
        experiments: dict[str, APIExperiment] = {}

        def experiment_for(key: str) -> APIExperiment:
            if key not in experiments:
                experiments[key] = APIExperiment(api=server.api, previous_experiment=key)
            return experiments[key]

        for path in paths:
            try:
                spool = Spool(path)
            except SpoolError as exc:
                _err(str(exc))
                worst = max(worst, 78)
                continue
            with spool:
                before = spool.depth()
                if not before:
                    continue
                sender = Sender(spool, experiment_for)
                try:
                    wait_s = sender.send_pending()
                except Exception as exc:  # an unknown experiment key, for one
                    _err(f"{path.name}: {exc}")
                    worst = max(worst, _api_error_status(exc))
                    continue
                left = spool.depth()
                print(f"{path.stem}: sent {sender.stats.sent}, rejected {sender.stats.rejected}, left {left}")
                if left and wait_s is not None:
                    _err(f"{path.stem}: {left} records wait: {sender.stats.last_error}")
                    worst = max(worst, 5)
        return worst
    finally:
        server.close()
