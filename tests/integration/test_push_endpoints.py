"""One request per push, and the same reads whichever way a push travels.

A ``Job`` on the recorded ``vm-2cpu`` host (with two recorded A100s through the fake NVML) pushes
its windows into a real ``LocalServer``: by default one metric batch per push carrying every
series by name; with ``per_kind_endpoints`` Comet's cpu/ram/load/gpu-metrics endpoints plus a
batch. Both experiments must then read back alike: the metric names and point counts, the
summaries, the system details' ``systemMetricNames``, ``totalRam`` and ``maxTotalMemory``, and
the experiment page's charts. Pushes are driven by hand (``job.push``), never by the clock.
"""

from __future__ import annotations

import re

import pytest

from comet_agent.api import API
from comet_agent.collectors.gpu import GpuCollector
from comet_agent.delivery.spool import Spool
from comet_agent.engine.host_sampler import HostSampler
from comet_agent.engine.job import Job, per_kind_endpoints_setting
from comet_agent.engine.link import ExperimentLink, new_experiment_key
from comet_agent.server.pages.charts import build_charts
from comet_agent.server.store import Store, metric_series_downsampled
from tests.support.fake_nvml import build_fake_nvml
from tests.support.procfs_steps import ManualClock, ProcfsSteps, fixture_host_collectors

#: The GPU series log_gpu_metrics carries (as whole numbers).
GPU_FIVE = re.compile(r"^sys\.gpu\.\d+\.(gpu_utilization|free_memory|used_memory|total_memory)$")


def _record(server, tmp_path, per_kind_endpoints):
    """Two pushes of each cadence (a priming sample, then one with rates) into a new experiment; returns
    (experiment key, spooled endpoints of each push)."""
    scratch = tmp_path / f"per-kind-{per_kind_endpoints}"
    scratch.mkdir()
    steps, clock = ProcfsSteps("vm-2cpu", scratch), ManualClock()
    collectors = fixture_host_collectors(steps, clock, tmp_path / "no-cgroup")
    collectors.append(GpuCollector(nvml_module=build_fake_nvml("a100-sxm4-80gb"), environ={}))
    host = HostSampler(collectors)
    api = API(api_key=server.api_key, url_override=server.clientlib_url)
    key = new_experiment_key()
    link = ExperimentLink(api, key, create=True, workspace="ws", project_name="push")
    spool = Spool(tmp_path / f"{key}.db")
    job = Job(link, spool, host, procfs_root=steps.proc, per_kind_endpoints=per_kind_endpoints)
    pushes = []
    for step in (0, 1):
        steps.advance_to(step)
        clock.advance(1.0)
        for cadence in ("cpu", "gpu"):
            before = {entry.seq for entry in spool.peek(1000)}
            job.push(cadence)
            pushes.append([entry.endpoint for entry in spool.peek(1000) if entry.seq not in before])
            assert job.sender.send_pending() is None, job.sender.stats.last_error
    assert spool.depth() == 0 and job.sender.stats.rejected == 0
    spool.close()
    host.close()
    api.close()
    return key, pushes


@pytest.fixture
def both(local_server, tmp_path):
    """{per_kind_endpoints: (key, pushes)} for both modes, then the server stopped so its store can be read."""
    recorded = {mode: _record(local_server, tmp_path, mode) for mode in (False, True)}
    reads = {}
    api = API(api_key=local_server.api_key, url_override=local_server.clientlib_url)
    for mode, (key, _) in recorded.items():
        experiment = api.get_experiment_by_key(key)
        metrics = experiment.get_metrics()
        reads[mode] = {
            "names": sorted({point["metricName"] for point in metrics}),
            "counts": {
                name: sum(1 for p in metrics if p["metricName"] == name) for name in {p["metricName"] for p in metrics}
            },
            "values": {point["metricName"]: float(point["metricValue"]) for point in metrics},
            "summary": sorted(summary["name"] for summary in experiment.get_metrics_summary()),
            "details": experiment.get_system_details(),
        }
    api.close()
    local_server.stop()
    store = Store(local_server.data_dir)
    try:
        for mode, (key, _) in recorded.items():
            charts = build_charts(metric_series_downsampled(store, key))
            reads[mode]["charts"] = [(chart["title"], sorted(s["name"] for s in chart["series"])) for chart in charts]
    finally:
        store.close()
    return recorded, reads


def test_a_push_is_one_metric_batch_by_default_and_the_per_kind_endpoints_on_request(both):
    recorded, _ = both
    _, default_pushes = recorded[False]
    assert default_pushes == [["metrics_batch"]] * 4, "one request per push, each cadence"
    _, per_kind_pushes = recorded[True]
    assert per_kind_pushes[2] == ["cpu_metrics", "ram_metrics", "load_metrics", "metrics_batch"]  # with rates
    assert per_kind_pushes[3] == ["gpu_metrics", "metrics_batch"]


def test_the_server_answers_the_same_reads_either_way(both):
    _, reads = both
    batch, per_kind = reads[False], reads[True]
    assert batch["names"] == per_kind["names"]
    assert {
        "sys.cpu.percent.avg",
        "sys.cpu.percent.01",
        "sys.ram.total",
        "sys.ram.used",
        "sys.load.avg",
        "sys.gpu.0.gpu_utilization",
        "sys.gpu.1.total_memory",
    } <= set(batch["names"])
    assert batch["counts"] == per_kind["counts"]
    assert batch["summary"] == per_kind["summary"]
    for field in ("systemMetricNames", "totalRam", "maxTotalMemory"):
        assert batch["details"][field] == per_kind["details"][field], field
    assert batch["details"]["systemMetricNames"] == batch["names"]
    assert batch["charts"] == per_kind["charts"] and batch["charts"]
    for name, value in batch["values"].items():
        other = per_kind["values"][name]
        if name.startswith("sys.disk.root."):
            continue  # statvfs("/") of this machine, not of the fixture: it moves between the two runs
        if name == "sys.cpu.percent.avg":  # the kernel's aggregate line, where the server averaged the CPUs
            assert value == pytest.approx(other, abs=2.0)
        elif GPU_FIVE.match(name):
            assert round(value) == other, name  # log_gpu_metrics carries whole numbers
        else:
            assert value == other, name


@pytest.mark.parametrize(
    "value, expected",
    [(None, False), ("true", True), ("1", True), ("on", True), ("false", False), ("0", False), ("", False)],
)
def test_the_per_kind_endpoints_setting(value, expected):
    config = {} if value is None else {"agent_per_kind_endpoints": value}
    assert per_kind_endpoints_setting(config) is expected
    assert per_kind_endpoints_setting(None) is False


def test_a_job_takes_the_option_from_the_comet_configuration(monkeypatch, tmp_path):
    """``COMET_AGENT_PER_KIND_ENDPOINTS=true`` (or ``[comet_agent] per_kind_endpoints = true``) switches it on."""
    host = HostSampler([])
    for value, expected in ((None, False), ("true", True)):
        if value is None:
            monkeypatch.delenv("COMET_AGENT_PER_KIND_ENDPOINTS", raising=False)
        else:
            monkeypatch.setenv("COMET_AGENT_PER_KIND_ENDPOINTS", value)
        api = API(api_key="config-test-key", url_override="http://127.0.0.1:9/clientlib/")
        with Spool(tmp_path / f"{value}.db") as spool:
            link = ExperimentLink(api, new_experiment_key(), create=True)
            assert Job(link, spool, host).per_kind_endpoints is expected
            assert Job(link, spool, host, per_kind_endpoints=not expected).per_kind_endpoints is (not expected)
        api.close()
