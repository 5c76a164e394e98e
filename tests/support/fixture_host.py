"""Every periodic collector, run over every recorded fixture: what a "fixture host" emits.

``fixture_host_records(tmp_path)`` builds the real collectors on the recorded ``/proc`` scenarios
(``tests/fixtures/procfs/``) and the fake pynvml of each recorded GPU model
(``tests/fixtures/nvml/``), samples each scenario at every step (rates need two readings), and
returns each record with the name of the collector that produced it. The metric catalogue's tests
check both ways against it: every name emitted here is catalogued, and every catalogue row is
emitted here. A new collector or metric name therefore needs a fixture that produces it.

The collectors that need more than a ``/proc`` root and a clock (a statvfs, a watched pid, a fake
NVML) are built here by hand. Every other collector that ``build_periodic_collectors`` registers
is built by it on each scenario and sampled wherever its source is present: a new procfs
collector needs fixture files in a scenario below, and no edit here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

from comet_agent.collectors.agent_self import AgentSelfCollector
from comet_agent.collectors.cpu import CpuCollector
from comet_agent.collectors.disk import DiskCollector
from comet_agent.collectors.gpu import GpuCollector
from comet_agent.collectors.load import LoadCollector
from comet_agent.collectors.memory import MemoryCollector
from comet_agent.collectors.network import NetworkCollector
from comet_agent.collectors.periodic import build_periodic_collectors
from comet_agent.collectors.process import ProcessTreeCollector
from comet_agent.sources import nvml
from tests.support.big_host_procfs import SCENARIO as BIG_HOST
from tests.support.fake_nvml import MODELS, build_fake_nvml, load_recording
from tests.support.procfs_steps import ManualClock, ProcfsSteps

START_MS = 1_764_300_000_000
STEP_S = 1.0
JOB_DIRECTORY = "/data/job"

#: statvfs results recorded on an ext4 root (half full, 10 % of the free space reserved for root)
#: and on a job filesystem; the disk collector takes statvfs as a parameter.
RECORDED_STATVFS = {
    "/": os.statvfs_result(
        (4096, 4096, 25_600_000, 12_800_000, 11_520_000, 6_400_000, 6_000_000, 6_000_000, 4096, 255)
    ),
    JOB_DIRECTORY: os.statvfs_result((4096, 4096, 1000, 750, 750, 100, 90, 90, 4096, 255)),
}

Factory = Callable[[ProcfsSteps, ManualClock], list]

#: Collectors built by hand in ``_scenarios`` (and the GPU models), with what they need recorded.
HAND_BUILT = frozenset({"cpu", "memory", "load", "disk", "network", "process", "agent_self", "gpu"})


def recorded_statvfs(path: str) -> os.statvfs_result:
    """``os.statvfs`` on the recorded filesystems; other paths do not exist."""
    if path in RECORDED_STATVFS:
        return RECORDED_STATVFS[path]
    raise FileNotFoundError(2, "No such file or directory", path)


def _registered_collectors(steps: ProcfsSteps, clock: ManualClock, no_cgroup: str) -> list:
    """The registered collectors not in ``HAND_BUILT`` that can run on this scenario's trees."""
    built, _unavailable = build_periodic_collectors(
        procfs_root=steps.proc,
        sysfs_root=steps.sys,
        cgroup_root=no_cgroup,
        include_gpu=False,
        with_process_tree=False,
        clock=clock,
    )
    kept = [collector for collector in built if collector.name not in HAND_BUILT]
    for collector in built:
        if collector.name in HAND_BUILT:
            collector.close()
    return kept


def _run_scenario(scenario: str, tmp_path: Path, factory: Factory) -> list[tuple[str, object]]:
    """Sample the collectors ``factory`` builds, and every other registered one, at each step of ``scenario``.

    Returns (collector name, record) pairs.
    """
    directory = tmp_path / scenario
    directory.mkdir()
    steps, clock = ProcfsSteps(scenario, directory), ManualClock()
    collectors = factory(steps, clock) + _registered_collectors(steps, clock, str(tmp_path / "no-cgroup"))
    step_count = len(list(steps.scenario_dir.glob("step*")))
    found: list[tuple[str, object]] = []
    try:
        for step in range(step_count):
            if step:
                steps.advance_to(step)
                clock.advance(STEP_S)
            for collector in collectors:
                found += [(collector.name, record) for record in collector.sample(START_MS + int(step * STEP_S * 1000))]
    finally:
        for collector in collectors:
            collector.close()
    return found


def _gpus_of_the_watched_tree() -> dict[str, Callable[[], dict]]:
    # The recorded A100 host runs other jobs' pids; two of the watched tree's processes (pid 101, a
    # worker of the process-tree scenario's job 100, and its child 103) are put on boards 1 and 3,
    # so the tree holds memory and keeps SMs busy on two GPUs, as a data-parallel job would.
    recording = load_recording("a100-sxm4-80gb")
    recording["devices"][1]["compute_processes"].append({"pid": 101, "used_gpu_memory": 6_442_450_944})
    recording["devices"][3]["compute_processes"].append({"pid": 103, "used_gpu_memory": 1_073_741_824})
    stamp_us = recording["devices"][1]["process_utilization"][-1]["time_stamp_us"] + 1
    recording["devices"][1]["process_utilization"].append(
        {"pid": 101, "time_stamp_us": stamp_us, "sm_util": 83, "mem_util": 40}
    )
    recording["devices"][3]["process_utilization"].append(
        {"pid": 103, "time_stamp_us": stamp_us, "sm_util": 12, "mem_util": 5}
    )
    gateway = nvml.NvmlGateway(module=build_fake_nvml(recording), environ={})
    return {
        "gpu_memory_by_pid": lambda: nvml.gpu_memory_by_pid(gateway=gateway),
        "gpu_utilization_by_pid": nvml.gpu_utilization_reader(gateway=gateway),
    }


def _scenarios(tmp_path: Path) -> Iterable[tuple[str, Factory]]:
    no_cgroup = str(tmp_path / "no-cgroup")
    yield (
        "vm-2cpu",
        lambda steps, clock: [
            CpuCollector(procfs_root=steps.proc, cgroup_root=no_cgroup, clock=clock),
            MemoryCollector(procfs_root=steps.proc),
            LoadCollector(procfs_root=steps.proc),
            DiskCollector(
                procfs_root=steps.proc,
                sysfs_root=steps.sys,
                directory=JOB_DIRECTORY,
                statvfs=recorded_statvfs,
                clock=clock,
            ),
            NetworkCollector(procfs_root=steps.proc, clock=clock),
        ],
    )
    # The job (pid 300) under a 2-CPU cgroup quota: the quota-relative figure.
    yield (
        "cgroup-quota",
        lambda steps, clock: [CpuCollector(procfs_root=steps.proc, cgroup_root=steps.cgroup, pid=300, clock=clock)],
    )
    # 128 CPUs (.100 and up) and a host with swap.
    yield (
        BIG_HOST,
        lambda steps, clock: [
            CpuCollector(procfs_root=steps.proc, cgroup_root=no_cgroup, clock=clock),
            MemoryCollector(procfs_root=steps.proc),
            LoadCollector(procfs_root=steps.proc),
        ],
    )
    yield (
        "process-tree",
        lambda steps, clock: [
            ProcessTreeCollector(100, procfs_root=steps.proc, clock=clock, **_gpus_of_the_watched_tree()),
            AgentSelfCollector(procfs_root=steps.proc, pid=4242, clock=clock),
        ],
    )


def fixture_host_records(tmp_path: Path) -> list[tuple[str, object]]:
    """Every record the periodic collectors produce over the recorded fixtures.

    Args:
        tmp_path: a fresh directory (scenario symlinks go under it).

    Returns:
        ``(collector name, record)`` pairs: the procfs scenarios sampled at each of their steps,
        then one sample of every recorded GPU model (``tests/fixtures/nvml/``).
    """
    found: list[tuple[str, object]] = []
    for scenario, factory in _scenarios(tmp_path):
        found += _run_scenario(scenario, tmp_path, factory)
    for model in MODELS:
        collector = GpuCollector(nvml_module=build_fake_nvml(model), environ={})
        try:
            found += [(collector.name, record) for record in collector.sample(START_MS)]
        finally:
            collector.close()
    return found
