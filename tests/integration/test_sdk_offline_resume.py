"""Offline archives and resumed experiments, driven by the official comet_ml 3.58.8 SDK.

An ``OfflineExperiment`` archive uploaded with the real ``comet upload`` command keeps the run's own
start and end times, its metrics with their original timestamps and steps, its parameters and its
output; an experiment continued with ``ExistingExperiment`` ends when its latest run ended. Both
read back through ``comet_ml.API`` against a LocalServer on 127.0.0.1:0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.fixtures import sdk_env

comet_ml = pytest.importorskip("comet_ml", reason="the official comet_ml SDK is a test dependency")

pytestmark = pytest.mark.sdk


@pytest.fixture
def sdk_server(local_server, monkeypatch):
    with sdk_env(local_server, monkeypatch, quiet=True):
        yield local_server


def _comet_cli() -> str:
    """The ``comet`` command installed with comet_ml, beside this interpreter."""
    path = Path(sys.executable).with_name("comet")
    if not path.exists():
        pytest.skip(f"comet_ml's 'comet' command is not installed beside {sys.executable}")
    return str(path)


#: A training script that records offline, as a user runs it; it prints its start and end (epoch ms).
OFFLINE_SCRIPT = """
import json, sys, time
import comet_ml

started_ms = int(time.time() * 1000)
experiment = comet_ml.OfflineExperiment(project_name="offline-proj", offline_directory=sys.argv[1])
experiment.log_parameter("lr", 0.01)
logged_ms = []
for step in range(3):
    logged_ms.append(int(time.time() * 1000))
    experiment.log_metric("loss", 1.0 / (step + 1), step=step)
    time.sleep(0.01)
print("hello from the offline run")
experiment.log_asset(sys.argv[2])
key = experiment.get_key()
experiment.end()
ended_ms = int(time.time() * 1000)
print(json.dumps({"key": key, "started_ms": started_ms, "ended_ms": ended_ms, "logged_ms": logged_ms}))
"""


def test_comet_upload_of_an_offline_archive_keeps_the_runs_times_metrics_and_output(sdk_server, tmp_path):
    offline_dir = tmp_path / "offline"
    script = tmp_path / "train_offline.py"
    script.write_text(OFFLINE_SCRIPT)
    (tmp_path / "weights.bin").write_bytes(b"\x00\x01weights")
    run = subprocess.run(
        [sys.executable, str(script), str(offline_dir), str(tmp_path / "weights.bin")],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    facts = json.loads(run.stdout.strip().splitlines()[-1])
    archives = list(offline_dir.glob("*.zip"))
    assert len(archives) == 1

    # Upload later: the upload's own time must become neither the run's start nor its end.
    time.sleep(1.1)
    upload_began_ms = int(time.time() * 1000)
    upload = subprocess.run(
        [_comet_cli(), "upload", str(archives[0])],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert upload.returncode == 0, upload.stdout + upload.stderr

    api = comet_ml.API(cache=False)
    uploaded = api.get_experiment_by_key(facts["key"])
    assert uploaded is not None and uploaded.project_name == "offline-proj"
    metadata = uploaded.get_metadata()
    assert facts["started_ms"] <= metadata["startTimeMillis"] <= facts["logged_ms"][0]
    assert facts["logged_ms"][-1] <= metadata["endTimeMillis"] <= facts["ended_ms"] < upload_began_ms
    assert metadata["durationMillis"] == metadata["endTimeMillis"] - metadata["startTimeMillis"]

    loss = uploaded.get_metrics("loss")
    assert [p["step"] for p in loss] == [0, 1, 2]
    for point, logged_ms in zip(loss, facts["logged_ms"]):
        assert logged_ms <= point["timestamp"] <= logged_ms + 1000  # when it was logged, not uploaded
    assert [float(p["metricValue"]) for p in loss] == [1.0, 0.5, 1.0 / 3]
    assert uploaded.get_parameters_summary("lr")["valueCurrent"] == "0.01"
    assert "hello from the offline run" in uploaded.get_output()
    weights = [a for a in uploaded.get_asset_list() if a["fileName"] == "weights.bin"]
    assert len(weights) == 1
    assert uploaded.get_asset(weights[0]["assetId"]) == b"\x00\x01weights"


def test_an_existing_experiment_ends_when_its_latest_run_ended(sdk_server):
    first = comet_ml.Experiment(project_name="resume-proj")
    key = first.get_key()
    first.log_metric("loss", 1.0, step=1)
    first.end()
    api = comet_ml.API(cache=False)
    first_end = api.get_experiment_by_key(key).get_metadata()["endTimeMillis"]
    assert first_end is not None

    time.sleep(0.05)  # the second run must end at a later millisecond than the first
    second = comet_ml.ExistingExperiment(previous_experiment=key)
    second.log_metric("loss", 0.5, step=2)
    second.end()
    metadata = api.get_experiment_by_key(key).get_metadata()
    assert metadata["endTimeMillis"] > first_end
    assert metadata["durationMillis"] == metadata["endTimeMillis"] - metadata["startTimeMillis"]
    assert [p["step"] for p in api.get_experiment_by_key(key).get_metrics("loss")] == [1, 2]


#: An offline run continuing an existing experiment (``ExistingOfflineExperiment``).
RESUME_OFFLINE_SCRIPT = """
import json, sys, time
import comet_ml

experiment = comet_ml.ExistingOfflineExperiment(previous_experiment=sys.argv[2], offline_directory=sys.argv[1])
experiment.log_metric("loss", 0.25, step=2)
experiment.end()
print(json.dumps({"ended_ms": int(time.time() * 1000)}))
"""


def test_an_offline_continuation_moves_the_end_to_its_own_end_not_the_upload(sdk_server, tmp_path):
    first = comet_ml.Experiment(project_name="resume-proj")
    key = first.get_key()
    first.log_metric("loss", 1.0, step=1)
    first.end()
    api = comet_ml.API(cache=False)
    before = api.get_experiment_by_key(key).get_metadata()

    script = tmp_path / "continue_offline.py"
    script.write_text(RESUME_OFFLINE_SCRIPT)
    run = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "offline"), key],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    ended_ms = json.loads(run.stdout.strip().splitlines()[-1])["ended_ms"]
    time.sleep(1.1)
    (archive,) = (tmp_path / "offline").glob("*.zip")
    upload = subprocess.run(
        [_comet_cli(), "upload", str(archive)], env=dict(os.environ), capture_output=True, text=True, timeout=120
    )
    assert upload.returncode == 0, upload.stdout + upload.stderr

    after = api.get_experiment_by_key(key).get_metadata()
    assert after["startTimeMillis"] == before["startTimeMillis"]  # a continuation keeps the start
    assert before["endTimeMillis"] < after["endTimeMillis"] <= ended_ms
    assert [p["step"] for p in api.get_experiment_by_key(key).get_metrics("loss")] == [1, 2]
