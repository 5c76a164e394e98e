"""What the benchmarks share: a local server in its own process, and an experiment on it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
API_KEY = "bench-key-0123456789abcdef"


def start_server(data_dir: str, *extra: str, source: Path = REPO_ROOT) -> tuple[subprocess.Popen, str]:
    """``comet-agent server`` on a free port in its own process, running the code under ``source``
    (this checkout, or an ``export_revision``); returns (process, root URL)."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    process = subprocess.Popen(  # cwd: python -m puts it first on sys.path, so it must not hold another comet_agent
        [
            sys.executable,
            "-m",
            "comet_agent",
            "server",
            "--port",
            "0",
            "--data-dir",
            data_dir,
            "--api-key",
            API_KEY,
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=str(source),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("comet-agent server listening on "):
            return process, line.split()[-1]
        if not line and process.poll() is not None:
            break
    process.kill()
    raise RuntimeError("the local server did not start")


def create_experiment(root: str, project: str = "bench") -> str:
    """A new experiment in workspace ``bench``; returns its key."""
    response = requests.post(
        root + "/api/rest/v2/write/experiment/create",
        headers={"Authorization": API_KEY},
        json={"workspaceName": "bench", "projectName": project},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()["experimentKey"]


def compile_sources(source: Path = REPO_ROOT) -> None:
    """Write the bytecode of ``source``'s ``comet_agent`` (``__pycache__``), as installing a wheel
    does: the benches run the agent with ``PYTHONDONTWRITEBYTECODE=1`` (and this VM sets it too),
    and without a cache every run would compile our modules from source, ~0.2 s of CPU and a few
    MB of transient memory that no installed agent pays."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(source) / "comet_agent")], check=True)


def export_revision(revision: str, into: Path) -> Path:
    """The source tree of ``revision`` of this repository (``git archive``), written under ``into``,
    so a bench can run the code before a change beside the code after it, in one run."""
    target = Path(into) / f"src-{revision.replace('/', '_')}"
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", revision], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    compile_sources(target)
    return target


def source_env(source: Path) -> dict[str, str]:
    """The environment for a child process that must import ``comet_agent`` from ``source``."""
    return {**os.environ, "PYTHONPATH": str(source)}
