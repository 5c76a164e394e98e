"""``comet-agent status``: what the agents running with this data directory are doing."""

from __future__ import annotations

import json
import time

from comet_agent.agent import read_statuses
from comet_agent.paths import default_data_dir


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
