"""The static snapshot, system details and ``comet-agent collect``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from comet_agent.cli import main
from comet_agent.cli.collect import format_summary
from comet_agent.collectors.snapshot import (
    StaticSnapshot,
    collect_static,
    system_details,
)
from comet_agent.errors import ExitStatus
from comet_agent.records import (
    SYSTEM_DETAILS_KEYS,
    GitSnapshot,
    GpuDeviceInfo,
    GpuStaticSnapshot,
    HostSnapshot,
    OsPackagesSnapshot,
    PythonPackage,
    PythonPackagesSnapshot,
)

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "a@example.org",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "a@example.org",
}


def make_repo(path):
    path.mkdir()
    env = dict(os.environ, **GIT_ENV)
    for args in (["init", "-q", "-b", "main"], ["remote", "add", "origin", "https://u:pw123456@example.org/r.git"]):
        subprocess.run(["git", *args], cwd=path, env=env, check=True)
    (path / "train.py").write_text("print(1)\n")
    subprocess.run(["git", "add", "train.py"], cwd=path, env=env, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "c"], cwd=path, env=env, check=True)
    (path / "train.py").write_text("print(2)\n")
    return path


def host_record(**overrides) -> HostSnapshot:
    values = dict(
        hostname="node1",
        user="ada",
        pid=1234,
        executable="/usr/bin/python3",
        command=("train.py",),
        python_version="3.11.7",
        python_version_verbose="3.11.7 (main)",
        os_platform="Linux-6.1-x86_64",
        os_type="Linux",
        os_release="6.1",
        machine="x86_64",
        processor="AMD EPYC",
        cpu_model="AMD EPYC",
        physical_cpu_count=2,
        logical_cpu_count=4,
        total_ram_bytes=8 * 2**30,
        distro_name="Debian GNU/Linux",
        distro_version="12",
        distro_id="debian",
        ip="10.0.0.5",
        network_interface_ips=("10.0.0.5",),
    )
    values.update(overrides)
    return HostSnapshot(**values)


def test_system_details_has_exactly_the_comet_keys_and_null_env():
    snapshot = StaticSnapshot(host=host_record())
    details = system_details(snapshot, ["sys.ram.used", "sys.cpu.percent.avg"])
    assert tuple(details) == SYSTEM_DETAILS_KEYS
    assert set(details) == {
        "command",
        "env",
        "executable",
        "hostname",
        "ip",
        "machine",
        "os",
        "osRelease",
        "osType",
        "pid",
        "processor",
        "pythonVersion",
        "pythonVersionVerbose",
        "user",
        "installedPackages",
        "osPackages",
        "gpuStaticInfoList",
        "logAdditionalSystemInfoList",
        "networkInterfaceIps",
        "totalRam",
        "maxTotalMemory",
        "systemMetricNames",
    }
    assert details["env"] is None
    assert details["systemMetricNames"] == ["sys.cpu.percent.avg", "sys.ram.used"]
    assert details["totalRam"] == 8 * 2**30
    assert details["maxTotalMemory"] is None
    assert details["installedPackages"] == [] and details["osPackages"] == []
    json.dumps(details)  # JSON-ready


def test_system_details_of_a_watched_job_uses_its_interpreter_and_lists_every_reason():
    packages = PythonPackagesSnapshot(
        packages=(PythonPackage("torch", "2.3.0"), PythonPackage("mylib", "0.1", editable=True)),
        source="interpreter",
        interpreter="/job/venv/bin/python",
        python_version="3.10.14",
        python_version_verbose="3.10.14 (main)",
    )
    snapshot = StaticSnapshot(
        host=host_record(),
        python_packages=packages,
        os_packages=OsPackagesSnapshot("dpkg", ("bash=5.2", "libc6=2.36")),
        git=GitSnapshot(
            working_dir="/w",
            user="Ada",
            root="r",
            branch=None,
            parent="p",
            origin=None,
            patch=b"x" * 10,
            patch_total_bytes=10,
            patch_truncated=False,
            max_patch_bytes=100,
            untracked_policy="excluded",
            notes=("detached HEAD: branch is null",),
        ),
        gpu_static=GpuStaticSnapshot(
            devices=(
                GpuDeviceInfo(0, "NVIDIA A100-SXM4-80GB", "GPU-a", 85899345920, 400000),
                GpuDeviceInfo(1, "NVIDIA A100-SXM4-40GB", "GPU-b", 42949672960, None),
            ),
            driver_version="550.54.15",
            cuda_driver_version="12.4",
            additional=({"key": "gpu.driverVersion", "value": "550.54.15"},),
        ),
        unavailable={"cloud": "not probed"},
    )
    details = system_details(snapshot)
    assert details["executable"] == "/job/venv/bin/python"
    assert (details["pythonVersion"], details["pythonVersionVerbose"]) == ("3.10.14", "3.10.14 (main)")
    assert details["installedPackages"] == ["mylib==0.1 (editable)", "torch==2.3.0"]
    assert details["osPackages"] == ["bash=5.2", "libc6=2.36"]
    assert details["gpuStaticInfoList"] == [
        {
            "gpuIndex": 0,
            "name": "NVIDIA A100-SXM4-80GB",
            "uuid": "GPU-a",
            "totalMemory": 85899345920,
            "powerLimit": 400000,
        },
        {
            "gpuIndex": 1,
            "name": "NVIDIA A100-SXM4-40GB",
            "uuid": "GPU-b",
            "totalMemory": 42949672960,
            "powerLimit": None,
        },
    ]
    assert details["maxTotalMemory"] == 85899345920
    extra = [(item["key"], item["value"]) for item in details["logAdditionalSystemInfoList"]]
    assert ("python_packages.source", "interpreter") in extra
    assert ("os_packages.manager", "dpkg") in extra
    assert ("git.note", "detached HEAD: branch is null") in extra
    assert ("git.patch_bytes", 10) in extra
    assert ("gpu.driverVersion", "550.54.15") in extra
    assert ("unavailable.cloud", "not probed") in extra
    assert all(value is not None for _, value in extra)


def test_collect_static_in_a_repository(tmp_path):
    repo = make_repo(tmp_path / "repo")
    snapshot = collect_static(
        directory=str(repo),
        include_os_packages=False,
        include_gpu=False,
        server_url="http://127.0.0.1:5055/",
        secrets=["pw123456"],
    )
    assert snapshot.host.ip == "127.0.0.1"
    assert snapshot.git.branch == "refs/heads/main"
    assert snapshot.git.origin == "https://example.org/r.git"
    assert b"+print(2)" in snapshot.git.patch
    assert snapshot.python_packages.source == "in-process"
    assert snapshot.unavailable == {"os_packages": "switched off", "gpu_static": "switched off"}
    assert "pw123456" not in json.dumps(system_details(snapshot))


def test_collect_static_outside_a_repository_reports_git_unavailable(tmp_path):
    snapshot = collect_static(directory=str(tmp_path), include_os_packages=False, include_gpu=False)
    assert snapshot.git is None
    assert snapshot.unavailable["git"].startswith("not inside a git repository")
    disabled = collect_static(directory=str(tmp_path), include_os_packages=False, include_gpu=False, include_git=False)
    assert disabled.unavailable["git"] == "switched off"


def test_cli_collect_json_prints_one_complete_object(tmp_path, capsys):
    repo = make_repo(tmp_path / "repo")
    status = main(["collect", "--json", "--directory", str(repo), "--no-os-packages"])
    out = capsys.readouterr().out
    assert status == ExitStatus.OK
    document = json.loads(out)
    assert set(document) == {
        "systemDetails",
        "gitMetadata",
        "gitPatchBytes",
        "gpuStaticInfoList",
        "unavailable",
        "sample",
    }
    assert tuple(document["systemDetails"]) == SYSTEM_DETAILS_KEYS
    assert document["gitMetadata"]["branch"] == "refs/heads/main"
    assert document["gitMetadata"]["origin"] == "https://example.org/r.git"
    assert document["gitPatchBytes"] > 0
    assert document["unavailable"]["os_packages"] == "switched off"
    assert document["gpuStaticInfoList"] == document["systemDetails"]["gpuStaticInfoList"]
    if not document["gpuStaticInfoList"]:
        assert "gpu_static" in document["unavailable"]  # no GPU here: said, with the reason
    if "periodic" in document["unavailable"]:
        pytest.skip(f"periodic collectors not available yet: {document['unavailable']['periodic']}")
    names = sorted({point["metricName"] for point in document["sample"]})
    assert "sys.ram.total" in names
    assert document["systemDetails"]["systemMetricNames"] == names


def test_cli_collect_text_summary(tmp_path, capsys):
    status = main(["collect", "--directory", str(tmp_path), "--no-os-packages"])
    out = capsys.readouterr().out
    assert status == ExitStatus.OK
    assert out.startswith("host ")
    assert "unavailable git: not inside a git repository" in out


def test_cli_collect_rejects_a_missing_directory(tmp_path, capsys):
    status = main(["collect", "--json", "--directory", str(tmp_path / "missing")])
    captured = capsys.readouterr()
    assert status == ExitStatus.USAGE
    assert captured.out == ""
    assert "is not a directory" in captured.err


def test_cli_collect_rejects_a_missing_pid(capsys):
    gone = subprocess.Popen(["true"])
    gone.wait()
    status = main(["collect", "--pid", str(gone.pid)])
    captured = capsys.readouterr()
    assert status == ExitStatus.USAGE
    assert f"--pid {gone.pid}: no such process" in captured.err


def test_cli_collect_for_a_watched_pid_masks_its_secrets(capsys):
    job = subprocess.Popen(
        [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(120)", "--api-key", "abcdef123456"],
        stdout=subprocess.PIPE,
    )
    try:
        assert job.stdout.readline().strip() == b"ready"
        status = main(["collect", "--json", "--pid", str(job.pid), "--no-os-packages", "--directory", "/"])
    finally:
        job.kill()
        job.wait(timeout=10)
    out = capsys.readouterr().out
    assert status == ExitStatus.OK
    details = json.loads(out)["systemDetails"]
    assert details["pid"] == job.pid
    assert "abcdef123456" not in out
    assert details["command"][-2:] == ["--api-key", "********"]
    assert any(
        item == {"key": "python_packages.source", "value": "interpreter"}
        for item in details["logAdditionalSystemInfoList"]
    )


def test_format_summary_lists_unavailable_collectors():
    snapshot = StaticSnapshot(host=host_record(), unavailable={"gpu_static": "no NVML"})
    document = {
        "systemDetails": system_details(snapshot),
        "gitMetadata": None,
        "gitPatchBytes": None,
        "gpuStaticInfoList": [],
        "unavailable": snapshot.unavailable,
        "sample": [],
    }
    text = format_summary(document)
    assert "unavailable gpu_static: no NVML" in text
    assert "node1" in text
