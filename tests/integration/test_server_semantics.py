"""What a user expects of the local server: merges, summaries, system metrics, ownership,
idempotent writes, intervals, the store's file modes, concurrent writers, the CLI."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from comet_agent.records import SYSTEM_DETAILS_KEYS
from comet_agent.server.app import LocalServer
from tests.support.local_server_http import assert_comet_error, auth, create_experiment, metric_points, rest

REPO_ROOT = Path(__file__).resolve().parents[2]


def post(server, path: str, body: dict, key: str | None = None, headers: dict | None = None) -> requests.Response:
    return requests.post(rest(server, path), json=body, headers={**auth(server, key), **(headers or {})}, timeout=10)


def get(server, path: str, key: str | None = None, **params) -> requests.Response:
    return requests.get(rest(server, path), params=params, headers=auth(server, key), timeout=10)


def system_details(server, experiment_key: str) -> dict:
    response = get(server, "experiment/system-details", experimentKey=experiment_key)
    assert response.status_code == 200
    return response.json()


# ------------------------------------------------------------------ system details


def test_system_details_has_exactly_the_documented_keys_and_partial_writes_merge(local_server):
    experiment_key = create_experiment(local_server)
    assert list(system_details(local_server, experiment_key)) == list(SYSTEM_DETAILS_KEYS)
    post(local_server, "write/experiment/system-details", {"experimentKey": experiment_key, "hostname": "a", "pid": 1})
    post(local_server, "write/experiment/system-details", {"experimentKey": experiment_key, "user": "bob"})
    post(
        local_server,
        "write/experiment/system-details",
        {
            "experimentKey": experiment_key,
            "logAdditionalSystemInfoList": [{"key": "x", "value": 1}, {"key": "y", "value": 2}],
        },
    )
    post(
        local_server,
        "write/experiment/system-details",
        {
            "experimentKey": experiment_key,
            "logAdditionalSystemInfoList": [{"key": "z", "value": 3}, {"key": "x", "value": 9}],
        },
    )
    details = system_details(local_server, experiment_key)
    assert (details["hostname"], details["pid"], details["user"]) == ("a", 1, "bob")
    assert details["logAdditionalSystemInfoList"] == [
        {"key": "x", "value": 9},
        {"key": "y", "value": 2},
        {"key": "z", "value": 3},
    ]
    assert list(details) == list(SYSTEM_DETAILS_KEYS)


def test_gpu_static_info_in_snake_case_is_stored_in_camel_case(local_server):
    experiment_key = create_experiment(local_server)
    post(
        local_server,
        "write/experiment/system-details",
        {
            "experimentKey": experiment_key,
            "gpuStaticInfoList": [
                {"gpu_index": 0, "name": "Tesla T4", "uuid": "GPU-a", "total_memory": 16106127360, "power_limit": None}
            ],
        },
    )
    assert system_details(local_server, experiment_key)["gpuStaticInfoList"] == [
        {"gpuIndex": 0, "name": "Tesla T4", "uuid": "GPU-a", "totalMemory": 16106127360, "powerLimit": None}
    ]


def test_system_metric_writes_derive_total_ram_and_max_gpu_memory(local_server):
    experiment_key = create_experiment(local_server)
    post(local_server, "write/experiment/ram-metrics", {"experimentKey": experiment_key, "totalRam": 8, "usedRam": 2})
    post(local_server, "write/experiment/ram-metrics", {"experimentKey": experiment_key, "totalRam": 16, "usedRam": 3})
    post(
        local_server,
        "write/experiment/gpu-metrics",
        {
            "experimentKey": experiment_key,
            "gpus": [
                {"gpuId": 0, "freeMemory": 1, "usedMemory": 2, "gpuUtilization": 50, "totalMemory": 40},
                {"gpuId": 1, "freeMemory": 1, "usedMemory": 2, "gpuUtilization": 60, "totalMemory": 80},
            ],
        },
    )
    cpu = [float(i) for i in range(1, 13)]
    post(
        local_server,
        "write/experiment/cpu-metrics",
        {"experimentKey": experiment_key, "cpuPercentUtilization": cpu, "step": 4, "timestamp": 1234},
    )
    details = system_details(local_server, experiment_key)
    assert details["totalRam"] == 16 and details["maxTotalMemory"] == 80
    assert (
        "sys.cpu.percent.12" in details["systemMetricNames"]
        and "sys.gpu.1.gpu_utilization" in details["systemMetricNames"]
    )
    points = {p["metricName"]: p for p in metric_points(local_server, experiment_key)}
    assert points["sys.cpu.percent.01"]["metricValue"] == "1.0" and points["sys.cpu.percent.01"]["step"] == 4
    assert float(points["sys.cpu.percent.avg"]["metricValue"]) == pytest.approx(6.5)
    assert points["sys.cpu.percent.avg"]["timestamp"] == 1234


def test_ordinary_sys_metrics_from_the_live_sdk_count_as_system_metrics(local_server):
    experiment_key = create_experiment(local_server)
    post(
        local_server,
        "write/experiment/metric",
        {"experimentKey": experiment_key, "metricName": "sys.ram.total", "metricValue": 64},
    )
    post(
        local_server,
        "write/experiment/metric",
        {"experimentKey": experiment_key, "metricName": "loss", "metricValue": 1},
    )
    details = system_details(local_server, experiment_key)
    assert details["systemMetricNames"] == ["sys.ram.total"] and details["totalRam"] == 64


# ----------------------------------------------------------------- metrics


def test_every_point_is_kept_and_the_summary_ignores_non_numeric_values(local_server):
    experiment_key = create_experiment(local_server)
    values = [(3, 0.5, 100), (1, "n/a", 101), (2, -2, 102), (5, 7.25, 103), (4, "oops", 104), (6, 1, 105)]
    for step, value, timestamp in values:
        post(
            local_server,
            "write/experiment/metric",
            {
                "experimentKey": experiment_key,
                "metricName": "m",
                "metricValue": value,
                "step": step,
                "epoch": 1,
                "context": "train",
                "timestamp": timestamp,
            },
        )
    points = metric_points(local_server, experiment_key)
    assert [(p["step"], p["metricValue"], p["timestamp"], p["epoch"], p["runContext"]) for p in points] == [
        (3, "0.5", 100, 1, "train"),
        (1, "n/a", 101, 1, "train"),
        (2, "-2", 102, 1, "train"),
        (5, "7.25", 103, 1, "train"),
        (4, "oops", 104, 1, "train"),
        (6, "1", 105, 1, "train"),
    ]
    summary = get(local_server, "experiment/metrics/summary", experimentKey=experiment_key).json()["values"]
    assert summary == [
        {
            "name": "m",
            "valueMax": "7.25",
            "valueMin": "-2",
            "valueCurrent": "1",
            "timestampMax": 103,
            "timestampMin": 102,
            "timestampCurrent": 105,
            "stepMax": 5,
            "stepMin": 2,
            "stepCurrent": 6,
            "editable": False,
        }
    ]


def test_a_metric_of_only_text_has_no_min_or_max(local_server):
    experiment_key = create_experiment(local_server)
    post(
        local_server,
        "write/experiment/metric",
        {"experimentKey": experiment_key, "metricName": "phase", "metricValue": "warmup"},
    )
    (summary,) = get(local_server, "experiment/metrics/summary", experimentKey=experiment_key).json()["values"]
    assert (summary["valueMin"], summary["valueMax"], summary["valueCurrent"]) == (None, None, "warmup")


# ------------------------------------------------------------ idempotent writes


def test_a_repeated_request_id_is_applied_once_and_answers_the_same(local_server):
    experiment_key = create_experiment(local_server)
    headers = {"X-Comet-Agent-Request-Id": "spool-42"}
    body = {"experimentKey": experiment_key, "values": [{"metricName": "m", "metricValue": i} for i in range(5)]}
    first = requests.post(
        local_server.clientlib_url + "batch/logger/experiment/metric",
        json=body,
        headers={**auth(local_server), **headers},
        timeout=10,
    )
    second = requests.post(
        local_server.clientlib_url + "batch/logger/experiment/metric",
        json=body,
        headers={**auth(local_server), **headers},
        timeout=10,
    )
    assert first.status_code == second.status_code == 200 and first.json() == second.json()
    assert len(metric_points(local_server, experiment_key)) == 5
    other = requests.post(
        local_server.clientlib_url + "batch/logger/experiment/metric",
        json=body,
        headers={**auth(local_server), "X-Comet-Agent-Request-Id": "spool-43"},
        timeout=10,
    )
    assert other.status_code == 200 and len(metric_points(local_server, experiment_key)) == 10


def test_a_repeated_create_returns_the_same_experiment(local_server):
    headers = {"X-Comet-Agent-Request-Id": "create-1"}
    first = post(local_server, "write/experiment/create", {"workspaceName": "ws", "projectName": "p"}, headers=headers)
    second = post(local_server, "write/experiment/create", {"workspaceName": "ws", "projectName": "p"}, headers=headers)
    assert first.json()["experimentKey"] == second.json()["experimentKey"]
    listed = get(local_server, "experiments", workspaceName="ws", projectName="p").json()["experiments"]
    assert len(listed) == 1


def test_a_failed_request_does_not_consume_its_request_id(local_server):
    experiment_key = create_experiment(local_server)
    headers = {"X-Comet-Agent-Request-Id": "retry-me"}
    bad = post(
        local_server, "write/experiment/metric", {"experimentKey": experiment_key, "metricName": "m"}, headers=headers
    )
    assert_comet_error(bad, 400)
    good = post(
        local_server,
        "write/experiment/metric",
        {"experimentKey": experiment_key, "metricName": "m", "metricValue": 1},
        headers=headers,
    )
    assert good.status_code == 200 and len(metric_points(local_server, experiment_key)) == 1


# ------------------------------------------------------------------ ownership


def test_a_key_sees_only_its_own_workspaces(tmp_path):
    with LocalServer(tmp_path / "data", api_keys=["test-key-alice", "test-key-bob"]) as server:
        alice, bob = server.api_keys
        experiment_key = create_experiment(server, "alice-ws", key=alice)
        create_experiment(server, "bob-ws", key=bob)
        assert get(server, "workspaces", key=alice).json() == {"workspaceNames": ["alice-ws"]}
        assert get(server, "workspaces", key=bob).json() == {"workspaceNames": ["bob-ws"]}
        assert_comet_error(get(server, "experiment/metadata", key=bob, experimentKey=experiment_key), 404)
        assert_comet_error(
            post(
                server,
                "write/experiment/metric",
                {"experimentKey": experiment_key, "metricName": "m", "metricValue": 1},
                key=bob,
            ),
            404,
        )
        assert_comet_error(post(server, "write/experiment/create", {"workspaceName": "alice-ws"}, key=bob), 404)
        assert_comet_error(get(server, "projects", key=bob, workspaceName="alice-ws"), 404)
        assert get(server, "account-details", key=alice).json() == {
            "userName": "local",
            "defaultWorkspaceName": "alice-ws",
        }
        bob_account = get(server, "account-details", key=bob).json()
        assert bob_account["userName"].startswith("local-") and bob_account["defaultWorkspaceName"] == "bob-ws"


def test_create_without_workspace_uses_the_default_workspace_and_general(local_server):
    response = post(local_server, "write/experiment/create", {})
    assert response.status_code == 200
    metadata = get(local_server, "experiment/metadata", experimentKey=response.json()["experimentKey"]).json()
    assert (metadata["workspaceName"], metadata["projectName"]) == ("local", "general")
    assert len(metadata["experimentKey"]) == 32 and int(metadata["experimentKey"], 16) >= 0


# ----------------------------------------------------------- heartbeat, intervals


def test_set_status_records_a_heartbeat_and_answers_the_intervals(local_server):
    experiment_key = create_experiment(local_server)
    assert get(local_server, "write/experiment/set-status", experimentKey=experiment_key).json() == {
        "isAliveBeatDurationMillis": 10000,
        "gpuMonitorIntervalMillis": 60000,
        "cpuMonitorIntervalMillis": 68000,
        "sampleIntervalMillis": 1000,
    }
    metadata = get(local_server, "experiment/metadata", experimentKey=experiment_key).json()
    assert metadata["running"] is True and metadata["lastHeartbeatMillis"] is not None
    assert set(metadata) >= {
        "experimentKey",
        "experimentName",
        "workspaceName",
        "projectName",
        "projectId",
        "archived",
        "durationMillis",
        "startTimeMillis",
        "endTimeMillis",
        "filePath",
        "fileName",
        "optimizationId",
        "running",
        "hasCrashed",
    }
    stop = get(local_server, "write/experiment/stop", experimentKey=experiment_key)
    assert stop.status_code == 200 and stop.json() == {"msg": "Stop Requested"}
    crashed = post(
        local_server,
        "write/experiment/update-status",
        {"experimentKey": experiment_key, "isAlive": False, "hasCrashed": True, "error": "OOM"},
    )
    assert crashed.status_code == 200
    assert get(local_server, "experiment/metadata", experimentKey=experiment_key).json()["hasCrashed"] is True
    post(
        local_server,
        "write/experiment/set-start-end-time",
        {"experimentKey": experiment_key, "startTimeMillis": None, "endTimeMillis": 10**13},
    )
    assert get(local_server, "experiment/metadata", experimentKey=experiment_key).json()["running"] is False


def test_intervals_change_while_running_in_process_and_over_http(local_server):
    experiment_key = create_experiment(local_server)
    local_server.set_intervals(heartbeat_ms=1500, cpu_interval_ms=2500, sample_interval_ms=500)
    assert get(local_server, "write/experiment/set-status", experimentKey=experiment_key).json() == {
        "isAliveBeatDurationMillis": 1500,
        "gpuMonitorIntervalMillis": 60000,
        "cpuMonitorIntervalMillis": 2500,
        "sampleIntervalMillis": 500,
    }
    garbage = requests.post(
        local_server.url + "/local/admin/intervals",
        headers=auth(local_server),
        json={"heartbeatMs": -5, "gpuIntervalMs": "soon", "sampleIntervalMs": 1000},
        timeout=10,
    )
    assert garbage.status_code == 200
    assert get(local_server, "write/experiment/set-status", experimentKey=experiment_key).json() == {
        "isAliveBeatDurationMillis": -5,
        "gpuMonitorIntervalMillis": "soon",
        "cpuMonitorIntervalMillis": 2500,
        "sampleIntervalMillis": 1000,
    }
    assert_comet_error(
        requests.post(local_server.url + "/local/admin/intervals", json={"heartbeatMs": 1}, timeout=10), 401
    )
    assert_comet_error(
        requests.post(
            local_server.url + "/local/admin/intervals", headers=auth(local_server), json={"unrelated": 1}, timeout=10
        ),
        400,
    )


def test_intervals_persist_across_a_restart_unless_given_explicitly(tmp_path):
    data_dir = tmp_path / "data"
    with LocalServer(data_dir, api_keys=["test-key-persist"]) as server:
        server.set_intervals(heartbeat_ms=2000)
    with LocalServer(data_dir, api_keys=["test-key-persist"]) as server:
        assert server.intervals["isAliveBeatDurationMillis"] == 2000
    with LocalServer(data_dir, api_keys=["test-key-persist"], heartbeat_ms=3000, gpu_interval_ms=4000) as server:
        assert server.intervals == {
            "isAliveBeatDurationMillis": 3000,
            "cpuMonitorIntervalMillis": 68000,
            "gpuMonitorIntervalMillis": 4000,
            "sampleIntervalMillis": 1000,
        }


# ------------------------------------------------------------------- the store


def test_a_generated_key_is_stored_private_and_reused(tmp_path):
    data_dir = tmp_path / "data"
    with LocalServer(data_dir) as server:
        key = server.api_key
        assert server.generated_key_file == data_dir / "api_key"
        assert "local" in get(server, "account-details").json()["userName"]
        create_experiment(server)
    assert stat.S_IMODE((data_dir / "api_key").stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    for path in data_dir.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
    assert key not in repr(server)
    with LocalServer(data_dir) as again:
        assert again.api_key == key and again.generated_key_file is None
        assert get(again, "workspaces").json() == {"workspaceNames": ["ws"]}


def test_32_concurrent_writers_leave_every_point(local_server):
    """32 writers, 1,000 points each, over raw HTTP at the same time: exactly 32,000 points.

    Each writer sends its points as 100 requests of 10 points alternating between the REST
    single-point endpoint and the clientlib batch (single points for all 32,000 would take the
    suite past its time budget on 2 cores; bench/bench_server_ingest.py measures that path).
    """
    experiment_key = create_experiment(local_server)
    writers, points_each, per_request = 32, 1000, 10
    errors: list[str] = []

    def write(writer: int) -> None:
        with requests.Session() as session:
            session.headers["Authorization"] = local_server.api_key
            for first in range(0, points_each, per_request):
                steps = range(first, first + per_request)
                if (first // per_request) % 10 == 0:
                    responses = [
                        session.post(
                            rest(local_server, "write/experiment/metric"),
                            timeout=60,
                            json={
                                "experimentKey": experiment_key,
                                "metricName": f"w{writer}",
                                "metricValue": i,
                                "step": i,
                            },
                        )
                        for i in steps
                    ]
                else:
                    responses = [
                        session.post(
                            local_server.clientlib_url + "batch/logger/experiment/metric",
                            timeout=60,
                            json={
                                "experimentKey": experiment_key,
                                "values": [{"metricName": f"w{writer}", "metricValue": i, "step": i} for i in steps],
                            },
                        )
                    ]
                failed = [r.text for r in responses if r.status_code != 200 or "locked" in r.text]
                if failed:
                    errors.extend(failed)
                    break  # this writer stops; the test fails on `errors`

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    points = metric_points(local_server, experiment_key)
    assert len(points) == writers * points_each
    assert {p["metricName"] for p in points} == {f"w{n}" for n in range(writers)}
    for n in range(writers):
        assert [int(p["metricValue"]) for p in points if p["metricName"] == f"w{n}"] == list(range(points_each))


# ------------------------------------------------------------------------- CLI


def test_the_cli_serves_prints_its_url_and_stops_cleanly_on_sigterm(tmp_path):
    data_dir = tmp_path / "cli-data"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "comet_agent",
            "server",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--heartbeat-ms",
            "1234",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(line.startswith("COMET_URL_OVERRIDE=") for line in lines):
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
        override = next(line for line in lines if line.startswith("COMET_URL_OVERRIDE=")).split("=", 1)[1]
        root = override.removesuffix("/clientlib/")
        assert requests.get(root + "/clientlib/isAlive/ver", timeout=10).json() == {"version": "3.99.0"}
        key = (data_dir / "api_key").read_text().strip()
        experiment = requests.post(
            root + "/api/rest/v2/write/experiment/create",
            headers={"Authorization": key},
            json={"workspaceName": "w"},
            timeout=10,
        ).json()["experimentKey"]
        status = requests.get(
            root + "/api/rest/v2/write/experiment/set-status",
            headers={"Authorization": key},
            params={"experimentKey": experiment},
            timeout=10,
        ).json()
        assert status["isAliveBeatDurationMillis"] == 1234
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        rest_of_output = process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = "\n".join(lines) + "\n" + rest_of_output
    assert process.returncode == 0, output
    assert str(data_dir / "api_key") in output and key not in output


def test_the_cli_reports_a_port_in_use_and_fails(tmp_path, local_server):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "comet_agent",
            "server",
            "--port",
            str(local_server.port),
            "--data-dir",
            str(tmp_path / "d"),
            "--api-key",
            "test-key-busy",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{local_server.port}" in result.stderr
    assert "test-key-busy" not in result.stdout + result.stderr


def test_the_cli_refuses_an_unusable_data_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "comet_agent", "server", "--port", "0", "--data-dir", str(blocker / "data")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 78 and "cannot use the data directory" in result.stderr


# ---------------------------------------------------------------------- uploads


def upload(server, experiment_key: str, data: bytes, overwrite: bool = False, headers: dict | None = None):
    return requests.post(
        rest(server, "write/experiment/upload-asset"),
        headers={**auth(server), **(headers or {})},
        params={
            "experimentKey": experiment_key,
            "fileName": "notes.txt",
            "overwrite": str(overwrite),
            "type": "asset",
            "step": "7",
        },
        files={"file": ("file", data), "metadata": (None, '{"a":1}')},
        timeout=10,
    )


def listed_assets(server, experiment_key: str) -> list:
    return get(server, "experiment/asset/list", experimentKey=experiment_key, type="all").json()["assets"]


def test_an_overwrite_replaces_the_asset_and_its_file(local_server, tmp_path):
    experiment_key = create_experiment(local_server)
    assert upload(local_server, experiment_key, b"first").status_code == 200
    assert upload(local_server, experiment_key, b"second").status_code == 200
    assert len(listed_assets(local_server, experiment_key)) == 2
    assert upload(local_server, experiment_key, b"third", overwrite=True).status_code == 200
    (asset,) = listed_assets(local_server, experiment_key)
    assert (asset["fileName"], asset["step"], asset["fileSize"], asset["metadata"]) == ("notes.txt", 7, 5, '{"a": 1}')
    content = requests.get(
        rest(local_server, "experiment/asset/get-asset"),
        headers=auth(local_server),
        timeout=10,
        params={"experimentKey": experiment_key, "assetId": asset["assetId"]},
    )
    assert content.status_code == 200 and content.content == b"third"
    files_dir = local_server.data_dir / "files" / experiment_key
    assert [p.read_bytes() for p in files_dir.iterdir()] == [b"third"]


def test_a_metadata_part_sent_as_application_json_is_read(local_server):
    # aiohttp hands a part without a filename and with a non-text type over as a bytearray.
    experiment_key = create_experiment(local_server)
    response = requests.post(
        rest(local_server, "write/experiment/upload-asset"),
        headers=auth(local_server),
        params={"experimentKey": experiment_key, "fileName": "notes.txt", "type": "asset"},
        files={"file": ("file", b"data"), "metadata": (None, '{"a":1}', "application/json")},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    (asset,) = listed_assets(local_server, experiment_key)
    assert asset["metadata"] == '{"a": 1}'


def test_a_repeated_upload_request_id_stores_one_file(local_server):
    experiment_key = create_experiment(local_server)
    headers = {"X-Comet-Agent-Request-Id": "upload-1"}
    first = upload(local_server, experiment_key, b"payload", headers=headers)
    second = upload(local_server, experiment_key, b"payload", headers=headers)
    assert first.json() == second.json() and first.json()["assetId"]
    assert len(listed_assets(local_server, experiment_key)) == 1
    assert len(list((local_server.data_dir / "files" / experiment_key).iterdir())) == 1


def test_an_unknown_asset_is_404(local_server):
    experiment_key = create_experiment(local_server)
    assert_comet_error(
        get(local_server, "experiment/asset/get-asset", experimentKey=experiment_key, assetId="0" * 32), 404
    )
    assert_comet_error(
        get(local_server, "experiment/model/download", experimentKey=experiment_key, modelName="none"), 404
    )


def test_the_key_never_reaches_the_server_log(local_server, caplog):
    caplog.set_level("DEBUG")
    experiment_key = create_experiment(local_server)
    post(local_server, "write/experiment/metric", {"experimentKey": experiment_key, "metricName": "m"})
    requests.get(rest(local_server, "workspaces"), headers={"Authorization": local_server.api_key + "x"}, timeout=10)
    assert local_server.api_key not in caplog.text
