"""Builds the periodic collectors for a run and takes one sample through them.

``build_periodic_collectors`` is where a run's periodic collectors are chosen: cpu, memory, load,
disk, network, pressure and agent self always (each unless its source is absent), the process tree
when a pid is watched, and the GPU collector (``comet_agent.collectors.gpu``, imported lazily)
unless asked not to. A collector whose source is absent is left out and its reason returned, so the
caller can say so once and carry on.

``take_sample`` is what ``comet-agent collect`` prints: it primes the delta collectors (CPU,
disk and network rates need two readings), waits ``interval_s`` and samples every collector. One
collector's exception is caught, logged and reported by name; it never stops the others.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Callable, MutableMapping, Optional, Sequence, Union

from comet_agent.collectors import PeriodicCollector, Unavailable
from comet_agent.collectors.agent_self import AgentSelfCollector
from comet_agent.collectors.cpu import CpuCollector
from comet_agent.collectors.disk import DiskCollector
from comet_agent.collectors.load import LoadCollector
from comet_agent.collectors.memory import MemoryCollector
from comet_agent.collectors.network import NetworkCollector
from comet_agent.collectors.pressure import PressureCollector
from comet_agent.collectors.process import ProcessTreeCollector

logger = logging.getLogger(__name__)


def _build_gpu_collector() -> PeriodicCollector:
    try:
        from comet_agent.collectors.gpu import GpuCollector
    except ImportError as exc:
        raise Unavailable(f"GPU collector cannot be loaded: {exc}") from exc
    return GpuCollector()


def build_periodic_collectors(
    *,
    procfs_root: str = "/proc",
    pid: Optional[int] = None,
    directory: Optional[Union[str, os.PathLike]] = None,
    include_gpu: bool = True,
    with_process_tree: bool = True,
    sysfs_root: str = "/sys",
    cgroup_root: str = "/sys/fs/cgroup",
    clock: Callable[[], float] = time.monotonic,
    agent_threads: Optional[Callable[[], Sequence[int]]] = None,
) -> tuple[list[PeriodicCollector], dict[str, str]]:
    """Build the periodic collectors that can run here.

    Args:
        procfs_root: the ``/proc`` tree every procfs collector reads.
        pid: the watched job; adds the process-tree collector and makes the CPU collector
            honour the job's cgroup quota.
        directory: the job's working directory, whose filesystem usage the disk collector reports.
        include_gpu: add the GPU collector when NVML and a device are available.
        with_process_tree: add the process-tree collector for ``pid`` (the engine's jobs build
            their own and pass False: ``pid`` then only selects the cgroup quota).
        sysfs_root: the ``/sys`` tree (whole-disk detection).
        cgroup_root: the cgroup v2 mount (CPU quota).
        clock: monotonic clock in seconds, shared by the rate collectors.
        agent_threads: in-process, the agent's own thread ids (``agent_self.agent_thread_ids``):
            its own cost is those threads', not the training job's.

    Returns:
        ``(collectors, unavailable)``: the collectors in a stable order, and a map from the name
        of each collector that cannot run here to the reason.
    """
    factories: list[tuple[str, Callable[[], PeriodicCollector]]] = [
        ("cpu", lambda: CpuCollector(procfs_root=procfs_root, cgroup_root=cgroup_root, pid=pid, clock=clock)),
        ("memory", lambda: MemoryCollector(procfs_root=procfs_root)),
        ("load", lambda: LoadCollector(procfs_root=procfs_root)),
        (
            "disk",
            lambda: DiskCollector(procfs_root=procfs_root, sysfs_root=sysfs_root, directory=directory, clock=clock),
        ),
        ("network", lambda: NetworkCollector(procfs_root=procfs_root, clock=clock)),
        ("pressure", lambda: PressureCollector(procfs_root=procfs_root, clock=clock)),
    ]
    if pid is not None and with_process_tree:
        factories.append(("process", lambda: ProcessTreeCollector(pid, procfs_root=procfs_root, clock=clock)))
    factories.append(
        ("agent_self", lambda: AgentSelfCollector(procfs_root=procfs_root, clock=clock, threads=agent_threads))
    )
    if include_gpu:
        factories.append(("gpu", _build_gpu_collector))

    collectors: list[PeriodicCollector] = []
    unavailable: dict[str, str] = {}
    for name, factory in factories:
        try:
            collectors.append(factory())
        except Unavailable as exc:
            unavailable[name] = exc.reason
            logger.info("%s: unavailable: %s", name, exc.reason)
    return collectors, unavailable


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


def take_sample(
    collectors: Sequence[PeriodicCollector],
    *,
    interval_s: float = 0.5,
    clock: Callable[[], int] = _wall_clock_ms,
    sleep: Callable[[float], None] = time.sleep,
    failures: Optional[MutableMapping[str, str]] = None,
) -> list[object]:
    """Prime every collector, wait ``interval_s``, and return the records of a second sample.

    Args:
        collectors: periodic collectors, e.g. from ``build_periodic_collectors``.
        interval_s: seconds between the priming and the real sample (the window rates cover).
        clock: wall clock in epoch milliseconds, stamped on the records as ``taken_at_ms``.
        sleep: waits the interval (tests pass one that advances a fake clock).
        failures: when given, receives ``{collector name: "<ExceptionType>: message"}`` for each
            collector that raised.

    Returns:
        The records of the second sample, in collector order. Never raises for a collector's
        failure; that collector simply contributes nothing.
    """
    failed: dict[str, str] = {}

    def sample_all() -> list[object]:
        now_ms = clock()
        records: list[object] = []
        for collector in collectors:
            if collector.name in failed:
                continue  # already failed while priming: report it once
            try:
                records.extend(collector.sample(now_ms))
            except Exception as exc:  # one broken collector must not cost the others
                failed[collector.name] = f"{type(exc).__name__}: {exc}"
                logger.warning("%s: sample failed: %s", collector.name, failed[collector.name])
        return records

    sample_all()
    sleep(interval_s)
    records = sample_all()
    if failures is not None:
        failures.update(failed)
    return records
