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
    assert reading.aggregate == procfs.CpuTimes(
        busy_ticks=3404 + 1715 + 33 + 24, total_ticks=3404 + 1715 + 92776 + 198 + 33 + 24
    )


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
        ("sda", True),
        ("sda1", False),
        ("vdb", True),
        ("vdb12", False),
        ("xvda", True),
        ("xvda1", False),
        ("nvme0n1", True),
        ("nvme0n1p2", False),
        ("mmcblk0", True),
        ("mmcblk0p1", False),
        ("dm-0", False),
        ("md127", False),
        ("loop3", False),
        ("zram0", False),
        ("ram0", False),
        ("sr0", True),
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
    assert (stat.pid, stat.parent_pid, stat.cpu_ticks, stat.threads, stat.start_ticks, stat.rss_pages) == (
        103,
        101,
        10,
        1,
        5200,
        500,
    )


def test_parse_pid_stat_on_a_real_kernel_line():
    line = "6169 (cat) R 6167 6167 2725 0 -1 4194304 100 0 0 0 7 3 0 0 20 0 1 0 48295 3133440 380 18446744073709551615 1 1 0 0\n"
    stat = procfs.parse_pid_stat(line)
    assert (stat.pid, stat.command_name, stat.parent_pid, stat.cpu_ticks, stat.start_ticks, stat.rss_pages) == (
        6169,
        "cat",
        6167,
        10,
        48295,
        380,
    )


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
    for reader in (
        procfs.read_stat,
        procfs.read_meminfo,
        procfs.read_loadavg,
        procfs.read_diskstats,
        procfs.read_net_dev,
    ):
        with pytest.raises(FileNotFoundError):
            reader(str(tmp_path))


@given(
    command_name=st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\x00"), max_size=15
    ),
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
        77,
        parent_pid,
        user_ticks + system_ticks,
        3,
        999,
        42,
    )


# --- /proc/cpuinfo and meminfo totals (moved from tests/unit/collectors/test_host.py) -------------

FIXTURES = PROCFS_FIXTURES.parent


def test_parse_cpuinfo_x86_two_sockets_with_hyperthreads():
    info = procfs.parse_cpuinfo((FIXTURES / "cpuinfo" / "xeon-2s-2c-ht").read_text())
    assert info.model == "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz"
    assert (info.logical_count, info.physical_count) == (8, 4)


def test_parse_cpuinfo_arm_takes_the_board_model_and_has_no_core_ids():
    info = procfs.parse_cpuinfo((FIXTURES / "cpuinfo" / "raspberry-pi-4").read_text())
    assert info.model == "Raspberry Pi 4 Model B Rev 1.4"
    assert (info.logical_count, info.physical_count) == (4, None)


def test_parse_cpuinfo_empty_is_all_none():
    assert procfs.parse_cpuinfo("") == procfs.parse_cpuinfo("garbage without colons")
    assert procfs.parse_cpuinfo("").model is None


def test_read_cpuinfo_decodes_utf8_model_names(tmp_path):
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nmodel name\t: Čip 9000\n", encoding="utf-8")
    assert procfs.read_cpuinfo(str(tmp_path)).model == "Čip 9000"
    with pytest.raises(FileNotFoundError):
        procfs.read_cpuinfo(str(tmp_path / "absent"))


def test_parse_meminfo_total_bytes():
    # formerly parse_meminfo_total_bytes in collectors/host.py: the host snapshot uses MemTotal of parse_meminfo
    assert procfs.parse_meminfo("MemTotal:       24684096 kB\n").get("MemTotal") == 24684096 * 1024
    assert procfs.parse_meminfo("MemFree: 1 kB\n").get("MemTotal") is None


def test_read_text_decodes_with_the_requested_encoding(tmp_path):
    path = tmp_path / "f"
    path.write_bytes("é\n".encode("utf-8"))
    assert procfs.read_text(str(path)) == "\ufffd\ufffd\n"  # ASCII by default: counter files
    assert procfs.read_text(str(path), encoding="utf-8") == "é\n"


# --- /proc/<pid> identity -------------------------------------------------------------------------


def test_parse_environ():
    assert procfs.parse_environ(b"A=1\0B=x=y\0\0broken\0") == {"A": "1", "B": "x=y"}


def test_parse_cmdline_drops_the_trailing_terminators_and_keeps_empty_arguments():
    assert procfs.parse_cmdline(b"python\0train.py\0\0--tag\0\0") == ["python", "train.py", "", "--tag"]
    assert procfs.parse_cmdline(b"") == []


def test_parse_status_uid():
    assert procfs.parse_status_uid("Name:\tpython\nUid:\t1000\t1000\t1000\t1000\n") == 1000
    assert procfs.parse_status_uid("Name:\tpython\n") is None


def test_pid_readers_on_a_fixture_entry(tmp_path):
    entry = tmp_path / "42"
    entry.mkdir()
    (entry / "exe").symlink_to("/usr/bin/python3 (deleted)")
    (entry / "cwd").symlink_to("/work")
    (entry / "cmdline").write_bytes(b"python3\0train.py\0")
    (entry / "environ").write_bytes(b"USER=ada\0")
    (entry / "status").write_text("Uid:\t1001\t1001\t1001\t1001\n")
    root = str(tmp_path)
    assert procfs.read_pid_executable(root, 42) == "/usr/bin/python3"
    assert procfs.read_pid_cwd(root, 42) == "/work"
    assert procfs.read_pid_cmdline(root, 42) == ["python3", "train.py"]
    assert procfs.read_pid_environ(root, 42) == {"USER": "ada"}
    assert procfs.read_pid_uid(root, 42) == 1001
    for reader in (
        procfs.read_pid_executable,
        procfs.read_pid_cwd,
        procfs.read_pid_cmdline,
        procfs.read_pid_environ,
        procfs.read_pid_uid,
    ):
        with pytest.raises(FileNotFoundError):
            reader(root, 43)


# --- cgroup membership, v1 and v2 limits (parsers moved from collectors/host.py) ---------------------


def test_parse_proc_cgroup_maps_v1_controllers_and_the_v2_path():
    membership = procfs.parse_proc_cgroup("4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n1:name=systemd:/x\n0::/\n")
    assert membership.unified_path == "/"
    assert membership.v1_paths == {
        "memory": "/docker/abc",
        "cpu": "/docker/abc",
        "cpuacct": "/docker/abc",
        "name=systemd": "/x",
    }
    assert procfs.parse_proc_cgroup("0::\n").unified_path == "/"  # an empty v2 path is the root
    assert procfs.parse_proc_cgroup("garbage\n") == procfs.CgroupMembership(unified_path=None, v1_paths={})


def test_read_cgroup_membership_of_self_or_a_pid(tmp_path):
    for entry, line in (("self", "0::/a"), ("7", "0::/b")):
        (tmp_path / entry).mkdir()
        (tmp_path / entry / "cgroup").write_text(line + "\n")
    assert procfs.read_cgroup_membership(str(tmp_path)).unified_path == "/a"
    assert procfs.read_cgroup_membership(str(tmp_path), 7).unified_path == "/b"
    with pytest.raises(FileNotFoundError):
        procfs.read_cgroup_membership(str(tmp_path), 8)


@pytest.mark.parametrize("text, cores", [("150000 100000\n", 1.5), ("max 100000\n", None), ("", None), ("x y", None)])
def test_parse_cpu_max_cpus(text, cores):
    # formerly parse_cpu_max in collectors/host.py
    assert procfs.parse_cpu_max_cpus(text) == cores


@pytest.mark.parametrize(
    "quota, period, cores",
    [("200000\n", "100000\n", 2.0), ("-1\n", "100000\n", None), ("", "", None), ("5", "0", None)],
)
def test_parse_cfs_quota_cpus(quota, period, cores):
    assert procfs.parse_cfs_quota_cpus(quota, period) == cores


@pytest.mark.parametrize(
    "text, limit", [("4294967296\n", 4294967296), ("max\n", None), ("9223372036854771712\n", None)]
)
def test_parse_memory_limit(text, limit):
    # formerly parse_memory_limit in collectors/host.py
    assert procfs.parse_cgroup_memory_limit_bytes(text) == limit


def test_resolve_cgroup_directory(tmp_path):
    (tmp_path / "job.slice").mkdir()
    (tmp_path / "job.slice" / "cpu.max").write_text("max 100000\n")
    root = str(tmp_path)
    assert procfs.resolve_cgroup_directory(root, "/job.slice") == str(tmp_path / "job.slice")
    assert procfs.resolve_cgroup_directory(root, "/job.slice", "cpu.max") == str(tmp_path / "job.slice")
    # the directory exists but lacks the file: the visible root is the job's cgroup (namespace)
    assert procfs.resolve_cgroup_directory(root, "/job.slice", "memory.max") == root
    assert procfs.resolve_cgroup_directory(root, "/not/visible") == root
    assert procfs.resolve_cgroup_directory(root, "/../../escape") == root


def test_read_cgroup_limits_v2_of_a_watched_pid(tmp_path):
    (tmp_path / "proc" / "7").mkdir(parents=True)
    (tmp_path / "proc" / "7" / "cgroup").write_text("0::/job.slice\n")
    cgroup = tmp_path / "cgroup"
    (cgroup / "job.slice").mkdir(parents=True)
    (cgroup / "cgroup.controllers").write_text("cpu memory\n")
    (cgroup / "job.slice" / "cpu.max").write_text("50000 100000\n")
    (cgroup / "memory.max").write_text("1073741824\n")  # read at the root: the job's directory has none
    limits = procfs.read_cgroup_limits(str(tmp_path / "proc"), str(cgroup), 7)
    assert limits == procfs.CgroupLimits(version=2, cpu_quota_cpus=0.5, memory_limit_bytes=1073741824)


def test_read_cgroup_limits_v1_and_none(tmp_path):
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "cgroup").write_text("4:memory:/j\n3:cpu:/j\n")
    cgroup = tmp_path / "cgroup"
    (cgroup / "cpu" / "j").mkdir(parents=True)
    (cgroup / "cpu" / "j" / "cpu.cfs_quota_us").write_text("-1\n")
    (cgroup / "cpu" / "j" / "cpu.cfs_period_us").write_text("100000\n")
    (cgroup / "memory" / "j").mkdir(parents=True)
    (cgroup / "memory" / "j" / "memory.limit_in_bytes").write_text("2147483648\n")
    limits = procfs.read_cgroup_limits(str(tmp_path / "proc"), str(cgroup))
    assert limits == procfs.CgroupLimits(version=1, cpu_quota_cpus=None, memory_limit_bytes=2147483648)
    assert procfs.read_cgroup_limits(str(tmp_path / "absent"), str(cgroup)) == procfs.CgroupLimits(None, None, None)


def test_the_memory_sample_parse_agrees_with_the_full_parse_on_every_recorded_meminfo():
    from pathlib import Path

    meminfos = sorted(Path(__file__).resolve().parents[2].glob("fixtures/procfs/*/step*/proc/meminfo"))
    assert meminfos
    live = Path("/proc/meminfo")
    for path in [*meminfos, *([live] if live.exists() else [])]:
        text = path.read_text()
        full = procfs.parse_meminfo(text)
        sample = procfs.parse_meminfo_for_sample(text)
        assert sample == {k: v for k, v in full.items() if k in sample}, path
        assert "MemTotal" in sample, path
