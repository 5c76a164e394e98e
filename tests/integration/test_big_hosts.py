"""Big hosts end to end: every indexed series keeps its index from record to comet_ml.

Records -> ``payloads`` (points, window, requests) -> the spool -> the ``Sender`` -> our
``APIExperiment`` -> a real ``LocalServer`` on 127.0.0.1:0 -> read back with the official
``comet_ml`` SDK (``API(cache=False)``), once for each way a push travels: the default metric
batch (every series by name) and the per-kind endpoints. There per-CPU values travel as a
positional list (``log_cpu_metrics``) that the server names ``sys.cpu.percent.01``, ``.02``, ...
by position, so on hosts with more than 99 CPUs an ordering by name instead of by number put other
cores' values under 118 of 128 names. Every value here encodes its own index, so any shift shows.
"""

from __future__ import annotations

import copy
import itertools

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from comet_agent.api import API, APIExperiment
from comet_agent.collectors.cpu import CpuCollector
from comet_agent.collectors.gpu import GpuCollector
from comet_agent.collectors.load import LoadCollector
from comet_agent.collectors.memory import MemoryCollector
from comet_agent.delivery.payloads import metric_points, push_requests
from comet_agent.delivery.sender import Sender
from comet_agent.delivery.spool import PERIODIC, Spool
from comet_agent.records import CpuSample, GpuSample, ProcessTreeSample
from tests.support.big_host_procfs import CPU_COUNT, SCENARIO, expected_percent
from tests.support.fake_nvml import build_fake_nvml, load_recording
from tests.support.procfs_steps import ManualClock, ProcfsSteps

comet_ml = pytest.importorskip("comet_ml", reason="the official comet_ml SDK is a test dependency")

pytestmark = pytest.mark.sdk

T = 1_764_400_000_000
GIB = 2**30
MIB = 2**20


@pytest.fixture(params=[False, True], ids=["one-batch", "per-kind-endpoints"])
def deliver(request, comet_sdk_env, tmp_path):
    """``deliver(records) -> {name: [values]}``: push records through our whole path, read back with comet_ml."""
    ours = API()
    theirs = comet_ml.API(cache=False)
    counter = itertools.count()

    def run(records) -> dict[str, list[float]]:
        experiment = APIExperiment(api=ours, workspace="ws", project_name="big-hosts")
        with Spool(tmp_path / f"spool-{next(counter)}.db") as spool:
            pushed = push_requests(metric_points(records), per_kind_endpoints=request.param)
            if not request.param:
                assert {endpoint for endpoint, _ in pushed} == {"metrics_batch"}
            for endpoint, payload in pushed:
                spool.append(experiment.id, endpoint, payload, kind=PERIODIC)
            sender = Sender(spool, lambda key: experiment)
            assert sender.send_pending() is None, sender.stats.last_error
            assert (spool.depth(), sender.stats.rejected) == (0, 0), sender.stats.rejected_by_reason
        read: dict[str, list[float]] = {}
        for point in theirs.get_experiment_by_key(experiment.id).get_metrics():
            read.setdefault(point["metricName"], []).append(float(point["metricValue"]))
        return read

    yield run
    ours.close()


# ------------------------------------------------------------------------------------------------
# Property: any CPU count 1-512 (some CPUs possibly missing from the interval), any GPU count 1-16.


def cpu_value(cpu_number: int) -> float:
    """CPU ``cpu_number``'s percent: unique per CPU and exact in binary (n/8)."""
    return (cpu_number + 1) / 8


def gpu_sample(index: int) -> GpuSample:
    """A GPU reading whose every field encodes the GPU's index."""
    return GpuSample(
        gpu_index=index,
        taken_at_ms=T,
        uuid=f"GPU-{index:04d}",
        utilization_percent=float(5 * index),
        memory_used_bytes=(index + 1) * GIB,
        memory_free_bytes=(79 - index) * GIB,
        memory_total_bytes=80 * GIB,
        memory_utilization_percent=index + 0.5,
        temperature_celsius=30.0 + index,
        power_usage_milliwatts=100_000 + 1000 * index,
        power_limit_milliwatts=400_000 + index,
        clock_sm_mhz=1000 + index,
        clock_memory_mhz=1500 + index,
        fan_speed_percent=40.0 + index,
        throttle_reasons=0x100 + index,
        ecc_errors_corrected=1000 + index,
        ecc_errors_uncorrected=2000 + index,
    )


def gpu_expected(index: int) -> dict[str, float]:
    """What comet_ml must read under ``sys.gpu.<index>.*``: written out, not derived from payloads' table."""
    values = {
        "gpu_utilization": 5 * index,
        "used_memory": (index + 1) * GIB,
        "free_memory": (79 - index) * GIB,
        "total_memory": 80 * GIB,
        "memory_utilization": index + 0.5,
        "temperature": 30 + index,
        "power_usage": 100_000 + 1000 * index,
        "power_limit": 400_000 + index,
        "clock_sm": 1000 + index,
        "clock_mem": 1500 + index,
        "fan_speed": 40 + index,
        "throttle_reasons": 0x100 + index,
        "ecc_errors_corrected": 1000 + index,
        "ecc_errors_uncorrected": 2000 + index,
        "percent.used_memory": 100 * (index + 1) / 80,
    }
    return {f"sys.gpu.{index}.{suffix}": value for suffix, value in values.items()}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cpu_count=st.integers(1, 512), gpu_count=st.integers(1, 16), offline=st.sets(st.integers(0, 511), max_size=3))
@example(cpu_count=128, gpu_count=16, offline=set())  # the host of the issue
@example(cpu_count=100, gpu_count=11, offline={1})  # a CPU offline: positions would shift
@example(cpu_count=1, gpu_count=1, offline=set())
def test_every_cpu_and_gpu_series_reads_back_under_its_own_index(deliver, cpu_count, gpu_count, offline):
    cpu_numbers = tuple(n for n in range(cpu_count) if n not in offline)
    values = tuple(cpu_value(n) for n in cpu_numbers)
    mean = sum(values) / len(values) if values else None
    cpu = CpuSample(
        per_cpu_percent=values,
        cpu_numbers=cpu_numbers,
        overall_percent=mean,
        overall_source="host",
        host_overall_percent=mean,
        cgroup_quota_cpus=None,
        taken_at_ms=T,
    )
    tree = ProcessTreeSample(
        root_pid=100,
        process_count=1,
        cpu_percent=None,
        rss_bytes=MIB,
        threads=1,
        open_files=None,
        taken_at_ms=T,
        gpu_memory_used_bytes_by_index={i: (i + 1) * MIB for i in range(gpu_count)},
    )

    read = deliver([cpu, tree] + [gpu_sample(i) for i in range(gpu_count)])

    assert all(len(series) == 1 for series in read.values()), {n: s for n, s in read.items() if len(s) != 1}
    expected = {f"sys.cpu.percent.{n + 1:02d}": cpu_value(n) for n in cpu_numbers}
    for index in range(gpu_count):
        expected.update(gpu_expected(index))
        expected[f"sys.proc.gpu.{index}.used_memory"] = (index + 1) * MIB
    expected.update({"sys.proc.rss": MIB, "sys.proc.threads": 1, "sys.proc.count": 1})
    if mean is not None:
        expected["sys.cpu.percent.avg"] = mean
        expected["sys.compute.overall"] = round(mean, 1)
    assert sorted(read) == sorted(expected)
    wrong = {name: (read[name][0], value) for name, value in expected.items() if read[name][0] != pytest.approx(value)}
    assert wrong == {}, "(read, expected) per name"


# ------------------------------------------------------------------------------------------------
# The 128-CPU fixture host and a 16-GPU box through the real collectors.


def sixteen_gpu_recording() -> dict:
    """The recorded A100 board 0, sixteen times: distinct UUIDs and PCI ids, power draw encoding the index."""
    recording = load_recording("a100-sxm4-80gb")
    board = recording["devices"][0]
    recording["devices"] = []
    for index in range(16):
        device = copy.deepcopy(board)
        device["uuid"] = board["uuid"][:-4] + f"{index:04x}"
        device["pci_bus_id"] = f"00000000:{0x10 + index:02X}:00.0"
        device["power_usage_mw"] = 200_000 + 1000 * index
        device["compute_processes"] = []
        recording["devices"].append(device)
    return recording


def test_a_128_cpu_16_gpu_host_reads_back_core_by_core_and_board_by_board(deliver, tmp_path):
    steps, clock = ProcfsSteps(SCENARIO, tmp_path), ManualClock()
    collectors = [
        CpuCollector(procfs_root=steps.proc, cgroup_root=str(tmp_path / "no-cgroup"), clock=clock),
        MemoryCollector(procfs_root=steps.proc),
        LoadCollector(procfs_root=steps.proc),
        GpuCollector(nvml_module=build_fake_nvml(sixteen_gpu_recording()), environ={}),
    ]
    for collector in collectors:
        collector.sample(T - 10_000)  # rates need two readings
    steps.advance_to(1)
    clock.advance(10.0)
    records = [record for collector in collectors for record in collector.sample(T)]
    for collector in collectors:
        collector.close()

    read = deliver(records)

    per_cpu = {
        name: series for name, series in read.items() if name.startswith("sys.cpu.percent.") and name[16:].isdigit()
    }
    assert sorted(per_cpu) == sorted(f"sys.cpu.percent.{index:02d}" for index in range(1, CPU_COUNT + 1))
    wrong = {
        name: series[0]
        for name, series in per_cpu.items()
        if series != [pytest.approx(expected_percent(int(name[16:])))]
    }
    assert wrong == {}, "cores carrying another core's value"
    assert read["sys.cpu.percent.avg"] == [
        pytest.approx(sum(map(expected_percent, range(1, CPU_COUNT + 1))) / CPU_COUNT)
    ]
    assert {name: read[name][0] for name in (f"sys.gpu.{i}.power_usage" for i in range(16))} == {
        f"sys.gpu.{i}.power_usage": 200_000 + 1000 * i for i in range(16)
    }
    assert read["sys.gpu.15.total_memory"] == [85_899_345_920]
    assert read["sys.swap.total"] == [8_388_604 * 1024] and read["sys.load.avg"] == [97.10]
