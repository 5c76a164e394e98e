"""Where the agent's memory goes: RSS after each import step, and the peak tree RSS of real runs.

    python bench/bench_memory.py [--rounds 3] [--before REV]

(1) *Import steps*: a fresh interpreter imports, in the order the agent does, what a run needs
(sqlite3, psutil, the HTTP stack, ``comet_agent.api``, the collectors, the agent), then takes a
static snapshot in a small git repository with a change (host, Python packages, git with patch,
GPU static probe) and one periodic sample; VmRSS is read from ``/proc/self/status`` after each
step and the increments printed, medians of ``--rounds`` interpreters. ``--before REV`` runs the
same steps on the code of ``REV`` (``git archive``) in the same rounds, alternated.

(2) *Peak tree RSS* of ``comet-agent run --experiment KEY -- sleep 30`` and of a ``python -c``
running ``with comet_agent.monitor(...)`` around a sleep, both in that git repository against a
local server (its own process, outside the measured tree), each SIGTERMed after ``--duration-s``;
the tree's RSS summed over its processes is polled at 10 Hz (``bench_compare.measure_tree``), and
the measured process's own peak (``VmHWM``: the agent alone, without the short-lived children of its
static snapshot such as the GitPython child and git commands) is read beside it.
Target (issue 18): peak tree RSS <= 40 MB without a GPU.

Not collected by pytest; figures go in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_compare import base_env, measure_tree  # noqa: E402
from bench_support import API_KEY, REPO_ROOT, compile_sources, create_experiment, export_revision, start_server  # noqa: E402

STEPS = r"""
import json, os, sys, time
def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
out = [("interpreter", rss_mb())]
def step(name, fn):
    fn()
    out.append((name, rss_mb()))
step("sqlite3", lambda: __import__("sqlite3"))
step("psutil", lambda: __import__("psutil"))
step("ssl", lambda: __import__("ssl"))
step("http.client", lambda: __import__("http.client"))
step("urllib3", lambda: __import__("urllib3"))
step("charset_normalizer", lambda: __import__("charset_normalizer"))
step("requests", lambda: __import__("requests"))
step("comet_agent.api", lambda: __import__("comet_agent.api.experiment"))
step("comet_agent.collectors", lambda: __import__("comet_agent.collectors.periodic"))
step("comet_agent.agent", lambda: __import__("comet_agent.agent"))
def snapshot():
    from comet_agent.collectors.snapshot import collect_static
    collect_static(directory=sys.argv[1], include_os_packages=False)
step("static snapshot (git, packages, GPU probe)", snapshot)
def periodic():
    from comet_agent.collectors.periodic import build_periodic_collectors
    collectors, _unavailable = build_periodic_collectors(pid=os.getpid(), directory=sys.argv[1])
    for c in collectors: c.sample(int(time.time() * 1000))
    time.sleep(0.2)
    for c in collectors: c.sample(int(time.time() * 1000))
step("periodic collectors, two samples", periodic)
heavy = [m for m in ("git", "pynvml", "aiohttp", "simplejson") if m in sys.modules]
print(json.dumps({"steps": out, "resident_modules": heavy}))
"""


def make_repo(path: Path) -> Path:
    """A small git repository with one commit and one change, so the snapshot has git work."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b"}
    env["GIT_COMMITTER_EMAIL"] = "b@x"
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)
    (path / "train.py").write_text("print('hello')\n")
    subprocess.run(["git", "add", "train.py"], cwd=path, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "first"], cwd=path, check=True, env=env)
    (path / "train.py").write_text("print('changed')\n")
    return path


def import_steps(source: Path, repo: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(source)}
    result = subprocess.run(
        [sys.executable, "-c", STEPS, str(repo)], env=env, cwd=str(repo), capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def own_peak_reader(argv: list[str], holder: list[float]):
    """An ``on_tick`` for ``measure_tree``: the VmHWM (MiB) of our child running ``argv``, into ``holder[0]``."""

    def tick() -> None:
        for child in psutil.Process().children():
            try:
                if child.cmdline() != argv:
                    continue
                with open(f"/proc/{child.pid}/status") as status:
                    for line in status:
                        if line.startswith("VmHWM:"):
                            holder[0] = max(holder[0], int(line.split()[1]) / 1024)
            except (psutil.Error, OSError):
                continue

    return tick


def tree_peaks(source: Path, repo: Path, root: str, scratch: Path, duration_s: float) -> dict[str, float]:
    peaks = {}
    for way in ("run", "monitor"):
        key = create_experiment(root, "memory")
        home = Path(tempfile.mkdtemp(dir=scratch))
        env = base_env(str(home))
        env.update(
            {
                "COMET_URL_OVERRIDE": root + "/clientlib/",
                "COMET_API_KEY": API_KEY,
                "COMET_AGENT_DATA_DIR": str(home / "agent-data"),
                "PYTHONPATH": str(source),
            }
        )
        if way == "run":
            argv = [sys.executable, "-m", "comet_agent", "run", "--experiment", key, "--", "sleep", "30"]
        else:
            code = (
                "import time, comet_agent\n"
                f"with comet_agent.monitor(experiment_key={key!r}, sample_interval_s=1.0, use_daemon=False):\n"
                f"    time.sleep({duration_s + 30})\n"
            )
            argv = [sys.executable, "-c", code]
        own = [0.0]
        _start, _rc, _cpu, _stop_ms, meter = measure_tree(
            argv, env, str(repo), duration_s, on_tick=own_peak_reader(argv, own)
        )
        peaks[way] = meter.peak_rss_bytes / 2**20  # MiB, as bench_compare reports it
        peaks[f"{way} own"] = own[0]
    return peaks


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", help="a git revision to measure beside this checkout")
    parser.add_argument("--duration-s", type=float, default=5.0, help="seconds before SIGTERM (default 5)")
    args = parser.parse_args(argv)
    compile_sources()
    scratch = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    repo = make_repo(scratch / "repo")
    sources = {"after": REPO_ROOT}
    if args.before:
        sources = {"before": export_revision(args.before, scratch), **sources}
    server, root = start_server(str(scratch / "server"))
    steps: dict[str, list[dict]] = {label: [] for label in sources}
    peaks: dict[str, list[dict[str, float]]] = {label: [] for label in sources}
    try:
        for round_index in range(args.rounds):
            order = list(sources.items())[:: 1 if round_index % 2 == 0 else -1]
            for label, source in order:
                steps[label].append(import_steps(source, repo))
                peaks[label].append(tree_peaks(source, repo, root, scratch, args.duration_s))
    finally:
        server.terminate()
        server.wait(10)
    for label in sources:
        print(f"\n== {label}: RSS after each step, MB (median of {len(steps[label])} interpreters)")
        if steps[label]:
            names = [name for name, _ in steps[label][0]["steps"]]
            previous = None
            for i, name in enumerate(names):
                value = statistics.median(run["steps"][i][1] for run in steps[label])
                delta = "" if previous is None else f"+{value - previous:.1f}"
                print(f"  {name:45s} {value:6.1f}  {delta}")
                previous = value
            print("  heavy modules resident at the end:", steps[label][-1]["resident_modules"])
        for way in ("run", "monitor"):
            values = sorted(p[way] for p in peaks[label])
            print(f"  peak tree RSS, {way:7s}: {statistics.median(values):.1f} MB [{values[0]:.1f}-{values[-1]:.1f}]")
            own = sorted(p[f"{way} own"] for p in peaks[label])
            print(f"  own peak RSS,  {way:7s}: {statistics.median(own):.1f} MB [{own[0]:.1f}-{own[-1]:.1f}] (VmHWM)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
