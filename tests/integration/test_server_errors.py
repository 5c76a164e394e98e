"""Bad input against the local server: the right 4xx, a Comet-style JSON body, nothing half-written."""

from __future__ import annotations

import gzip
import json

import pytest
import requests

from comet_agent.server.app import LocalServer
from tests.support.local_server_http import assert_comet_error, auth, create_experiment, metric_points, rest


def test_responses_are_plain_application_json_without_charset(local_server):
    response = requests.get(local_server.url + "/clientlib/isAlive/ver", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"version": "3.99.0"}


def test_the_rest_prefixes_are_aliases(local_server):
    experiment_key = create_experiment(local_server)
    response = requests.post(
        f"{local_server.url}/clientlib/rest/v2/write/experiment/system-details",
        headers=auth(local_server),
        json={"experimentKey": experiment_key, "hostname": "h"},
        timeout=10,
    )
    assert response.json() == {"msg": "Saved"}
    read = requests.get(
        f"{local_server.url}/api/rest/v2/experiment/system-details",
        headers=auth(local_server),
        params={"experimentKey": experiment_key},
        timeout=10,
    )
    assert read.json()["hostname"] == "h"


@pytest.mark.parametrize("key", [None, "", "wrong-key-0000"])
def test_a_missing_or_wrong_key_gets_401(local_server, key):
    headers = {} if key is None else {"Authorization": key}
    response = requests.get(rest(local_server, "workspaces"), headers=headers, timeout=10)
    body = assert_comet_error(response, 401)
    assert local_server.api_key not in response.text and "wrong-key" not in body["msg"]


def test_a_wrong_key_cannot_write(local_server):
    experiment_key = create_experiment(local_server)
    response = requests.post(
        rest(local_server, "write/experiment/metric"),
        headers=auth(local_server, "nope-1234"),
        json={"experimentKey": experiment_key, "metricName": "m", "metricValue": 1},
        timeout=10,
    )
    assert_comet_error(response, 401)
    assert metric_points(local_server, experiment_key) == []


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b"{not json", "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (b"", "application/json"),
        (b"\xff\xfe garbage", "application/json"),
    ],
)
def test_malformed_json_gets_400(local_server, body, content_type):
    experiment_key = create_experiment(local_server)
    response = requests.post(
        rest(local_server, "write/experiment/metric"),
        data=body,
        headers={**auth(local_server), "Content-Type": content_type},
        timeout=10,
    )
    assert_comet_error(response, 400)
    assert metric_points(local_server, experiment_key) == []


@pytest.mark.parametrize(
    "path, body, mentions",
    [
        ("write/experiment/metric", {"metricName": 5, "metricValue": 1}, "metricName"),
        ("write/experiment/metric", {"metricName": "m", "metricValue": {"a": 1}}, "metricValue"),
        ("write/experiment/metric", {"metricName": "m", "metricValue": 1, "step": "two"}, "step"),
        ("write/experiment/metric", {"metricName": "m"}, "metricValue"),
        ("write/experiment/cpu-metrics", {"cpuPercentUtilization": ["high"]}, "cpuPercentUtilization"),
        ("write/experiment/cpu-metrics", {"cpuPercentUtilization": 50}, "cpuPercentUtilization"),
        ("write/experiment/ram-metrics", {"totalRam": "lots", "usedRam": 1}, "totalRam"),
        ("write/experiment/load-metrics", {}, "loadAverage"),
        ("write/experiment/gpu-metrics", {"gpus": [{"freeMemory": 1}]}, "gpuId"),
        ("write/experiment/system-details", {"pid": "1234"}, "pid"),
        ("write/experiment/system-details", {"installedPackages": "numpy"}, "installedPackages"),
        ("write/experiment/tags", {"addedTags": [1, 2]}, "addedTags"),
        ("write/experiment/set-start-end-time", {"startTimeMillis": "yesterday"}, "startTimeMillis"),
    ],
)
def test_wrong_types_get_400_and_write_nothing(local_server, path, body, mentions):
    experiment_key = create_experiment(local_server)
    response = requests.post(
        rest(local_server, path), headers=auth(local_server), json={"experimentKey": experiment_key, **body}, timeout=10
    )
    assert mentions in assert_comet_error(response, 400)["msg"]
    assert metric_points(local_server, experiment_key) == []
    details = requests.get(
        rest(local_server, "experiment/system-details"),
        headers=auth(local_server),
        params={"experimentKey": experiment_key},
        timeout=10,
    ).json()
    assert details["pid"] is None and details["installedPackages"] == []


def test_a_batch_with_one_bad_point_writes_none_of_it(local_server):
    experiment_key = create_experiment(local_server)
    values = [{"metricName": "m", "metricValue": i, "step": i} for i in range(10)]
    values[7]["metricValue"] = [1, 2]
    response = requests.post(
        local_server.clientlib_url + "batch/logger/experiment/metric",
        headers=auth(local_server),
        json={"experimentKey": experiment_key, "values": values},
        timeout=10,
    )
    assert_comet_error(response, 400)
    assert metric_points(local_server, experiment_key) == []


def test_a_missing_experiment_key_gets_400(local_server):
    response = requests.post(
        rest(local_server, "write/experiment/metric"),
        headers=auth(local_server),
        json={"metricName": "m", "metricValue": 1},
        timeout=10,
    )
    assert "experimentKey" in assert_comet_error(response, 400)["msg"]
    response = requests.get(rest(local_server, "experiment/metadata"), headers=auth(local_server), timeout=10)
    assert_comet_error(response, 400)


def test_an_unknown_experiment_gets_404(local_server):
    unknown = "f" * 32
    response = requests.post(
        rest(local_server, "write/experiment/metric"),
        headers=auth(local_server),
        json={"experimentKey": unknown, "metricName": "m", "metricValue": 1},
        timeout=10,
    )
    assert_comet_error(response, 404)
    response = requests.get(
        rest(local_server, "experiment/metadata"),
        headers=auth(local_server),
        params={"experimentKey": unknown},
        timeout=10,
    )
    assert_comet_error(response, 404)


def test_unknown_routes_and_methods_answer_json(local_server):
    assert_comet_error(requests.get(local_server.url + "/api/rest/v2/no/such/thing", timeout=10), 404)
    assert_comet_error(
        requests.put(rest(local_server, "experiment/metadata"), headers=auth(local_server), timeout=10), 405
    )


def test_an_oversized_upload_gets_413_and_leaves_no_file(tmp_path):
    data_dir = tmp_path / "data"
    with LocalServer(data_dir, api_keys=["test-key-413"], max_upload_bytes=64 * 1024) as server:
        experiment_key = create_experiment(server)
        response = requests.post(
            rest(server, "write/experiment/upload-asset"),
            headers=auth(server),
            params={"experimentKey": experiment_key, "fileName": "big.bin"},
            files={"file": ("file", b"x" * (256 * 1024))},
            timeout=10,
        )
        assert_comet_error(response, 413)
        listed = requests.get(
            rest(server, "experiment/asset/list"),
            headers=auth(server),
            params={"experimentKey": experiment_key, "type": "all"},
            timeout=10,
        ).json()
        assert listed == {"assets": []}
        files_dir = data_dir / "files"
        assert [p for p in files_dir.rglob("*") if p.is_file()] == []
        # A JSON body over the limit too, declared or gzip-inflated.
        big_json = {"experimentKey": experiment_key, "metricName": "m", "metricValue": "v" * (100 * 1024)}
        assert_comet_error(
            requests.post(rest(server, "write/experiment/metric"), headers=auth(server), json=big_json, timeout=10), 413
        )
        bomb = gzip.compress(json.dumps(big_json).encode())
        response = requests.post(
            server.clientlib_url + "batch/logger/experiment/metric",
            data=bomb,
            headers={**auth(server), "Content-Type": "application/json", "Content-Encoding": "gzip"},
            timeout=10,
        )
        assert response.status_code in (400, 413) and response.json()["code"] == response.status_code
        assert metric_points(server, experiment_key) == []


def test_an_upload_without_a_file_part_gets_400(local_server):
    experiment_key = create_experiment(local_server)
    response = requests.post(
        rest(local_server, "write/experiment/upload-asset"),
        headers=auth(local_server),
        params={"experimentKey": experiment_key},
        files={"other": ("x", b"abc")},
        timeout=10,
    )
    assert_comet_error(response, 400)
    response = requests.post(
        rest(local_server, "write/experiment/upload-asset"),
        headers=auth(local_server),
        params={"experimentKey": experiment_key},
        data=b"raw",
        timeout=10,
    )
    assert_comet_error(response, 400)


def test_gzip_request_bodies_are_accepted(local_server):
    experiment_key = create_experiment(local_server)
    payload = {
        "experimentKey": experiment_key,
        "apiKey": local_server.api_key,
        "values": [
            {
                "metricName": "loss",
                "metricValue": 0.5,
                "step": 1,
                "epoch": None,
                "context": None,
                "timestamp": 1_700_000_000_000,
            }
        ],
    }
    response = requests.post(
        local_server.clientlib_url + "batch/logger/experiment/metric",
        data=gzip.compress(json.dumps(payload).encode()),
        headers={"Content-Type": "application/json;charset=utf-8", "Content-Encoding": "gzip"},
        timeout=10,
    )
    assert response.status_code == 200 and response.json() == {"msg": "Saved"}
    assert [(p["metricValue"], p["timestamp"]) for p in metric_points(local_server, experiment_key)] == [
        ("0.5", 1_700_000_000_000)
    ]


def test_invalid_gzip_gets_400(local_server):
    experiment_key = create_experiment(local_server)
    response = requests.post(
        rest(local_server, "write/experiment/metric"),
        data=b"\x1f\x8bnot really gzip",
        headers={**auth(local_server), "Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=10,
    )
    assert response.status_code == 400 and response.json()["code"] == 400
    assert metric_points(local_server, experiment_key) == []
