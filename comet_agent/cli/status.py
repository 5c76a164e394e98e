"""``comet-agent status``: what the agents running with this data directory, and the daemon's
registrations this user may see, are doing.

``--json`` prints the status records as they are (times in epoch ms, intervals in ms);
without it ``format_statuses`` writes them for people (durations, ages, the intervals in force).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Optional

from comet_agent.agent import read_statuses
from comet_agent.cli.format import format_age, format_duration_ms, format_duration_s
from comet_agent.daemon import request, socket_path
from comet_agent.paths import default_data_dir


def daemon_status(data_dir: Optional[str] = None) -> Optional[dict[str, Any]]:
    """The daemon's own status and this user's registrations (root: all), or None when none answers."""
    path = socket_path(data_dir=data_dir)
    if not path.exists():
        return None
    try:
        reply = request(path, {"op": "status"}, timeout_s=5.0)
    except OSError:
        return None
    return reply if reply.get("ok") else None


def status_from_args(args: argparse.Namespace) -> int:
    """``comet-agent status [--json]``: one entry per running job, in-process agents and daemon registrations."""
    statuses = [{**status, "via": "agent"} for status in read_statuses(args.data_dir)]
    daemon = daemon_status(args.data_dir)
    if daemon is not None:
        statuses += [{**job, "via": "daemon"} for job in daemon.get("jobs") or [] if isinstance(job, dict)]
    if args.json:
        print(json.dumps(statuses, indent=2))
        return 0
    sys.stdout.write(format_statuses(statuses, daemon, data_dir=str(args.data_dir or default_data_dir())))
    return 0


def format_statuses(
    statuses: list[dict], daemon: Optional[dict[str, Any]] = None, *, data_dir: str = "", now_ms: Optional[int] = None
) -> str:
    """What ``status`` prints without ``--json``: the daemon (when one answers), then a block per job.

    Each block: the experiment and its page, the server, the intervals in force (the server's
    heartbeat and push intervals; whether samples are taken at each push or more often), when
    the last push and the last delivery were, and the spool: records waiting, dropped at its
    cap, rejected by the server, quarantined.

    Example::

        agent pid 4567, watching pid 4560, running for 5m 12s
          experiment  5584b066dc4b4b8fbd03ed1a33abca2c  http://127.0.0.1:5055/local/general/5584b066...
          server      http://127.0.0.1:5055
          intervals   heartbeat every 10 s; pushes of cpu metrics every 1m 08s, gpu metrics every 1m 00s; sampled at each push
          last push   3 s ago; last delivery 3 s ago
          spool       0 records waiting, 0 dropped, 0 rejected, 0 quarantined
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    lines = []
    if daemon is not None:
        count = len(daemon.get("jobs") or [])
        lines.append(
            f"daemon pid {daemon.get('pid')} on {daemon.get('socket')}: samples the host every "
            f"{format_duration_s(daemon.get('interval_s'))}, writes to {daemon.get('server') or 'its local server'}; "
            f"{count} registration{'' if count == 1 else 's'} visible to you"
        )
    if not statuses:
        lines.append(f"no agent is running with the data directory {data_dir}")
    for status in statuses:
        lines.extend(_job_lines(status, now_ms))
    return "".join(line + "\n" for line in lines)


def _job_lines(status: dict, now_ms: int) -> list[str]:
    if status.get("via") == "daemon":
        head = f"daemon job watching pid {status.get('watching') or status.get('pid')}"
    else:
        head = f"agent pid {status.get('pid')}" + (
            f", watching pid {status['watching']}" if status.get("watching") else ""
        )
    if status.get("started_ms"):
        head += f", running for {format_duration_ms(now_ms - status['started_ms'])}"
    lines = [head]
    experiment = "  ".join(str(v) for v in (status.get("experiment_key"), status.get("experiment_url")) if v)
    lines.append(f"  experiment  {experiment or '(not created yet)'}")
    if status.get("server"):
        lines.append(f"  server      {status['server']}")
    if status.get("node_id"):
        # A status file from before the election has no host_sampler: it sampled the host.
        role = (
            "samples the host"
            if status.get("host_sampler", True)
            else "its own series only (another rank samples the host)"
        )
        lines.append(f"  node        {status['node_id']}: {role}")
    lines.append(f"  intervals   {_intervals(status)}")
    lines.append(
        f"  last push   {format_age(status.get('last_push_ms'), now_ms, never='none yet')}; "
        f"last delivery {format_age(status.get('last_success_ms'), now_ms, never='none yet')}"
    )
    lines.append(
        f"  spool       {status.get('spool_depth', 0)} records waiting, {status.get('dropped_total', 0)} dropped, "
        f"{status.get('rejected', 0)} rejected, {status.get('quarantined', 0)} quarantined"
    )
    if status.get("last_error"):
        lines.append(f"  last error  {status['last_error']}")
    return lines


def _intervals(status: dict) -> str:
    """``heartbeat every 10 s; pushes of cpu metrics every 1m 08s, gpu metrics every 1m 00s; sampled at each push``."""
    intervals = status.get("intervals_ms") or {}
    parts = []
    if intervals.get("heartbeat"):
        parts.append(f"heartbeat every {format_duration_ms(intervals['heartbeat'])}")
    pushes = [
        f"{name} metrics every {format_duration_ms(intervals[name])}" for name in ("cpu", "gpu") if intervals.get(name)
    ]
    if pushes:
        parts.append("pushes of " + ", ".join(pushes))
    sample_interval_s = status.get("sample_interval_s")
    # An agent from before the resolution setting has none in its status file: it aggregated.
    carried = "every sample pushed" if status.get("resolution") == "full" else "aggregated per push"
    parts.append(
        f"sampled every {format_duration_s(sample_interval_s)}, {carried}"
        if sample_interval_s
        else "sampled at each push"
    )
    return "; ".join(parts)
