"""Writes the ``big-host-128cpu`` /proc scenario: a 128-CPU host whose figures encode their CPU.

Hosts with more than 99 CPUs name their per-CPU series ``sys.cpu.percent.100`` and up, where
ordering by name and by number part ways. In this scenario CPU ``n`` is busy ``5 * (n + 1)`` of
the 1000 ticks between ``step0`` and ``step1``, so ``sys.cpu.percent.NNN`` reads exactly
``NNN / 2`` percent: a value under another CPU's name shows at once. The host also has swap
(``sys.swap.*``) and a load in the nineties.

Regenerate the checked-in tree (a test checks that it matches this script)::

    python -m tests.support.big_host_procfs
"""

from __future__ import annotations

from pathlib import Path

SCENARIO = "big-host-128cpu"
CPU_COUNT = 128
INTERVAL_TICKS = 1000  # per CPU between step0 and step1 (10 s at USER_HZ 100)
KIB = 1024


def busy_ticks_in_interval(cpu_number: int) -> int:
    """Busy ticks of CPU ``cpu_number`` between step0 and step1 (its percent is this / 10)."""
    return 5 * (cpu_number + 1)


def expected_percent(metric_index: int) -> float:
    """What ``sys.cpu.percent.<metric_index>`` must read on this host (``metric_index`` = CPU + 1)."""
    return 100.0 * busy_ticks_in_interval(metric_index - 1) / INTERVAL_TICKS


def _stat(step: int, cpu_count: int) -> str:
    per_cpu = []
    for number in range(cpu_count):
        user, system, idle, iowait = 20_000 + 7 * number, 6_000, 900_000, 300
        if step == 1:
            busy = busy_ticks_in_interval(number)
            user += busy
            idle += INTERVAL_TICKS - busy
        per_cpu.append((user, 0, system, idle, iowait, 0, 0, 0, 0, 0))
    total = [sum(column) for column in zip(*per_cpu)]
    lines = ["cpu  " + " ".join(map(str, total))]
    lines += [f"cpu{number} " + " ".join(map(str, fields)) for number, fields in enumerate(per_cpu)]
    lines += [
        f"ctxt {88_000_000 + step * 1_500_000}",
        "btime 1795780337",
        f"processes {412_000 + step * 40}",
        "procs_running 97",
        "procs_blocked 1",
    ]
    return "\n".join(lines) + "\n"


def _meminfo(step: int) -> str:
    total_kib = 1_056_755_456  # 1008 GiB
    available_kib = 700_000_000 - step * 1_000_000
    swap_total_kib = 8_388_604
    swap_free_kib = 6_291_452 - step * 4_096
    fields = [
        ("MemTotal", total_kib),
        ("MemFree", available_kib - 40_000_000),
        ("MemAvailable", available_kib),
        ("Buffers", 2_000_000),
        ("Cached", 60_000_000),
        ("SwapCached", 120_000),
        ("SwapTotal", swap_total_kib),
        ("SwapFree", swap_free_kib),
    ]
    return "".join(f"{name + ':':<16}{value:>10} kB\n" for name, value in fields)


def _loadavg(step: int) -> str:
    return ("96.50 90.25 80.00 97/4100 123456\n", "97.10 90.40 80.05 98/4102 123470\n")[step]


def write_big_host_procfs(scenario_dir: Path, cpu_count: int = CPU_COUNT) -> None:
    """Write ``step0/proc`` and ``step1/proc`` (``stat``, ``meminfo``, ``loadavg``) under ``scenario_dir``."""
    for step in (0, 1):
        proc = Path(scenario_dir) / f"step{step}" / "proc"
        proc.mkdir(parents=True, exist_ok=True)
        (proc / "stat").write_text(_stat(step, cpu_count))
        (proc / "meminfo").write_text(_meminfo(step))
        (proc / "loadavg").write_text(_loadavg(step))


if __name__ == "__main__":
    from tests.support.procfs_steps import PROCFS_FIXTURES

    write_big_host_procfs(PROCFS_FIXTURES / SCENARIO)
    print(f"wrote {PROCFS_FIXTURES / SCENARIO}")
