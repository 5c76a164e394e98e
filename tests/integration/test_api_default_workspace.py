"""A new experiment with no workspace configured anywhere goes to the user's default workspace.

Configured exactly as a Comet user often is: only ``COMET_API_KEY`` and ``COMET_URL_OVERRIDE`` in
the environment, no ``~/.comet.config`` (the autouse fixture gives every test an empty ``HOME``),
no ``./.comet.config`` (each test runs in its own empty directory).
"""

from __future__ import annotations

import pytest

from comet_agent import errors
from comet_agent.api import API, APIExperiment
from comet_agent.api.client import RetryPolicy
from tests.support.recording_server import RecordingServer

ACCOUNT_DETAILS = "/api/rest/v2/account-details"
CREATE = "/api/rest/v2/write/experiment/create"


@pytest.fixture
def user_environment(local_server, monkeypatch, tmp_path):
    """Only the key and the server URL, as a user sets them."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMET_API_KEY", local_server.api_key)
    monkeypatch.setenv("COMET_URL_OVERRIDE", local_server.clientlib_url)
    return local_server


def _default_workspace_of(server) -> str:
    details = API(api_key=server.api_key, url_override=server.clientlib_url).get_account_details()
    assert isinstance(details.get("defaultWorkspaceName"), str) and details["defaultWorkspaceName"]
    return details["defaultWorkspaceName"]


def test_a_new_experiment_goes_to_the_default_workspace_and_project_general(user_environment):
    api = API()
    experiment = APIExperiment(api=api, workspace=None, project_name=None)
    expected_workspace = _default_workspace_of(user_environment)
    assert (experiment.workspace, experiment.project_name) == (expected_workspace, "general")
    assert experiment.url == f"{user_environment.url}/{expected_workspace}/general/{experiment.id}"
    # The server agrees: the experiment is listed where the URL says.
    listed = API().get_experiments(expected_workspace, "general")
    assert [e.id for e in listed] == [experiment.id]


def test_no_arguments_at_all_reads_the_key_and_server_from_the_environment(user_environment):
    experiment = APIExperiment(experiment_name="first-run")
    assert experiment.workspace == _default_workspace_of(user_environment)
    assert (experiment.project_name, experiment.name) == ("general", "first-run")


def test_a_configured_project_is_kept_with_the_default_workspace(user_environment, monkeypatch):
    monkeypatch.setenv("COMET_PROJECT_NAME", "from-env")
    experiment = APIExperiment()
    assert (experiment.workspace, experiment.project_name) == (_default_workspace_of(user_environment), "from-env")


def test_a_configured_workspace_asks_no_account_details():
    with RecordingServer() as server:
        api = API(api_key="ws-config-key-0123", url_override=server.clientlib_url)
        APIExperiment(api=api, workspace="given", project_name="p")
        assert server.requests_to(ACCOUNT_DETAILS) == []
        assert server.requests_to(CREATE)[0].json == {"workspaceName": "given", "projectName": "p"}


def test_the_default_workspace_is_asked_once_per_api_object():
    with RecordingServer() as server:
        server.set_route("GET", ACCOUNT_DETAILS, {"userName": "u", "defaultWorkspaceName": "team-ws"})
        api = API(api_key="ws-cache-key-0123", url_override=server.clientlib_url)
        for _ in range(3):
            APIExperiment(api=api)
        assert len(server.requests_to(ACCOUNT_DETAILS)) == 1
        assert [r.json["workspaceName"] for r in server.requests_to(CREATE)] == ["team-ws"] * 3
        assert api.get_default_workspace() == "team-ws"
        assert len(server.requests_to(ACCOUNT_DETAILS)) == 1


@pytest.mark.parametrize(
    "details",
    [
        {"userName": "u"},
        {},
        {"userName": "u", "defaultWorkspaceName": None},
        {"userName": "u", "defaultWorkspaceName": ""},
        {"userName": "u", "defaultWorkspaceName": ["ws"]},
        ["ws"],
        "ws",
        None,
    ],
    ids=["missing", "empty-object", "null", "empty-string", "list-value", "list", "string", "json-null"],
)
def test_unusable_account_details_are_one_clear_error_naming_the_server(details):
    key = "ws-broken-key-0123456789"
    with RecordingServer() as server:
        server.set_route(
            "GET",
            ACCOUNT_DETAILS,
            details if details is not None else (200, {"Content-Type": "application/json"}, b"null"),
        )
        api = API(api_key=key, url_override=server.clientlib_url, retry=RetryPolicy(max_retries=0))
        with pytest.raises(errors.InvalidReply) as info:
            APIExperiment(api=api)
        message = str(info.value)
        assert server.url in message and "account-details" in message
        assert "COMET_WORKSPACE" in message, "says how to get past it"
        assert "\n" not in message and key not in message and key not in repr(info.value)
        assert server.requests_to(CREATE) == [], "nothing is created anywhere"


def test_a_rejected_key_at_account_details_stays_unauthorized():
    with RecordingServer() as server:
        server.fail_next(1, 401, path=ACCOUNT_DETAILS)
        api = API(api_key="ws-rejected-key-0123", url_override=server.clientlib_url, retry=RetryPolicy(max_retries=0))
        with pytest.raises(errors.Unauthorized, match="api_key argument"):
            APIExperiment(api=api)
        assert server.requests_to(CREATE) == []
