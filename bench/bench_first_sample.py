"""How soon the first periodic sample reaches the server after the agent is launched.

A scriptable loopback server (``tests/support/recording_server.py``, in this process) stands in
for Comet and notes when each request arrives (``time.monotonic``, the system-wide
CLOCK_MONOTONIC, comparable across processes). Each round launches, in a fresh process:

- ``cli``: ``comet-agent run --experiment KEY -- sleep 30``, timed from just before the launch;
- ``monitor``: ``python -c "import comet_agent; with comet_agent.monitor(...): ..."``, timed from
  process launch and, separately, from the ``with`` line (the child prints its clock there);

and waits for the first request carrying metrics (the metric batch, or ``cpu-metrics`` from an
agent that uses the per-kind endpoints). Figures: launch (or ``with``) to that request, and launch
to the sample time stamped on its ``sys.cpu.percent.avg`` point. The agent is then stopped
(SIGTERM). With ``--before REV`` the same rounds also run the code of ``REV`` (``git archive``),
interleaved, and the ratios before/after are printed. Target: first sample at the server within
0.5 s of launch.

    python bench/bench_first_sample.py --rounds 10 [--before f9cbc30]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from bench_support import export_revision, source_env  # noqa: E402

from tests.support.recording_server import RecordingServer  # noqa: E402

KEY = "b" * 32
API_KEY = "bench-first-sample-key-0123"
METRIC_PATHS = ("/clientlib/batch/logger/experiment/metric", "/api/rest/v2/write/experiment/cpu-metrics")
MONITOR_CHILD = """
import sys, time
import comet_agent
began = time.monotonic()
print(began, flush=True)
with comet_agent.monitor(experiment_key=sys.argv[1], use_daemon=False, include_os_packages=False):
    time.sleep(30)
"""


def first_metrics(server, timeout_s: float = 20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for request in list(server.requests):
            if request.path in METRIC_PATHS:
                return request
        time.sleep(0.005)
    return None


def sample_time_ms(request) -> int | None:
    body = request.json or {}
    if "values" in body:
        return next(
            (p["timestamp"] for p in body["values"] if p.get("metricName") == "sys.cpu.percent.avg"),
            body["values"][0].get("timestamp") if body["values"] else None,
        )
    return body.get("timestamp")


def make_job_directory(where: Path) -> Path:
    """The job's working directory: a small git repository with a commit and a change (the git
    collector has work to do, as in a real run), outside both source trees (a ``python`` child
    puts its working directory first on ``sys.path``)."""
    where.mkdir()
    (where / "train.py").write_text("print('training')\n")
    git = ["git", "-C", str(where), "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "train.py"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "start"], check=True)
    (where / "train.py").write_text("print('training, changed')\n")
    return where


def one_run(server, source: Path, mode: str, scratch: Path, job_directory: Path) -> dict:
    server.clear()
    env = source_env(source)
    env.update(
        {
            "COMET_API_KEY": API_KEY,
            "COMET_URL_OVERRIDE": server.clientlib_url,
            "HOME": str(scratch),
            "COMET_AGENT_DATA_DIR": str(scratch / "data"),
        }
    )
    # Bytecode caches as a user has them (the first, warm-up run writes them).
    env = {k: v for k, v in env.items() if not k.startswith("COMET_AGENT_PER_KIND") and k != "PYTHONDONTWRITEBYTECODE"}
    if mode == "cli":
        argv = [
            sys.executable,
            "-m",
            "comet_agent",
            "run",
            "--experiment",
            KEY,
            "--no-os-packages",
            "--",
            "sleep",
            "30",
        ]
    else:
        argv = [sys.executable, "-c", MONITOR_CHILD, KEY]
    launched_wall_ms = time.time() * 1000
    launched = time.monotonic()
    child = subprocess.Popen(
        argv, env=env, cwd=str(job_directory), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        with_line = float(child.stdout.readline()) if mode == "monitor" else None
        request = first_metrics(server)
        if request is None:
            raise RuntimeError(f"no metrics request from {mode} ({source})")
        stamp = sample_time_ms(request)
        return {
            "launch_to_request_ms": (request.received_monotonic_s - launched) * 1000,
            "with_to_request_ms": (request.received_monotonic_s - with_line) * 1000 if with_line else None,
            "launch_to_sample_ms": stamp - launched_wall_ms if stamp else None,
        }
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def spread(values) -> str:
    values = sorted(v for v in values if v is not None)
    if not values:
        return "n/a"
    return f"{statistics.median(values):6.0f} [{values[0]:.0f}-{values[-1]:.0f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--before", help="also run this git revision's code, interleaved (e.g. f9cbc30)")
    parser.add_argument("--json", default=str(REPO_ROOT / "bench" / "results" / "bench_first_sample.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-first-") as scratch_dir, RecordingServer() as server:
        scratch = Path(scratch_dir)
        sources = {"after": REPO_ROOT}
        if args.before:
            sources = {"before": export_revision(args.before, scratch), **sources}
        configs = [(label, mode) for label in sources for mode in ("cli", "monitor")]
        job_directory = make_job_directory(scratch / "job")
        results: dict = {f"{label} {mode}": [] for label, mode in configs}
        for label, mode in configs:  # warm-up: bytecode caches, page cache
            warm = scratch / f"warm-{label}-{mode}"
            warm.mkdir()
            one_run(server, sources[label], mode, warm, job_directory)
        for round_index in range(args.rounds):
            shift = round_index % len(configs)
            for label, mode in configs[shift:] + configs[:shift]:
                run_dir = scratch / f"{label}-{mode}-{round_index}"
                run_dir.mkdir()
                results[f"{label} {mode}"].append(one_run(server, sources[label], mode, run_dir, job_directory))
            print(
                f"round {round_index + 1}/{args.rounds}: "
                + "  ".join(f"{name} {runs[-1]['launch_to_request_ms']:.0f} ms" for name, runs in results.items()),
                flush=True,
            )
    print(f"\n{os.cpu_count()} CPUs, {args.rounds} rounds interleaved; medians [min-max], ms")
    print(f"{'configuration':<18} {'launch -> request':>22} {'with -> request':>22} {'launch -> sample time':>24}")
    for name, runs in results.items():
        print(
            f"{name:<18} {spread(r['launch_to_request_ms'] for r in runs):>22} "
            f"{spread(r['with_to_request_ms'] for r in runs):>22} {spread(r['launch_to_sample_ms'] for r in runs):>24}"
        )
    if args.before:
        for mode in ("cli", "monitor"):
            ratios = [
                b["launch_to_request_ms"] / a["launch_to_request_ms"]
                for b, a in zip(results[f"before {mode}"], results[f"after {mode}"])
            ]
            print(
                f"{mode}: before / after, launch -> first metrics request: median {statistics.median(ratios):.2f}x "
                f"[{min(ratios):.2f}-{max(ratios):.2f}] (per round)"
            )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
