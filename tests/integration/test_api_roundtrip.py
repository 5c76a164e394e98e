"""Round trip against the local server: what our client writes, our client and comet_ml read back equal."""

from __future__ import annotations

import io
import zipfile

import pytest

from comet_agent.api import API, APIExperiment

pytestmark = pytest.mark.sdk

GPU = [{"gpuIndex": 0, "name": "NVIDIA H100", "uuid": "GPU-1", "totalMemory": 80 * 2**30, "powerLimit": 700000}]

# (setter, value, getter) for the system-details fields that APIExperiment can write and read.
SYSTEM_FIELDS = [
    ("set_command", ["python", "train.py", "--lr", "0.1"], "get_command"),
    ("set_executable", "/usr/bin/python3", "get_executable"),
    ("set_hostname", "gpu-box-3", "get_hostname"),
    ("set_ip", "10.0.0.7", "get_ip"),
    ("set_os", "Linux-6.1.0-x86_64-with-glibc2.36", "get_os"),
    ("set_os_type", "Linux", "get_os_type"),
    ("set_pid", 4242, "get_pid"),
    ("set_python_version", "3.11.7", "get_python_version"),
    ("set_python_version_verbose", "3.11.7 (main) [GCC 12.2.0]", "get_python_version_verbose"),
    ("set_user", "alice", "get_user"),
    ("set_installed_packages", ["numpy==1.26.4", "torch==2.3.0"], "get_installed_packages"),
    ("set_os_packages", ["libc6=2.36-9", "python3=3.11.2-1"], "get_os_packages"),
    ("set_network_interface_ips", ["10.0.0.7", "172.17.0.1"], "get_network_interface_ips"),
    ("set_gpu_static_info", GPU, "get_gpu_static_info"),
]


@pytest.fixture
def clients(local_server, monkeypatch):
    """(our API, comet_ml's API), both pointed at the local server."""
    comet_ml = pytest.importorskip("comet_ml")
    monkeypatch.setenv("COMET_URL_OVERRIDE", local_server.clientlib_url)
    monkeypatch.setenv("COMET_API_KEY", local_server.api_key)
    ours = API()
    theirs = comet_ml.API(cache=False)
    yield ours, theirs
    ours.close()


@pytest.fixture
def experiment(clients):
    ours, _ = clients
    return APIExperiment(api=ours, workspace="ws", project_name="proj", experiment_name="roundtrip")


def _theirs(clients, experiment):
    _, theirs = clients
    found = theirs.get_experiment_by_key(experiment.id)
    assert found is not None, "comet_ml cannot see the experiment our client created"
    return found


def test_new_experiment_is_visible_to_both_clients(clients, experiment):
    ours, _ = clients
    theirs_exp = _theirs(clients, experiment)
    assert (theirs_exp.workspace, theirs_exp.project_name, theirs_exp.name) == ("ws", "proj", "roundtrip")
    again = ours.get(f"ws/proj/{experiment.id}")
    assert again.id == experiment.id
    assert experiment.url == f"{ours.server_url}/ws/proj/{experiment.id}"
    assert "ws" in ours.get()
    assert "proj" in ours.get("ws")
    assert experiment.id in [e.id for e in ours.get("ws/proj")]


def test_system_details_round_trip(clients, experiment):
    for setter, value, _ in SYSTEM_FIELDS:
        getattr(experiment, setter)(value)
    experiment.log_additional_system_info("cuda_driver", "550.54")
    experiment.set_os_release("6.1.0")
    experiment.set_machine("x86_64")
    experiment.set_processor("")
    theirs_exp = _theirs(clients, experiment)
    for _, value, getter in SYSTEM_FIELDS:
        assert getattr(experiment, getter)() == value, getter
        assert getattr(theirs_exp, getter)() == value, getter
    info = [{"key": "cuda_driver", "value": "550.54"}]
    assert experiment.get_additional_system_info() == theirs_exp.get_additional_system_info() == info
    ours_details = experiment.get_system_details()
    assert ours_details == theirs_exp.get_system_details()
    assert (ours_details["osRelease"], ours_details["machine"], ours_details["processor"]) == ("6.1.0", "x86_64", "")


def test_combined_system_details_write_merges_with_earlier_fields(clients, experiment):
    experiment.set_user("alice")
    experiment.update_system_details({"hostname": "h1", "os_type": "Linux", "pid": 7}, request_id="req-1")
    experiment.set_system_details(python_version="3.12.1")
    theirs_exp = _theirs(clients, experiment)
    assert (theirs_exp.get_user(), theirs_exp.get_hostname(), theirs_exp.get_os_type(), theirs_exp.get_pid()) == (
        "alice",
        "h1",
        "Linux",
        7,
    )
    assert experiment.get_python_version() == theirs_exp.get_python_version() == "3.12.1"


def test_metrics_parameters_others_round_trip(clients, experiment):
    experiment.log_metric("loss", 0.5, step=1, epoch=0, timestamp=1_700_000_000)
    experiment.log_metric("loss", 0.25, step=2, epoch=0, timestamp=1_700_000_001)
    experiment.log_metrics_batch(
        [
            {"metricName": "acc", "metricValue": 0.9, "step": 2, "timestamp": 1_700_000_002_000},
            {"metricName": "acc", "metricValue": 0.95, "step": 3, "timestamp": 1_700_000_003_000},
        ],
        request_id="batch-1",
    )
    experiment.log_parameter("lr", 0.1)
    experiment.log_other("team", "vision")
    theirs_exp = _theirs(clients, experiment)
    ours_loss = [(m["metricValue"], m["step"]) for m in experiment.get_metrics("loss")]
    assert [(float(v), s) for v, s in ours_loss] == [(0.5, 1), (0.25, 2)]
    assert experiment.get_metrics("loss") == theirs_exp.get_metrics("loss")
    assert experiment.get_metrics("acc") == theirs_exp.get_metrics("acc")
    assert len(experiment.get_metrics("acc")) == 2
    assert experiment.get_metrics() == theirs_exp.get_metrics()
    assert experiment.get_metrics_summary("loss") == theirs_exp.get_metrics_summary("loss")
    assert experiment.get_parameters_summary("lr") == theirs_exp.get_parameters_summary("lr")
    assert experiment.get_parameters_summary("lr") != []
    assert experiment.get_others_summary("team") == theirs_exp.get_others_summary("team")
    assert "vision" in [str(v) for v in experiment.get_others_summary("team")]


def test_system_metric_writes_are_accepted(clients, experiment):
    assert experiment.log_cpu_metrics([10.0, 20.0], step=1, timestamp=1_700_000_000_000) is not None
    assert experiment.log_ram_metrics(16 * 2**30, 4 * 2**30, timestamp=1_700_000_000_000) is not None
    assert experiment.log_load_metrics(0.75, timestamp=1_700_000_000_000) is not None
    assert (
        experiment.log_gpu_metrics(
            [{"gpuId": 0, "freeMemory": 1, "usedMemory": 2, "gpuUtilization": 50, "totalMemory": 3}]
        )
        is not None
    )
    theirs_exp = _theirs(clients, experiment)
    assert experiment.get_total_memory() == theirs_exp.get_total_memory()
    assert experiment.get_system_metric_names() == theirs_exp.get_system_metric_names()


def test_texts_tags_and_code_round_trip(clients, experiment):
    experiment.add_tags(["a", "b"])
    experiment.set_code("print('hi')")
    experiment.set_model_graph("graph-text")
    experiment.log_html("<b>one</b>", timestamp=1_700_000_000)
    experiment.log_output("line 1\nline 2\n", timestamp=1_700_000_000)
    experiment.set_git_metadata("alice", "r00t", "refs/heads/main", "abc123", "https://example.com/r.git")
    theirs_exp = _theirs(clients, experiment)
    assert sorted(experiment.get_tags()) == sorted(theirs_exp.get_tags()) == ["a", "b"]
    assert experiment.get_code() == theirs_exp.get_code() == "print('hi')"
    assert experiment.get_model_graph() == theirs_exp.get_model_graph() == "graph-text"
    assert experiment.get_html() == theirs_exp.get_html()
    assert "<b>one</b>" in experiment.get_html()
    assert experiment.get_output() == theirs_exp.get_output()
    assert "line 2" in experiment.get_output()
    metadata = experiment.get_git_metadata()
    assert metadata == theirs_exp.get_git_metadata()
    assert metadata["branch"] == "refs/heads/main"


def test_git_patch_round_trip(clients, experiment, tmp_path):
    patch = b"diff --git a/x b/x\n+added line\n"
    experiment.set_git_patch(patch)
    theirs_exp = _theirs(clients, experiment)
    ours_zip, theirs_zip = experiment.get_git_patch(), theirs_exp.get_git_patch()
    assert ours_zip == theirs_zip
    with zipfile.ZipFile(io.BytesIO(ours_zip)) as archive:
        assert archive.read("git_diff.patch") == patch
    assert experiment.to_json(full=True)["git_patch"] == patch.decode()


def test_assets_round_trip(clients, experiment, tmp_path):
    asset = tmp_path / "notes.txt"
    asset.write_bytes(b"asset body\n" * 1000)
    image = tmp_path / "plot.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    experiment.log_asset(str(asset), name="notes.txt", step=1, metadata={"k": "v"})
    experiment.log_image(str(image), image_name="plot", step=2)
    theirs_exp = _theirs(clients, experiment)
    ours_list, theirs_list = experiment.get_asset_list(), theirs_exp.get_asset_list()
    assert ours_list == theirs_list
    by_name = {a["fileName"]: a for a in ours_list}
    assert "notes.txt" in by_name
    asset_id = by_name["notes.txt"]["assetId"]
    assert experiment.get_asset(asset_id) == theirs_exp.get_asset(asset_id) == asset.read_bytes()


def test_times_name_and_status(clients, experiment):
    experiment.set_start_time(1_700_000_000_000)
    experiment.set_end_time(1_700_000_060_000)
    assert (experiment.start_server_timestamp, experiment.end_server_timestamp) == (
        1_700_000_000_000,
        1_700_000_060_000,
    )
    experiment.set_name("renamed")
    experiment.set_filename("/src/train.py")
    theirs_exp = _theirs(clients, experiment)
    assert theirs_exp.start_server_timestamp == 1_700_000_000_000
    assert theirs_exp.end_server_timestamp == 1_700_000_060_000
    assert experiment.get_others_summary("Name") == theirs_exp.get_others_summary("Name")
    status = experiment.update_status()
    assert status == theirs_exp.update_status()
    assert status["isAliveBeatDurationMillis"] > 0


def test_previous_experiment_attaches(clients, experiment):
    ours, _ = clients
    attached = APIExperiment(api=ours, previous_experiment=experiment.id)
    assert (attached.id, attached.workspace, attached.project_name) == (experiment.id, "ws", "proj")


def test_remaining_reads_agree_between_clients(clients, experiment):
    experiment.set_os_packages(["libc6=2.36-9"])
    theirs_exp = _theirs(clients, experiment)
    assert experiment.get_max_memory() == theirs_exp.get_max_memory()
    assert experiment.get_model_names() == theirs_exp.get_model_names()
    with pytest.warns(DeprecationWarning):
        assert experiment.get_environment_details() == theirs_exp.get_os_packages() == ["libc6=2.36-9"]
    ours_json, theirs_json = experiment.to_json(full=True), theirs_exp.to_json(full=True)
    # A running experiment's duration grows between the two metadata reads; everything else is equal.
    ours_json.pop("duration_millis")
    theirs_json.pop("duration_millis")
    assert ours_json == theirs_json
    assert ours_json["system_details"]["osPackages"] == ["libc6=2.36-9"]


def test_symlink_round_trip(clients, experiment):
    link = experiment.create_symlink("other-project")
    assert isinstance(link, str) and link


def test_metadata_reads_back_as_comet_ml_reads_it(clients, experiment):
    theirs = _theirs(clients, experiment).get_metadata()
    ours = experiment.get_metadata()
    assert ours == theirs
    assert ours["experimentKey"] == experiment.id and ours["running"] is True
    experiment.set_end_time(ours["startTimeMillis"] + 5000)
    ended = experiment.get_metadata()
    assert (ended["endTimeMillis"], ended["durationMillis"], ended["running"]) == (
        ours["startTimeMillis"] + 5000,
        5000,
        False,
    )
