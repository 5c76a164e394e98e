"""Item 2: values JSON cannot hold safely (NaN, Infinity, 1e400, integers past 64 bits, lone
surrogates, deep nesting) are refused at write with a 400 or stored and read back as Comet's
strings; afterwards every read and every page of the experiment still answers, with strict JSON.

The attacks go in through our own client (which serialises with ``allow_nan=True``, as comet_ml
does) and as raw bodies; a store poisoned before the checks existed is served safely too.
"""

from __future__ import annotations

import json
import logging

import pytest
import requests

from comet_agent import errors
from comet_agent.api import API, APIExperiment
from comet_agent.server.app import LocalServer
from comet_agent.server.store import Store, key_id_of
from tests.support.local_server_http import assert_comet_error, auth, create_experiment, rest

#: Every GET of one experiment's data (REST v2), as the SDK's readers call them.
READS = (
    "experiment/metadata",
    "experiment/system-details",
    "experiment/metrics/get-all",
    "experiment/metrics/summary",
    "experiment/parameters",
    "experiment/log-other",
    "experiment/tags",
    "experiment/output",
    "experiment/git/metadata",
    "experiment/asset/list",
    "experiment/html",
    "experiment/code",
)


def _strict_json(response: requests.Response):
    """The body parsed as standard JSON: NaN, Infinity and -Infinity tokens are refused."""

    def refuse(token):
        raise AssertionError(f"{response.url} answered the non-JSON token {token}")

    return json.loads(response.text, parse_constant=refuse)


def _assert_everything_reads(server, experiment_key: str, workspace: str = "ws", project: str = "proj") -> None:
    for path in READS:
        response = requests.get(
            rest(server, path), params={"experimentKey": experiment_key}, headers=auth(server), timeout=30
        )
        assert response.status_code == 200, (path, response.text[:300])
        _strict_json(response)
    intervals = requests.get(
        rest(server, "write/experiment/set-status"),
        params={"experimentKey": experiment_key},
        headers=auth(server),
        timeout=30,
    )
    assert intervals.status_code == 200 and _strict_json(intervals)
    for page in (f"/{workspace}/{project}/{experiment_key}", f"/{workspace}/{project}", f"/{workspace}", "/"):
        response = requests.get(server.url + page, headers=auth(server), timeout=30)
        assert response.status_code == 200, (page, response.text[:300])


def _calls(experiment: APIExperiment):
    nan, inf = float("nan"), float("inf")
    deep: object = "bottom"
    for _ in range(200):
        deep = [deep]
    return [
        ("metric NaN", lambda: experiment.log_metric("loss", nan, step=1)),
        ("metric -Infinity", lambda: experiment.log_metric("loss", -inf, step=2)),
        ("metric batch of NaN", lambda: experiment.log_metrics_batch([{"metricName": "acc", "metricValue": nan}])),
        ("parameter Infinity", lambda: experiment.log_parameter("lr", inf)),
        ("other NaN", lambda: experiment.log_other("score", nan)),
        ("system info NaN", lambda: experiment.log_additional_system_info("temperature", nan)),
        (
            "GPU static Infinity",
            lambda: experiment.update_system_details(
                {
                    "gpuStaticInfoList": [
                        {"gpuIndex": 0, "name": "g", "uuid": "u", "totalMemory": inf, "powerLimit": nan}
                    ]
                }
            ),
        ),
        ("system env Infinity", lambda: experiment.update_system_details({"env": {"X": inf}})),
        ("step past 64 bits", lambda: experiment.log_metric("loss", 1.0, step=2**64)),
        ("value past 64 bits", lambda: experiment.log_other("big", 10**400)),
        ("negative past 64 bits", lambda: experiment.log_parameter("neg", -(2**63) - 1)),
        ("lone surrogate host", lambda: experiment.set_hostname("host\ud800")),
        ("lone surrogate tag", lambda: experiment.add_tags(["tag\udfff"])),
        ("lone surrogate name", lambda: experiment.log_other("Name", "name\udc80")),
        ("lone surrogate output", lambda: experiment.log_output("line \ud83d\n")),
        ("deep system info", lambda: experiment.log_additional_system_info("deep", deep)),
    ]


def test_hostile_values_through_our_own_client_leave_every_read_and_page_working(local_server, caplog):
    """Pass: each hostile write is accepted or refused with a 400 (never a 500); then every read of
    the experiment and its pages answer 200 with strict JSON, and the server logged no error."""
    caplog.set_level(logging.ERROR, logger="comet_agent")
    api = API(api_key=local_server.api_key, url_override=local_server.clientlib_url)
    experiment = APIExperiment(api=api, workspace="ws", project_name="proj")
    outcomes = {}
    for what, call in _calls(experiment):
        try:
            call()
            outcomes[what] = "stored"
        except errors.BadRequest:
            outcomes[what] = "refused"
    # Metric, parameter and "other" values are Comet's free values: non-finite ones are kept.
    assert outcomes["metric NaN"] == outcomes["parameter Infinity"] == outcomes["other NaN"] == "stored"
    for what in (
        "system info NaN",
        "GPU static Infinity",
        "system env Infinity",
        "step past 64 bits",
        "value past 64 bits",
        "negative past 64 bits",
        "lone surrogate host",
        "lone surrogate tag",
        "lone surrogate name",
        "lone surrogate output",
        "deep system info",
    ):
        assert outcomes[what] == "refused", (what, outcomes)
    _assert_everything_reads(local_server, experiment.id)
    values = {m["metricName"]: m["metricValue"] for m in experiment.get_metrics()}
    assert values["loss"] == "-Infinity" and values["acc"] == "NaN"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize(
    "path, body",
    [
        ("write/experiment/system-details", b'{"experimentKey": "%s", "hostname": "h", "pid": 1e400}'),
        ("write/experiment/system-details", b'{"experimentKey": "%s", "env": {"a": NaN}}'),
        (
            "write/experiment/metric",
            b'{"experimentKey": "%s", "metricName": "m", "metricValue": 1, "step": 99999999999999999999}',
        ),
        (
            "write/experiment/metric",
            b'{"experimentKey": "%s", "metricName": "m", "metricValue": 1, "timestamp": -1e400}',
        ),
        (  # an upper-case exponent with a sign
            "write/experiment/metric",
            b'{"experimentKey": "%s", "metricName": "m", "metricValue": 2, "timestamp": 2E+400}',
        ),
        (
            "write/experiment/metric",
            b'{"experimentKey": "%s", "metricName": "m", "metricValue": -9999999999999999999}',
        ),
        ("write/experiment/log-other", b'{"experimentKey": "%s", "key": "k", "value": "\\udfff"}'),
        ("write/experiment/log-other", b'{"experimentKey": "%s", "key": "k\\ud800", "value": 1}'),
        (
            "write/experiment/log-other",
            b'{"experimentKey": "%s", "key": "k", "value": 1, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        ),
        (
            "write/experiment/log-other",
            b'{"experimentKey": "%s", "key": "k", "value": 1, "x": ' + b'{"a":' * 65 + b"1" + b"}" * 65 + b"}",
        ),
        ("write/experiment/tags", b'{"experimentKey": "%s", "addedTags": ["\xed\xa0\x80"]}'),
        ("write/experiment/html", b'{"experimentKey": "%s", "html": "x", "override": Infinity}'),
    ],
)
def test_raw_hostile_bodies_get_a_comet_400_and_nothing_breaks(local_server, caplog, path, body):
    """Pass: a body with a non-finite number where none may be, an integer past 64 bits, a lone
    surrogate (escaped or as raw UTF-8 bytes) or 65 to 5000 levels of nesting gets Comet's JSON 400;
    reads and pages keep answering and the server logged no error."""
    caplog.set_level(logging.ERROR, logger="comet_agent")
    experiment_key = create_experiment(local_server)
    response = requests.post(
        rest(local_server, path),
        data=body.replace(b"%s", experiment_key.encode()),
        headers={**auth(local_server), "Content-Type": "application/json"},
        timeout=30,
    )
    assert_comet_error(response, 400)
    _assert_everything_reads(local_server, experiment_key)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_admin_endpoint_refuses_nan_so_heartbeats_keep_answering(local_server):
    """Pass: ``NaN`` sent as an interval is a 400 (garbage stays possible as a JSON string), and
    ``update_status`` keeps answering strict JSON."""
    experiment_key = create_experiment(local_server)
    refused = requests.post(
        local_server.url + "/local/admin/intervals",
        data=b'{"heartbeatMs": NaN}',
        headers=auth(local_server),
        timeout=30,
    )
    assert_comet_error(refused, 400)
    garbage = requests.post(
        local_server.url + "/local/admin/intervals", json={"heartbeatMs": "NaN"}, headers=auth(local_server), timeout=30
    )
    assert garbage.status_code == 200
    _assert_everything_reads(local_server, experiment_key)


def test_a_store_poisoned_before_the_checks_is_served_as_strings(tmp_path):
    """Pass: a store that already holds NaN and Infinity in system details and intervals (written
    before values were checked) is read back with Comet's strings, pages included: no 500 forever."""
    data_dir = tmp_path / "old-store"
    key = "poisoned-store-key"
    store = Store(data_dir)
    with store.transaction():
        store.ensure_workspace("ws", key_id_of(key))
        experiment_key = store.create_experiment("ws", "proj", "old")
        store.merge_system_details(
            experiment_key,
            {
                "logAdditionalSystemInfoList": [{"key": "t", "value": float("nan")}],
                "gpuStaticInfoList": [{"gpuIndex": 0, "totalMemory": float("inf")}],
                "env": {"x": float("-inf")},
            },
        )
    store.set_setting("intervals", {"isAliveBeatDurationMillis": float("nan")})
    store.close()
    with LocalServer(data_dir, api_keys=[key]) as server:
        _assert_everything_reads(server, experiment_key)
        details = requests.get(
            rest(server, "experiment/system-details"),
            params={"experimentKey": experiment_key},
            headers=auth(server),
            timeout=30,
        ).json()
        assert details["logAdditionalSystemInfoList"] == [{"key": "t", "value": "NaN"}]
        assert details["env"] == {"x": "-Infinity"}
