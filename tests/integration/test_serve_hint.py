"""The end-of-run hint for an experiment on the local server (``embedded.serve_hint``), against
real local servers: open the URL while a server answers there, else the exact command that
serves it again; never the key. The whole path through a browser is in
``tests/browser/test_printed_url.py``."""

from __future__ import annotations

import re
import shlex

from comet_agent.api import API, APIExperiment
from comet_agent.embedded import serve_hint, server_data_dir
from comet_agent.server.app import LocalServer
from tests.support.fresh_python import run_fresh


def _experiment_url(server: LocalServer) -> str:
    api = API(api_key=server.api_key, url_override=server.clientlib_url)
    try:
        return APIExperiment(api=api, workspace=api.get_default_workspace(), experiment_name="hinted").url
    finally:
        api.close()


def _command(hint: str) -> list[str]:
    match = re.search(r"run `([^`]+)`", hint)
    assert match, hint
    return shlex.split(match.group(1))


def test_a_running_server_needs_no_command_and_a_stopped_one_gets_the_exact_one(tmp_path):
    data_dir = tmp_path / "data"
    directory = server_data_dir(data_dir)
    server = LocalServer(directory).start()  # a generated key, stored in <data dir>/server/api_key
    try:
        url = _experiment_url(server)
        key, port = server.api_key, server.port
        running = serve_hint(url, data_dir)
    finally:
        server.stop()
    assert running == f"open {url} and log in with the API key stored in {directory / 'api_key'}"

    stopped = serve_hint(url, data_dir)
    assert stopped.startswith(f"to open {url}, run `")
    assert stopped.endswith(f"` and log in with the API key stored in {directory / 'api_key'}")
    command = _command(stopped)
    assert command[0].endswith("comet-agent") and command[1:] == [
        "server",
        "--port",
        str(port),
        "--data-dir",
        str(directory),
    ]
    assert key not in running and key not in stopped
    # Reading the stopped server's store left nothing beside it (no -wal or -shm file).
    assert sorted(p.name for p in directory.iterdir() if p.name.startswith("server.sqlite3")) == ["server.sqlite3"]


def test_the_command_names_a_host_other_than_loopback(tmp_path):
    data_dir = tmp_path / "data"
    with LocalServer(server_data_dir(data_dir)) as server:
        url = _experiment_url(server)
        port = server.port
    # The same page asked for by another name of the host: nothing listens there now.
    command = _command(serve_hint(url.replace("127.0.0.1", "localhost"), data_dir))
    assert command[1:] == [
        "server",
        "--host",
        "localhost",
        "--port",
        str(port),
        "--data-dir",
        str(server_data_dir(data_dir)),
    ]


def test_a_server_keeping_its_data_elsewhere_gets_no_command(tmp_path):
    """A COMET_URL_OVERRIDE to one's own 127.0.0.1 server: this data directory does not hold the
    experiment, so naming it in a command would serve the wrong store."""
    data_dir = tmp_path / "data"
    with LocalServer(server_data_dir(data_dir)):
        pass  # this data directory has a local server's store and key, without the experiment
    with LocalServer(tmp_path / "own-server", api_keys=["own-key"]) as own:
        url = _experiment_url(own)
        root = own.url
        assert serve_hint(url, data_dir) == f"open {url}"
    assert serve_hint(url, data_dir) == f"open {url} once the server at {root} runs again"


def test_the_hint_does_not_load_the_server_code(tmp_path):
    # It is the last thing every run on the local server does; importing aiohttp and the
    # server's routes for it cost ~0.5 s of the "stop to exit" time and ~10 MB (bench/README.md).
    data_dir = tmp_path / "data"
    with LocalServer(server_data_dir(data_dir)) as server:
        url = _experiment_url(server)
        code = (
            "import sys\n"
            "from comet_agent.embedded import serve_hint\n"
            f"print(serve_hint({url!r}, {str(data_dir)!r}))\n"
            "print('aiohttp' in sys.modules, 'comet_agent.server.app' in sys.modules)\n"
        )
        hint, loaded = run_fresh(code)
    assert hint.startswith(f"open {url}")
    assert loaded == "False False"
