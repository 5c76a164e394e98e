"""Pure /proc parsers on literal text, and the readers on recorded fixture trees."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from comet_agent.sources import procfs
from tests.support.procfs_steps import PROCFS_FIXTURES

VM = PROCFS_FIXTURES / "vm-2cpu" / "step0"


def test_parse_stat_counts_iowait_as_idle_and_leaves_guest_out_of_total():
    reading = procfs.parse_stat("cpu  10 1 5 100 20 2 3 4 7 1\ncpu0 10 1 5 100 20 2 3 4 7 1\nctxt 5\n")
    # busy = user+nice+system+irq+softirq+steal; guest (7) and guest_nice (1) are inside user/nice
    assert reading.aggregate == procfs.CpuTimes(busy_ticks=25, total_ticks=145)
    assert reading.per_cpu == {0: procfs.CpuTimes(busy_ticks=25, total_ticks=145)}


def test_parse_stat_keeps_cpu_numbers_with_gaps():
    reading = procfs.parse_stat("cpu  1 0 0 1 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0\ncpu7 2 0 0 2 0 0 0 0\ncpu12 3 0 0 3\n")
    assert sorted(reading.per_cpu) == [0, 7, 12]
    assert reading.per_cpu[12] == procfs.CpuTimes(busy_ticks=3, total_ticks=6)


def test_read_stat_on_recorded_vm():
    reading = procfs.read_stat(str(VM / "proc"))
    assert sorted(reading.per_cpu) == [0, 1]
    # recorded line: cpu  3404 0 1715 92776 198 0 33 24 0 0
    assert reading.aggregate == procfs.CpuTimes(busy_ticks=3404 + 1715 + 33 + 24, total_ticks=3404 + 1715 + 92776 + 198 + 33 + 24)


def test_parse_meminfo_converts_kilobytes_to_bytes_and_keeps_plain_counts():
    values = procfs.parse_meminfo("MemTotal:       1000 kB\nMemAvailable:    250 kB\nHugePages_Total:       4\n")
    assert values == {"MemTotal": 1_024_000, "MemAvailable": 256_000, "HugePages_Total": 4}


def test_read_meminfo_on_recorded_vm():
    values = procfs.read_meminfo(str(VM / "proc"))
    assert values["MemTotal"] == 24684096 * 1024
    assert 0 < values["MemAvailable"] <= values["MemTotal"]


def test_parse_loadavg():
    assert procfs.parse_loadavg("0.50 1.25 2.00 3/456 7890\n") == (0.5, 1.25, 2.0)


def test_parse_loadavg_rejects_garbage_with_the_text_in_the_message():
    with pytest.raises(ValueError, match="three load averages"):
        procfs.parse_loadavg("0.5\n")


def test_parse_diskstats_counts_512_byte_sectors():
    text = "   8       0 sda 100 0 8 10 50 0 16 5 0 20 30 0 0 0 0\n"
    assert procfs.parse_diskstats(text) == {"sda": procfs.DiskCounters(read_bytes=8 * 512, written_bytes=16 * 512)}


@pytest.mark.parametrize(
    ("name", "whole_disk"),
    [
        ("sda", True), ("sda1", False), ("vdb", True), ("vdb12", False), ("xvda", True), ("xvda1", False),
        ("nvme0n1", True), ("nvme0n1p2", False), ("mmcblk0", True), ("mmcblk0p1", False),
        ("dm-0", False), ("md127", False), ("loop3", False), ("zram0", False), ("ram0", False), ("sr0", True),
    ],
)
def test_is_whole_disk_name(name, whole_disk):
    assert procfs.is_whole_disk_name(name) is whole_disk


def test_read_whole_disk_names_keeps_devices_backed_by_hardware():
    names = procfs.read_whole_disk_names(str(PROCFS_FIXTURES / "disks-partitions-lvm" / "step0" / "sys"))
    assert names == frozenset({"sda", "nvme0n1", "sr0"})


def test_read_whole_disk_names_is_none_without_sysfs(tmp_path):
    assert procfs.read_whole_disk_names(str(tmp_path)) is None


def test_parse_net_dev_reads_bytes_of_both_directions():
    interfaces = procfs.read_net_dev(str(VM / "proc"))
    assert set(interfaces) == {"lo", "ifb0", "ifb1", "eth0"}
    assert interfaces["eth0"].received_bytes > 0 and interfaces["eth0"].sent_bytes > 0
    assert interfaces["ifb0"] == procfs.NetworkCounters(received_bytes=0, sent_bytes=0)


def test_parse_pid_stat_handles_spaces_and_parentheses_in_the_command_name():
    stat = procfs.read_pid_stat(str(PROCFS_FIXTURES / "process-tree" / "step0" / "proc"), 103)
    assert stat.command_name == "sh -c (x) y"
    assert (stat.pid, stat.parent_pid, stat.cpu_ticks, stat.threads, stat.start_ticks, stat.rss_pages) == (103, 101, 10, 1, 5200, 500)


def test_parse_pid_stat_on_a_real_kernel_line():
    line = "6169 (cat) R 6167 6167 2725 0 -1 4194304 100 0 0 0 7 3 0 0 20 0 1 0 48295 3133440 380 18446744073709551615 1 1 0 0\n"
    stat = procfs.parse_pid_stat(line)
    assert (stat.pid, stat.command_name, stat.parent_pid, stat.cpu_ticks, stat.start_ticks, stat.rss_pages) == (6169, "cat", 6167, 10, 48295, 380)


def test_parse_pid_stat_rejects_truncated_line():
    with pytest.raises(ValueError):
        procfs.parse_pid_stat("12 (x) S 1 2")


def test_read_process_tree_follows_parent_pids_to_every_descendant():
    tree = procfs.read_process_tree(str(PROCFS_FIXTURES / "process-tree" / "step0" / "proc"), 100)
    assert tree is not None and sorted(tree) == [100, 101, 102, 103]


def test_read_process_tree_is_none_when_root_is_gone():
    assert procfs.read_process_tree(str(PROCFS_FIXTURES / "process-tree" / "step0" / "proc"), 999) is None


def test_read_open_file_count():
    assert procfs.read_open_file_count(str(PROCFS_FIXTURES / "process-tree" / "step0" / "proc"), 100) == 40


def test_parse_cgroup_v2_path_ignores_v1_lines():
    assert procfs.parse_cgroup_v2_path("4:memory:/x\n1:cpu:/\n0::/kubepods/pod1/ctr\n") == "/kubepods/pod1/ctr"
    assert procfs.parse_cgroup_v2_path("4:memory:/x\n1:cpu:/\n") is None


def test_parse_cpu_max():
    assert procfs.parse_cpu_max("max 100000\n") is None
    assert procfs.parse_cpu_max("150000 100000\n") == (150000, 100000)
    with pytest.raises(ValueError):
        procfs.parse_cpu_max("1 2 3")


def test_parse_cpu_stat_usage_usec():
    assert procfs.parse_cpu_stat_usage_usec("usage_usec 123\nuser_usec 100\n") == 123
    with pytest.raises(ValueError, match="usage_usec"):
        procfs.parse_cpu_stat_usage_usec("user_usec 100\n")


def test_find_cgroup_cpu_limit_takes_the_tightest_quota_on_the_path():
    cgroup_root = str(PROCFS_FIXTURES / "cgroup-quota" / "step0" / "cgroup")
    limit = procfs.find_cgroup_cpu_limit(cgroup_root, "/kubepods/pod1/ctr")
    assert limit is not None
    assert limit.quota_cpus == 2.0
    assert limit.directory.endswith("kubepods/pod1")


def test_find_cgroup_cpu_limit_none_without_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert procfs.find_cgroup_cpu_limit(str(tmp_path), "/") is None


def test_find_cgroup_cpu_limit_falls_back_to_root_for_an_invisible_path(tmp_path):
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    limit = procfs.find_cgroup_cpu_limit(str(tmp_path), "/not/visible/here")
    assert limit is not None and limit.quota_cpus == 0.5


def test_readers_raise_oserror_on_missing_files(tmp_path):
    for reader in (procfs.read_stat, procfs.read_meminfo, procfs.read_loadavg, procfs.read_diskstats, procfs.read_net_dev):
        with pytest.raises(FileNotFoundError):
            reader(str(tmp_path))


@given(
    command_name=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\x00"), max_size=15),
    parent_pid=st.integers(min_value=0, max_value=4_194_304),
    user_ticks=st.integers(min_value=0, max_value=2**40),
    system_ticks=st.integers(min_value=0, max_value=2**40),
)
def test_parse_pid_stat_recovers_fields_whatever_the_command_name(command_name, parent_pid, user_ticks, system_ticks):
    # the kernel writes comm verbatim (up to 15 bytes): spaces, parentheses and digits included
    line = f"77 ({command_name}) S {parent_pid} 77 77 0 -1 4194560 1 0 0 0 {user_ticks} {system_ticks} 0 0 20 0 3 0 999 1 42\n"
    stat = procfs.parse_pid_stat(line)
    assert stat.command_name == command_name
    assert (stat.pid, stat.parent_pid, stat.cpu_ticks, stat.threads, stat.start_ticks, stat.rss_pages) == (
        77, parent_pid, user_ticks + system_ticks, 3, 999, 42,
    )
