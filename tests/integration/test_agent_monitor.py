"""The agent inside training code: `with comet_agent.monitor(...)`, in this process, on daemon threads."""

from __future__ import annotations

import os
import threading
import time

import pytest

import comet_agent
from comet_agent.api import API, APIExperiment
from comet_agent.errors import AgentError

FAST = {"heartbeat_ms": 1000, "cpu_interval_ms": 1000, "gpu_interval_ms": 1000}


def _options(server, tmp_path, **extra):
    options = dict(
        api_key=server.api_key,
        url_override=server.clientlib_url,
        data_dir=tmp_path / "data",
        workspace="ws",
        project_name="cm",
        include_os_packages=False,
        stop_timeout_s=10,
    )
    options.update(extra)
    return options


def _busy(seconds: float) -> int:
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        n += sum(i * i for i in range(1000))
    return n


def test_monitor_records_this_training_process(local_server, tmp_path):
    local_server.set_intervals(**FAST)
    with comet_agent.monitor(**_options(local_server, tmp_path, sample_interval_s=0.25)) as agent:
        _busy(2.5)
    assert not agent.running
    experiment = APIExperiment(
        api=API(api_key=local_server.api_key, url_override=local_server.clientlib_url),
        previous_experiment=agent.experiment_key,
    )
    details = experiment.get_system_details()
    assert details["pid"] == os.getpid()
    proc_cpu = [p["metricValue"] for p in experiment.get_metrics("sys.proc.cpu.percent")]
    assert proc_cpu and max(float(v) for v in proc_cpu) > 50, "the busy loop shows in the process tree's CPU"
    assert experiment.get_metrics("sys.cpu.percent.avg")
    assert not list((tmp_path / "data" / "agents").glob("*.json")), "the status file is removed at stop"


def test_monitor_never_raises_into_the_block_when_the_server_goes_away(local_server, tmp_path):
    local_server.set_intervals(**FAST)
    agent = comet_agent.monitor(**_options(local_server, tmp_path, sample_interval_s=0.2, stop_timeout_s=2))
    with agent:
        local_server.stop()
        _busy(1.5)
        started = time.monotonic()
    stopped_in_s = time.monotonic() - started
    assert stopped_in_s < 6, "stop() is bounded by its timeout"
    from comet_agent.delivery.spool import Spool

    with Spool(tmp_path / "data" / "spool" / f"{agent.experiment_key}.db") as spool:
        assert spool.depth() > 0, "what could not be sent stays in the spool"


def test_a_forked_child_does_not_inherit_the_agent(local_server, tmp_path):
    local_server.set_intervals(**FAST)
    with comet_agent.monitor(**_options(local_server, tmp_path)) as agent:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: the agent copy is inert, stop() touches nothing
            try:
                result = (agent.running, agent.stop(timeout_s=1), threading.active_count())
                os.write(write_end, repr(result).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        _, status = os.waitpid(pid, 0)
        child_view = os.read(read_end, 200).decode()
        os.close(read_end)
        assert agent.running, "the parent's agent keeps running"
    assert os.WEXITSTATUS(status) == 0
    assert child_view == "(False, False, 1)"


def test_a_wrong_key_never_stops_the_training_block(local_server, tmp_path, caplog):
    ran = False
    with comet_agent.monitor(
        **_options(local_server, tmp_path, api_key="wrong-canary-key-98765", stop_timeout_s=1)
    ) as agent:
        ran = True
    assert ran, "the block runs whatever the server says"
    assert agent.stop() is False, "nothing could be delivered with a rejected key"
    spool = tmp_path / "data" / "spool" / f"{agent.experiment_key}.db"
    assert spool.exists(), "what was collected waits in the spool"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "cannot reach" in r.getMessage()]
    assert len(warnings) == 1 and str(spool) in warnings[0]
    assert "wrong-canary-key-98765" not in caplog.text


def test_a_malformed_configuration_fails_at_the_with_line(local_server, tmp_path, monkeypatch):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / ".comet.config").write_text("[comet\napi_key = x\n")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(AgentError) as raised:
        with comet_agent.monitor(data_dir=tmp_path / "data"):
            pytest.fail("the block must not run with an unreadable configuration")
    assert raised.value.exit_status == 78


def test_stop_is_idempotent_and_status_reports_the_run(local_server, tmp_path):
    local_server.set_intervals(**FAST)
    agent = comet_agent.Agent(**_options(local_server, tmp_path)).start()
    status = agent.status()
    assert status.experiment_key == agent.experiment_key
    assert status.intervals_ms["cpu"] in (1000, 68000)
    assert agent.stop() is True
    assert agent.stop() is True


@pytest.mark.sdk
def test_monitor_takes_a_comet_ml_experiment(local_server, tmp_path, monkeypatch):
    """`with comet_agent.monitor(experiment=exp):` records into the comet_ml experiment the script made."""
    import comet_ml

    local_server.set_intervals(**FAST)
    monkeypatch.setenv("COMET_URL_OVERRIDE", local_server.clientlib_url)
    monkeypatch.setenv("COMET_API_KEY", local_server.api_key)
    for name in (
        "COMET_AUTO_LOG_ENV_CPU",
        "COMET_AUTO_LOG_ENV_GPU",
        "COMET_AUTO_LOG_ENV_HOST",
        "COMET_AUTO_LOG_ENV_DETAILS",
        "COMET_AUTO_LOG_ENV_NETWORK",
        "COMET_AUTO_LOG_ENV_DISK",
    ):
        monkeypatch.setenv(name, "false")
    experiment = comet_ml.start(project_name="cm")
    with comet_agent.monitor(
        experiment=experiment,
        data_dir=tmp_path / "data",
        include_os_packages=False,
        sample_interval_s=0.25,
        use_daemon=False,
    ) as agent:
        experiment.log_metric("loss", 1.0, step=1)
        _busy(1.5)
    experiment.end()
    assert agent.experiment_key == experiment.get_key()
    ours = APIExperiment(
        api=API(api_key=local_server.api_key, url_override=local_server.clientlib_url),
        previous_experiment=experiment.get_key(),
    )
    names = {item["name"] for item in ours.get_metrics_summary()}
    assert {"loss", "sys.cpu.percent.avg", "sys.proc.rss"} <= names
    assert ours.get_system_details()["pid"] == os.getpid()


def test_monitor_refuses_an_object_without_a_key():
    with pytest.raises(TypeError):
        comet_agent.monitor(experiment=object())


def test_monitor_serves_its_job_on_a_prometheus_page_while_the_block_runs(local_server, tmp_path):
    import urllib.error
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from tests.e2e.agent_support import wait_for

    local_server.set_intervals(**FAST)
    options = _options(
        local_server, tmp_path, sample_interval_s=0.2, include_gpu=False, prometheus_listen="127.0.0.1:0"
    )
    with comet_agent.monitor(**options) as agent:
        url = agent.exporter.url

        def job_series():
            with urllib.request.urlopen(url, timeout=2) as response:
                families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
            return families.get("comet_agent_job_resident_memory_bytes")

        rss = wait_for(job_series, 10, what="the job's resident memory on the page")
    assert [s.labels["experiment_key"] for s in rss.samples] == [agent.experiment_key]
    assert rss.samples[0].value > 10 * 2**20  # this test process: tens of MB at least
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)  # the page went with the block


def test_monitor_refuses_a_malformed_prometheus_address_at_the_with_line(local_server, tmp_path):
    with pytest.raises(ValueError, match="HOST:PORT"):
        comet_agent.monitor(**_options(local_server, tmp_path, prometheus_listen="localhost"))
