"""Kernel files kept open between ticks (``procfs.KernelFiles``): on the live /proc of this
machine, with real child processes; fixture trees are read afresh each time."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from comet_agent.sources import procfs

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs a Linux /proc")


def test_a_kept_file_is_read_afresh_each_time():
    files = procfs.KernelFiles("/proc")
    assert files.keep
    path = f"/proc/{os.getpid()}/stat"
    first = procfs.parse_pid_stat(files.read(path).decode())
    # Burn some CPU so the counters move, then read the same descriptor again.
    deadline = procfs.parse_pid_stat(files.read(path).decode()).cpu_ticks + 2
    while procfs.parse_pid_stat(files.read(path).decode()).cpu_ticks < deadline:
        sum(range(10_000))
    assert procfs.parse_pid_stat(files.read(path).decode()).cpu_ticks >= first.cpu_ticks + 2
    assert len(files) == 1  # one descriptor, re-read
    files.close()
    assert len(files) == 0


def test_a_file_of_an_exited_process_fails_and_is_closed():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    files = procfs.KernelFiles("/proc")
    path = f"/proc/{child.pid}/stat"
    try:
        assert procfs.parse_pid_stat(files.read(path).decode()).pid == child.pid
    finally:
        child.kill()
        child.wait()
    with pytest.raises(OSError):
        files.read(path)
    assert len(files) == 0


def test_sweep_closes_what_was_not_read_since_the_last_sweep():
    files = procfs.KernelFiles("/proc")
    files.read("/proc/loadavg")
    files.read("/proc/meminfo")
    files.sweep()
    assert len(files) == 2
    files.read("/proc/loadavg")
    files.sweep()
    assert len(files) == 1
    assert files.read("/proc/meminfo").startswith(b"MemTotal:")  # opened anew
    files.close()


def test_a_forked_child_keeps_none_of_its_parents_files():
    files = procfs.KernelFiles("/proc")
    files.read(f"/proc/{os.getpid()}/stat")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report how many files it kept, then leave at once
        os.write(write, str(len(files)).encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 16) == b"0"
    os.close(read)
    assert len(files) == 1
    files.close()


def test_a_fixture_tree_is_opened_per_read_so_swapped_files_are_seen(tmp_path):
    (tmp_path / "stat").write_text("cpu  1 0 1 8 0 0 0 0 0 0\n")
    (tmp_path / "loadavg").write_text("0.50 0.25 0.10 1/100 42\n")
    assert not procfs.is_live_procfs(str(tmp_path))
    assert procfs.read_loadavg(str(tmp_path)) == (0.5, 0.25, 0.1)
    replacement = tmp_path / "loadavg.new"
    replacement.write_text("1.50 1.25 1.10 1/100 42\n")
    os.replace(replacement, tmp_path / "loadavg")
    assert procfs.read_loadavg(str(tmp_path)) == (1.5, 1.25, 1.1)


def test_threads_reading_one_file_share_one_descriptor():
    files = procfs.KernelFiles("/proc")
    results: list[bytes] = []

    def read() -> None:
        results.append(files.read("/proc/loadavg"))

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(files) == 1
    files.close()


def test_open_file_count_matches_the_listing():
    held = [open(os.devnull) for _ in range(5)]
    try:
        count = procfs.read_open_file_count("/proc", os.getpid())
        listed = len(os.listdir(f"/proc/{os.getpid()}/fd"))
        # The listing itself holds one descriptor open while it runs.
        assert count in (listed, listed - 1)
        assert count >= 5 + 3
    finally:
        for handle in held:
            handle.close()


def test_pid_alive_through_a_kept_file_sees_exit_and_zombies():
    files = procfs.KernelFiles("/proc")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert procfs.pid_alive(child.pid, files=files)
        assert procfs.pid_alive(child.pid, files=files)  # asked again through the same descriptor
        assert len(files) == 1
        child.kill()
        # Killed, not yet reaped: a zombie is not alive.
        deadline = time.monotonic() + 10
        while procfs.pid_alive(child.pid, files=files) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not procfs.pid_alive(child.pid, files=files)
    finally:
        child.kill()
        child.wait()
    assert not procfs.pid_alive(child.pid, files=files)  # reaped: the kept file fails, and is closed
    assert len(files) == 0


def test_no_more_than_max_kept_files_stay_open_and_the_rest_are_read_per_call():
    files = procfs.KernelFiles("/proc", max_kept=2)
    paths = ["/proc/loadavg", "/proc/meminfo", "/proc/uptime"]
    assert all(files.read(path) for path in paths)
    assert len(files) == 2  # the third was opened, read and closed
    assert files.read("/proc/uptime")  # still readable
    files.sweep()
    assert len(files) == 2  # both kept files were read since the last sweep
    files.sweep()
    assert len(files) == 0  # neither was read since: closed, which makes room
    files.read("/proc/uptime")
    assert len(files) == 1
    files.close()


def test_a_threads_cpu_clock_is_its_cpu_time_and_refuses_a_thread_not_ours():
    import threading
    import time

    from comet_agent.sources.procfs import thread_cpu_time_ns

    own_before = time.thread_time_ns()
    clock_ns = thread_cpu_time_ns(threading.get_native_id())
    own_after = time.thread_time_ns()
    assert own_before <= clock_ns <= own_after
    worker = threading.Thread(target=lambda: None)
    worker.start()
    worker.join()  # returns once Python is done with it; the kernel thread ends just after
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/self/task/{worker.native_id}") and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(OSError):
        thread_cpu_time_ns(1)  # init's thread: not in this process
    with pytest.raises(OSError):
        thread_cpu_time_ns(worker.native_id)  # ended: an error, never a stale handle
