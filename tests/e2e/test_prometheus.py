"""An operator's Prometheus scrape of a real `comet-agent run --prometheus-listen` on a (recorded) A100 box.

The agent runs as a subprocess with only a key and a URL; ``import pynvml`` in it gives the fake
built from the recorded A100 (``tests/support/fake_nvml_site``). The page is read with
prometheus_client's own parser, and what the run recorded is read back with the official comet_ml.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from comet_agent.api import API, APIExperiment
from tests.e2e.agent_support import REPO, agent_argv, agent_env, experiment_key_from, start_agent, wait_for

pytestmark = pytest.mark.e2e

FAKE_NVML_SITE = REPO / "tests" / "support" / "fake_nvml_site"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _scrape(url: str):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return {family.name: family for family in text_string_to_metric_families(response.read().decode())}
    except (urllib.error.URLError, ConnectionError):
        return None


def test_a_scrape_of_a_running_job_carries_its_experiment_and_dcgm_names(local_server, tmp_path):
    local_server.set_intervals(heartbeat_ms=1000, cpu_interval_ms=1000, gpu_interval_ms=1000)
    port = _free_port()
    stop_file = tmp_path / "stop"
    child = f"import os, time\nwhile not os.path.exists({str(stop_file)!r}): time.sleep(0.05)\n"
    agent = start_agent(
        local_server,
        tmp_path / "data",
        "run",
        "--no-git",
        "--no-os-packages",
        "--sample-interval",
        "0.2",
        "--prometheus-listen",
        f"127.0.0.1:{port}",
        "--",
        sys.executable,
        "-c",
        child,
        COMET_AGENT_TEST_NVML="a100-sxm4-80gb",
        PYTHONPATH=os.pathsep.join([str(FAKE_NVML_SITE), str(REPO)]),
        CUDA_VISIBLE_DEVICES="1,2",  # the job sees two of the four boards
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        families = wait_for(
            lambda: (
                (page := _scrape(url))
                and "DCGM_FI_DEV_FB_USED" in page
                and "comet_agent_job_cpu_percent" in page
                and page
            ),
            20,
            what="a page with the job's and the GPUs' series",
        )
        with urllib.request.urlopen(url, timeout=2) as response:
            assert local_server.api_key.encode() not in response.read()  # the key never leaves
    finally:
        stop_file.write_text("")
    out, err = agent.communicate(timeout=30)
    assert agent.returncode == 0, err.decode()
    key = experiment_key_from(err.decode())
    assert f"Prometheus metrics on {url}" in err.decode()

    samples = [sample for family in families.values() for sample in family.samples]
    assert {sample.labels["experiment_key"] for sample in samples} == {key}
    assert {sample.labels["node"] for sample in samples} == {socket.gethostname()}
    # Our names count GPUs as the experiment does (sys.gpu.0, sys.gpu.1); dcgm's name the boards.
    ours = families["comet_agent_gpu_memory_used_bytes"].samples
    assert sorted(s.labels["gpu"] for s in ours) == ["0", "1"]
    dcgm = families["DCGM_FI_DEV_FB_USED"]
    assert dcgm.type == "gauge"
    assert sorted((s.labels["gpu"], s.labels["device"], s.value) for s in dcgm.samples) == [
        ("1", "nvidia1", 39000.0),  # MiB, as dcgm-exporter counts
        ("2", "nvidia2", 0.0),
    ]
    assert {s.labels["modelName"] for s in dcgm.samples} == {"NVIDIA A100-SXM4-80GB"}
    assert families["DCGM_FI_DEV_ECC_SBE_VOL_TOTAL"].type == "counter"
    assert families["comet_agent_host_load1"].samples[0].value >= 0

    # After the run the page is gone, and the new GPU series reached the experiment.
    assert _scrape(url) is None
    comet_ml = pytest.importorskip("comet_ml")
    os.environ["COMET_URL_OVERRIDE"] = local_server.clientlib_url
    os.environ["COMET_API_KEY"] = local_server.api_key
    try:
        names = {m["name"] for m in comet_ml.API(cache=False).get_experiment_by_key(key).get_metrics_summary()}
    finally:
        del os.environ["COMET_URL_OVERRIDE"], os.environ["COMET_API_KEY"]
    assert {"sys.gpu.0.pcie_tx_bps", "sys.gpu.1.nvlink_rx_bytes", "sys.gpu.0.remapped_rows_correctable"} <= names


def test_a_typo_in_the_address_is_a_usage_error_before_anything_starts(local_server, tmp_path):
    agent = start_agent(local_server, tmp_path / "data", "run", "--prometheus-listen", "9400", "--", "true")
    _, err = agent.communicate(timeout=30)
    assert agent.returncode == 2
    assert "HOST:PORT" in err.decode() and "experiment" not in err.decode()
    assert not (tmp_path / "data" / "spool").exists()


JOB = "import time\nprint('ready', flush=True)\ntime.sleep(600)\n"


def test_the_daemon_serves_every_registered_job_with_its_own_gpus(local_server, tmp_path):
    """An operator's box: one daemon, two jobs on different boards, one scrape tells them apart."""
    local_server.set_intervals(heartbeat_ms=1000, cpu_interval_ms=1000, gpu_interval_ms=1000)
    short = Path(tempfile.mkdtemp(prefix="ca-", dir="/tmp"))  # AF_UNIX paths are short
    socket_path, port = short / "d.sock", _free_port()
    env = dict(COMET_AGENT_TEST_NVML="a100-sxm4-80gb", PYTHONPATH=os.pathsep.join([str(FAKE_NVML_SITE), str(REPO)]))
    daemon = subprocess.Popen(
        agent_argv("daemon", "--socket", str(socket_path), "--interval", "0.3", "--prometheus-listen", f":{port}"),
        env=agent_env(local_server, tmp_path / "daemon-data", **env),
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    jobs, keys = [], []
    try:
        wait_for(lambda: socket_path.exists() or daemon.poll() is not None, 30, what="the daemon's socket")
        assert daemon.poll() is None, daemon.stderr.read().decode()
        for board in ("0", "3"):
            job = subprocess.Popen(
                [sys.executable, "-c", JOB], stdout=subprocess.PIPE, env={**os.environ, "CUDA_VISIBLE_DEVICES": board}
            )
            assert job.stdout.readline() == b"ready\n"
            jobs.append(job)
            api = API(api_key=local_server.api_key, url_override=local_server.clientlib_url)
            key = APIExperiment(api=api, workspace="ws", project_name="prometheus").id
            attached = subprocess.run(
                agent_argv("attach", "--experiment", key, "--pid", str(job.pid), "--socket", str(socket_path)),
                env=agent_env(local_server, tmp_path / "job-data"),
                cwd=str(REPO),
                capture_output=True,
                timeout=60,
            )
            assert attached.returncode == 0, attached.stderr.decode()
            keys.append(key)

        def both_jobs_gpus():
            page = _scrape(f"http://127.0.0.1:{port}/metrics")
            fb = page.get("DCGM_FI_DEV_FB_USED") if page else None
            return fb if fb and len(fb.samples) == 2 else None

        fb = wait_for(both_jobs_gpus, 20, what="each job's board on the daemon's page")
        assert {s.labels["experiment_key"]: (s.labels["gpu"], s.value) for s in fb.samples} == {
            keys[0]: ("0", 40960.0),  # the job on board 0, in MiB
            keys[1]: ("3", 12000.0),
        }
    finally:
        for job in jobs:
            job.kill()
            job.wait()
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
        shutil.rmtree(short, ignore_errors=True)
    assert daemon.returncode == 0, err.decode()
    assert f"Prometheus metrics on http://127.0.0.1:{port}/metrics" in err.decode()
