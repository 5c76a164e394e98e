"""One engine for every way in: the same job recorded in-process and through the daemon yields the
same metric names, others, system details and times."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from comet_agent.api import API, APIExperiment
from tests.e2e.agent_support import REPO, agent_argv, agent_env, start_agent, wait_for

pytestmark = pytest.mark.e2e

FAST = {"heartbeat_ms": 1000, "cpu_interval_ms": 1000, "gpu_interval_ms": 1000}
#: System details that name the job or the machine: they must be the same whichever way recorded.
SHARED_DETAILS = (
    "hostname",
    "user",
    "pid",
    "os",
    "osType",
    "osPackages",
    "pythonVersion",
    "executable",
    "command",
    "installedPackages",
    "gpuStaticInfoList",
    "ip",
    "totalRam",
    "maxTotalMemory",
)


def _experiment(server, key=None) -> APIExperiment:
    api = API(api_key=server.api_key, url_override=server.clientlib_url)
    if key is None:
        return APIExperiment(api=api, workspace="ws", project_name="engine")
    return APIExperiment(api=api, previous_experiment=key)


def test_the_same_job_in_process_and_through_the_daemon_records_the_same(local_server, tmp_path):
    local_server.set_intervals(**FAST)
    short_dir = Path(tempfile.mkdtemp(prefix="ca-", dir="/tmp"))  # AF_UNIX paths are short
    socket_path = short_dir / "daemon.sock"
    daemon = subprocess.Popen(
        agent_argv("daemon", "--socket", str(socket_path), "--interval", "0.5", "--no-gpu"),
        env=agent_env(local_server, tmp_path / "daemon-data"),
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    job = subprocess.Popen(
        [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(6)"],
        stdout=subprocess.PIPE,
        cwd=str(REPO),
    )
    in_process = _experiment(local_server)
    through_daemon = _experiment(local_server)
    agent = None
    try:
        assert job.stdout.readline() == b"ready\n"
        wait_for(lambda: socket_path.exists() or daemon.poll() is not None, 30, what="the daemon's socket")
        agent = start_agent(
            local_server,
            tmp_path / "agent-data",
            "run",
            "--experiment",
            in_process.id,
            "--pid",
            str(job.pid),
            "--sample-interval",
            "0.5",
            "--no-gpu",
        )
        attached = subprocess.run(
            agent_argv(
                "attach", "--experiment", through_daemon.id, "--pid", str(job.pid), "--socket", str(socket_path)
            ),
            env=agent_env(local_server, tmp_path / "job-data"),
            cwd=str(REPO),
            capture_output=True,
            timeout=60,
        )
        assert attached.returncode == 0, attached.stderr.decode()
        job.wait(30)
        agent.wait(60)
        assert agent.returncode == 0, agent.stderr.read().decode()

        def ended() -> bool:
            return all(_experiment(local_server, e.id).end_server_timestamp for e in (in_process, through_daemon))

        wait_for(ended, 30, what="both experiments' end times")
    finally:
        for process in (job, agent, daemon):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(30)
        shutil.rmtree(short_dir, ignore_errors=True)

    ours, theirs = _experiment(local_server, in_process.id), _experiment(local_server, through_daemon.id)
    names = [{item["name"] for item in e.get_metrics_summary()} for e in (ours, theirs)]
    assert names[0] == names[1], names[0] ^ names[1]
    assert {"sys.cpu.percent.avg", "sys.ram.used", "sys.proc.rss", "sys.disk.job.used"} <= names[0]
    details = [e.get_system_details() for e in (ours, theirs)]
    for field in SHARED_DETAILS:
        assert details[0].get(field) == details[1].get(field), field
    assert details[0]["pid"] == job.pid, "the watched job, not the agent"
    others = [{item["name"] for item in e.get_others_summary()} for e in (ours, theirs)]
    assert others[0] == others[1]
    # Attached to experiments created elsewhere: no start time of ours, an end time when the job ended.
    for experiment in (ours, theirs):
        assert experiment.end_server_timestamp >= experiment.start_server_timestamp
    assert abs(ours.end_server_timestamp - theirs.end_server_timestamp) < 5_000
