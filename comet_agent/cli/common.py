"""What the subcommands share: the one-line error, the exit status of an API error, and the
server a reading subcommand talks to (the configured one, or the local one)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

from comet_agent import errors
from comet_agent.errors import ExitStatus


def err(message: str) -> None:
    """One line on stderr, prefixed with the program's name."""
    print(f"comet-agent: {message}", file=sys.stderr, flush=True)


def exit_status_for(exc: BaseException) -> int:
    """The exit status of a failure: 3 rejected key, 4 not found, 5 unreachable or a reply that is
    not Comet's, 78 configuration, 1 anything else."""
    if isinstance(exc, errors.Unauthorized):
        return ExitStatus.UNAUTHORIZED
    if isinstance(exc, errors.NotFound):
        return ExitStatus.NOT_FOUND
    if isinstance(exc, (errors.ConnectionFailed, errors.ServerError, errors.InvalidReply, errors.Throttled)):
        return ExitStatus.UNREACHABLE
    if isinstance(exc, (errors.ConfigError, errors.SpoolError)):
        return ExitStatus.CONFIG
    return ExitStatus.FAILURE


class ServerConnection:
    """The configured server, or the local one (reused, or started here for the command's duration)."""

    def __init__(self, data_dir: Optional[str]):
        from comet_agent.api.api import API
        from comet_agent.config import resolve_config

        self.local: Any = None
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
