"""What the local server answers for a Comet call it does not serve, and what comet_ml makes of it:
a JSON error naming the call, logged by a live Experiment (never raised into training code),
raised by ``API``."""

from __future__ import annotations

import logging

import pytest
import requests

from tests.support.fixtures import sdk_env
from tests.support.local_server_http import assert_comet_error, auth, rest

#: comet_ml's backend custom-error code (its message is shown to the user).
CUSTOM_ERROR = 7777777


def test_an_unserved_rest_call_answers_a_json_error_naming_it(local_server):
    response = requests.put(rest(local_server, "write/experiment/dependencies"), headers=auth(local_server), json={})
    body = assert_comet_error(response, 404)
    assert "does not support PUT /api/rest/v2/write/experiment/dependencies" in body["msg"]
    assert body["sdk_error_code"] == CUSTOM_ERROR
    response = requests.get(local_server.url + "/clientlib/rest/v2/no/such/read", headers=auth(local_server))
    assert "GET /clientlib/rest/v2/no/such/read" in assert_comet_error(response, 404)["msg"]


def test_an_unserved_upload_answers_the_status_comet_ml_does_not_retry(local_server):
    response = requests.post(
        local_server.url + "/clientlib/no-such/upload",
        headers=auth(local_server),
        files={"file": ("file", b"data")},
    )
    body = assert_comet_error(response, 429)
    assert body["sdk_error_code"] == CUSTOM_ERROR and "POST /clientlib/no-such/upload" in body["msg"]


def test_a_served_path_with_another_method_is_still_405(local_server):
    response = requests.delete(rest(local_server, "experiment/metadata"), headers=auth(local_server))
    assert "use GET" in assert_comet_error(response, 405)["msg"]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.sdk
def test_a_live_experiment_logs_an_unserved_call_and_carries_on(local_server, monkeypatch):
    comet_ml = pytest.importorskip("comet_ml", reason="the official comet_ml SDK is a test dependency")
    with sdk_env(local_server, monkeypatch):
        for name in ("CPU", "GPU", "NETWORK", "DISK", "GIT_METADATA", "GIT_PATCH"):
            monkeypatch.setenv(f"COMET_AUTO_LOG_ENV_{name}", "false")
        experiment = comet_ml.Experiment(workspace="ws", project_name="proj")
        logged = _Records()
        comet_logger = logging.getLogger("comet_ml")  # comet_ml's loggers do not reach the root one
        comet_logger.addHandler(logged)
        try:
            experiment.log_dependency("numpy", "1.26")  # PUT write/experiment/dependencies: not served
            experiment.log_metric("loss", 0.5, step=1)  # the script carries on
            experiment.end()
        finally:
            comet_logger.removeHandler(logged)
        assert any("does not support PUT" in message for message in logged.messages)
        api = comet_ml.API(cache=False)
        assert [p["step"] for p in api.get_experiment_by_key(experiment.get_key()).get_metrics("loss")] == [1]
        with pytest.raises(comet_ml.exceptions.CometRestApiException, match="does not support"):
            api.get_views("ws", "proj")  # API raises it: the analysis script is told why
