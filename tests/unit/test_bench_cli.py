"""Smoke test: the benchmark commands documented in bench/README.md parse their arguments.

The benchmarks themselves are not run here (they take minutes and measure the machine); this
only guards against the documented command lines rotting.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize(
    "script, expected",
    [
        ("bench_compare.py", ["--quick", "--rounds", "--duration-s", "--peers", "--venv-root", "--json", "--before"]),
        ("bench_tick.py", ["--ticks", "--gap-s", "--batch"]),
        ("bench_tree_threads.py", ["--threads", "--walks", "--gap-s"]),
        (
            "bench_agent.py",
            ["--rounds", "--loop-s", "--depth", "--replay", "--pushes", "--with-ingest", "--parts", "--resolution"],
        ),
        ("bench_memory.py", ["--rounds", "--before", "--duration-s"]),
        ("bench_periodic_sample.py", ["--rounds", "--scaling-rounds", "--host-sizes"]),
        ("bench_first_sample.py", ["--rounds", "--before"]),
        ("bench_replay.py", ["--entries", "--rounds", "--before"]),
        ("bench_server_ingest.py", ["--points-per-client", "--kinds", "--clients", "--before", "--rounds"]),
        ("bench_prometheus.py", ["--rounds", "--duration-s", "--model", "--skip-subprocess"]),
        ("bench_gpu.py", ["--fake", "--rounds"]),
        ("bench_election.py", ["--rounds", "--ranks"]),
        ("bench_pages.py", ["--points", "--series", "--repeat", "--browser"]),
    ],
)
def test_bench_help_lists_documented_options(script, expected):
    out = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for option in expected:
        assert option in out.stdout


def test_bench_compare_rejects_unknown_peer():
    out = subprocess.run(
        [sys.executable, str(BENCH / "bench_compare.py"), "--peers", "neptune"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "invalid choice" in out.stderr


def test_bench_agent_rejects_an_unknown_part():
    out = subprocess.run(
        [sys.executable, str(BENCH / "bench_agent.py"), "--parts", "loop,nonsense"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "unknown --parts" in out.stderr
