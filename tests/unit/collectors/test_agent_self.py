"""AgentSelfCollector: the agent's own CPU and RSS from its recorded stat, and from the live process."""

from __future__ import annotations

import os
import threading
import time

import pytest

from comet_agent.collectors import Unavailable
from comet_agent.collectors.agent_self import AgentSelfCollector, agent_thread_ids
from tests.support.procfs_steps import ManualClock, ProcfsSteps


def test_agent_self_cpu_rate_from_two_readings(tmp_path):
    steps, clock = ProcfsSteps("process-tree", tmp_path), ManualClock()
    collector = AgentSelfCollector(
        procfs_root=steps.proc, pid=4242, clock=clock, clock_ticks_per_s=100, page_size_bytes=4096
    )
    assert (collector.name, collector.cadence) == ("agent_self", "cpu")
    [first] = collector.sample(0)
    assert first.cpu_percent is None  # a rate needs two readings
    assert first.rss_bytes == 12_000 * 4096
    steps.advance_to(1)
    clock.advance(0.5)
    [second] = collector.sample(500)
    assert second.cpu_percent == pytest.approx(100.0 * 3 / 100 / 0.5)  # 3 ticks in half a second
    assert second.rss_bytes == 12_500 * 4096
    assert second.pid == 4242


def test_agent_self_reads_the_live_process_by_default():
    collector = AgentSelfCollector()
    [sample] = collector.sample(1)
    assert sample.pid == os.getpid()
    assert sample.rss_bytes > 1024 * 1024  # a Python interpreter holds more than 1 MiB


def test_agent_self_unavailable_without_proc(tmp_path):
    with pytest.raises(Unavailable, match="stat"):
        AgentSelfCollector(procfs_root=str(tmp_path), pid=1)


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_in_process_only_the_agents_own_threads_count():
    """Live: a busy thread named as the agent's counts, a busy "training" thread does not."""
    collector = AgentSelfCollector(threads=agent_thread_ids)
    collector.sample(0)
    training = threading.Thread(target=_spin, args=(0.4,), name="training-loop")
    training.start()
    training.join()
    [quiet] = collector.sample(1)
    agent = threading.Thread(target=_spin, args=(0.4,), name="comet-agent-busy")
    agent.start()
    agent.join()  # ended before the sample: a thread gone since the last one loses its interval
    [after_gone] = collector.sample(2)
    ready, done = threading.Event(), threading.Event()

    def busy_until_sampled() -> None:
        _spin(0.4)
        ready.set()
        done.wait(10)

    agent = threading.Thread(target=busy_until_sampled, name="comet-agent-busy")
    agent.start()
    ready.wait(10)
    [busy] = collector.sample(3)  # a thread seen for the first time counts all its CPU time
    done.set()
    agent.join()
    assert quiet.cpu_percent is not None and quiet.cpu_percent < 20, quiet
    assert after_gone.cpu_percent is not None and after_gone.cpu_percent < 20, after_gone
    assert busy.cpu_percent is not None and busy.cpu_percent >= 20, busy
    assert quiet.rss_bytes is None and busy.rss_bytes is None  # shared with the job: not reported


def test_in_process_cpu_comes_from_the_threads_cpu_clocks_to_the_microsecond():
    """Live, in-process: each agent thread's CPU clock, not its stat's 10 ms ticks, so a thread
    that spent 3 ms is reported as 3 ms (ticks would say 0 or 10)."""
    clock = ManualClock()
    spent_s: list[float] = []
    go, sampled = threading.Event(), threading.Event()

    def agent_thread() -> None:
        go.wait(10)
        before = time.thread_time()
        _spin(0.003)
        spent_s.append(time.thread_time() - before)
        sampled.wait(10)

    worker = threading.Thread(target=agent_thread, name="comet-agent-under-test")
    worker.start()
    collector = AgentSelfCollector(clock=clock, threads=lambda: [worker.native_id])
    collector.sample(0)
    go.set()
    while not spent_s:
        time.sleep(0.01)
    clock.advance(1.0)
    [sample] = collector.sample(1000)
    sampled.set()
    worker.join()
    assert sample.cpu_percent == pytest.approx(100.0 * spent_s[0], abs=0.1)  # within 1 ms of CPU


def test_in_process_under_a_fixture_tree_reads_the_threads_stat_files(tmp_path):
    """The same figure from ``task/<tid>/stat`` where the tree is not the live kernel's."""
    clock = ManualClock()

    def write(tid_ticks: dict[int, int]) -> None:
        for tid, ticks in tid_ticks.items():
            task = tmp_path / "4242" / "task" / str(tid)
            task.mkdir(parents=True, exist_ok=True)
            fields = ["S", "1"] + ["0"] * 9 + [str(ticks), "0"] + ["0"] * 6 + [str(1000 + tid), "0", "100"]
            (task / "stat").write_text(f"{tid} (comet-agent-x) {' '.join(fields)}\n")
        (tmp_path / "4242" / "stat").write_text((tmp_path / "4242" / "task" / "4243" / "stat").read_text())

    write({4243: 10, 4244: 20})
    collector = AgentSelfCollector(
        procfs_root=str(tmp_path), pid=4242, clock=clock, clock_ticks_per_s=100, threads=lambda: [4243, 4244]
    )
    collector.sample(0)
    write({4243: 15, 4244: 21})
    clock.advance(2.0)
    [sample] = collector.sample(2000)
    assert sample.cpu_percent == pytest.approx(100.0 * 6 / 100 / 2.0)  # 6 ticks over 2 s
    assert sample.rss_bytes is None
