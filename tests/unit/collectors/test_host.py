"""Host facts from fixture /proc and cgroup trees, recorded os-release files and real child processes."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from comet_agent.collectors.host import (
    HostCollector,
    cluster_identity,
    host_additional_info,
    interface_ips,
    resolve_user,
    routing_ip,
)
from comet_agent.redaction import MASK

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
Address = namedtuple("Address", "family address netmask broadcast ptp")  # psutil.net_if_addrs() entries


def fixture_proc(
    root: Path, *, cgroup_line: str = "0::/", meminfo_kb: int = 16384000, cpuinfo: str = "xeon-2s-2c-ht"
) -> Path:
    proc = root / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "cpuinfo").write_text((FIXTURES / "cpuinfo" / cpuinfo).read_text())
    (proc / "meminfo").write_text(f"MemTotal:       {meminfo_kb} kB\nMemFree:        1000 kB\n")
    (proc / "self" / "cgroup").write_text(cgroup_line + "\n")
    return proc


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def collector(tmp_path, **overrides) -> HostCollector:
    if "procfs_root" not in overrides:
        overrides["procfs_root"] = str(fixture_proc(tmp_path))
    settings = dict(
        cgroup_root=str(tmp_path / "no-cgroup"),
        os_release_path=str(FIXTURES / "os-release" / "ubuntu-22.04"),
        environ={"USER": "ada"},
        argv=["train.py", "--lr", "0.1"],
        net_if_addrs=lambda: {},
    )
    settings.update(overrides)
    return HostCollector(**settings)


# --- pure functions (the /proc and cgroup parsers are tested in tests/unit/sources/test_procfs.py) ---------------------------------------------------------------------------------------


def test_cluster_identity_slurm_kubernetes_torchrun():
    environ = {
        "SLURM_JOB_ID": "4242",
        "SLURMD_NODENAME": "gpu-node-07",
        "SLURM_PROCID": "3",
        "KUBERNETES_SERVICE_HOST": "10.0.0.1",
        "HOSTNAME": "trainer-0",
        "RANK": "3",
        "LOCAL_RANK": "1",
        "WORLD_SIZE": "8",
        "AWS_SECRET_ACCESS_KEY": "never-read",
    }
    identity = dict(cluster_identity(environ))
    assert identity == {
        "slurm.job_id": "4242",
        "slurm.node": "gpu-node-07",
        "slurm.rank": "3",
        "kubernetes": "true",
        "kubernetes.pod": "trainer-0",
        "torchrun.rank": "3",
        "torchrun.local_rank": "1",
        "torchrun.world_size": "8",
    }
    assert cluster_identity({"HOSTNAME": "laptop"}) == ()


def test_interface_ips_excludes_loopback_keeps_ipv4_and_ipv6():
    addresses = {
        "lo": [
            Address(socket.AF_INET, "127.0.0.1", None, None, None),
            Address(socket.AF_INET6, "::1", None, None, None),
        ],
        "eth0": [
            Address(socket.AF_INET, "10.1.2.3", None, None, None),
            Address(socket.AF_INET6, "fe80::1%eth0", None, None, None),
            Address(getattr(socket, "AF_PACKET", 17), "02:42:ac:11:00:02", None, None, None),
        ],
        "ib0": [
            Address(socket.AF_INET6, "2001:db8::7", None, None, None),
            Address(socket.AF_INET, "10.1.2.3", None, None, None),
        ],
    }
    assert interface_ips(addresses) == ("10.1.2.3", "2001:db8::7", "fe80::1%eth0")


# --- user ------------------------------------------------------------------------------------------


def test_resolve_user_prefers_environment_like_getpass():
    assert resolve_user(os.getuid(), {"LOGNAME": "ada", "USER": "bob"}) == "ada"


def test_resolve_user_without_passwd_entry_or_environment_is_uid():
    uid = 2_000_000_123
    with pytest.raises(KeyError):
        pwd.getpwuid(uid)
    assert resolve_user(uid, {}) == f"uid:{uid}"
    assert resolve_user(uid, {"USER": "jovyan"}, prefer_environment=False) == "jovyan"


def test_resolve_user_from_passwd():
    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        pytest.skip("this test host's own uid has no passwd entry")
    assert resolve_user(os.getuid(), {}) == name


# --- ip --------------------------------------------------------------------------------------------


def test_routing_ip_to_a_loopback_server_is_loopback():
    assert routing_ip("http://127.0.0.1:5055/clientlib/") == "127.0.0.1"


def test_routing_ip_ipv6_literal():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.connect(("::1", 9))
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    assert routing_ip("http://[::1]:5055/") == "::1"


@pytest.mark.parametrize("url", ["http://:80/", "http://127.0.0.1:notaport/"])
def test_routing_ip_bad_url_is_none(url):
    assert routing_ip(url) is None


# --- cgroups ---------------------------------------------------------------------------------------


def test_cgroup_v2_limits_of_the_job_cgroup(tmp_path):
    cgroup = write_tree(
        tmp_path / "cgroup",
        {
            "cgroup.controllers": "cpu memory\n",
            "job.slice/cpu.max": "150000 100000\n",
            "job.slice/memory.max": "4294967296\n",
        },
    )
    proc = fixture_proc(tmp_path, cgroup_line="0::/job.slice")
    snapshot = collector(tmp_path, procfs_root=str(proc), cgroup_root=str(cgroup)).collect()
    assert (snapshot.cgroup_version, snapshot.cpu_quota_cores, snapshot.memory_limit_bytes) == (2, 1.5, 4294967296)


def test_cgroup_v2_namespace_reads_the_mount_root_and_max_is_unlimited(tmp_path):
    cgroup = write_tree(
        tmp_path / "cgroup", {"cgroup.controllers": "cpu\n", "cpu.max": "max 100000\n", "memory.max": "max\n"}
    )
    snapshot = collector(tmp_path, cgroup_root=str(cgroup)).collect()
    assert (snapshot.cgroup_version, snapshot.cpu_quota_cores, snapshot.memory_limit_bytes) == (2, None, None)


def test_cgroup_v1_limits(tmp_path):
    cgroup = write_tree(
        tmp_path / "cgroup",
        {
            "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "200000\n",
            "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
            "memory/docker/abc/memory.limit_in_bytes": "9223372036854771712\n",
        },
    )
    proc = fixture_proc(tmp_path, cgroup_line="4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/")
    snapshot = collector(tmp_path, procfs_root=str(proc), cgroup_root=str(cgroup)).collect()
    assert (snapshot.cgroup_version, snapshot.cpu_quota_cores, snapshot.memory_limit_bytes) == (1, 2.0, None)


def test_no_cgroup_mount_gives_no_limits(tmp_path):
    snapshot = collector(tmp_path).collect()
    assert (snapshot.cgroup_version, snapshot.cpu_quota_cores, snapshot.memory_limit_bytes) == (None, None, None)


# --- whole snapshot --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "release, expected",
    [
        ("debian-12", ("Debian GNU/Linux", "12", "debian")),
        ("ubuntu-22.04", ("Ubuntu", "22.04", "ubuntu")),
        ("rocky-9", ("Rocky Linux", "9.3", "rocky")),
        ("alpine-3.19", ("Alpine Linux", "3.19.1", "alpine")),
        ("arch", ("Arch Linux", None, "arch")),
    ],
)
def test_distro_from_recorded_os_release(tmp_path, release, expected):
    snapshot = collector(tmp_path, os_release_path=str(FIXTURES / "os-release" / release)).collect()
    assert (snapshot.distro_name, snapshot.distro_version, snapshot.distro_id) == expected


def test_missing_os_release_gives_null_distro(tmp_path):
    snapshot = collector(tmp_path, os_release_path=str(tmp_path / "missing")).collect()
    assert (snapshot.distro_name, snapshot.distro_version, snapshot.distro_id) == (None, None, None)


def test_in_process_snapshot_from_fixture_tree(tmp_path):
    addresses = {"eth0": [Address(socket.AF_INET, "10.9.8.7", None, None, None)]}
    snapshot = collector(
        tmp_path,
        argv=[
            "train.py",
            "--api-key",
            "abcd1234efgh",
            "--password=hunter22",
            "WANDB_TOKEN=t0k3n",
            "--lr",
            "0.1",
            "--x",
            "my-secret-key-value",
        ],
        secrets=["my-secret-key-value"],
        environ={"USER": "ada", "SLURM_JOB_ID": "77"},
        server_url="http://127.0.0.1:1/",
        net_if_addrs=lambda: addresses,
    ).collect()
    assert snapshot.command == (
        "train.py",
        "--api-key",
        MASK,
        f"--password={MASK}",
        f"WANDB_TOKEN={MASK}",
        "--lr",
        "0.1",
        "--x",
        MASK,
    )
    assert snapshot.pid == os.getpid()
    assert snapshot.user == "ada"
    assert snapshot.executable == sys.executable
    assert snapshot.cpu_model == "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz"
    assert (snapshot.logical_cpu_count, snapshot.physical_cpu_count) == (8, 4)
    assert snapshot.total_ram_bytes == 16384000 * 1024
    assert snapshot.ip == "127.0.0.1"
    assert snapshot.network_interface_ips == ("10.9.8.7",)
    assert snapshot.cluster_identity == (("slurm.job_id", "77"),)
    assert snapshot.python_version_verbose == sys.version
    assert snapshot.processor  # uname's processor, or the CPU model when uname has none
    extra = {item["key"]: item["value"] for item in host_additional_info(snapshot)}
    assert extra["cpu.count.physical"] == 4
    assert extra["distro.id"] == "ubuntu"
    assert extra["slurm.job_id"] == "77"
    assert "cgroup.memory_limit_bytes" not in extra  # unknown facts are left out, not sent as null


def test_watched_process_identity_comes_from_its_proc_entry(tmp_path):
    job = subprocess.Popen(
        [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(120)", "--db-password", "pa55word"],
        env={"PATH": os.defpath, "SLURM_JOB_ID": "9001", "RANK": "0"},
        stdout=subprocess.PIPE,
    )
    try:
        assert job.stdout.readline().strip() == b"ready"
        snapshot = HostCollector(
            pid=job.pid, os_release_path=str(FIXTURES / "os-release" / "debian-12"), net_if_addrs=lambda: {}
        ).collect()
    finally:
        job.kill()
        job.wait(timeout=10)
    assert snapshot.pid == job.pid
    assert snapshot.command[-2:] == ("--db-password", MASK)
    assert os.path.realpath(snapshot.executable) == os.path.realpath(sys.executable)
    assert dict(snapshot.cluster_identity) == {"slurm.job_id": "9001", "torchrun.rank": "0"}
    try:
        expected_user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        expected_user = f"uid:{os.getuid()}"
    assert snapshot.user == expected_user
