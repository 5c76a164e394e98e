"""What a real user meets first, driven as that user: the real CLI as a subprocess, read back with
the official comet_ml. The user has only COMET_API_KEY and COMET_URL_OVERRIDE (no workspace
anywhere), and a training script that itself uses comet_ml."""

from __future__ import annotations

import os
import sys

import pytest

from tests.e2e.agent_support import REPO, experiment_key_from, run_agent

pytestmark = [pytest.mark.e2e, pytest.mark.sdk]

FAST = {"heartbeat_ms": 1000, "cpu_interval_ms": 1000, "gpu_interval_ms": 1000}


def _comet_ml_api(server):
    import comet_ml

    os.environ["COMET_URL_OVERRIDE"] = server.clientlib_url  # read back as the user would
    return comet_ml.API(api_key=server.api_key, cache=False)


def test_a_comet_ml_training_script_and_the_agent_share_one_experiment(local_server, tmp_path, monkeypatch):
    local_server.set_intervals(**FAST)
    home = tmp_path / "home"
    home.mkdir()
    result = run_agent(
        local_server,
        tmp_path / "data",
        "run",
        "--sample-interval",
        "0.5",
        "--",
        sys.executable,
        str(REPO / "examples" / "train_with_comet_ml.py"),
        "--steps",
        "80",
        HOME=str(home),
        timeout_s=120,
    )
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    key = experiment_key_from(stderr)
    assert f"in experiment {key}".encode() in result.stdout, "comet_ml recorded into the agent's experiment"

    monkeypatch.setenv("HOME", str(home))
    api = _comet_ml_api(local_server)
    workspace = api.get_default_workspace()
    experiments = api.get_experiments(workspace, "general")
    assert [e.id for e in experiments] == [key], "one experiment, in the default workspace, project general"
    experiment = api.get_experiment_by_key(key)
    names = {item["name"] for item in experiment.get_metrics_summary()}
    assert "loss" in names, "the script's own metrics"
    assert {"sys.cpu.percent.avg", "sys.ram.used", "sys.proc.rss"} <= names, "the agent's system metrics"
    # comet_ml's own system loggers were off: every host series carries the agent's samples only, so
    # it has as many points as a host series comet_ml never logs (the job's own series may miss the
    # samples taken after the job exited).
    samples = len(experiment.get_metrics("sys.load.avg5"))
    assert samples >= 2
    for name in ("sys.cpu.percent.avg", "sys.ram.used", "sys.compute.overall", "sys.load.avg"):
        assert len(experiment.get_metrics(name)) == samples, name
    assert len(experiment.get_metrics("loss")) == 80
    details = experiment.get_system_details()
    assert details["pid"] != os.getpid() and details["hostname"]
    assert "train_with_comet_ml.py" in " ".join(details["command"] or [])
