"""A recorded run on a 64-core host, for the chart tests and the README screenshot.

``write_many_core_run(tmp_path)`` writes a ``/proc`` tree per sampling step (``stat``, ``meminfo``)
of a 64-CPU host whose load is known in advance (``core_percent``), samples it with the agent's
real ``CpuCollector`` and ``MemoryCollector`` (a manual clock: no sleeping), and returns the
metric points exactly as the agent would send them, plus synthetic GPU series (this machine has
no GPU) whose power is stored in mW, as NVML reports it.

The load: cores 1-48 run a training job whose utilisation follows a wave that reaches each core a
little later than the one before (so every heatmap row differs), cores 49-64 stay near idle. Each
value is exact, so a chart or a heatmap row showing another core's figures is visible at once.
"""

from __future__ import annotations

import math
from pathlib import Path

from comet_agent.collectors.cpu import CpuCollector
from comet_agent.collectors.memory import MemoryCollector
from comet_agent.delivery.payloads import metric_points
from tests.support.procfs_steps import ManualClock

CPU_COUNT = 64
BUSY_CORES = 48
STEPS = 61  # 60 intervals: the first reading only starts the rates
STEP_S = 5
USER_HZ = 100
MEM_TOTAL_KIB = 256 * 1024 * 1024  # 256 GiB


def core_percent(core: int, interval: int) -> float:
    """Utilisation of CPU ``core`` (0-based) over interval ``interval`` (1-based), in percent."""
    if core >= BUSY_CORES:
        return 4.0
    wave = math.sin(2 * math.pi * (interval / 30 - core / BUSY_CORES))
    return round(55 + 40 * wave, 1)


def _stat(ticks: list[tuple[int, int]]) -> str:
    lines = []
    for cpu, (busy, idle) in enumerate(ticks):
        lines.append(f"cpu{cpu} {busy} 0 0 {idle} 0 0 0 0 0 0")
    total_busy, total_idle = sum(b for b, _ in ticks), sum(i for _, i in ticks)
    return "\n".join([f"cpu  {total_busy} 0 0 {total_idle} 0 0 0 0 0 0", *lines, "btime 1795780337"]) + "\n"


def _meminfo(interval: int) -> str:
    # Memory in use grows from about 40 GiB to 100 GiB over the run.
    available_kib = MEM_TOTAL_KIB - (40 + interval) * 1024 * 1024
    return (
        f"MemTotal:       {MEM_TOTAL_KIB} kB\nMemFree:        {available_kib - 4_000_000} kB\n"
        f"MemAvailable:   {available_kib} kB\nBuffers:        1000000 kB\nCached:         3000000 kB\n"
        "SwapTotal:      0 kB\nSwapFree:       0 kB\n"
    )


def write_many_core_run(tmp_path: Path, start_ms: int) -> list[dict]:
    """Record the run under ``tmp_path`` and return its metric points (first at ``start_ms``)."""
    root = tmp_path / "many-core-proc"
    proc = root / "proc"
    proc.mkdir(parents=True)
    clock = ManualClock()
    ticks = [(20_000 + 11 * cpu, 900_000) for cpu in range(CPU_COUNT)]
    points: list[dict] = []
    cpu_collector = memory_collector = None
    for step in range(STEPS):
        if step:
            per_interval = STEP_S * USER_HZ
            busy = [round(core_percent(cpu, step) * per_interval / 100) for cpu in range(CPU_COUNT)]
            ticks = [(b + add, i + per_interval - add) for (b, i), add in zip(ticks, busy)]
            clock.advance(STEP_S)
        (proc / "stat").write_text(_stat(ticks))
        (proc / "meminfo").write_text(_meminfo(step))
        if cpu_collector is None:
            cpu_collector = CpuCollector(procfs_root=str(proc), cgroup_root=str(root / "no-cgroup"), clock=clock)
            memory_collector = MemoryCollector(procfs_root=str(proc))
        now_ms = start_ms + step * STEP_S * 1000
        records = [*cpu_collector.sample(now_ms), *memory_collector.sample(now_ms)]
        for point in metric_points(records):
            points.append({**point, "timestamp": now_ms})
        if step:
            points += _gpu_points(step, now_ms)
    return points


def _gpu_points(interval: int, now_ms: int) -> list[dict]:
    points = []
    for gpu in range(2):
        load = 60 + 30 * math.sin(interval / 6 + gpu)
        for field, value in (
            ("gpu_utilization", round(load, 1)),
            ("used_memory", (30 + gpu * 8) * 2**30),
            ("total_memory", 80 * 2**30),
            ("temperature", round(45 + load / 3, 1)),
            ("power_usage", round(120_000 + 4_000 * load)),  # mW, as NVML reports it
            ("power_limit", 700_000),
        ):
            points.append({"metricName": f"sys.gpu.{gpu}.{field}", "metricValue": value, "timestamp": now_ms})
    return points
