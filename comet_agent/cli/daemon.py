"""``comet-agent daemon``: the host service (``comet_agent.daemon.Daemon``) until SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from comet_agent.cli.common import err
from comet_agent.config import parse_listen_address, systemd_credential_problem
from comet_agent.daemon import Daemon, socket_path
from comet_agent.errors import ExitStatus
from comet_agent.paths import default_data_dir
from comet_agent.signals import SignalRelay


def daemon_from_args(args) -> int:
    """``comet-agent daemon``: serve registrations until SIGTERM/SIGINT."""
    problem = systemd_credential_problem()
    if problem:
        err(problem)
        return ExitStatus.CONFIG
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    path = socket_path(args.socket, data_dir=data_dir)
    try:
        if not args.socket:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the default's folder is ours to make
        daemon = Daemon(
            path,
            data_dir=data_dir,
            interval_s=args.interval,
            socket_group=args.socket_group,
            include_gpu=not args.no_gpu,
            max_jobs=args.max_jobs,
            registrations_per_minute=args.registrations_per_minute,
        )
        daemon.open()
    except (ValueError, OSError) as exc:
        err(f"cannot start the daemon: {exc}")
        return ExitStatus.CONFIG
    exporter = None
    if args.prometheus_listen:
        from comet_agent.engine.prometheus import PrometheusExporter

        host, port = parse_listen_address(args.prometheus_listen)
        try:
            exporter = PrometheusExporter(host, port, jobs=daemon.jobs).start()
        except OSError as exc:  # a service that cannot serve what it was told to fails loudly
            err(f"cannot serve Prometheus metrics on {args.prometheus_listen}: {exc}")
            daemon.close()
            return ExitStatus.CONFIG
    print(f"comet-agent: daemon listening on {path}", file=sys.stderr, flush=True)
    if exporter is not None:
        print(f"comet-agent: Prometheus metrics on {exporter.url}", file=sys.stderr, flush=True)
    # Stopped from the relay's thread: a handler on the main thread could deadlock on the stop
    # event's lock, or never run while the loop sleeps (comet_agent/signals.py).
    try:
        with SignalRelay((signal.SIGTERM, signal.SIGINT), lambda _signum: daemon.stop()):
            daemon.serve()
    finally:
        if exporter is not None:
            exporter.stop()
        daemon.close()
    return 0
