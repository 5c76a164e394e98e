"""Resolution independent of the push cadence (issue 19 item 2), as users meet it.

A newcomer with nothing configured runs a short job under ``comet-agent run``: the embedded local
server recommends sampling every second while pushes keep Comet's 68 s cadence, so the chart of a
4 s job has a point per second, each with its own time, read back through the official comet_ml.
Training code with ``monitor()`` gets the same; a sampling interval given by the user wins over
the server's, ``resolution="window"`` keeps one aggregate per push, garbage from the server is
ignored, and a bad ``COMET_AGENT_RESOLUTION`` stops at the ``with`` line with a clear message.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import pytest

import comet_agent
from comet_agent.api import API, APIExperiment
from comet_agent.errors import AgentError
from tests.e2e.agent_support import experiment_key_from, nothing_configured_env, wait_for

pytestmark = pytest.mark.e2e

JOB_S = 4


def _timestamps(points: list[dict]) -> list[int]:
    return [int(point["timestamp"]) for point in points]


@pytest.mark.sdk
def test_a_short_run_with_nothing_configured_charts_a_point_per_second(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    started = time.time()
    run = subprocess.run(
        [sys.executable, "-m", "comet_agent", "run", "--", sys.executable, "-c", f"import time; time.sleep({JOB_S})"],
        env=nothing_configured_env(tmp_path / "home", COMET_AGENT_DATA_DIR=str(data_dir)),
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    key = experiment_key_from(run.stderr)

    # Read back with the official SDK from the server's own store (the run's embedded server is gone).
    import comet_ml

    from comet_agent.server.app import LocalServer

    with LocalServer(data_dir / "server") as server:
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        monkeypatch.setenv("COMET_URL_OVERRIDE", server.clientlib_url)
        monkeypatch.setenv("COMET_ERROR_TRACKING_ENABLE", "false")
        experiment = comet_ml.API(api_key=server.api_key, cache=False).get_experiment_by_key(key)
        cpu = experiment.get_metrics("sys.cpu.percent.avg")
        ram = experiment.get_metrics("sys.ram.used")
    stamps = _timestamps(cpu)
    # The first push (0.15 s in) plus one sample a second: about one point per second of the job,
    # where one aggregate per push gave 2 (the first push and the last).
    assert len(stamps) >= JOB_S, f"{len(stamps)} points for a {JOB_S} s job: {stamps}"
    assert stamps == sorted(set(stamps)), "distinct, increasing sample times"
    assert started * 1000 - 1000 <= stamps[0] and stamps[-1] <= time.time() * 1000
    assert _timestamps(ram) == stamps, "every series of a sample carries that sample's time"


def _options(server, tmp_path, **extra):
    options = dict(
        api_key=server.api_key,
        url_override=server.clientlib_url,
        data_dir=tmp_path / "data",
        workspace="ws",
        project_name="fullres",
        include_os_packages=False,
        include_git=False,
        stop_timeout_s=10,
    )
    options.update(extra)
    return options


def _points(server, experiment_key: str, name: str) -> list[dict]:
    api = API(api_key=server.api_key, url_override=server.clientlib_url)
    try:
        return APIExperiment(api=api, previous_experiment=experiment_key).get_metrics(name)
    finally:
        api.close()


def test_monitor_samples_as_the_server_recommends_and_pushes_every_sample(local_server, tmp_path):
    local_server.set_intervals(sample_interval_ms=1000)  # pushes stay at the default 68 s
    with comet_agent.monitor(**_options(local_server, tmp_path)) as agent:
        wait_for(lambda: agent.status().sample_interval_s == 1.0, 10, what="the recommended sampling")
        time.sleep(3.2)
    assert agent.status().resolution == "full"
    load = _points(local_server, agent.experiment_key, "sys.load.avg")
    stamps = _timestamps(load)
    assert len(stamps) >= 4, stamps  # the first push, three 1 s samples, all in the last push
    assert stamps == sorted(set(stamps))
    assert _timestamps(_points(local_server, agent.experiment_key, "sys.proc.rss")) == stamps


def test_a_given_interval_wins_and_window_resolution_pushes_one_aggregate(local_server, tmp_path):
    local_server.set_intervals(heartbeat_ms=1000, cpu_interval_ms=1000, sample_interval_ms=5000)
    with comet_agent.monitor(**_options(local_server, tmp_path, sample_interval_s=0.2, resolution="window")) as agent:
        time.sleep(2.6)
        status = agent.status()
    assert status.sample_interval_s == 0.2 and status.resolution == "window"
    stamps = _timestamps(_points(local_server, agent.experiment_key, "sys.load.avg"))
    # ~13 samples in ~4 pushes (0.15 s, 1.15 s, 2.15 s, the stop): one point per push, not per sample.
    assert 2 <= len(stamps) <= 5, stamps
    assert stamps == sorted(set(stamps))


def test_a_garbage_recommendation_keeps_one_sample_per_push(local_server, tmp_path, caplog):
    local_server.set_intervals(sample_interval_ms="soon")
    caplog.set_level(logging.WARNING, logger="comet_agent")
    with comet_agent.monitor(**_options(local_server, tmp_path)) as agent:
        wait_for(lambda: "sampleIntervalMillis" in caplog.text, 10, what="the warning about the recommendation")
        assert agent.status().sample_interval_s is None
    warnings = [r.getMessage() for r in caplog.records if "sampleIntervalMillis" in r.getMessage()]
    assert warnings == [
        "the server recommended sampleIntervalMillis=soon ('soon' is not a number; keeping the current sampling)"
    ]


def test_a_bad_resolution_setting_stops_at_the_with_line(local_server, tmp_path, monkeypatch):
    monkeypatch.setenv("COMET_AGENT_RESOLUTION", "every")
    with pytest.raises(AgentError) as raised:
        with comet_agent.monitor(**_options(local_server, tmp_path)):
            pytest.fail("the block must not run with an unusable resolution")
    assert raised.value.exit_status == 78
    assert "COMET_AGENT_RESOLUTION" in str(raised.value) and "window" in str(raised.value)
