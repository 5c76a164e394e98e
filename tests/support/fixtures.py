"""Fixtures shared across test folders (registered from tests/conftest.py via pytest_plugins)."""

from __future__ import annotations

import contextlib
import os
import secrets

import pytest

from comet_agent.agent import COMET_ML_LOGGERS_OFF

# --------------------------------------------------------------------------------------------
# The local Comet-compatible server (owned by the server part; comet_agent/server/app.py).


def _new_test_key() -> str:
    return "test-key-" + secrets.token_hex(8)


@pytest.fixture
def local_server(tmp_path):
    """A ``LocalServer`` on 127.0.0.1:0 with a fresh data dir and one known key ("test-key-<hex>").

    Started before the test and stopped after it. Use ``local_server.url``,
    ``local_server.clientlib_url``, ``local_server.api_key`` and ``local_server.set_intervals()``.
    """
    from comet_agent.server.app import LocalServer

    server = LocalServer(tmp_path / "server-data", api_keys=[_new_test_key()])
    server.start()
    try:
        yield server
    finally:
        server.stop()


#: comet_ml's own system monitors and host probes, off: a test run takes a few hundred milliseconds.
QUIET_SDK_ENV = {name: "false" for name in (*COMET_ML_LOGGERS_OFF, "COMET_AUTO_LOG_CLI_ARGUMENTS")}


@contextlib.contextmanager
def sdk_env(server, monkeypatch=None, *, quiet: bool = False):
    """Point the official comet_ml SDK at ``server``: sets COMET_URL_OVERRIDE and COMET_API_KEY.

    With ``monkeypatch`` the variables are restored by it; without, they are restored on exit.
    ``quiet``: also switch off comet_ml's own system monitors and host probes (``QUIET_SDK_ENV``).
    """
    values = {
        "COMET_URL_OVERRIDE": server.clientlib_url,
        "COMET_API_KEY": server.api_key,
        "COMET_ERROR_TRACKING_ENABLE": "false",
        **(QUIET_SDK_ENV if quiet else {}),
    }
    if monkeypatch is not None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        yield server
        return
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield server
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def comet_sdk_env(local_server, monkeypatch):
    """``local_server`` with COMET_URL_OVERRIDE and COMET_API_KEY set for the official SDK."""
    with sdk_env(local_server, monkeypatch):
        yield local_server


#: ``comet_ml.Experiment`` options that switch off its automatic loggers (output, code, git,
#: metrics, parameters, system monitors), so that a test sees only what it logs itself.
QUIET_EXPERIMENT_OPTIONS = {
    "auto_output_logging": False,
    "log_code": False,
    "log_git_metadata": False,
    "log_git_patch": False,
    "auto_metric_logging": False,
    "auto_param_logging": False,
    "log_env_gpu": False,
    "log_env_cpu": False,
    "log_env_network": False,
    "log_env_disk": False,
}
