"""What the agent says it costs (``sys.agent.*``), as users meet it with nothing configured.

In training code (``monitor()``) the process is the training job's: the agent's own CPU is its
threads' (a busy training loop must not show up as the agent's cost), and its memory, shared with
the job, is not reported. Beside a job (``comet-agent run``) the agent is its own process: its
CPU and memory are that process's, and the busy job's CPU is the job's (``sys.proc.*``).
Read back through the official comet_ml.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from comet_agent.server.app import LocalServer
from tests.e2e.agent_support import experiment_key_from, nothing_configured_env

pytestmark = [pytest.mark.e2e, pytest.mark.sdk]

BUSY = "import time\nend = time.time() + 3.5\nwhile time.time() < end:\n    pass\n"
TRAINING = (
    "import sys, comet_agent\n"
    "with comet_agent.monitor(sample_interval_s=0.5, include_os_packages=False) as agent:\n"
    + "".join("    " + line + "\n" for line in BUSY.splitlines())
    + "print('experiment', agent.experiment_key, file=sys.stderr)\n"
)


def _run(argv, tmp_path) -> subprocess.CompletedProcess:
    """``argv`` with nothing configured (the embedded local server), data under ``tmp_path/data``."""
    done = subprocess.run(
        argv,
        env=nothing_configured_env(tmp_path / "home", COMET_AGENT_DATA_DIR=str(tmp_path / "data")),
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _series(data_dir, key, monkeypatch, tmp_path, *names):
    import comet_ml

    with LocalServer(data_dir / "server") as server:
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        monkeypatch.setenv("COMET_URL_OVERRIDE", server.clientlib_url)
        monkeypatch.setenv("COMET_ERROR_TRACKING_ENABLE", "false")
        experiment = comet_ml.API(api_key=server.api_key, cache=False).get_experiment_by_key(key)
        return [[float(point["metricValue"]) for point in experiment.get_metrics(name)] for name in names]


def test_in_training_code_the_agent_counts_its_own_threads_not_the_training_loop(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    done = _run([sys.executable, "-c", TRAINING], tmp_path)
    key = done.stderr.split("experiment ")[-1].split()[0]
    job_cpu, agent_cpu, agent_rss = _series(
        data_dir, key, monkeypatch, tmp_path, "sys.proc.cpu.percent", "sys.agent.cpu.percent", "sys.agent.rss"
    )
    assert len(job_cpu) >= 4 and len(agent_cpu) >= 4
    assert _median(job_cpu) >= 50, job_cpu  # the loop keeps a core busy
    # Before, the agent reported the whole process here: ~100 % while the loop ran. Its own
    # threads peak at start-up (the static snapshot, the embedded server), then stay near 0.
    assert _median(agent_cpu) < 20, agent_cpu
    assert agent_rss == []  # shared with the job: not reported


def test_beside_a_job_the_agent_is_its_own_process(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    done = _run(
        [sys.executable, "-m", "comet_agent", "run", "--sample-interval", "0.5", "--", sys.executable, "-c", BUSY],
        tmp_path,
    )
    job_cpu, agent_cpu, agent_rss = _series(
        data_dir,
        experiment_key_from(done.stderr),
        monkeypatch,
        tmp_path,
        "sys.proc.cpu.percent",
        "sys.agent.cpu.percent",
        "sys.agent.rss",
    )
    assert _median(job_cpu) >= 50, job_cpu
    assert _median(agent_cpu) < 20, agent_cpu  # start-up aside (the embedded server, the snapshot)
    assert agent_rss and all(20e6 < rss < 200e6 for rss in agent_rss), agent_rss
