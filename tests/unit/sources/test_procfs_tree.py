"""The process tree walk on generated /proc trees: through ``task/<tid>/children``, and the full scan where those files are absent."""

from __future__ import annotations

import pytest

from comet_agent.collectors.process import ProcessTreeCollector
from comet_agent.sources import procfs
from tests.support.procfs_steps import ManualClock
from tests.support.procfs_tree import JOB_ROOT_PID, FakeProcess, write_host, write_processes

JOB = [JOB_ROOT_PID, 2000, 2100, 2200, 2300]


@pytest.mark.parametrize("with_children", [True, False])
def test_both_walks_find_the_whole_job_and_nothing_else(tmp_path, with_children):
    write_host(tmp_path, 60, with_children=with_children)
    assert procfs.tree_walk_for(str(tmp_path), JOB_ROOT_PID) == (
        procfs.WALK_CHILDREN if with_children else procfs.WALK_SCAN
    )
    tree = procfs.read_process_tree(str(tmp_path), JOB_ROOT_PID)
    assert tree is not None and sorted(tree) == JOB
    assert tree[2200].command_name == "sh -c (x) y" and tree[2200].parent_pid == 2000
    assert tree[JOB_ROOT_PID].threads == 12


def test_the_children_walk_reads_children_of_every_thread(tmp_path):
    """Workers forked from threads 1005 and 1011, not the main thread, are found."""
    write_host(tmp_path, 10)
    assert sorted(procfs.read_children(str(tmp_path), JOB_ROOT_PID, threads=12)) == [2000, 2100, 2300]
    assert procfs.read_children(str(tmp_path), 2000, threads=4) == [2200]
    # A single-threaded process's only children file is its main thread's.
    assert procfs.read_children(str(tmp_path), 2200, threads=1) == []


def test_the_children_walk_reads_only_the_tree(tmp_path):
    """With children files the host's other processes are never read: a process that (falsely)
    names the job's root as its parent in its stat is not part of the walked tree, while the
    scan, which only has parent pids, takes it in."""
    processes = write_host(tmp_path, 30)
    impostor = FakeProcess(7777, JOB_ROOT_PID, command_name="impostor")
    write_processes(tmp_path, [impostor])  # its stat says ppid 1000; no children file of 1000 lists it
    walked = procfs.read_process_tree(str(tmp_path), JOB_ROOT_PID, walk=procfs.WALK_CHILDREN)
    scanned = procfs.read_process_tree(str(tmp_path), JOB_ROOT_PID, walk=procfs.WALK_SCAN)
    assert sorted(walked) == JOB
    assert sorted(scanned) == sorted(JOB + [7777])
    assert len(processes) == 30


def test_a_child_that_exited_mid_walk_is_skipped(tmp_path):
    write_host(tmp_path, 10)
    # 2100 is still listed by its parent's thread, but its /proc directory is gone.
    for path in sorted((tmp_path / "2100").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (tmp_path / "2100").rmdir()
    tree = procfs.read_process_tree(str(tmp_path), JOB_ROOT_PID)
    assert sorted(tree) == [JOB_ROOT_PID, 2000, 2200, 2300]


def test_a_gone_root_gives_none_with_either_walk(tmp_path):
    write_host(tmp_path, 10)
    for walk in (None, procfs.WALK_CHILDREN, procfs.WALK_SCAN):
        assert procfs.read_process_tree(str(tmp_path), 4321, walk=walk) is None


def test_asking_for_the_children_walk_without_children_files_raises(tmp_path):
    write_host(tmp_path, 10, with_children=False)
    with pytest.raises(FileNotFoundError):
        procfs.read_process_tree(str(tmp_path), JOB_ROOT_PID, walk=procfs.WALK_CHILDREN)


def test_parse_children():
    assert procfs.parse_children("") == []
    assert procfs.parse_children("12 345 \n") == [12, 345]


@pytest.mark.parametrize("with_children", [True, False])
def test_the_collector_samples_the_same_tree_either_way(tmp_path, with_children):
    write_host(tmp_path, 200, with_children=with_children)
    collector = ProcessTreeCollector(
        JOB_ROOT_PID,
        procfs_root=str(tmp_path),
        clock=ManualClock(),
        gpu_memory_by_pid=lambda: {},
        clock_ticks_per_s=100,
        page_size_bytes=4096,
    )
    assert collector.walk == (procfs.WALK_CHILDREN if with_children else procfs.WALK_SCAN)
    [sample] = collector.sample(1_000)
    assert sample.process_count == 5
    assert sample.threads == 12 + 4 + 4 + 1 + 1
    assert sample.rss_bytes == (250_000 + 60_000 + 60_000 + 500 + 8000) * 4096
    assert sample.open_files == 40 + 10 + 10 + 3 + 3


def test_between_full_walks_only_the_threads_seen_forking_are_read(tmp_path):
    """ForkingThreads: a child of a thread already seen forking (or of the main thread) is found
    at once; a child of a thread never seen forking, at the next full walk, at most
    ``full_every`` walks late; a child that ended is gone at once."""
    root = FakeProcess(500, 1, threads=6, extra_tids=[501, 502, 503, 504, 505])
    worker = FakeProcess(600, 500, forked_by=503)
    write_processes(tmp_path, [root, worker])
    forking = procfs.ForkingThreads(full_every=4)

    def walk() -> list[int]:
        tree = procfs.read_process_tree(str(tmp_path), 500, walk=procfs.WALK_CHILDREN, forking=forking)
        assert tree is not None
        return sorted(tree)

    assert walk() == [500, 600]  # walk 1 (full): 503 is seen forking
    write_processes(tmp_path, [root, worker, FakeProcess(601, 500, forked_by=503), FakeProcess(602, 500)])
    assert walk() == [500, 600, 601, 602]  # walk 2: 503 and the main thread are read
    write_processes(
        tmp_path,
        [
            root,
            worker,
            FakeProcess(601, 500, forked_by=503),
            FakeProcess(602, 500),
            FakeProcess(603, 500, forked_by=505),
        ],
    )
    assert walk() == [500, 600, 601, 602]  # walk 3: 505 was never seen forking
    assert walk() == [500, 600, 601, 602]  # walk 4
    assert walk() == [500, 600, 601, 602, 603]  # walk 5 (full): found, and 505 is remembered
    (tmp_path / "500" / "task" / "505" / "children").write_text("")  # 603 ended
    assert walk() == [500, 600, 601, 602]  # walk 6: 505 is read again at once


def test_the_collector_finds_a_child_of_a_new_forking_thread_within_its_full_walks(tmp_path):
    root = FakeProcess(500, 1, threads=3, extra_tids=[501, 502])
    write_processes(tmp_path, [root])
    collector = ProcessTreeCollector(500, procfs_root=str(tmp_path), clock=ManualClock(), full_children_every=3)
    counts = []
    for tick in range(6):
        if tick == 1:
            write_processes(tmp_path, [root, FakeProcess(700, 500, forked_by=502)])
        [sample] = collector.sample(tick * 1000)
        counts.append(sample.process_count)
    assert counts == [1, 1, 1, 2, 2, 2]  # seen at the full walk of tick 3, then every tick
