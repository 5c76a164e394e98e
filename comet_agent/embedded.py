"""The embedded default: with no Comet configured at all, the agent uses the local server.

``connect_local()`` first looks for a local server that is already running (``comet-agent
server``, or another agent's embedded one): the server writes ``server.json`` (its URL and pid)
into its data directory, and its generated key lives beside it in ``api_key`` (0600). If that
server answers, it is reused. Otherwise a ``LocalServer`` is started in this process, on
loopback, on the default port when it is free (so experiment URLs stay valid for a later
``comet-agent server``), for as long as the caller keeps it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import requests

from comet_agent.paths import default_data_dir
from comet_agent.sources.procfs import pid_alive

log = logging.getLogger(__name__)

DEFAULT_PORT = 5055


def server_data_dir(data_dir: Optional[Path] = None) -> Path:
    """Where the local server keeps its store and key: ``<data dir>/server``."""
    return Path(data_dir or default_data_dir()) / "server"


@dataclass
class LocalTarget:
    """A local server to talk to. ``server`` is set when this process started it (stop it when done)."""

    clientlib_url: str
    api_key: str
    server: Any = None

    @property
    def started_here(self) -> bool:
        return self.server is not None

    def stop(self) -> None:
        """Stop the server if this process started it; safe to call twice."""
        if self.server is not None:
            self.server.stop()
            self.server = None


def find_running(data_dir: Optional[Path] = None) -> Optional[LocalTarget]:
    """A running local server on this data directory whose key we can read, or None."""
    from comet_agent.server.app import API_KEY_FILE_NAME, SERVER_INFO_FILE_NAME

    directory = server_data_dir(data_dir)
    try:
        info = json.loads((directory / SERVER_INFO_FILE_NAME).read_text(encoding="utf-8"))
        url, pid = str(info["url"]), int(info["pid"])
        key = (directory / API_KEY_FILE_NAME).read_text(encoding="utf-8").strip()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not key or not pid_alive(pid):
        return None
    try:
        reply = requests.get(url + "/clientlib/isAlive/ver", timeout=2)
        if reply.status_code != 200:
            return None
    except requests.RequestException:
        return None
    return LocalTarget(clientlib_url=url + "/clientlib/", api_key=key)


def connect_local(data_dir: Optional[Path] = None, *, port: int = DEFAULT_PORT) -> LocalTarget:
    """Reuse a running local server, or start one in this process on loopback.

    Raises:
        OSError: the server's data directory is unusable (the message names it).
    """
    running = find_running(data_dir)
    if running is not None:
        log.info("using the local Comet server at %s", running.clientlib_url)
        return running
    from comet_agent.server.app import LocalServer

    directory = server_data_dir(data_dir)
    try:
        server = LocalServer(directory, port=port).start()
    except OSError:
        # The default port is taken by something else: any free port will do for this run.
        server = LocalServer(directory, port=0).start()
    log.info("started a local Comet server at %s for this run (data in %s)", server.url, directory)
    return LocalTarget(clientlib_url=server.clientlib_url, api_key=server.api_key, server=server)
