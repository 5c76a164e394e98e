"""A server that answers the first calls normally, then with shapes no Comet server sends.

Every read of ``API`` and ``APIExperiment``, against every bad shape, ends in one ``InvalidReply``:
one line naming the server and the endpoint, never the key; never a KeyError, TypeError or
AttributeError from inside the client. The only replies that are not errors are the ones comet_ml
defines: an empty or unrelated object read as "nothing known" by the system-details field getters,
returned whole by the getters that return the whole object, and "no projects" for ``get_projects``.
"""

from __future__ import annotations

import json

import pytest

from comet_agent import errors
from comet_agent.api import API, APIExperiment
from comet_agent.api.client import RetryPolicy
from tests.support.recording_server import REST, RecordingServer, default_reply

API_KEY = "HostileReplyKey_0123456789"
KEY = "e" * 32

# name -> the reply, as RecordingServer.set_route takes it
SHAPES = {
    "list": [1, 2],
    "empty list": [],
    "string": "saved",
    "number": 42,
    "true": True,
    "null": (200, {"Content-Type": "application/json"}, b"null"),
    "empty object": {},
    "unrelated object": {"unexpected": 1},
    "html page": (200, {"Content-Type": "text/html"}, b"<!doctype html><html><body>Sign in</body></html>"),
    "broken json": (200, {"Content-Type": "application/json"}, b'{"tags": ['),
    "text": (200, {"Content-Type": "text/plain"}, b"ok"),
}
OBJECTS = ("empty object", "unrelated object")

SD = "experiment/system-details"
SD_FIELD_GETTERS = [
    "get_additional_system_info",
    "get_command",
    "get_executable",
    "get_gpu_static_info",
    "get_hostname",
    "get_installed_packages",
    "get_ip",
    "get_max_memory",
    "get_network_interface_ips",
    "get_os",
    "get_os_packages",
    "get_os_type",
    "get_pid",
    "get_python_version",
    "get_python_version_verbose",
    "get_system_metric_names",
    "get_total_memory",
    "get_user",
]

# label -> (endpoint under {rest}, call, what a reply in OBJECTS gives, replies with the right outer shape but a
# wrong field inside). What a reply in OBJECTS gives: "invalid" (InvalidReply), "none" (None, nothing known),
# "whole" (the reply itself), "accepted" (no error: comet_ml takes an empty metadata object as valid).
READS = {
    **{name: (SD, (lambda e, n=name: getattr(e, n)()), "none", []) for name in SD_FIELD_GETTERS},
    "get_system_details": (SD, lambda e: e.get_system_details(), "whole", []),
    "get_git_metadata": ("experiment/git/metadata", lambda e: e.get_git_metadata(), "whole", []),
    "update_status": ("write/experiment/set-status", lambda e: e.update_status(), "whole", []),
    "get_tags": (
        "experiment/tags",
        lambda e: e.get_tags(),
        "invalid",
        [{"tags": "a,b"}, {"tags": [1]}, {"tags": None}],
    ),
    "get_code": ("experiment/code", lambda e: e.get_code(), "invalid", [{"code": ["print()"]}]),
    "get_html": ("experiment/html", lambda e: e.get_html(), "invalid", [{"html": 1}]),
    "get_output": ("experiment/output", lambda e: e.get_output(), "invalid", [{"output": {"line": 1}}]),
    "get_model_graph": ("experiment/graph", lambda e: e.get_model_graph(), "invalid", [{"graph": []}]),
    "get_asset_list": (
        "experiment/asset/list",
        lambda e: e.get_asset_list(),
        "invalid",
        [{"assets": {}}, {"assets": ["a"]}],
    ),
    "get_metrics": (
        "experiment/metrics/get-all",
        lambda e: e.get_metrics(),
        "invalid",
        [{"metrics": "m"}, {"metrics": [3]}],
    ),
    "get_metrics(name)": (
        "experiment/metrics/get-metric",
        lambda e: e.get_metrics("loss"),
        "invalid",
        [{"metrics": None}],
    ),
    "get_metrics_summary": (
        "experiment/metrics/summary",
        lambda e: e.get_metrics_summary(),
        "invalid",
        [{"values": "v"}, {"values": [None]}],
    ),
    "get_metrics_summary(name)": (
        "experiment/metrics/summary",
        lambda e: e.get_metrics_summary("loss"),
        "invalid",
        [{"values": [[1]]}],
    ),
    "get_parameters_summary(name)": (
        "experiment/parameters",
        lambda e: e.get_parameters_summary("lr"),
        "invalid",
        [{"values": 1}],
    ),
    "get_others_summary": ("experiment/log-other", lambda e: e.get_others_summary(), "invalid", [{"values": {}}]),
    "get_others_summary(name)": (
        "experiment/log-other",
        lambda e: e.get_others_summary("Name"),
        "invalid",
        [{"values": [{"name": "Name"}]}, {"values": ["Name"]}],
    ),
    "get_model_names": (
        "experiment/model",
        lambda e: e.get_model_names(),
        "invalid",
        [{"models": [{"name": "m"}]}, {"models": [{"modelName": 7}]}],
    ),
    "get_model_data": ("experiment/model/asset/list", lambda e: e.get_model_data("m"), "invalid", [{"assets": 0}]),
    "create_symlink": ("write/project/symlink", lambda e: e.create_symlink("other"), "invalid", [{"link": None}]),
    "name": ("experiment/metadata", lambda e: e.name, "none", [{"experimentKey": KEY, "experimentName": 12}]),
    "set_start_time": (
        "experiment/metadata",
        lambda e: e.set_start_time(1),
        "accepted",
        [{"experimentKey": KEY, "archived": "no"}],
    ),
}

API_READS = {
    "get_workspaces": (
        "workspaces",
        lambda api: api.get_workspaces(),
        "invalid",
        [{"workspaceNames": "ws"}, {"workspaceNames": [None]}],
    ),
    "get_projects": (
        "projects",
        lambda api: api.get_projects("ws"),
        "none",
        [{"projects": {}}, {"projects": ["p"]}, {"projects": [{"projectId": "x"}]}],
    ),
    "get_experiments": (
        "experiments",
        lambda api: api.get_experiments("ws", "proj"),
        "invalid",
        [{"experiments": {}}, {"experiments": [1]}, {"experiments": [{"experimentKey": 5}]}],
    ),
    "get_experiment_by_key": (
        "experiment/metadata",
        lambda api: api.get_experiment_by_key(KEY),
        "accepted",
        [{"experimentKey": KEY, "workspaceName": ["ws"]}],
    ),
    "get_account_details": ("account-details", lambda api: api.get_account_details(), "whole", []),
    "get_default_workspace": (
        "account-details",
        lambda api: api.get_default_workspace(),
        "invalid",
        [{"defaultWorkspaceName": 3}, {"defaultWorkspaceName": ""}],
    ),
    "APIExperiment(previous_experiment)": (
        "experiment/metadata",
        lambda api: APIExperiment(api=api, previous_experiment=KEY),
        "accepted",
        [{"experimentKey": KEY, "durationMillis": "long"}],
    ),
    "APIExperiment(create): create": (
        "write/experiment/create",
        lambda api: APIExperiment(api=api, workspace="ws", project_name="p"),
        "invalid",
        [{"experimentKey": None}, {"experimentKey": ["k"]}],
    ),
    "APIExperiment(create): metadata": (
        "experiment/metadata",
        lambda api: APIExperiment(api=api, workspace="ws", project_name="p"),
        "invalid",
        [{"experimentKey": KEY, "projectName": False}],
    ),
    "APIExperiment(create): account details": (
        "account-details",
        lambda api: APIExperiment(api=api),
        "invalid",
        [{"defaultWorkspaceName": None}],
    ),
}


def _cases(table):
    for label, (_endpoint, _, on_object, wrong_fields) in table.items():
        for shape in SHAPES:
            yield pytest.param(label, SHAPES[shape], shape in OBJECTS, on_object, id=f"{label}-{shape}")
        for index, reply in enumerate(wrong_fields):
            yield pytest.param(label, reply, False, None, id=f"{label}-wrong-field-{index}")


def _method(endpoint: str) -> str:
    return "POST" if endpoint == "write/experiment/create" else "GET"


@pytest.fixture(scope="module")
def server():
    with RecordingServer() as running:
        yield running


@pytest.fixture
def api(server):
    """A fresh API (nothing cached) on the shared server, whose routes are back to normal afterwards."""
    server.clear()
    client_api = API(api_key=API_KEY, url_override=server.clientlib_url, retry=RetryPolicy(max_retries=0))
    yield client_api
    client_api.close()
    for endpoint, *_ in list(READS.values()) + list(API_READS.values()) + [("experiment/git/patch",)]:
        server.set_route(_method(endpoint), REST + endpoint, default_reply)


def _answer_and_check(server, endpoint, reply, is_object, on_object, read):
    """Make ``endpoint`` answer ``reply``, then ``read()``: the outcome the table states."""
    server.set_route(_method(endpoint), REST + endpoint, reply)
    if not is_object or on_object == "invalid":
        with pytest.raises(errors.InvalidReply) as info:
            read()
        _assert_one_clean_invalid_reply(info, server, endpoint)
    elif on_object == "whole":
        assert read() == reply
    elif on_object == "none":
        assert read() is None, "an object without the field reads as nothing known, as in comet_ml"
    else:
        assert on_object == "accepted"
        assert getattr(read(), "id", None) in (None, KEY), "an empty metadata object gives an experiment of Nones"


def _assert_one_clean_invalid_reply(info, server, endpoint):
    error = info.value
    assert type(error) is errors.InvalidReply
    message = str(error)
    assert "\n" not in message
    assert server.url in message, message
    assert endpoint in message and endpoint in (error.endpoint or ""), message
    for text in (message, repr(error), repr(error.args)):
        assert API_KEY not in text


@pytest.mark.parametrize("label, reply, is_object, on_object", list(_cases(READS)))
def test_experiment_reads_end_in_one_invalid_reply(server, api, label, reply, is_object, on_object):
    endpoint, call, _, _ = READS[label]
    # The first calls are answered normally: the experiment is attached through the real metadata read.
    experiment = APIExperiment(api=api, previous_experiment=KEY)
    assert experiment.id == KEY
    experiment.name = None  # the name is read again from the server, through the bad route
    _answer_and_check(server, endpoint, reply, is_object, on_object, lambda: call(experiment))


@pytest.mark.parametrize("label, reply, is_object, on_object", list(_cases(API_READS)))
def test_api_reads_and_experiment_creation_end_in_one_invalid_reply(server, api, label, reply, is_object, on_object):
    endpoint, call, _, _ = API_READS[label]
    _answer_and_check(server, endpoint, reply, is_object, on_object, lambda: call(api))


def test_git_patch_that_is_neither_a_zip_nor_a_message(server, api):
    experiment = APIExperiment(api=api, previous_experiment=KEY)
    for body, expected in (
        (b'{"msg": "No patch"}', None),
        (b'{ "msg" : "none" }', None),
        (b"PK\x03\x04rest", b"PK\x03\x04rest"),
    ):
        server.set_route("GET", REST + "experiment/git/patch", body)
        assert experiment.get_git_patch() == expected
    for body in (b"<html>login</html>", b"[1]", b""):
        server.set_route("GET", REST + "experiment/git/patch", body)
        with pytest.raises(errors.InvalidReply) as info:
            experiment.get_git_patch()
        _assert_one_clean_invalid_reply(info, server, "experiment/git/patch")
    server.set_route("GET", REST + "experiment/git/patch", b"PK\x03\x04 not really a zip")
    with pytest.raises(errors.InvalidReply) as info:
        experiment.to_json(full=True)
    _assert_one_clean_invalid_reply(info, server, "experiment/git/patch")


def test_an_error_body_that_echoes_the_key_over_lines_stays_one_line_without_it(server, api):
    body = json.dumps({"msg": f"bad key {API_KEY}\nline two", "sdk_error_code": ["x"]}).encode()
    server.set_route("GET", REST + "experiment/tags", (400, {"Content-Type": "application/json"}, body))
    experiment = APIExperiment(api=api, metadata={"experimentKey": KEY})
    with pytest.raises(errors.BadRequest) as info:
        experiment.get_tags()
    assert "\n" not in str(info.value) and API_KEY not in str(info.value) and API_KEY not in repr(info.value)
    assert info.value.sdk_error_code is None, "a non-integer code is not passed on"
