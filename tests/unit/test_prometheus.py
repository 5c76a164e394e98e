"""The Prometheus page: what it serves, under which names, labels, types and units, and what it costs.

The page is fetched over real HTTP from the exporter on 127.0.0.1:0 and read back with
prometheus_client's own parser; the jobs it reads are stand-ins holding records that real
collectors produced from recorded GPU models (the fake pynvml) and literal /proc figures.
"""

from __future__ import annotations

import logging
import re
import socket
import types
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from comet_agent.catalogue import CATALOGUE
from comet_agent.collectors.gpu import GpuCollector
from comet_agent.config import parse_listen_address
from comet_agent.engine.prometheus import CONTENT_TYPE, PrometheusExporter, node_label, start_exporter
from comet_agent.records import CpuSample, LoadSample, ProcessTreeSample
from tests.support.fake_nvml import build_fake_nvml

DCGM_RECORDING = Path(__file__).resolve().parents[1] / "fixtures" / "dcgm-exporter" / "metrics.txt"
NOW_MS = 1_764_240_000_000
KEY = "0123456789abcdef0123456789abcdef"


def _job(key: str, **records: list) -> types.SimpleNamespace:
    """What the exporter reads of an engine Job: its experiment key and its last records per cadence."""
    return types.SimpleNamespace(experiment_key=key, latest_records=records)


def _gpu_records(model: str = "a100-sxm4-80gb", fake=None) -> list:
    return GpuCollector(nvml_module=fake or build_fake_nvml(model), environ={}).sample(NOW_MS)


def _host_records() -> list:
    return [
        CpuSample(
            per_cpu_percent=(10.0, 15.0),
            cpu_numbers=(0, 1),
            overall_percent=12.5,
            overall_source="host",
            host_overall_percent=12.5,
            cgroup_quota_cpus=None,
            taken_at_ms=NOW_MS,
        ),
        LoadSample(0.5, 0.25, 0.125, taken_at_ms=NOW_MS),
        ProcessTreeSample(
            root_pid=4242,
            process_count=3,
            cpu_percent=180.0,
            rss_bytes=3 << 30,
            threads=40,
            open_files=12,
            taken_at_ms=NOW_MS,
            gpu_memory_used_bytes_by_index={0: 39845888000},
        ),
    ]


@pytest.fixture
def serve():
    exporters = []

    def start(*jobs, node="node-a"):
        exporter = PrometheusExporter("127.0.0.1", 0, jobs=lambda: list(jobs), node=node).start()
        exporters.append(exporter)
        return exporter

    yield start
    for exporter in exporters:
        exporter.stop()


def _scrape(exporter) -> tuple[str, str]:
    with urllib.request.urlopen(exporter.url, timeout=5) as response:
        return response.read().decode("utf-8"), response.headers["Content-Type"]


def _families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_the_page_parses_and_every_series_carries_experiment_and_node(serve):
    exporter = serve(_job(KEY, cpu=_host_records(), gpu=_gpu_records()))
    text, content_type = _scrape(exporter)
    assert content_type == CONTENT_TYPE
    families = _families(text)
    samples = [sample for family in families.values() for sample in family.samples]
    assert len(samples) > 100
    assert all(sample.labels["experiment_key"] == KEY and sample.labels["node"] == "node-a" for sample in samples)

    load = families["comet_agent_host_load1"]
    assert (load.type, [s.value for s in load.samples]) == ("gauge", [0.5])
    cores = {s.labels["cpu"]: s.value for s in families["comet_agent_host_cpu_core_percent"].samples}
    assert cores == {"0": 10.0, "1": 15.0}  # the kernel's CPU numbers, not Comet's 1-based names
    tree_gpu = families["comet_agent_job_gpu_memory_used_bytes"].samples
    assert [(s.labels["gpu"], s.value) for s in tree_gpu] == [("0", 39845888000.0)]

    power = families["comet_agent_gpu_power_usage_watts"].samples
    assert [(s.labels["gpu"], s.value) for s in power] == [("0", 342.0), ("1", 327.5), ("2", 62.0), ("3", 180.25)]
    assert power[0].labels["UUID"] == "GPU-3b5e2a47-9c1d-4f0e-8a6b-1c2d3e4f5a60"
    ecc = families["comet_agent_gpu_ecc_errors_corrected"]  # the parser takes _total off a counter's family
    assert ecc.type == "counter" and {s.name for s in ecc.samples} == {"comet_agent_gpu_ecc_errors_corrected_total"}
    assert "comet_agent_last_sample_timestamp_seconds" in families


def test_dcgm_names_labels_types_and_units_match_a_recorded_dcgm_exporter_page(serve):
    """The same four A100 boards through dcgm-exporter (recorded) and through us: what both export matches."""
    theirs = _families(DCGM_RECORDING.read_text())
    ours = {name: family for name, family in _families(_scrape(serve(_job(KEY, gpu=_gpu_records())))[0]).items()}
    our_dcgm = {name: family for name, family in ours.items() if name.startswith("DCGM_")}
    assert len(our_dcgm) >= 15
    assert set(our_dcgm) <= set(theirs), "every DCGM name we serve is one dcgm-exporter serves"
    for name, family in our_dcgm.items():
        recorded = theirs[name]
        assert family.type == recorded.type, name
        for sample in family.samples:
            assert sample.name == recorded.samples[0].name
            assert set(sample.labels) - set(recorded.samples[0].labels) == {"experiment_key", "node"}, name
            assert set(recorded.samples[0].labels) <= set(sample.labels), name
        # Units: the same board reads the same in both (FB in MiB, power in W, PCIe in KB).
        recorded_by_uuid = {s.labels["UUID"]: s for s in recorded.samples}
        for sample in family.samples:
            twin = recorded_by_uuid[sample.labels["UUID"]]
            assert sample.value == pytest.approx(twin.value, abs=1.0), (name, sample.labels["UUID"])
            for label in ("gpu", "device", "modelName", "pci_bus_id", "DCGM_FI_DRIVER_VERSION"):
                assert sample.labels[label] == twin.labels[label], (name, label)
    for name in ("DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_SM_CLOCK"):
        assert name in our_dcgm


def test_dcgm_counters_keep_dcgm_names_on_the_wire(serve):
    """dcgm-exporter writes its counters without a _total suffix; dashboards query those exact names."""
    text, _ = _scrape(serve(_job(KEY, gpu=_gpu_records())))
    assert "# TYPE DCGM_FI_DEV_ECC_SBE_VOL_TOTAL counter\n" in text
    assert re.search(r"^DCGM_FI_DEV_PCIE_TX_THROUGHPUT\{", text, re.M)
    assert "_TOTAL_total" not in text and "DCGM_FI_DEV_PCIE_TX_THROUGHPUT_total" not in text
    # Every sample line's name is the one its TYPE line announced.
    announced = None
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            announced = line.split()[2]
        elif not line.startswith("#"):
            assert line.split("{", 1)[0] == announced


def test_a_t4_serves_retired_pages_and_no_nvlink(serve):
    families = _families(_scrape(serve(_job(KEY, gpu=_gpu_records("t4-not-supported"))))[0])
    retired = families["DCGM_FI_DEV_RETIRED_SBE"]
    assert [(s.labels["gpu"], s.value) for s in retired.samples] == [("0", 1.0)]  # board 1 (a vGPU) cannot say
    assert not any("NVLINK" in name or "nvlink" in name for name in families)


def test_two_experiments_are_told_apart_by_their_key(serve):
    other = "fedcba9876543210fedcba9876543210"
    exporter = serve(_job(KEY, cpu=_host_records()), _job(other, cpu=[LoadSample(2.0, 1.0, 0.5, taken_at_ms=NOW_MS)]))
    load = _families(_scrape(exporter)[0])["comet_agent_host_load1"]
    assert {s.labels["experiment_key"]: s.value for s in load.samples} == {KEY: 0.5, other: 2.0}


def test_a_scrape_reads_the_last_sample_and_asks_nvml_nothing(serve):
    fake = build_fake_nvml("a100-sxm4-80gb")
    job = _job(KEY, gpu=_gpu_records(fake=fake))
    calls = sum(fake.calls.values())
    exporter = serve(job)
    for _ in range(3):
        _scrape(exporter)
    assert sum(fake.calls.values()) == calls
    assert exporter.scrapes == 3


def test_no_job_yet_is_an_empty_page_and_other_paths_are_404(serve):
    exporter = serve()
    assert _scrape(exporter)[0] == ""
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(exporter.url.replace("/metrics", "/"), timeout=5)
    assert caught.value.code == 404


def test_a_port_in_use_costs_the_page_not_the_run(caplog):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.WARNING, logger="comet_agent.engine.prometheus"):
            assert start_exporter(("127.0.0.1", port), lambda: []) is None
    assert f"cannot serve Prometheus metrics on 127.0.0.1:{port}" in caplog.text


def test_node_label_is_the_job_node_id_else_the_host_name():
    from comet_agent.config import NodeIdentity

    assert node_label(NodeIdentity(node_id="node3", node_index=3, source="SLURM_NODEID")) == "node3"
    assert node_label(NodeIdentity()) == node_label(None) == socket.gethostname()


def test_each_job_is_labelled_with_its_own_node(serve):
    from comet_agent.config import NodeIdentity

    job = _job(KEY, cpu=[LoadSample(0.5, 0.25, 0.125, taken_at_ms=NOW_MS)])
    job.node = NodeIdentity(node_id="node1", node_index=1, source="GROUP_RANK")
    load = _families(_scrape(serve(job, node=None))[0])["comet_agent_host_load1"]
    assert [s.labels["node"] for s in load.samples] == ["node1"]


@pytest.mark.parametrize(
    "text,expected",
    [(":9400", ("127.0.0.1", 9400)), ("0.0.0.0:9400", ("0.0.0.0", 9400)), ("[::1]:0", ("::1", 0))],
)
def test_listen_addresses_default_to_loopback(text, expected):
    assert parse_listen_address(text) == expected


@pytest.mark.parametrize("text", ["9400", "host:", ":99999", "::1:9400", "a b:1"])
def test_bad_listen_addresses_say_what_a_good_one_looks_like(text):
    with pytest.raises(ValueError, match=r"HOST:PORT|brackets|space"):
        parse_listen_address(text)


def test_catalogue_prometheus_names_are_valid_unique_and_counters_end_in_total():
    valid = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    ours = [entry.prometheus for entry in CATALOGUE if entry.prometheus is not None]
    assert len({export.name for export in ours}) == len(ours)
    for export in ours:
        assert valid.match(export.name) and export.name.startswith("comet_agent_")
        assert export.type in ("gauge", "counter")
        assert export.name.endswith("_total") == (export.type == "counter"), export.name
    dcgm = [entry for entry in CATALOGUE if entry.dcgm is not None]
    assert {entry.source for entry in dcgm} == {"gpu"}
    assert len({entry.dcgm.name for entry in dcgm}) == len(dcgm)
    # Rows without a Prometheus name repeat another row under a Comet name.
    assert {entry.pattern for entry in CATALOGUE if entry.prometheus is None} == {
        "sys.compute.overall",
        "sys.compute.utilized",
    }


def test_a_forked_child_does_not_keep_the_port(serve):
    """Under monitor(), a DataLoader worker forks the training process: once the agent stops, the
    port must be free, not held open (and unanswered) by the child's copy of the socket."""
    import os
    import signal
    import time

    exporter = serve()
    host, port = "127.0.0.1", exporter.port
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child: say it is up, then live on as a worker would
        os.close(read_end)
        os.write(write_end, b"x")
        time.sleep(30)
        os._exit(0)
    try:
        os.close(write_end)
        assert os.read(read_end, 1) == b"x"
        exporter.stop()
        with socket.socket() as again:
            again.bind((host, port))  # free although the child still runs
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
