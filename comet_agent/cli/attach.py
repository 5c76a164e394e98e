"""``comet-agent attach --experiment KEY --pid PID``: register a job with the running daemon."""

from __future__ import annotations

import os
import sys

from comet_agent.cli.common import err
from comet_agent.daemon import REFUSAL_EXIT_STATUS, attach_request, request, socket_path
from comet_agent.errors import ConfigError, ExitStatus


def attach_from_args(args) -> int:
    """``comet-agent attach --experiment KEY --pid PID``: register a job with the running daemon."""
    path = socket_path(args.socket, data_dir=getattr(args, "data_dir", None))
    try:
        if args.detach:
            try:
                reply = request(path, {"op": "detach", "experiment_key": args.experiment})
            except OSError as exc:
                reply = {
                    "ok": False,
                    "error": f"no comet-agent daemon answers at {path}: {exc}",
                    "code": "unreachable_daemon",
                }
        else:
            reply = attach_request(
                path, args.experiment, args.pid or os.getppid(), node_id=getattr(args, "node_id", None)
            )
    except ConfigError as exc:
        err(str(exc))
        return ExitStatus.CONFIG
    if not reply.get("ok"):
        err(str(reply.get("error")))
        return REFUSAL_EXIT_STATUS.get(str(reply.get("code")), 5 if reply.get("code") == "unreachable_daemon" else 1)
    if not args.detach:
        print(f"comet-agent: pid {args.pid or os.getppid()} attached to experiment {args.experiment}", file=sys.stderr)
    return 0
