"""Python packages: in-process, and of a watched job whose interpreter lives in another venv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from comet_agent.collectors import Unavailable
from comet_agent.collectors.python_packages import (
    PythonPackagesCollector,
    find_interpreter_path,
    is_python_executable,
    package_from_metadata,
)


def write_distribution(site: Path, name: str, version: str, direct_url: dict | None = None) -> None:
    """Install a distribution the way pip leaves it: a ``.dist-info`` directory with METADATA."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))


@pytest.fixture(scope="module")
def job_venv(tmp_path_factory) -> Path:
    """A second virtual environment (not the agent's) with an editable, a local and a plain install."""
    root = tmp_path_factory.mktemp("job") / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(root)
    site = next(root.glob("lib/python*/site-packages"))
    write_distribution(site, "Demo-Editable", "1.2.3", {"url": "file:///src/demo", "dir_info": {"editable": True}})
    write_distribution(site, "local-wheel", "0.1", {"url": "file:///wheels/local_wheel-0.1.whl", "archive_info": {}})
    write_distribution(site, "plain", "2.0")
    return root


@pytest.fixture
def running():
    """Start processes and make sure they are gone after the test."""
    started: list[subprocess.Popen] = []

    def start(argv, **kwargs) -> subprocess.Popen:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, **kwargs)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        process.wait(timeout=10)


# A job that says when it is up, then idles until killed.
IDLE_SCRIPT = "import time; print('ready', flush=True); time.sleep(120)"


def test_package_from_metadata_marks_editable_local_and_strips_credentials():
    editable = package_from_metadata(
        "My_Pkg", "1.0", json.dumps({"url": "file:///src", "dir_info": {"editable": True}})
    )
    assert (editable.name, editable.requirement()) == ("my_pkg", "my_pkg==1.0 (editable)")
    local = package_from_metadata("w", "2", json.dumps({"url": "file:///w.whl", "archive_info": {}}))
    assert local.requirement() == "w==2 (local)"
    vcs = package_from_metadata(
        "v", "3", json.dumps({"url": "https://user:tok123@git.example/v.git", "vcs_info": {"vcs": "git"}})
    )
    assert vcs.url == "https://git.example/v.git"
    assert vcs.requirement() == "v==3"
    assert package_from_metadata("p", "4", "{not json").requirement() == "p==4"


def test_in_process_lists_our_interpreter_sorted():
    snapshot = PythonPackagesCollector().collect()
    assert snapshot.source == "in-process"
    assert snapshot.interpreter == sys.executable
    names = [p.name for p in snapshot.packages]
    assert names == sorted(names)
    assert "pytest" in names and "psutil" in names
    assert snapshot.requirements() == sorted(snapshot.requirements())


def test_watched_job_in_another_venv_reports_that_venv(job_venv, running):
    python = job_venv / "bin" / "python"
    job = running([str(python), "-c", IDLE_SCRIPT], env={"PATH": os.defpath, "HOME": "/nonexistent"})
    assert job.stdout.readline().strip() == b"ready"
    snapshot = PythonPackagesCollector(pid=job.pid).collect()
    assert snapshot.source == "interpreter"
    # The venv's symlink, not the resolved base interpreter (which would not see the venv).
    assert snapshot.interpreter == str(python)
    assert snapshot.requirements() == ["demo-editable==1.2.3 (editable)", "local-wheel==0.1 (local)", "plain==2.0"]
    assert snapshot.python_version == ".".join(map(str, sys.version_info[:3]))


def test_watched_job_pythonpath_is_honoured(job_venv, running, tmp_path):
    extra = tmp_path / "extra-site"
    write_distribution(extra, "from-pythonpath", "9.9")
    job = running(
        [str(job_venv / "bin" / "python"), "-c", IDLE_SCRIPT], env={"PATH": os.defpath, "PYTHONPATH": str(extra)}
    )
    assert job.stdout.readline().strip() == b"ready"
    assert "from-pythonpath==9.9" in PythonPackagesCollector(pid=job.pid).collect().requirements()


def test_watched_shell_wrapper_uses_its_python_child(job_venv, running):
    python = job_venv / "bin" / "python"
    # "; true" keeps sh alive as the parent instead of exec'ing python.
    job = running(["sh", "-c", f'{python} -c "{IDLE_SCRIPT}"; true'], env={"PATH": os.defpath})
    assert job.stdout.readline().strip() == b"ready"
    snapshot = PythonPackagesCollector(pid=job.pid).collect()
    assert snapshot.interpreter == str(python)
    assert "plain==2.0" in snapshot.requirements()


def test_watched_process_that_is_not_python_is_unavailable(running):
    job = running(["sh", "-c", "echo ready; exec sleep 120"])
    assert job.stdout.readline().strip() == b"ready"
    with pytest.raises(Unavailable, match="is not a Python interpreter and has no Python child"):
        PythonPackagesCollector(pid=job.pid).collect()


def test_watched_process_that_is_gone_is_unavailable():
    gone = subprocess.Popen(["true"])
    gone.wait()
    with pytest.raises(Unavailable, match=f"watched process {gone.pid} does not exist"):
        PythonPackagesCollector(pid=gone.pid).collect()


def _fixture_proc(tmp_path: Path, pid: int, interpreter_body: str) -> Path:
    """A fixture /proc with one process whose exe is a stand-in ``python3`` program."""
    program = tmp_path / "bin" / "python3"
    program.parent.mkdir(parents=True)
    program.write_text(f"#!/bin/sh\n{interpreter_body}\n")
    program.chmod(0o755)
    proc = tmp_path / "proc" / str(pid)
    proc.mkdir(parents=True)
    (proc / "exe").symlink_to(program)
    (proc / "cmdline").write_bytes(str(program).encode() + b"\0train.py\0")
    (proc / "environ").write_bytes(b"PATH=/usr/bin:/bin\0SECRET_TOKEN=x\0")
    return tmp_path / "proc"


def test_interpreter_that_hangs_is_cut_off_by_the_timeout(tmp_path):
    proc = _fixture_proc(tmp_path, 4242, "exec sleep 60")
    collector = PythonPackagesCollector(pid=4242, procfs_root=str(proc), timeout_s=0.5)
    with pytest.raises(Unavailable, match="did not list its packages within 0.5 s"):
        collector.collect()


def test_interpreter_with_garbage_output_is_unavailable(tmp_path):
    proc = _fixture_proc(tmp_path, 4242, "echo not-json")
    with pytest.raises(Unavailable, match="unexpected package listing"):
        PythonPackagesCollector(pid=4242, procfs_root=str(proc)).collect()


def test_interpreter_gets_only_the_interpreter_variables_of_the_job(tmp_path):
    proc = _fixture_proc(tmp_path, 4242, 'printf \'{"packages": [["seen-%s", "1", null]]}\' "${SECRET_TOKEN:-none}"')
    snapshot = PythonPackagesCollector(pid=4242, procfs_root=str(proc)).collect()
    assert snapshot.requirements() == ["seen-none==1"]


def test_find_interpreter_path_prefers_the_venv_symlink(tmp_path):
    real = tmp_path / "base" / "python3.11"
    real.parent.mkdir()
    real.write_text("")
    link_dir = tmp_path / "venv" / "bin"
    link_dir.mkdir(parents=True)
    (link_dir / "python").symlink_to(real)
    assert find_interpreter_path(str(real), str(link_dir / "python"), None, {}) == str(link_dir / "python")
    assert find_interpreter_path(str(real), "python", None, {"PATH": f"/nowhere:{link_dir}"}) == str(
        link_dir / "python"
    )
    assert find_interpreter_path(str(real), "bin/python", str(tmp_path / "venv"), {}) == str(link_dir / "python")
    assert find_interpreter_path(str(real), "python", None, {"VIRTUAL_ENV": str(tmp_path / "venv")}) == str(
        link_dir / "python"
    )
    # argv[0] rewritten by the program (setproctitle): fall back to exe
    assert find_interpreter_path(str(real), "my-trainer", None, {"PATH": str(link_dir)}) == str(real)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("/usr/bin/python3.11", True),
        ("/x/python", True),
        ("/x/pypy3", True),
        ("/x/python3.12-dbg", True),
        ("/usr/bin/sleep", False),
        ("/x/pythonista", False),
        ("/x/ipython", False),
    ],
)
def test_is_python_executable(name, expected):
    assert is_python_executable(name) is expected


def test_parse_metadata_header_reads_name_and_version_only_from_the_header():
    from comet_agent.collectors.python_packages import parse_metadata_header

    text = "Metadata-Version: 2.1\nName: torch\nVersion: 2.3.0+cu121\nSummary: x\n\nName: not-this\nVersion: 0\n"
    assert parse_metadata_header(text) == ("torch", "2.3.0+cu121")
    assert parse_metadata_header("") == (None, None)


def _stat_line(pid: int, parent_pid: int, command_name: str) -> str:
    return f"{pid} ({command_name}) S {parent_pid} {pid} {pid} 0 -1 4194560 1 0 0 0 5 3 0 0 20 0 1 0 999 1 42\n"


def test_launcher_that_is_not_python_is_searched_for_a_python_child(tmp_path):
    proc = _fixture_proc(tmp_path, 4243, 'printf \'{"packages": [["from-child", "1", null]]}\'')
    launcher = proc / "4242"
    launcher.mkdir()
    (launcher / "exe").symlink_to("/bin/sh")
    (launcher / "stat").write_text(_stat_line(4242, 1, "sh"))
    (proc / "4243" / "stat").write_text(_stat_line(4243, 4242, "python3"))
    snapshot = PythonPackagesCollector(pid=4242, procfs_root=str(proc)).collect()
    assert snapshot.requirements() == ["from-child==1"]
