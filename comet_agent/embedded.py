"""The embedded default: with no Comet configured at all, the agent uses the local server.

``connect_local()`` first looks for a local server that is already running (``comet-agent
server``, or another agent's embedded one): the server writes ``server.json`` (its URL, pid and a
per-start proof secret) into its data directory, and its generated key lives beside it in
``api_key`` (0600). That server is reused only if it proves it knows the secret (a
challenge-response, ``comet_agent.server.discovery``): after a restart another local user may be
listening on the recorded port, and must not receive the key. Otherwise a ``LocalServer`` is started in this process, on
loopback, on the default port when it is free (so experiment URLs stay valid for a later
``comet-agent server``), for as long as the caller keeps it.

``serve_hint()`` words what a run says at its end about its experiment's URL on such a server:
open it (a server still answers there), or the exact ``comet-agent server`` command that serves
it again (same port, same data directory).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import sys
import urllib.parse
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
    """A running local server on this data directory whose key we can read, or None.

    The server named in ``server.json`` must answer a fresh nonce with the proof only the
    server that wrote the file can compute (``comet_agent.server.discovery``); the key is read
    here but sent nowhere until then. Whatever else answers on that port gets nothing but the
    nonce, and None is returned (the caller starts its own server).
    """
    from comet_agent.server.discovery import PROOF_PATH, new_nonce, proof_matches
    from comet_agent.server.store import API_KEY_FILE_NAME, SERVER_INFO_FILE_NAME

    directory = server_data_dir(data_dir)
    try:
        info = json.loads((directory / SERVER_INFO_FILE_NAME).read_text(encoding="utf-8"))
        url, pid, secret = str(info["url"]), int(info["pid"]), str(info["proof_secret"])
        key = (directory / API_KEY_FILE_NAME).read_text(encoding="utf-8").strip()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # no file, or one from a server that cannot prove anything: start our own
    if not key or not secret or not pid_alive(pid):
        return None
    nonce = new_nonce()
    try:
        # stream + a bounded read: whatever listens there may answer anything, at any length.
        with requests.get(
            url + PROOF_PATH, params={"nonce": nonce}, timeout=2, allow_redirects=False, stream=True
        ) as reply:
            body = reply.raw.read(4096, decode_content=True) if reply.status_code == 200 else b""
    except requests.RequestException:
        log.info("no local server answers at %s (recorded in %s)", url, directory / SERVER_INFO_FILE_NAME)
        return None
    try:
        answer = json.loads(body).get("proof")
    except (ValueError, AttributeError):
        answer = None
    if not proof_matches(secret, url, nonce, answer):
        log.warning(
            "what answers at %s (recorded in %s) did not prove it is this data directory's server; "
            "the API key is not sent to it, and a new local server is started",
            url,
            directory / SERVER_INFO_FILE_NAME,
        )
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


def _answers(root_url: str) -> bool:
    try:
        return requests.get(root_url + "/clientlib/isAlive/ver", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _this_program() -> list[str]:
    """How to run comet-agent again the way this process was run.

    ``comet-agent`` when that name on PATH is this very script; the script's path when it is not
    (``.venv/bin/comet-agent`` from a venv that is not activated: the README's quick start); and
    ``python -m comet_agent`` with this interpreter for a ``-m`` run, which has no script.
    """
    script = sys.argv[0] if sys.argv else ""
    if os.path.basename(script) == "comet-agent":
        on_path = shutil.which("comet-agent")
        if on_path and os.path.realpath(on_path) == os.path.realpath(script):
            return ["comet-agent"]
        return [script]
    if os.path.basename(script) == "__main__.py" and os.path.basename(os.path.dirname(script)) == "comet_agent":
        return [sys.executable, "-m", "comet_agent"]
    return ["comet-agent"]


def serve_hint(experiment_url: str, data_dir: Optional[Path] = None) -> str:
    """How to open ``experiment_url``, a page on a local server, after the run that printed it.

    The run's own server stopped with it, and ``comet-agent server`` with no options listens on
    the default port with the default data directory, which need not be the ones in the URL. So:
    when a server answers at the URL's address, the hint says to open the URL; otherwise it names
    the exact command that serves it again: comet-agent as this process was started, the URL's
    port (and host, unless loopback ``127.0.0.1``) and ``--data-dir`` naming ``<data_dir>/server``,
    where the local server keeps its store and key. The key is never printed; the hint names the
    file holding it, which the page's login form asks for.

    Args:
        experiment_url: the experiment's page, e.g. ``http://127.0.0.1:5055/local/general/<key>``.
        data_dir: the agent's data directory (``run --data-dir``); None: the per-user default.

    Returns:
        One line, e.g. ``to open http://127.0.0.1:5055/local/general/3f2a..., run `comet-agent
        server --port 5055 --data-dir /home/me/.local/share/comet-agent/server` and log in with
        the API key stored in /home/me/.local/share/comet-agent/server/api_key``.
    """
    from comet_agent.server.store import API_KEY_FILE_NAME, store_holds_experiment

    parts = urllib.parse.urlsplit(experiment_url)
    root = f"{parts.scheme}://{parts.netloc}"
    directory = server_data_dir(data_dir).absolute()  # the command may run from another directory
    # The experiment key is the URL's last segment; the local server of this data directory
    # serves it only if its store holds it (a COMET_URL_OVERRIDE to one's own 127.0.0.1 server
    # keeps its data elsewhere, and a command naming this directory would be wrong).
    ours = store_holds_experiment(directory, parts.path.rstrip("/").rsplit("/", 1)[-1])
    key_file = directory / API_KEY_FILE_NAME
    login = f" and log in with the API key stored in {key_file}" if ours and key_file.is_file() else ""
    if _answers(root):
        return f"open {experiment_url}{login}"
    if not ours:
        return f"open {experiment_url} once the server at {root} runs again"
    argv = [*_this_program(), "server"]
    if parts.hostname not in (None, "127.0.0.1"):
        argv += ["--host", parts.hostname]
    argv += ["--port", str(parts.port or (443 if parts.scheme == "https" else 80)), "--data-dir", str(directory)]
    return f"to open {experiment_url}, run `{shlex.join(argv)}`{login}"
