"""Raw-HTTP helpers for tests that talk to the local server (``local_server`` fixture)."""

from __future__ import annotations

import requests


def rest(server, path: str) -> str:
    return f"{server.url}/api/rest/v2/{path}"


def auth(server, key: str | None = None) -> dict:
    return {"Authorization": key if key is not None else server.api_key}


def create_experiment(server, workspace: str = "ws", project: str = "proj", key: str | None = None) -> str:
    response = requests.post(
        rest(server, "write/experiment/create"),
        headers=auth(server, key),
        json={"workspaceName": workspace, "projectName": project},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["experimentKey"]


def metric_points(server, experiment_key: str) -> list:
    response = requests.get(
        rest(server, "experiment/metrics/get-all"),
        headers=auth(server),
        params={"experimentKey": experiment_key},
        timeout=10,
    )
    assert response.status_code == 200
    return response.json()["metrics"]


def assert_comet_error(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"msg", "code", "sdk_error_code"}
    assert body["code"] == status and isinstance(body["sdk_error_code"], int) and body["msg"]
    return body
