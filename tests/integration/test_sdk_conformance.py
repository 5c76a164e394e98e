"""The official comet_ml 3.58.8 SDK against the local server: every APIExperiment write reads back.

The SDK runs in the test process, pointed at a real LocalServer on 127.0.0.1:0 through
COMET_URL_OVERRIDE, with a temporary HOME (conftest) and API(cache=False) so every read is a
real request.
"""

from __future__ import annotations

import io
import zipfile

import pytest

from tests.support.fixtures import QUIET_EXPERIMENT_OPTIONS, sdk_env

comet_ml = pytest.importorskip("comet_ml", reason="the official comet_ml SDK is a test dependency")

pytestmark = pytest.mark.sdk

#: The write methods the conformance sweep must exercise (from the issue).
WRITE_METHODS = (
    "add_tags",
    "create_symlink",
    "log_additional_system_info",
    "log_asset",
    "log_cpu_metrics",
    "log_gpu_metrics",
    "log_html",
    "log_image",
    "log_load_metrics",
    "log_metric",
    "log_other",
    "log_output",
    "log_parameter",
    "log_ram_metrics",
    "set_code",
    "set_command",
    "set_end_time",
    "set_executable",
    "set_git_metadata",
    "set_git_patch",
    "set_gpu_static_info",
    "set_hostname",
    "set_installed_packages",
    "set_ip",
    "set_model_graph",
    "set_name",
    "set_network_interface_ips",
    "set_os",
    "set_os_packages",
    "set_os_type",
    "set_pid",
    "set_python_version",
    "set_python_version_verbose",
    "set_start_time",
    "set_user",
    "update_status",
)

PATCH_TEXT = b"diff --git a/train.py b/train.py\n--- a/train.py\n+++ b/train.py\n@@ -1 +1 @@\n-lr = 0.1\n+lr = 0.01\n"
PNG_BYTES = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15"
    b"\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82"
)


@pytest.fixture
def sdk(comet_sdk_env):
    """(server, API, a fresh APIExperiment in workspace "ws", project "proj")."""
    api = comet_ml.API(cache=False)
    experiment = comet_ml.APIExperiment(api=api, workspace="ws", project_name="proj")
    return comet_sdk_env, api, experiment


def test_the_sdk_has_every_write_method_of_the_issue():
    missing = [name for name in WRITE_METHODS if not hasattr(comet_ml.APIExperiment, name)]
    assert missing == [], f"comet_ml {comet_ml.__version__} lacks {missing}"


def test_a_fresh_experiment_reads_back_empty_through_to_json(sdk):
    server, api, experiment = sdk
    full = experiment.to_json(full=True)
    assert full["id"] == experiment.id and len(experiment.id) == 32
    assert full["workspace"] == "ws" and full["project_name"] == "proj"
    assert full["asset_list"] == [] and full["metrics"] == [] and full["metrics_summary"] == []
    assert full["tags"] == [] and full["output"] == "" and full["others_summary"] == []
    assert full["parameters_summary"] == [] and full["git_patch"] is None
    assert full["code"] is None and full["html"] is None and full["model_graph"] is None
    assert full["system_details"]["systemMetricNames"] == []
    assert experiment.get_git_patch() is None


def test_every_write_method_reads_back_equal(sdk, tmp_path):
    server, api, experiment = sdk
    # System details, one field per call: the server must merge them.
    experiment.set_command(["train.py", "--lr", "0.01"])
    experiment.set_executable("/usr/bin/python3")
    experiment.set_hostname("gpu-box-1")
    experiment.set_ip("10.0.0.7")
    experiment.set_os("Linux-6.1-x86_64-with-glibc2.36")
    experiment.set_os_type("Linux")
    experiment.set_pid(4242)
    experiment.set_python_version("3.11.7")
    experiment.set_python_version_verbose("3.11.7 (main) [GCC 12.2.0]")
    experiment.set_user("alice")
    experiment.set_installed_packages(["numpy==1.26.4", "torch==2.2.0"])
    experiment.set_os_packages(["libc6=2.36-9", "bash=5.2.15-2"])
    experiment.set_network_interface_ips(["10.0.0.7", "192.168.1.5"])
    gpu_static = [
        {
            "gpuIndex": 0,
            "name": "NVIDIA H100 80GB HBM3",
            "uuid": "GPU-1234",
            "totalMemory": 85520809984,
            "powerLimit": 700000,
        }
    ]
    experiment.set_gpu_static_info(gpu_static)
    experiment.log_additional_system_info("cluster", "a")
    experiment.log_additional_system_info("rack", 7)
    experiment.log_additional_system_info("cluster", "b")
    # System metrics.
    experiment.log_cpu_metrics([10.0, 30.0], step=1, timestamp=1_700_000_000_000)
    experiment.log_ram_metrics(total_ram=16_000_000_000, used_ram=4_000_000_000, step=1)
    experiment.log_load_metrics(1.25, step=1)
    experiment.log_gpu_metrics(
        [{"gpuId": 0, "freeMemory": 1000, "usedMemory": 2000, "gpuUtilization": 87, "totalMemory": 3000}]
    )
    # Metrics, parameters, others.
    experiment.log_metric("loss", 0.9, step=1, epoch=1, timestamp=1_700_000_001)
    experiment.log_metric("loss", 0.4, step=2, epoch=1, timestamp=1_700_000_002)
    experiment.log_metric("loss", 0.6, step=3, epoch=2, timestamp=1_700_000_003)
    experiment.log_parameter("lr", 0.01)
    experiment.log_parameter("optimizer", "adam")
    experiment.log_other("dataset", "imagenet")
    experiment.set_name("first-run")
    # Text-like things.
    experiment.add_tags(["baseline", "h100"])
    experiment.log_html("<p>one</p>")
    experiment.log_html("<p>two</p>")
    experiment.log_output("epoch 1 done\n")
    experiment.log_output("warning: slow\n", stderr=True)
    experiment.set_code("print('hello')")
    experiment.set_model_graph("Sequential(Linear(4, 2))")
    experiment.set_git_metadata(
        user="alice", root="r00t", branch="refs/heads/main", parent="abc123", origin="https://github.com/org/repo.git"
    )
    experiment.set_git_patch(PATCH_TEXT)
    experiment.set_start_time(1_700_000_000_000)
    experiment.set_end_time(1_700_000_360_000)
    # Files.
    asset_path = tmp_path / "config.yaml"
    asset_path.write_bytes(b"lr: 0.01\nbatch: 64\n\x00\xff binary tail")
    experiment.log_asset(str(asset_path), name="config.yaml", step=3, metadata={"kind": "config"})
    image_path = tmp_path / "sample.png"
    image_path.write_bytes(PNG_BYTES)
    experiment.log_image(str(image_path), image_name="sample", step=2)
    symlink = experiment.create_symlink("shared-proj")
    status = experiment.update_status()

    assert symlink.endswith(f"/ws/shared-proj/{experiment.id}")
    assert status == {
        "isAliveBeatDurationMillis": 10000,
        "gpuMonitorIntervalMillis": 60000,
        "cpuMonitorIntervalMillis": 68000,
        "sampleIntervalMillis": 1000,
    }

    details = experiment.get_system_details()
    assert details["command"] == ["train.py", "--lr", "0.01"]
    assert details["executable"] == "/usr/bin/python3"
    assert details["hostname"] == "gpu-box-1" and details["ip"] == "10.0.0.7"
    assert details["os"] == "Linux-6.1-x86_64-with-glibc2.36" and details["osType"] == "Linux"
    assert details["pid"] == 4242 and details["user"] == "alice"
    assert details["pythonVersion"] == "3.11.7"
    assert details["pythonVersionVerbose"] == "3.11.7 (main) [GCC 12.2.0]"
    assert details["installedPackages"] == ["numpy==1.26.4", "torch==2.2.0"]
    assert details["osPackages"] == ["libc6=2.36-9", "bash=5.2.15-2"]
    assert details["networkInterfaceIps"] == ["10.0.0.7", "192.168.1.5"]
    assert details["gpuStaticInfoList"] == gpu_static
    assert details["logAdditionalSystemInfoList"] == [{"key": "cluster", "value": "b"}, {"key": "rack", "value": 7}]
    assert details["totalRam"] == 16_000_000_000 and details["maxTotalMemory"] == 3000
    assert set(details["systemMetricNames"]) == {
        "sys.cpu.percent.01",
        "sys.cpu.percent.02",
        "sys.cpu.percent.avg",
        "sys.ram.total",
        "sys.ram.used",
        "sys.load.avg",
        "sys.gpu.0.free_memory",
        "sys.gpu.0.used_memory",
        "sys.gpu.0.gpu_utilization",
        "sys.gpu.0.total_memory",
    }
    # The per-field getters read the same record.
    assert experiment.get_hostname() == "gpu-box-1" and experiment.get_pid() == 4242
    assert experiment.get_gpu_static_info() == gpu_static
    assert experiment.get_total_memory() == 16_000_000_000

    loss = experiment.get_metrics("loss")
    assert [(p["metricValue"], p["step"], p["epoch"], p["timestamp"]) for p in loss] == [
        ("0.9", 1, 1, 1_700_000_001_000),
        ("0.4", 2, 1, 1_700_000_002_000),
        ("0.6", 3, 2, 1_700_000_003_000),
    ]
    everything = experiment.get_metrics()
    cpu_avg = [p for p in everything if p["metricName"] == "sys.cpu.percent.avg"]
    assert [(float(p["metricValue"]), p["step"], p["timestamp"]) for p in cpu_avg] == [(20.0, 1, 1_700_000_000_000)]
    assert len(everything) == 3 + 3 + 2 + 1 + 4
    summary = {s["name"]: s for s in experiment.get_metrics_summary()}
    assert (summary["loss"]["valueMin"], summary["loss"]["stepMin"]) == ("0.4", 2)
    assert (summary["loss"]["valueMax"], summary["loss"]["stepMax"]) == ("0.9", 1)
    assert (summary["loss"]["valueCurrent"], summary["loss"]["stepCurrent"]) == ("0.6", 3)
    assert summary["loss"]["timestampCurrent"] == 1_700_000_003_000
    assert summary["sys.gpu.0.gpu_utilization"]["valueCurrent"] == "87"
    assert experiment.get_metrics_summary("loss")["valueMin"] == "0.4"

    parameters = {p["name"]: p["valueCurrent"] for p in experiment.get_parameters_summary()}
    assert parameters == {"lr": "0.01", "optimizer": "adam"}
    assert experiment.get_others_summary("dataset") == ["imagenet"]
    assert experiment.get_others_summary("Name") == ["first-run"]
    assert experiment.get_tags() == ["baseline", "h100"]
    assert experiment.get_html() == "<p>one</p><p>two</p>"
    assert experiment.get_output() == "epoch 1 done\nwarning: slow\n"
    assert experiment.get_code() == "print('hello')"
    assert experiment.get_model_graph() == "Sequential(Linear(4, 2))"
    assert experiment.get_git_metadata() == {
        "user": "alice",
        "root": "r00t",
        "branch": "refs/heads/main",
        "parent": "abc123",
        "origin": "https://github.com/org/repo.git",
    }
    with zipfile.ZipFile(io.BytesIO(experiment.get_git_patch())) as patch_zip:
        assert patch_zip.read("git_diff.patch") == PATCH_TEXT

    assets = {a["fileName"]: a for a in experiment.get_asset_list()}
    assert set(assets) == {"config.yaml", "sample"}
    assert assets["config.yaml"]["step"] == 3 and assets["config.yaml"]["type"] == "asset"
    assert assets["config.yaml"]["fileSize"] == asset_path.stat().st_size
    assert assets["sample"]["image"] is True and assets["sample"]["step"] == 2
    assert experiment.get_asset(assets["config.yaml"]["assetId"]) == asset_path.read_bytes()
    assert experiment.get_asset(assets["sample"]["assetId"]) == PNG_BYTES
    assert [a["fileName"] for a in experiment.get_asset_list(asset_type="image")] == ["sample"]

    metadata = api.get(f"ws/proj/{experiment.id}")
    assert metadata.name == "first-run"
    assert metadata.start_server_timestamp == 1_700_000_000_000
    assert metadata.end_server_timestamp == 1_700_000_360_000
    assert metadata.duration_millis == 360_000

    full = experiment.to_json(full=True)
    assert full["git_patch"] == PATCH_TEXT  # to_json unzips it to bytes
    assert full["tags"] == ["baseline", "h100"] and full["code"] == "print('hello')"
    assert full["system_details"] == details
    assert len(full["metrics"]) == len(everything)
    assert full["name"] == "first-run"


def test_api_navigation_lists_workspaces_projects_and_experiments(sdk):
    server, api, experiment = sdk
    second = comet_ml.APIExperiment(api=api, workspace="ws", project_name="other")
    assert api.get() == ["ws"]
    assert sorted(api.get("ws")) == ["other", "proj"]
    assert [e.id for e in api.get("ws/proj")] == [experiment.id]
    assert api.get(f"ws/other/{second.id}").id == second.id
    assert {e.id for e in api.get_experiments("ws")} == {experiment.id, second.id}
    assert [e.id for e in api.get_experiments("ws", project_name="other")] == [second.id]
    assert api.get_experiment_by_key(experiment.id).project_name == "proj"
    assert api.get_experiment_by_key("0" * 32) is None


def test_previous_experiment_resumes_by_key(sdk):
    server, api, experiment = sdk
    experiment.log_metric("acc", 0.75, step=5)
    resumed = comet_ml.APIExperiment(api=api, previous_experiment=experiment.id)
    assert (resumed.workspace, resumed.project_name) == ("ws", "proj")
    assert resumed.get_metrics("acc")[0]["metricValue"] == "0.75"


def test_model_assets_group_under_their_model(sdk, tmp_path):
    server, api, experiment = sdk
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\x01\x02\x03" * 100)
    import requests

    with weights.open("rb") as handle:
        response = requests.post(
            server.url + "/api/rest/v2/write/experiment/upload-asset",
            params={
                "experimentKey": experiment.id,
                "fileName": "weights.bin",
                "type": "model-element",
                "groupingName": "resnet",
            },
            files={"file": ("file", handle)},
            headers={"Authorization": server.api_key},
            timeout=10,
        )
    assert response.status_code == 200, response.text
    assert experiment.get_model_names() == ["resnet"]
    assert [a["fileName"] for a in experiment.get_model_data("resnet")] == ["weights.bin"]
    output_dir = tmp_path / "download"
    experiment.download_model("resnet", output_path=str(output_dir), expand=True)
    assert (output_dir / "weights.bin").read_bytes() == weights.read_bytes()


def test_a_wrong_key_is_refused_by_the_sdk(local_server, monkeypatch):
    with sdk_env(local_server, monkeypatch):
        monkeypatch.setenv("COMET_API_KEY", "not-a-key-" + "0" * 8)
        api = comet_ml.API(cache=False)
        with pytest.raises(Exception) as raised:
            api.get_workspaces()
    assert "401" in str(raised.value) or "Unauthorized" in type(raised.value).__name__


def test_the_live_experiment_logs_through_the_clientlib_endpoints(comet_sdk_env):
    """Beyond APIExperiment: the live comet_ml.Experiment handshakes, batches, beats and ends."""
    experiment = comet_ml.Experiment(workspace="ws", project_name="live", **QUIET_EXPERIMENT_OPTIONS)
    experiment.log_metric("loss", 0.25, step=3)
    experiment.log_parameter("lr", 0.1)
    experiment.log_other("owner", "team-a")
    experiment.add_tag("live")
    experiment_key = experiment.get_key()
    experiment.end()

    api = comet_ml.API(cache=False)
    logged = api.get_experiment_by_key(experiment_key)
    assert (logged.workspace, logged.project_name) == ("ws", "live")
    assert [(p["metricValue"], p["step"]) for p in logged.get_metrics("loss")] == [("0.25", 3)]
    assert {p["name"]: p["valueCurrent"] for p in logged.get_parameters_summary()}["lr"] == "0.1"
    assert logged.get_others_summary("owner") == ["team-a"]
    assert logged.get_tags() == ["live"]
    details = logged.get_system_details()
    assert details["hostname"] and details["installedPackages"]
    import requests

    metadata = requests.get(
        comet_sdk_env.url + "/api/rest/v2/experiment/metadata",
        timeout=10,
        params={"experimentKey": experiment_key},
        headers={"Authorization": comet_sdk_env.api_key},
    ).json()
    assert metadata["running"] is False and metadata["endTimeMillis"] is not None
