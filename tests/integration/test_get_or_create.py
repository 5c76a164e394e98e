"""An agent that chose its experiment key and a training script given the same key (comet_ml's
``start()`` in get-or-create mode) land in one experiment, whichever reaches the server first."""

from __future__ import annotations

import threading
import uuid

import pytest

from comet_agent.api import API
from comet_agent.errors import CometApiError
from comet_agent.server.app import LocalServer


def _api(server) -> API:
    return API(api_key=server.api_key, url_override=server.clientlib_url)


def test_get_or_create_twice_is_one_experiment(local_server):
    key = uuid.uuid4().hex
    first = _api(local_server).get_or_create_experiment(key)
    second = _api(local_server).get_or_create_experiment(key, project_name="ignored-when-it-exists")
    assert first.id == second.id == key
    assert second.project_name == "general"
    assert second.workspace == _api(local_server).get_default_workspace()


@pytest.mark.sdk
def test_the_training_script_first_then_the_agent(local_server, monkeypatch):
    import comet_ml

    key = uuid.uuid4().hex
    monkeypatch.setenv("COMET_URL_OVERRIDE", local_server.clientlib_url)
    monkeypatch.setenv("COMET_API_KEY", local_server.api_key)
    monkeypatch.setenv("COMET_EXPERIMENT_KEY", key)
    experiment = comet_ml.start()
    experiment.log_metric("loss", 0.5, step=1)
    experiment.end()
    ours = _api(local_server).get_or_create_experiment(key)
    assert ours.id == key
    assert [p["metricValue"] for p in ours.get_metrics("loss")] in (["0.5"], [0.5])


def test_racing_twins_make_one_experiment(local_server):
    key = uuid.uuid4().hex
    results: list = []

    def create() -> None:
        try:
            results.append(_api(local_server).get_or_create_experiment(key).id)
        except CometApiError as exc:  # recorded, so the assertion below shows it
            results.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [key] * 6


def test_another_keys_experiment_is_not_joined(tmp_path):
    key = uuid.uuid4().hex
    with LocalServer(tmp_path / "server", port=0, api_keys=["owner-key-0123456789", "other-key-0123456789"]) as server:
        API(api_key="owner-key-0123456789", url_override=server.clientlib_url).get_or_create_experiment(key)
        with pytest.raises(CometApiError):
            API(api_key="other-key-0123456789", url_override=server.clientlib_url).get_or_create_experiment(key)
