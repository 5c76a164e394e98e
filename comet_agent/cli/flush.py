"""``comet-agent flush``: send what earlier runs left in the spool, with the current configuration."""

from __future__ import annotations

from pathlib import Path

from comet_agent.cli.common import ServerConnection, err, exit_status_for
from comet_agent.errors import ExitStatus
from comet_agent.paths import default_data_dir


def flush_from_args(args) -> int:
    """``comet-agent flush``: send what earlier runs left in the spool, with the current configuration."""
    from comet_agent.delivery.sender import Sender
    from comet_agent.delivery.spool import Spool
    from comet_agent.engine.link import forget_link, load_link
    from comet_agent.errors import SpoolError

    spool_dir = Path(args.data_dir or default_data_dir()) / "spool"
    paths = sorted(spool_dir.glob("*.db")) if spool_dir.is_dir() else []
    if not paths:
        print("nothing to flush")
        return 0
    try:
        server = ServerConnection(args.data_dir)
    except (ValueError, OSError) as exc:
        err(str(exc))
        return ExitStatus.CONFIG
    worst = 0
    try:
        for path in paths:
            try:
                spool = Spool(path)
            except SpoolError as exc:
                err(str(exc))
                worst = max(worst, 78)
                continue
            with spool:
                before = spool.depth()
                if not before:
                    continue
                # Created with its key if the run that spooled it never reached the server.
                sender = Sender(spool, load_link(server.api, path).get)
                try:
                    wait_s = sender.send_pending()
                except Exception as exc:  # an unknown experiment key, for one
                    err(f"{path.name}: {exc}")
                    worst = max(worst, exit_status_for(exc))
                    continue
                left = spool.depth()
                if not left:
                    forget_link(path)
                print(f"{path.stem}: sent {sender.stats.sent}, rejected {sender.stats.rejected}, left {left}")
                if left and wait_s is not None:
                    err(f"{path.stem}: {left} records wait: {sender.stats.last_error}")
                    worst = max(worst, 5)
        return worst
    finally:
        server.close()
