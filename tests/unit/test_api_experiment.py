"""APIExperiment behaviour that needs no server: validation, URLs, display, the comet_agent surface."""

from __future__ import annotations

import logging
import webbrowser

import pytest

import comet_agent
from comet_agent.api import API, APIExperiment
from comet_agent.api.client import RetryPolicy
from comet_agent.api.experiment import SYSTEM_DETAILS_FIELDS
from comet_agent.errors import ConnectionFailed


def _never_sleeps(seconds: float) -> None:
    raise AssertionError(f"unexpected retry sleep of {seconds} s")


@pytest.fixture
def experiment():
    # No request is made at construction or by the calls below: a closed port proves it.
    api = API(
        api_key="UnitKey12345678",
        url_override="http://127.0.0.1:9/clientlib/",
        retry=RetryPolicy(max_retries=0),
        sleep=_never_sleeps,
    )
    return APIExperiment(
        api=api,
        metadata={"experimentKey": "k" * 32, "workspaceName": "ws", "projectName": "proj", "experimentName": "exp"},
    )


def test_public_surface_is_importable_lazily():
    assert comet_agent.API is API
    assert comet_agent.APIExperiment is APIExperiment


def test_url_points_at_the_configured_server(experiment):
    assert experiment.url == "http://127.0.0.1:9/ws/proj/" + "k" * 32
    experiment.archived = True
    assert experiment.url == "http://127.0.0.1:9/ws/proj/archive/" + "k" * 32
    assert repr(experiment) == "<APIExperiment 'ws/proj/" + "k" * 32 + "'>"


def test_url_falls_back_like_comet_ml():
    api = API(api_key="UnitKey12345678", url_override="http://127.0.0.1:9/clientlib/")
    bare = APIExperiment(api=api, metadata={})
    assert bare.url == "http://127.0.0.1:9/UNKNOWN/general/UNKNOWN"


def test_display_opens_a_browser_tab_with_the_mapped_tab(experiment, monkeypatch):
    opened = []
    monkeypatch.setattr(
        webbrowser, "open", lambda url, new=0, autoraise=True: opened.append((url, new, autoraise)) or True
    )
    experiment.display(new=2, autoraise=False, tab="system-metrics")
    assert opened == [(experiment.url + "?experiment-tab=systemMetrics", 2, False)]


@pytest.mark.parametrize("behaviour", ["returns_false", "raises"])
def test_display_without_any_browser_logs_the_url_and_does_not_crash(experiment, monkeypatch, caplog, behaviour):
    def no_browser(url, new=0, autoraise=True):
        if behaviour == "raises":
            raise webbrowser.Error("could not locate runnable browser")
        return False

    monkeypatch.setattr(webbrowser, "open", no_browser)
    with caplog.at_level(logging.WARNING):
        experiment.display()
    assert "No browser or notebook available" in caplog.text
    assert experiment.url in caplog.text


def test_gpu_static_info_is_validated_before_sending(experiment):
    with pytest.raises(TypeError):
        experiment.set_gpu_static_info({"gpuIndex": 0})
    with pytest.raises(ValueError, match="gpuIndex"):
        experiment.set_gpu_static_info([{"name": "x"}])
    with pytest.raises(TypeError, match="totalMemory must be an int"):
        experiment.set_gpu_static_info([{"gpuIndex": 0, "name": "n", "uuid": "u", "totalMemory": 1.5, "powerLimit": 1}])


def test_gpu_metrics_are_validated_before_sending(experiment):
    with pytest.raises(ValueError):
        experiment.log_gpu_metrics({"gpuId": 0})
    with pytest.raises(ValueError, match="gpuUtilization"):
        experiment.log_gpu_metrics([{"gpuId": 0, "freeMemory": 1, "usedMemory": 1, "totalMemory": 2}])


def test_metric_batch_is_validated_before_sending(experiment):
    with pytest.raises(ValueError, match="at most 1000"):
        experiment.log_metrics_batch([{"metricName": "m", "metricValue": 1}] * 1001)
    with pytest.raises(ValueError, match="metricName and metricValue"):
        experiment.log_metrics_batch([{"metricName": "m"}])


def test_system_details_field_names_are_checked(experiment):
    with pytest.raises(ValueError, match="needs at least one field"):
        experiment.update_system_details({})
    assert SYSTEM_DETAILS_FIELDS["os_release"] == "osRelease"
    assert SYSTEM_DETAILS_FIELDS["gpu_static_info"] == "gpuStaticInfoList"


def test_missing_upload_files_are_refused_before_sending(experiment, tmp_path):
    with pytest.raises(FileNotFoundError, match="log_asset"):
        experiment.log_asset(str(tmp_path / "absent.txt"))
    with pytest.raises(FileNotFoundError, match="log_image"):
        experiment.log_image(str(tmp_path / "absent.png"))


def test_set_git_patch_none_does_nothing(experiment):
    assert experiment.set_git_patch(None) is None


def test_api_get_rejects_ambiguous_paths():
    api = API(api_key="UnitKey12345678", url_override="http://127.0.0.1:9/clientlib/")
    with pytest.raises(SyntaxError):
        api.get("ws/proj", "other")
    with pytest.raises(SyntaxError):
        api.get("ws", "proj/key", "key2")


def test_api_without_key_names_the_places_searched(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    from comet_agent.config import ConfigError

    with pytest.raises(ConfigError, match="COMET_API_KEY"):
        API()


def test_environment_details_is_deprecated(experiment):
    with pytest.warns(DeprecationWarning, match="get_os_packages"):
        with pytest.raises(ConnectionFailed):  # port 9 is closed: the warning comes before the request
            experiment.get_environment_details()


def test_timeouts_and_retries_follow_comet_settings(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMET_API_KEY", "SettingsKey1234")
    monkeypatch.setenv("COMET_URL_OVERRIDE", "http://127.0.0.1:9/clientlib/")
    monkeypatch.setenv("COMET_TIMEOUT_API", "3.5")
    monkeypatch.setenv("COMET_HTTP_SESSION_RETRY_TOTAL", "7")
    monkeypatch.setenv("COMET_AGENT_RETRY_AFTER_CAP_S", "120")
    client = API()._client
    assert client.timeouts.read_s == 3.5
    assert (client.retry.max_retries, client.retry.retry_after_cap_s) == (7, 120.0)
    assert client.key_source == "environment variable COMET_API_KEY"
    monkeypatch.setenv("COMET_TIMEOUT_API", "soon")
    with pytest.raises(ValueError, match="COMET_TIMEOUT_API"):
        API()
