"""The agent's cost against the physical floor and against the monitors users would pick instead.

One command, interleaved over rounds so that machine drift hits every configuration alike::

    .venv/bin/python bench/bench_compare.py            # full: 30 s per configuration, 3 rounds
    .venv/bin/python bench/bench_compare.py --quick    # smoke: 8 s per configuration, 3 rounds

Configurations (each one process tree, started, left alone for ``--duration-s``, sent SIGTERM):

- ``idle``: ``python`` sleeping; the baseline every CPU figure is taken over.
- ``floor``: a bare loop doing, once per second, the reads the agent needs (``/proc/stat`` with
  per-CPU times, ``meminfo``, ``loadavg``, ``diskstats``, ``net/dev``) and appending one line per
  sample to a file, nothing else.
- ``comet-agent 1s``: ``comet-agent run --experiment KEY`` against a local server (in its own
  process, outside the measured tree: it stands in for the remote Comet) recommending
  ``cpuMonitorIntervalMillis=1000``.
- ``comet-agent sample-1s``: ``--sample-interval 1`` against the default server: sampled every
  second, each push carrying the window's aggregate at the server's cadence.
- ``comet-agent default``: the same against a server at its default cadence (68 s: a first push
  0.5 s after start and a last one at stop).
- ``monitor 1s`` and ``monitor sample-1s``: the same two ways in training code: a ``python -c``
  whose main thread waits inside ``with comet_agent.monitor(experiment_key=KEY, use_daemon=False)``
  against the 1 s server (pushes every second), and with ``sample_interval_s=1.0`` against the
  default server (sampled every second, pushed at the default cadence). Its interpreter is part
  of the tree, as idle's is, so "over idle" is the agent's own cost.
- ``comet_ml``: an ``OfflineExperiment`` with its system monitors at their shortest interval
  (the SDK clamps anything under 10 s to 10 s), idle main thread.
- ``wandb``: ``wandb.init(mode="offline")`` with ``x_stats_sampling_interval=1``; its
  ``wandb-core`` service and any helper processes are part of the tree.
- ``mlflow``: a run in a local file store with system metrics at 1 s sampling, one sample per log.

Peers are installed by this script into their own virtual environments (``--venv-root``,
default ``~/.cache/comet-agent-bench/venvs``), never into the project's environment, at the
versions pinned in ``PEERS``.

Per run: CPU seconds of the whole tree (10 Hz polling of ``/proc`` through psutil, plus the
exact ``wait4`` rusage of the root, which includes every descendant it reaped; this process is
a child subreaper so orphans are reaped, and counted, here), peak RSS summed over the tree,
time from start to the first recorded sample (the sample's own timestamp as the tool stored it,
minus the wall time just before the process was started), time from SIGTERM to the whole tree's
exit, and the number of samples read back from the tool's own output. Results: a table of
medians [min-max] on stdout and JSON (``--json``).

Not collected by pytest (bench/ is outside testpaths); the figures go in bench/README.md.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as _dt
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import psutil
from bench_support import API_KEY, REPO_ROOT, compile_sources, create_experiment, export_revision, start_server  # noqa: E402  (bench/ is on sys.path)

POLL_INTERVAL_S = 0.1
#: Seconds after start (at most half the duration) before the steady CPU window opens.
STEADY_WARMUP_S = 10.0
#: The peers, pinned. Each gets its own virtual environment; psutil is pinned beside them
#: because comet_ml and mlflow use it for their system metrics.
PEERS = {
    "comet_ml": ["comet_ml==3.58.8", "psutil==7.2.2"],
    "wandb": ["wandb==0.31.0", "psutil==7.2.2"],
    "mlflow": ["mlflow==3.17.2", "psutil==7.2.2"],
}

# ---------------------------------------------------------------------------------------------
# The programs whose trees are measured. Each stops cleanly on SIGTERM (a handler sets an event
# and the main thread ends its run), so "stop to exit" includes the tool's own shutdown work.

IDLE = textwrap.dedent("""
    import signal, threading
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    stop.wait()
""")

FLOOR = textwrap.dedent("""
    import os, signal, sys, threading, time
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    paths = ("/proc/stat", "/proc/meminfo", "/proc/loadavg", "/proc/diskstats", "/proc/net/dev")
    out = open(sys.argv[1], "a")
    while not stop.is_set():
        for path in paths:
            with open(path, "rb") as handle:
                handle.read()
        out.write(f"{int(time.time() * 1000)}\\n")
        out.flush()
        stop.wait(1.0)
""")

MONITOR = textwrap.dedent("""
    import signal, sys, threading
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    import comet_agent
    options = {"sample_interval_s": 1.0} if sys.argv[2] == "sample-1s" else {}
    with comet_agent.monitor(experiment_key=sys.argv[1], use_daemon=False, **options):
        stop.wait()
""")

COMET_PEER = textwrap.dedent("""
    import signal, sys, threading
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    import comet_ml
    experiment = comet_ml.OfflineExperiment(offline_directory=sys.argv[1], project_name="bench",
        log_env_cpu=True, log_env_gpu=True, log_env_network=True, log_env_disk=True, log_env_details=True,
        log_env_host=True, auto_output_logging=False, log_code=False, log_git_metadata=False,
        log_git_patch=False, display_summary_level=0)
    stop.wait()
    experiment.end()
""")

WANDB_PEER = textwrap.dedent("""
    import signal, sys, threading
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    import wandb
    run = wandb.init(mode="offline", dir=sys.argv[1], project="bench",
                     settings=wandb.Settings(x_stats_sampling_interval=1.0, console="off", save_code=False))
    stop.wait()
    run.finish()
""")

MLFLOW_PEER = textwrap.dedent("""
    import signal, sys, threading
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    import mlflow
    mlflow.set_tracking_uri("sqlite:///" + sys.argv[1] + "/mlflow.db")
    mlflow.set_system_metrics_sampling_interval(1)
    mlflow.set_system_metrics_samples_before_logging(1)
    run = mlflow.start_run(log_system_metrics=True)
    stop.wait()
    mlflow.end_run()
""")

# Readers run after the measured run, in the peer's environment: they print
# {"samples": N, "first_ms": epoch ms or null, "verified": bool, "note": str}.

COMET_READER = textwrap.dedent("""
    import glob, json, sys, zipfile
    samples, first = set(), None
    zips = glob.glob(sys.argv[1] + "/*.zip")
    for path in zips:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if not name.endswith("messages.json"):
                    continue
                for line in archive.read(name).decode("utf-8").splitlines():
                    if "sys.cpu.percent.avg" not in line:
                        continue
                    message = json.loads(line)
                    payload = message.get("payload", message)
                    metric = payload.get("metric") or {}
                    if metric.get("metricName") != "sys.cpu.percent.avg":
                        continue
                    stamp = payload.get("local_timestamp") or metric.get("timestamp")
                    samples.add(stamp)
                    first = stamp if first is None else min(first, stamp)
    print(json.dumps({"samples": len(samples), "first_ms": first, "verified": bool(zips),
                      "note": "sys.cpu.percent.avg messages in the offline zip"}))
""")

WANDB_READER = textwrap.dedent("""
    # The .wandb file is a LevelDB-style log (7-byte ":W&B" header, 32 KiB blocks, records with
    # a 7-byte header: crc32, length, type FULL/FIRST/MIDDLE/LAST) of protobuf Records; wandb
    # 0.31 ships no Python reader for it, so the framing is parsed here and the payload with
    # wandb's own protobuf classes.
    import glob, json, struct, sys
    from wandb.proto import wandb_internal_pb2
    BLOCK = 32768
    def records(data):
        pos, pending = 7, b""
        while pos + 7 <= len(data):
            room = BLOCK - pos % BLOCK
            if room < 7:
                pos += room
                continue
            _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
            chunk = data[pos + 7:pos + 7 + length]
            pos += 7 + length
            if kind == 0 and length == 0:
                pos += BLOCK - pos % BLOCK if pos % BLOCK else 0
                continue
            if kind == 1:
                yield chunk
            elif kind == 2:
                pending = chunk
            elif kind == 3:
                pending += chunk
            elif kind == 4:
                yield pending + chunk
                pending = b""
    stamps = []
    files = glob.glob(sys.argv[1] + "/wandb/offline-run-*/run-*.wandb")
    for path in files:
        data = open(path, "rb").read()
        for raw in records(data):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(raw)
            if record.WhichOneof("record_type") == "stats":
                stamp = record.stats.timestamp
                stamps.append(stamp.seconds * 1000 + stamp.nanos // 1_000_000)
    print(json.dumps({"samples": len(set(stamps)), "first_ms": min(stamps) if stamps else None,
                      "verified": bool(files), "note": "stats records in the offline .wandb file"}))
""")

MLFLOW_READER = textwrap.dedent("""
    import json, os, sqlite3, sys
    path = sys.argv[1] + "/mlflow.db"
    count, first = 0, None
    if os.path.exists(path):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        count, first = conn.execute("SELECT COUNT(DISTINCT timestamp), MIN(timestamp) FROM metrics "
                                    "WHERE key='system/cpu_utilization_percentage'").fetchone()
    print(json.dumps({"samples": count, "first_ms": first, "verified": os.path.exists(path),
                      "note": "system/cpu_utilization_percentage rows in the mlflow.db store"}))
""")


# ---------------------------------------------------------------------------------------------
# Measuring one process tree


@dataclass
class RunResult:
    """One configuration's figures in one round (seconds, bytes, milliseconds as named)."""

    config: str
    round_index: int
    cpu_s: float
    peak_rss_bytes: int
    first_sample_ms: Optional[float]
    stop_to_exit_ms: float
    samples: Optional[int]
    verified: bool
    note: str = ""
    server_cpu_s: Optional[float] = None
    spool_entries_left: Optional[int] = None
    cpu_over_idle_s: Optional[float] = None
    steady_cpu_ms_per_s: float = 0.0
    steady_over_idle_ms_per_s: Optional[float] = None


def become_subreaper() -> None:
    """Orphaned descendants (daemonised helpers) are reparented here, so their exit is seen and counted."""
    PR_SET_CHILD_SUBREAPER = 36
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        print("warning: cannot become a child subreaper; orphans' CPU after their last poll is lost", file=sys.stderr)


class TreeMeter:
    """Polls a process tree's CPU times and RSS; keeps the last CPU reading of every pid it saw."""

    def __init__(self, root_pid: int):
        self.root_pid = root_pid
        self.root = psutil.Process(root_pid)
        self.last_cpu_s: dict[int, float] = {}
        self.seen: dict[int, psutil.Process] = {}
        self.peak_rss_bytes = 0
        self.steady_cpu_ms_per_s = 0.0
        self.thread_ns: dict[tuple[int, str], int] = {}

    def tree_cpu_s(self) -> float:
        """On-CPU seconds of every thread seen so far, at its last reading.

        From ``/proc/PID/task/TID/schedstat`` (nanoseconds), not the 10 ms clock ticks of
        ``cpu_times``: a 1 s loop costs well under a tick per sample, and the steady window would
        otherwise round it to zero or one tick.
        """
        return sum(self.thread_ns.values()) / 1e9

    def read_threads(self, pid: int) -> None:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as handle:
                    self.thread_ns[(pid, tid)] = int(handle.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue

    def members(self) -> list[psutil.Process]:
        procs = []
        try:
            procs = [self.root] + self.root.children(recursive=True)
        except psutil.Error:
            pass
        # Orphans reparented to us (the subreaper) are no longer under the root: keep them.
        for _pid, proc in list(self.seen.items()):
            if proc not in procs and proc.is_running():
                procs.append(proc)
        return procs

    def poll(self) -> int:
        """One reading; returns how many processes of the tree are alive."""
        rss = 0
        alive = 0
        for proc in self.members():
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    if proc.status() == psutil.STATUS_ZOMBIE:
                        continue
                    rss += proc.memory_info().rss
                # Own time only: reaped children's time is counted through their own last reading.
                self.last_cpu_s[proc.pid] = times.user + times.system
                self.read_threads(proc.pid)
                self.seen.setdefault(proc.pid, proc)
                alive += 1
            except psutil.Error:
                continue
        self.peak_rss_bytes = max(self.peak_rss_bytes, rss)
        return alive


def reap_orphans(meter: TreeMeter) -> float:
    """Reap reparented descendants that exited; returns their exact CPU seconds (rusage)."""
    extra_s = 0.0
    for pid in list(meter.seen):
        if pid == meter.root_pid:
            continue
        try:
            waited, _status, usage = os.wait4(pid, os.WNOHANG)
        except ChildProcessError:
            continue  # not our child: reaped inside the tree, so counted in the root's rusage
        if waited == pid:
            extra_s += usage.ru_utime + usage.ru_stime
            meter.last_cpu_s.pop(pid, None)
            meter.seen.pop(pid, None)
    return extra_s


def measure_tree(
    argv: list[str], env: dict, cwd: str, duration_s: float, stop_timeout_s: float = 60.0, on_tick=None
) -> tuple[float, int, float, float, TreeMeter]:
    """Run ``argv``; SIGTERM it after ``duration_s``. Returns (start wall s, rc, cpu_s, stop-to-exit ms, meter)."""
    start_wall_s = time.time()
    process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    meter = TreeMeter(process.pid)
    began = time.monotonic()
    deadline = began + duration_s
    # The steady window starts once start-up (imports, static snapshot, first sample) is over.
    warm_at = began + min(STEADY_WARMUP_S, duration_s / 2)
    warm_cpu_s = None
    try:
        while time.monotonic() < deadline:
            meter.poll()
            if warm_cpu_s is None and time.monotonic() >= warm_at:
                warm_cpu_s, warm_t = meter.tree_cpu_s(), time.monotonic()
            if on_tick is not None:
                on_tick()
            time.sleep(POLL_INTERVAL_S)
    except BaseException:  # interrupted: leave no measured process behind
        for proc in meter.members():
            try:
                proc.kill()
            except psutil.Error:
                pass
        raise
    meter.poll()
    stop_sent = time.monotonic()
    meter.steady_cpu_ms_per_s = (meter.tree_cpu_s() - warm_cpu_s) * 1000 / (stop_sent - warm_t)
    # os.kill, not Popen.send_signal: the latter polls first and would reap a root that already
    # exited, losing its rusage.
    try:
        os.kill(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    root_usage_s, returncode = None, None
    orphan_cpu_s = 0.0
    end_by = stop_sent + stop_timeout_s
    while time.monotonic() < end_by:
        if root_usage_s is None:
            waited, status, usage = os.wait4(process.pid, os.WNOHANG)
            if waited == process.pid:
                root_usage_s = usage.ru_utime + usage.ru_stime
                returncode = os.waitstatus_to_exitcode(status)
                process.returncode = returncode
                meter.last_cpu_s.pop(process.pid, None)
        orphan_cpu_s += reap_orphans(meter)
        alive = (
            meter.poll()
            if root_usage_s is None
            else sum(
                1
                for pid, p in meter.seen.items()
                if pid != process.pid and p.is_running() and p.status() != psutil.STATUS_ZOMBIE
            )
        )
        if root_usage_s is not None and alive == 0:
            break
        time.sleep(0.01)
    stop_to_exit_ms = (time.monotonic() - stop_sent) * 1000
    if root_usage_s is None:
        process.kill()
        process.wait()
        raise RuntimeError(f"{argv[:3]} did not exit within {stop_timeout_s} s of SIGTERM")
    orphan_cpu_s += reap_orphans(meter)
    stderr = process.stderr.read().decode("utf-8", "replace")
    process.stderr.close()
    if returncode not in (0, -signal.SIGTERM, 128 + signal.SIGTERM, 143):
        print(f"warning: {argv[1:3]} exited with {returncode}: {stderr[-2000:]}", file=sys.stderr)
    # Descendants still unreaped were reparented elsewhere: their last polled reading is all we have.
    cpu_s = root_usage_s + orphan_cpu_s + sum(s for pid, s in meter.last_cpu_s.items() if pid != process.pid)
    return start_wall_s, returncode, cpu_s, stop_to_exit_ms, meter


# ---------------------------------------------------------------------------------------------
# Environments


def ensure_peer_venv(root: Path, name: str, specs: list[str]) -> Path:
    """The peer's virtual environment with exactly ``specs`` installed (created once, reused)."""
    marker_text = "\n".join(specs)
    venv = root / name
    marker = venv / "bench-pins.txt"
    python = venv / "bin" / "python"
    if marker.exists() and marker.read_text() == marker_text and python.exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    print(f"installing {' '.join(specs)} into {venv} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *specs], check=True)
    marker.write_text(marker_text)
    return python


def base_env(home: str) -> dict:
    """A clean environment: temporary HOME (no stray configs), nothing phones home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMET_", "WANDB_", "MLFLOW_", "PYTHON"))}
    env.update(
        {
            "HOME": home,
            "COMET_ERROR_TRACKING_ENABLE": "false",
            "COMET_DISABLE_AUTO_LOGGING": "1",
            "WANDB_MODE": "offline",
            "WANDB_SILENT": "true",
            "WANDB_DISABLE_CODE": "true",
            "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false",
            "PYTHONDONTWRITEBYTECODE": "1",
            "DO_NOT_TRACK": "1",
            "PYTHONUNBUFFERED": "1",
            # comet_ml's shortest system-monitor interval: it clamps anything below 10 s to 10 s.
            "COMET_SYSTEM_CPU_INTERVAL": "10",
            "COMET_SYSTEM_GPU_INTERVAL": "10",
            "COMET_SYSTEM_NETWORK_INTERVAL": "10",
            "COMET_SYSTEM_DISK_INTERVAL": "10",
        }
    )
    return env


def server_samples(data_dir: str, experiment_key: str) -> tuple[int, Optional[int]]:
    """(distinct sample timestamps of sys.ram.used, the first one) as the server stored them."""
    from comet_agent.server.store import DATABASE_FILE_NAME

    conn = sqlite3.connect(f"file:{data_dir}/{DATABASE_FILE_NAME}?mode=ro", uri=True, timeout=10)
    try:
        count, first = conn.execute(
            "SELECT COUNT(DISTINCT timestamp_ms), MIN(timestamp_ms) FROM metrics "
            "WHERE experiment_key=? AND is_system=1 AND name='sys.ram.used'",
            (experiment_key,),
        ).fetchone()
    finally:
        conn.close()
    return count, first


def spool_depth(data_dir: Path, experiment_key: str) -> int:
    path = data_dir / "spool" / f"{experiment_key}.db"
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# One run of each configuration


class Bench:
    def __init__(self, args):
        self.args = args
        self.scratch = Path(tempfile.mkdtemp(prefix="bench-compare-"))
        self.pythons: dict[str, Path] = {}
        self.servers: dict[str, tuple[subprocess.Popen, str, str]] = {}
        self.last_meter: Optional[TreeMeter] = None
        self.before_source: Optional[Path] = None

    def setup(self) -> None:
        compile_sources()
        if self.args.before:
            self.before_source = export_revision(self.args.before, self.scratch)
        venv_root = Path(self.args.venv_root).expanduser()
        venv_root.mkdir(parents=True, exist_ok=True)
        for name in self.args.peers:
            if self.args.only and name not in self.args.only:
                continue
            self.pythons[name] = ensure_peer_venv(venv_root, name, PEERS[name])
        for name, extra in (("1s", ["--cpu-interval-ms", "1000"]), ("default", [])):
            data_dir = str(self.scratch / f"server-{name}")
            process, root = start_server(data_dir, *extra)
            self.servers[name] = (process, root, data_dir)

    def close(self) -> None:
        for process, _root, _data in self.servers.values():
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def measure(self, *args, **kwargs):
        outcome = measure_tree(*args, **kwargs)
        self.last_meter = outcome[-1]
        return outcome

    def configs(self) -> list[str]:
        every = [
            "idle",
            "floor",
            "comet-agent 1s",
            "comet-agent sample-1s",
            "comet-agent default",
            "monitor 1s",
            "monitor sample-1s",
            *self.args.peers,
        ]
        if self.args.only:
            every = [c for c in every if c in ("idle", "floor") or c in self.args.only]
        if self.args.before:  # the agent's rows again, running the code of --before
            every += [f"{c} before" for c in every if c.startswith(("comet-agent", "monitor"))]
        return every

    def run(self, config: str, round_index: int) -> RunResult:
        work = self.scratch / f"{config.replace(' ', '-')}-{round_index}"
        work.mkdir()
        home = work / "home"
        home.mkdir()
        env = base_env(str(home))
        duration_s = self.args.duration_s
        if config in ("idle", "floor"):
            code = IDLE if config == "idle" else FLOOR
            samples_file = work / "samples.txt"
            start_s, _rc, cpu_s, stop_ms, meter = self.measure(
                [sys.executable, "-c", code, str(samples_file)], env, str(work), duration_s
            )
            if config == "idle":
                return RunResult(
                    config, round_index, cpu_s, meter.peak_rss_bytes, None, stop_ms, None, True, "baseline"
                )
            stamps = [int(line) for line in samples_file.read_text().split()]
            return RunResult(
                config,
                round_index,
                cpu_s,
                meter.peak_rss_bytes,
                stamps[0] - start_s * 1000 if stamps else None,
                stop_ms,
                len(stamps),
                True,
                "lines in its samples file",
            )
        if config.startswith(("comet-agent", "monitor")):
            way, mode, *before = config.split()
            source = self.before_source if before else REPO_ROOT
            server, root, server_dir = self.servers["1s" if mode == "1s" else "default"]
            key = create_experiment(root, "compare")
            data_dir = work / "agent-data"
            env.update(
                {
                    "COMET_URL_OVERRIDE": root + "/clientlib/",
                    "COMET_API_KEY": API_KEY,
                    "COMET_AGENT_DATA_DIR": str(data_dir),
                    "PYTHONPATH": str(source),
                }
            )
            server_proc = psutil.Process(server.pid)
            server_cpu_before = sum(server_proc.cpu_times()[:2])
            if way == "monitor":
                argv = [sys.executable, "-c", MONITOR, key, mode]
            else:
                argv = [
                    sys.executable,
                    "-m",
                    "comet_agent",
                    "run",
                    "--experiment",
                    key,
                    "--directory",
                    str(work),
                    *(["--sample-interval", "1"] if mode == "sample-1s" else []),
                ]
            start_s, _rc, cpu_s, stop_ms, meter = self.measure(
                argv,
                env,
                str(work),
                duration_s,
            )
            server_cpu_s = sum(server_proc.cpu_times()[:2]) - server_cpu_before
            count, first_ms = server_samples(server_dir, key)
            return RunResult(
                config,
                round_index,
                cpu_s,
                meter.peak_rss_bytes,
                first_ms - start_s * 1000 if first_ms else None,
                stop_ms,
                count,
                True,
                "distinct sys.ram.used timestamps in the server's store",
                server_cpu_s=server_cpu_s,
                spool_entries_left=spool_depth(data_dir, key),
            )
        python = str(self.pythons[config])
        program, reader = {
            "comet_ml": (COMET_PEER, COMET_READER),
            "wandb": (WANDB_PEER, WANDB_READER),
            "mlflow": (MLFLOW_PEER, MLFLOW_READER),
        }[config]
        out_dir = work / "out"
        out_dir.mkdir()
        start_s, _rc, cpu_s, stop_ms, meter = self.measure(
            [python, "-c", program, str(out_dir)], env, str(work), duration_s
        )
        read = subprocess.run(
            [python, "-c", reader, str(out_dir)], env=env, cwd=str(work), capture_output=True, text=True, timeout=120
        )
        try:
            found = json.loads(read.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            found = {
                "samples": None,
                "first_ms": None,
                "verified": False,
                "note": "reader failed: " + read.stderr.strip()[-300:],
            }
        first_ms = found["first_ms"]
        return RunResult(
            config,
            round_index,
            cpu_s,
            meter.peak_rss_bytes,
            first_ms - start_s * 1000 if first_ms else None,
            stop_ms,
            found["samples"],
            bool(found["verified"]) and found["samples"] is not None,
            found["note"],
        )


# ---------------------------------------------------------------------------------------------
# Report


def describe_machine() -> str:
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = psutil.virtual_memory().total / 2**30
    return (
        f"{os.cpu_count()} CPUs ({model or platform.machine()}), "
        f"{memory_gib:.0f} GiB, Linux {platform.release()}, Python {platform.python_version()}"
    )


def spread(values: list, scale: float = 1.0, digits: int = 2) -> str:
    values = [v * scale for v in values if v is not None]
    if not values:
        return "n/a"
    med = statistics.median(values)
    return f"{med:.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def summarise(results: list[RunResult], versions: dict[str, str]) -> list[dict]:
    idle = {r.round_index: r for r in results if r.config == "idle"}
    for r in results:
        r.cpu_over_idle_s = r.cpu_s - idle[r.round_index].cpu_s
        r.steady_over_idle_ms_per_s = r.steady_cpu_ms_per_s - idle[r.round_index].steady_cpu_ms_per_s
    floor = [r.cpu_over_idle_s for r in results if r.config == "floor"]
    floor_med = statistics.median(floor) if floor else None
    floor_steady = [r.steady_over_idle_ms_per_s for r in results if r.config == "floor"]
    floor_steady_med = statistics.median(floor_steady) if floor_steady else None
    rows = []
    for config in dict.fromkeys(r.config for r in results):
        mine = [r for r in results if r.config == config]
        over = [r.cpu_over_idle_s for r in mine]
        rows.append(
            {
                "config": config,
                "version": versions.get(config, ""),
                "cpu_over_idle_s": over,
                "cpu_x_floor": [o / floor_med for o in over] if floor_med and config != "idle" else None,
                "steady_cpu_over_idle_ms_per_s": [r.steady_over_idle_ms_per_s for r in mine],
                "steady_x_floor": (
                    [r.steady_over_idle_ms_per_s / floor_steady_med for r in mine]
                    if floor_steady_med and floor_steady_med > 0 and config != "idle"
                    else None
                ),
                "peak_rss_bytes": [r.peak_rss_bytes for r in mine],
                "first_sample_ms": [r.first_sample_ms for r in mine],
                "stop_to_exit_ms": [r.stop_to_exit_ms for r in mine],
                "samples": [r.samples for r in mine],
                "verified": all(r.verified for r in mine),
                "how_samples_were_read": mine[0].note,
                "server_cpu_s": [r.server_cpu_s for r in mine] if mine[0].server_cpu_s is not None else None,
                "spool_entries_left": [r.spool_entries_left for r in mine]
                if mine[0].spool_entries_left is not None
                else None,
            }
        )
    return rows


def print_table(rows: list[dict], header: str) -> str:
    lines = [
        header,
        "",
        "| configuration | version | CPU s over idle, whole run | x floor | steady CPU ms/s over idle | "
        "x floor | peak tree RSS MB | first sample ms | stop to exit ms | samples recorded |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        samples = spread(row["samples"], digits=0) if row["config"] != "idle" else "-"
        if row["config"] != "idle" and not row["verified"]:
            samples += " (unverified)"
        xfloor = spread(row["cpu_x_floor"]) if row["cpu_x_floor"] else "-"
        cpu = spread(row["cpu_over_idle_s"], digits=3) if row["config"] != "idle" else "0 (baseline)"
        steady = spread(row["steady_cpu_over_idle_ms_per_s"], digits=2) if row["config"] != "idle" else "0 (baseline)"
        steady_x = spread(row["steady_x_floor"], digits=1) if row["steady_x_floor"] else "-"
        lines.append(
            f"| {row['config']} | {row['version']} | {cpu} | {xfloor} | {steady} | {steady_x} | "
            f"{spread(row['peak_rss_bytes'], 1 / 2**20, 1)} | {spread(row['first_sample_ms'], digits=0)} | "
            f"{spread(row['stop_to_exit_ms'], digits=0)} | {samples} |"
        )
    extra = [r for r in rows if r["server_cpu_s"]]
    if extra:
        lines.append("")
        for row in extra:
            lines.append(
                f"{row['config']}: local server CPU s (not counted above) {spread(row['server_cpu_s'], digits=3)}; "
                f"spool entries left at exit {row['spool_entries_left']}"
            )
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=30.0, help="seconds each configuration runs (default 30)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 8 s per configuration, 3 rounds (~4 min)")
    parser.add_argument(
        "--peers", nargs="*", default=list(PEERS), choices=list(PEERS), help="peers to include (default: all)"
    )
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="run only these configurations (idle and floor always run), e.g. 'comet-agent sample-1s'",
    )
    parser.add_argument(
        "--before",
        default=None,
        help="also run the agent's configurations on the code of this revision (git archive), interleaved",
    )
    parser.add_argument(
        "--venv-root",
        default="~/.cache/comet-agent-bench/venvs",
        help="where the peers' virtual environments are created",
    )
    parser.add_argument(
        "--json", default=str(REPO_ROOT / "bench" / "results" / "bench_compare.json"), help="where the JSON results go"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration_s = 8.0
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    become_subreaper()
    bench = Bench(args)
    results: list[RunResult] = []
    started = _dt.datetime.now(_dt.timezone.utc)
    load_before = os.getloadavg()[0]
    try:
        bench.setup()
        configs = bench.configs()
        for round_index in range(args.rounds):
            # Rotate the order each round so no configuration always runs right after another.
            order = configs[round_index % len(configs) :] + configs[: round_index % len(configs)]
            for config in order:
                result = bench.run(config, round_index)
                result.steady_cpu_ms_per_s = bench.last_meter.steady_cpu_ms_per_s
                results.append(result)
                print(
                    f"round {round_index + 1}/{args.rounds} {config:<20} cpu {result.cpu_s:7.3f} s  "
                    f"rss {result.peak_rss_bytes / 2**20:6.1f} MB  first {result.first_sample_ms or float('nan'):7.0f} ms  "
                    f"stop {result.stop_to_exit_ms:6.0f} ms  samples {result.samples}",
                    flush=True,
                )
    finally:
        bench.close()
    import comet_agent

    versions = {
        "comet-agent 1s": comet_agent.__version__,
        "comet-agent default": comet_agent.__version__,
        "comet-agent sample-1s": comet_agent.__version__,
        "monitor 1s": comet_agent.__version__,
        "monitor sample-1s": comet_agent.__version__,
        **{name: PEERS[name][0].split("==")[1] for name in args.peers},
    }
    if args.before:
        versions.update(
            {
                f"{c} before": f"{args.before} (--before)"
                for c in list(versions)
                if c.startswith(("comet-agent", "monitor"))
            }
        )
    rows = summarise(results, versions)
    header = (
        f"{started:%Y-%m-%d %H:%M} UTC, {describe_machine()}, load average before "
        f"{load_before:.2f}; {args.rounds} rounds x {args.duration_s:.0f} s per configuration; "
        "medians [min-max]"
    )
    table = print_table(rows, header)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "started": started.isoformat(),
                "machine": describe_machine(),
                "duration_s": args.duration_s,
                "rounds": args.rounds,
                "peers": PEERS,
                "rows": rows,
                "runs": [asdict(r) for r in results],
                "table": table,
            },
            indent=1,
        )
    )
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
