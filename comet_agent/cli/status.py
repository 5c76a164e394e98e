"""``comet-agent status``: what the agents running with this data directory, and the daemon's
registrations this user may see, are doing."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, Optional

from comet_agent.agent import read_statuses
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
    if daemon is not None:
        print(f"daemon pid {daemon.get('pid')} on {daemon.get('socket')}: samples every {daemon.get('interval_s')} s, "
              f"writes to {daemon.get('server')}, {len(daemon.get('jobs') or [])} registration(s) visible to you")
    if not statuses:
        print(f"no agent is running with the data directory {args.data_dir or default_data_dir()}")
        return 0
    now_ms = int(time.time() * 1000)

    def ago(ms: Optional[int]) -> str:
        return "never" if not ms else f"{(now_ms - ms) / 1000:.0f} s ago"

    for status in statuses:
        intervals = status.get("intervals_ms") or {}
        via = "daemon job" if status["via"] == "daemon" else "pid"
        print(f"{via} {status['pid']}  experiment {status.get('experiment_key')}  {status.get('experiment_url') or ''}")
        print(f"  server {status.get('server')}  watching {status.get('watching') or '-'}")
        print(f"  intervals: heartbeat {intervals.get('heartbeat')} ms, cpu {intervals.get('cpu')} ms, gpu {intervals.get('gpu')} ms;"
              f" sampling every {status.get('sample_interval_s') or 'push'} s")
        print(f"  last push {ago(status.get('last_push_ms'))}, last delivery {ago(status.get('last_success_ms'))}")
        print(f"  spool depth {status.get('spool_depth')}, dropped {status.get('dropped_total')}, "
              f"rejected {status.get('rejected')}, quarantined {status.get('quarantined', 0)}")
        if status.get("last_error"):
            print(f"  last error: {status['last_error']}")
    return 0
