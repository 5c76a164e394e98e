"""One job's life, the same whichever way it came in: the engine behind ``Agent`` and the daemon.

A ``Job`` records one watched job into one experiment:

1. the first periodic sample at once: rates are primed at ``start()`` and the first push follows
   ``FIRST_WINDOW_S`` later;
2. the static snapshot (system details, packages, git, GPU static info), once, on its own thread,
   begun after that first push reached the server (or ``FIRST_PUSH_WAIT_S``), so its imports and
   commands do not compete with it;
3. the start time (only for an experiment this agent created) and the tags;
4. periodic sampling: the host series from a ``HostSampler`` (the job's own in-process, or the
   daemon's shared one), plus the job's own process tree and job-directory usage, and the GPUs
   the job uses; samples are taken every ``sample_interval_s`` (given, else what the server
   recommends as ``sampleIntervalMillis``, else one sample per push) and each push carries the
   window (``payloads.push_requests``): every sample with its own timestamp (``resolution``
   ``"full"``, the default) or one aggregate per series (``"window"``), in one metric batch per
   push (more only beyond 1,000 points), every series by name, unless ``per_kind_endpoints`` asks
   for Comet's cpu/ram/load/gpu-metrics endpoints;
5. pushes at the cadences the server recommends: a heartbeat calls ``update_status()`` every
   ``isAliveBeatDurationMillis`` and applies ``cpuMonitorIntervalMillis`` /
   ``gpuMonitorIntervalMillis`` (and our local server's ``sampleIntervalMillis``) from the next
   tick on (clamped; garbage ignored);
6. everything goes to the spool first; the sender drains it through the ``ExperimentLink``,
   which reaches (or creates) the experiment only when the server answers;
7. at the end: a last push, the end time, a bounded flush; what is left stays in the spool.

On a job over several nodes, or with several processes on one node (``config.NodeIdentity``):
host series carry the node prefix (``<node id>.sys.cpu.percent.avg``, as comet_ml names them
with ``distributed_node_identifier``), the job's own series (process tree, job directory) the
node prefix plus ``rank<R>.`` when ranks share the node; only the process holding the node's
``HostElection`` samples the host; the experiment's system details come from node 0's local rank
0, and each node's hardware is recorded as the "other" ``comet_agent.node.<node id>``
(``node_hardware``).

End time, one rule for every way in: the agent writes the experiment's end time when the job it
recorded ended (the wrapped command or watched pid exited, the ``monitor()`` block ended, a
daemon registration was detached or its pid exited), and when it created the experiment; it
writes the start time only for an experiment it created. An agent that was merely stopped
(``comet-agent run --experiment KEY`` without a job) leaves both alone.

Nothing here raises into the caller once ``start()`` returned; a collector's failure costs its
own data, a delivery failure ends in the spool, a full disk is counted as dropped samples.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from comet_agent import errors
from comet_agent.config import NODE_OTHER_PREFIX, RESOLUTIONS, NodeIdentity, resolution_setting
from comet_agent.delivery import payloads
from comet_agent.delivery.sender import Sender
from comet_agent.delivery.spool import PERIODIC, STATIC, Spool, samples_in
from comet_agent.engine.election import HostElection
from comet_agent.engine.host_sampler import CADENCES, HostSampler, close_collectors, sample_collectors
from comet_agent.engine.link import ExperimentLink
from comet_agent.engine.scheduler import Scheduler
from comet_agent.errors import SpoolError
from comet_agent.paths import ensure_private_dir, write_private_file
from comet_agent.sources.procfs import KernelFiles, pid_alive, read_pid_cwd
from comet_agent.warn_once import WarnOnce

log = logging.getLogger(__name__)

#: Comet's documented defaults, used until (or unless) the server recommends others.
DEFAULT_INTERVALS_MS = {"heartbeat": 10_000, "cpu": 68_000, "gpu": 60_000}
#: Bounds any recommended interval is clamped to: faster than 1 s costs CPU for nothing, slower
#: than an hour (10 min for the heartbeat) makes the experiment look dead.
INTERVAL_BOUNDS_MS = {
    "heartbeat": (1_000, 600_000),
    "cpu": (1_000, 3_600_000),
    "gpu": (1_000, 3_600_000),
    "sample": (1_000, 3_600_000),
}
SERVER_INTERVAL_KEYS = {
    "heartbeat": "isAliveBeatDurationMillis",
    "cpu": "cpuMonitorIntervalMillis",
    "gpu": "gpuMonitorIntervalMillis",
}
#: The sampling interval a server may recommend beside the push intervals: a comet-agent extension
#: that our local server answers (hosted Comet gives none: the agent then samples once per push,
#: as comet_ml's monitors do). A ``sample_interval_s`` given to the job wins over it.
SERVER_SAMPLE_INTERVAL_KEY = "sampleIntervalMillis"
_SCHEDULER_JOB = {"heartbeat": "heartbeat", "cpu": "push_cpu", "gpu": "push_gpu"}
#: The first window: the rate collectors are primed at ``start()`` and the first push follows this
#: much later, so its rates cover 150 ms of counters (USER_HZ 100: 15 ticks per CPU) and it
#: reaches the server within half a second of launch (``bench/bench_first_sample.py``).
FIRST_WINDOW_S = 0.15
#: How long the static snapshot waits for the first push to be delivered before it starts anyway
#: (a server that is down or slow must not hold the snapshot back for long).
FIRST_PUSH_WAIT_S = 1.0
#: How often the status file (``comet-agent status``) is rewritten at most.
STATUS_WRITE_INTERVAL_S = 5.0
#: How long ``stop()`` waits for a static snapshot still being collected, however short its
#: timeout: the snapshot is only spooled then (not sent), so waiting for it costs no network time,
#: and a stop that did not wait would lose it.
STATIC_SNAPSHOT_GRACE_S = 10.0
#: How often a watched pid is checked.
WATCH_INTERVAL_S = 0.5
#: System-details fields the snapshot knows but the write does not carry (derived by the server).
_NOT_WRITTEN_DETAILS = ("totalRam", "maxTotalMemory", "systemMetricNames")
#: System-details fields that make up a node's hardware record (``node_hardware``).
_NODE_HARDWARE_FIELDS = (
    "hostname",
    "ip",
    "machine",
    "processor",
    "os",
    "osRelease",
    "osType",
    "pythonVersion",
    "totalRam",
    "networkInterfaceIps",
)


def node_hardware(details: dict[str, Any]) -> dict[str, Any]:
    """A node's hardware and environment, from its system details: host, OS, Python, RAM, GPUs
    (name, memory, uuid) and the additional info (CPU counts, cgroup limits, scheduler identity).
    Small enough for an "other" value, which hosted Comet and comet_ml read back as text."""
    record = {name: details.get(name) for name in _NODE_HARDWARE_FIELDS if details.get(name) not in (None, [], "")}
    gpus = [
        {k: gpu.get(k) for k in ("gpuIndex", "name", "totalMemory", "uuid") if gpu.get(k) is not None}
        for gpu in details.get("gpuStaticInfoList") or []
        if isinstance(gpu, dict)
    ]
    if gpus:
        record["gpus"] = gpus
    extra = {
        str(item.get("key")): item.get("value")
        for item in details.get("logAdditionalSystemInfoList") or []
        if isinstance(item, dict) and item.get("key")
    }
    if extra:
        record["additional"] = extra
    return record


def clamp_interval_ms(name: str, value: Any) -> tuple[Optional[int], Optional[str]]:
    """Validate one recommended interval.

    Returns ``(milliseconds, None)`` for a usable value (clamped into ``INTERVAL_BOUNDS_MS``, with
    the clamping explained in the second item), or ``(None, reason)`` for garbage (missing,
    non-numeric, zero or negative, not finite), which leaves the current interval in force.
    """
    low, high = INTERVAL_BOUNDS_MS[name]
    if value is None:
        return None, "not given"
    if isinstance(value, bool):
        return None, f"{value!r} is not a number"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None, f"{value!r} is not a number"
    if number != number or number in (float("inf"), float("-inf")):
        return None, f"{value!r} is not finite"
    if number <= 0:
        return None, f"{value!r} is not positive"
    clamped = int(min(max(number, low), high))
    if clamped != number:
        return clamped, f"{value!r} clamped to {clamped}"
    return clamped, None


def job_gpu_samples(
    gpu_samples: Sequence[Any], *, cuda_visible_devices: Optional[str], used_gpu_indices: Sequence[int] = ()
) -> list[Any]:
    """The host's GPU samples that belong to one job, renumbered as the job sees its GPUs.

    Args:
        gpu_samples: ``GpuSample`` records of every host GPU (``gpu_index`` = NVML index).
        cuda_visible_devices: the job's ``CUDA_VISIBLE_DEVICES`` (indices or ``GPU-`` UUID
            prefixes), or None when unset.
        used_gpu_indices: host GPU indices on which NVML lists a process of the job's tree.

    Returns:
        With ``cuda_visible_devices`` set: the GPUs it selects (CUDA's rules: the list stops at the
        first entry that does not resolve), ``gpu_index`` = position in that list. Without it:
        the GPUs in ``used_gpu_indices``, in index order, renumbered from 0. A job that neither
        names nor uses a GPU gets none.
    """
    from comet_agent.sources.nvml import parse_cuda_visible_devices, select_visible_devices

    by_index = {sample.gpu_index: sample for sample in gpu_samples}
    entries = parse_cuda_visible_devices(cuda_visible_devices)
    if entries is not None:
        uuids = [by_index[i].uuid if i in by_index else None for i in range(max(by_index, default=-1) + 1)]
        selection, _ = select_visible_devices(entries, uuids, lambda: {})
        chosen = [index for index, mig_slot in selection if mig_slot is None]
    else:
        chosen = sorted(set(used_gpu_indices))
    return [
        dataclasses.replace(by_index[index], gpu_index=position)
        for position, index in enumerate(i for i in chosen if i in by_index)
    ]


def per_kind_endpoints_setting(config: Any) -> bool:
    """The ``agent_per_kind_endpoints`` setting of a resolved configuration (``config.ResolvedConfig``):
    true for ``1``/``true``/``yes``/``on``; False when unset or without a configuration."""
    value = config.get("agent_per_kind_endpoints") if config is not None else None
    return str(value).strip().lower() in ("1", "true", "yes", "on") if value is not None else False


def job_directory(pid: Optional[int], procfs_root: str = "/proc") -> str:
    """A watched job's working directory (its git repository, its ``sys.disk.job.*``): the pid's
    own when readable, else this process's."""
    if pid is not None and pid != os.getpid():
        try:
            return read_pid_cwd(procfs_root, pid)
        except OSError:
            pass
    return os.getcwd()


@dataclass
class JobStatus:
    """What ``comet-agent status`` shows of a running job."""

    pid: int
    experiment_key: Optional[str]
    experiment_url: Optional[str]
    server: Optional[str]
    intervals_ms: dict[str, int]
    sample_interval_s: Optional[float]
    started_ms: int
    last_push_ms: Optional[int] = None
    last_success_ms: Optional[int] = None
    spool_depth: int = 0
    dropped_total: int = 0
    rejected: int = 0
    quarantined: int = 0
    last_error: Optional[str] = None
    watching: Optional[str] = None
    node_id: Optional[str] = None
    host_sampler: bool = True
    resolution: str = "full"


@dataclass(frozen=True)
class GpuView:
    """How a job sees the host's GPUs. ``select=False``: the host sampler already shows the job's
    GPUs (in-process: NVML honours this process's ``CUDA_VISIBLE_DEVICES``); ``select=True``: the
    sampler shows every host GPU and ``job_gpu_samples`` picks the job's (the daemon)."""

    select: bool = False
    cuda_visible_devices: Optional[str] = None


class Job:
    """One job recorded into one experiment (see the module docstring).

    Args:
        link: the experiment (resolved when the server answers).
        spool: the job's spool (``<data dir>/spool/<experiment key>.db``).
        host: the host sampler (the job's own, or the daemon's shared one); not closed here.
        pid: the watched job: its process tree, its interpreter's packages, its command line.
        watch_pid: end the job (``on_watched_exit``) when ``pid`` exits.
        directory: the job's working directory (git, ``sys.disk.job.*``).
        command: the wrapped command line (masked before it is recorded).
        sample_interval_s: sample this often; None: as often as the server recommends
            (``sampleIntervalMillis``), else one sample per push.
        resolution: what a push carries of its window's samples: ``"full"`` every sample with
            its timestamp, ``"window"`` one aggregate per series (``payloads.push_requests``).
            None: the ``agent_resolution`` setting of the link's configuration
            (``COMET_AGENT_RESOLUTION``, or ``resolution = ...`` under ``[comet_agent]``), else
            ``"full"``; an unknown value raises ``ConfigError``.
        gpus: how the job's GPUs are chosen from the host's.
        include_os_packages, include_git, include_gpu: switch those static collectors off.
        procfs_root: the ``/proc`` tree.
        tags: added to the experiment.
        set_start_time: write the start time (the experiment was created here).
        set_end_time: write the end time at ``stop()`` (see the end-time rule above).
        secrets: exact strings masked in the recorded command line.
        status_path: where the status file is written (None: none).
        on_watched_exit: called (from the scheduler thread) when the watched pid exits.
        started_ms: the job's start, epoch ms (default: now).
        node: which node and local rank this job runs as (prefixes, system details; see the module
            docstring); default: a single node, comet_ml's unprefixed names.
        election: this process's part in electing its node's host sampler; None: this job
            always samples the host (the daemon, whose host sampler is shared already).
        per_kind_endpoints: push through Comet's ``cpu-metrics``, ``ram-metrics``,
            ``load-metrics`` and ``gpu-metrics`` endpoints plus a metric batch (up to five requests
            per push) instead of one metric batch. None: the ``agent_per_kind_endpoints`` setting
            of the link's configuration (``COMET_AGENT_PER_KIND_ENDPOINTS=true``, or
            ``per_kind_endpoints = true`` under ``[comet_agent]`` in ``.comet.config``), else False.
    """

    def __init__(
        self,
        link: ExperimentLink,
        spool: Spool,
        host: HostSampler,
        *,
        pid: Optional[int] = None,
        watch_pid: bool = False,
        directory: Optional[str] = None,
        command: Optional[Sequence[str]] = None,
        sample_interval_s: Optional[float] = None,
        gpus: GpuView = GpuView(),
        include_os_packages: bool = True,
        include_git: bool = True,
        include_gpu: bool = True,
        procfs_root: str = "/proc",
        tags: Sequence[str] = (),
        set_start_time: bool = False,
        set_end_time: bool = False,
        secrets: Sequence[str] = (),
        status_path: Optional[Path] = None,
        on_watched_exit: Optional[Callable[[], None]] = None,
        started_ms: Optional[int] = None,
        per_kind_endpoints: Optional[bool] = None,
        node: NodeIdentity = NodeIdentity(),
        election: Optional[HostElection] = None,
        resolution: Optional[str] = None,
    ):
        if sample_interval_s is not None and sample_interval_s <= 0:
            raise ValueError(f"sample_interval_s must be positive, got {sample_interval_s}")
        if resolution is None:
            resolution = resolution_setting(getattr(link.api, "config", None))
        elif resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
        self.link = link
        self.experiment_key = link.experiment_key
        self.spool = spool
        self.host = host
        self.pid = pid
        self.watch_pid = watch_pid
        self.directory = directory or os.getcwd()
        self.command = list(command) if command else None
        self.sample_interval_s = sample_interval_s
        # A given interval is the user's choice; otherwise the server's recommendation sets it.
        self._sample_interval_given = sample_interval_s is not None
        self.resolution = resolution
        self.gpus = gpus
        self.include_os_packages, self.include_git, self.include_gpu = include_os_packages, include_git, include_gpu
        self.procfs_root = procfs_root
        # The watched pid's stat, asked every 0.5 s; this process's /proc, where kill() looks too.
        self._watch_files = KernelFiles("/proc")
        self.tags = list(tags)
        self.set_start_time = set_start_time
        self.set_end_time = set_end_time
        self.secrets = [s for s in secrets if s]
        self.status_path = status_path
        self.on_watched_exit = on_watched_exit
        self.started_ms = started_ms if started_ms is not None else _now_ms()
        if per_kind_endpoints is None:
            per_kind_endpoints = per_kind_endpoints_setting(getattr(link.api, "config", None))
        self.node = node
        #: The node id that prefixes this job's series (None: a single node); other engines
        #: (the Prometheus exporter) label their figures with it.
        self.node_id = node.node_id
        self.election = election
        if per_kind_endpoints and node.host_prefix:
            # Comet names what those endpoints carry itself (sys.cpu.percent.NN...), without a prefix.
            log.warning("per-kind endpoints cannot carry node %s's prefix: sending metric batches", node.node_id)
            per_kind_endpoints = False
        self.per_kind_endpoints = per_kind_endpoints

        self.intervals_ms = dict(DEFAULT_INTERVALS_MS)
        self.unavailable: dict[str, str] = {}
        self.sender = Sender(spool, link.get)
        self._own_collectors: list[Any] = []
        self._windows: dict[str, list[Any]] = {cadence: [] for cadence in CADENCES}
        # When each cadence was last sampled (monotonic s): a push and the sample job never take two
        # samples closer than half a sample interval (at full resolution both would be charted).
        self._last_sample_s: dict[str, float] = {}
        self._window_lock = threading.Lock()
        self._used_gpu_indices: list[int] = []
        #: cadence -> the records of its last sample, for readers that must not sample again (the
        #: Prometheus page); replaced whole at each sample, so a reader never sees half of one.
        self.latest_records: dict[str, list[Any]] = {}
        self._scheduler: Optional[Scheduler] = None
        self._static_thread: Optional[threading.Thread] = None
        self._static_wanted = False
        self._static_lock = threading.Lock()
        self._last_push_ms: Optional[int] = None
        self._warn = WarnOnce(log)
        self._unstored = 0  # records the spool could not store (disk full), not yet counted as dropped
        self._status_written_s = float("-inf")
        self._running = False
        self._stop_lock = threading.Lock()
        self._delivered_at_stop: Optional[bool] = None

    def __repr__(self) -> str:  # never shows the link's client (which holds the key)
        return f"Job(experiment_key={self.experiment_key!r}, pid={self.pid}, running={self._running})"

    # ------------------------------------------------------------------ start

    def start(self, *, collect_static: bool = True) -> "Job":
        """Record the start, begin the static snapshot, sampling and delivery. Never raises."""
        if self._running:
            return self
        if self.set_start_time:
            self.spool_entry("start_time", {"timestamp_ms": self.started_ms}, kind=STATIC)
        if self.tags:
            self.spool_entry("tags", {"tags": self.tags}, kind=STATIC)
        # The static snapshot starts after the first push (``push``), or at ``stop()`` at the latest.
        self._static_wanted = collect_static and self._static_thread is None
        self._build_own_collectors()
        self._start_sampling()
        self.sender.start()
        self._running = True
        self.write_status(force=True)
        return self

    def _build_own_collectors(self) -> None:
        from comet_agent.collectors import Unavailable
        from comet_agent.collectors.disk import DirectoryUsageCollector
        from comet_agent.collectors.process import ProcessTreeCollector

        self._own_collectors.append(DirectoryUsageCollector(self.directory))
        if self.pid is not None:
            try:
                self._own_collectors.append(ProcessTreeCollector(self.pid, procfs_root=self.procfs_root))
            except Unavailable as exc:
                self.unavailable["process"] = exc.reason
                log.info("collector process unavailable: %s", exc.reason)

    # ------------------------------------------------------------------ static snapshot

    def start_static_collection(self, *, after_first_push: bool = False) -> None:
        """Collect the static snapshot on its own thread (started at most once).

        ``after_first_push``: the thread first waits, at most ``FIRST_PUSH_WAIT_S``, until the
        sender has delivered what is spooled (the first push), so that push is not slowed down."""
        with self._static_lock:
            self._static_wanted = False
            if self._static_thread is None:
                self._static_thread = threading.Thread(
                    target=self._collect_static, args=(after_first_push,), name="comet-agent-static", daemon=True
                )
                self._static_thread.start()

    def _collect_static(self, after_first_push: bool = False) -> None:
        from comet_agent.collectors.snapshot import collect_static, system_details

        if after_first_push:
            self.sender.wait_idle(FIRST_PUSH_WAIT_S)
        try:
            snapshot = collect_static(
                directory=self.directory,
                pid=self.pid,
                include_os_packages=self.include_os_packages,
                include_gpu=self.include_gpu,
                include_git=self.include_git,
                server_url=self.link.api.server_url,
                secrets=self.secrets,
            )
        except Exception as exc:  # the static snapshot must never take the job down
            log.warning("the static snapshot failed: %s", exc)
            return
        self.unavailable.update(snapshot.unavailable)
        for name, reason in snapshot.unavailable.items():
            log.info("collector %s unavailable: %s", name, reason)
        details = system_details(snapshot)
        if self.node.node_id is not None and self.node.local_rank in (None, 0):
            hardware = node_hardware(details)
            self.log_other(NODE_OTHER_PREFIX + self.node.node_id, json.dumps(hardware, sort_keys=True))
        if not self.node.primary:
            return  # the experiment's system details are node 0's (local rank 0's), as comet_ml has them
        fields = {k: v for k, v in details.items() if k not in _NOT_WRITTEN_DETAILS}
        if self.command is not None:
            from comet_agent.redaction import mask_command_line

            fields["command"] = mask_command_line(self.command, secrets=self.secrets)
        self.spool_entry("system_details", {"fields": fields}, kind=STATIC)
        git = snapshot.git
        if git is not None:
            from comet_agent.collectors.git import git_metadata_payload

            self.spool_entry("git_metadata", git_metadata_payload(git), kind=STATIC)
            if git.patch:
                self.spool_entry(
                    "git_patch", {"patch_base64": base64.b64encode(git.patch).decode("ascii")}, kind=STATIC
                )

    # ------------------------------------------------------------------ periodic

    def _start_sampling(self) -> None:
        # Prime the rate collectors (CPU, disk, network need two readings); the first push,
        # FIRST_WINDOW_S later, then carries rates. Priming readings are not pushed.
        for cadence in CADENCES:
            if self._has(cadence):
                self.sample(cadence)
                self.host.drain(cadence)  # deferred decoding: the priming readings become the baselines
        with self._window_lock:
            for window in self._windows.values():
                window.clear()
        self._last_sample_s.clear()  # priming readings are not samples
        scheduler = Scheduler()
        scheduler.add("heartbeat", self.intervals_ms["heartbeat"] / 1000, self.heartbeat, blocking=True)
        first_push_s = min(FIRST_WINDOW_S, self.sample_interval_s or FIRST_WINDOW_S)
        scheduler.add(
            "push_cpu", self.intervals_ms["cpu"] / 1000, lambda: self.push("cpu"), first_run_in_s=first_push_s
        )
        if self._has("gpu"):
            scheduler.add(
                "push_gpu", self.intervals_ms["gpu"] / 1000, lambda: self.push("gpu"), first_run_in_s=first_push_s
            )
        if self.sample_interval_s is not None:
            self._add_sample_job(scheduler)
        if self.watch_pid and self.pid is not None:
            scheduler.add("watch", WATCH_INTERVAL_S, self._check_watched_pid, first_run_in_s=WATCH_INTERVAL_S)
        self._scheduler = scheduler
        scheduler.start()

    def _has(self, cadence: str) -> bool:
        return self.host.has(cadence) or (cadence == "cpu" and bool(self._own_collectors))

    def sample(self, cadence: str) -> list[Any]:
        """Sample one cadence (host records plus the job's own) into its window; returns the points added."""
        now_ms = _now_ms()
        self._last_sample_s[cadence] = time.monotonic()
        # Only the node's elected sampler reads the host; the others sample their own series only.
        sampler = self.election is None or self.election.is_sampler()
        records = list(self.host.sample(cadence, now_ms)) if sampler else []
        own: list[Any] = []
        if cadence == "cpu":
            own = sample_collectors(self._own_collectors, now_ms, self._warn)
            used: list[int] = []
            for record in own:
                used.extend((getattr(record, "gpu_memory_used_bytes_by_index", None) or {}).keys())
            self._used_gpu_indices = used
        elif cadence == "gpu" and self.gpus.select:
            records = job_gpu_samples(
                records, cuda_visible_devices=self.gpus.cuda_visible_devices, used_gpu_indices=self._used_gpu_indices
            )
        points = payloads.prefixed(payloads.metric_points(records), self.node.host_prefix)
        points += payloads.prefixed(payloads.metric_points(own), self.node.rank_prefix)
        self.latest_records[cadence] = records + own
        with self._window_lock:
            self._windows[cadence].extend(points)
        return points

    def _take_decoded(self, cadence: str) -> None:
        """Move the host's decoded captures of ``cadence`` into its window (deferred decoding:
        ``engine/host_sampler.py``; nothing otherwise)."""
        records = self.host.drain(cadence)
        if records:
            points = payloads.prefixed(payloads.metric_points(records), self.node.host_prefix)
            with self._window_lock:
                self._windows[cadence].extend(points)

    def _sample_all(self) -> None:
        for cadence in CADENCES:
            if self._has(cadence) and not self._sampled_recently(cadence, self.sample_interval_s):
                self.sample(cadence)

    def _sampled_recently(self, cadence: str, interval_s: Optional[float]) -> bool:
        """Whether ``cadence`` was sampled less than half of ``interval_s`` ago (False for None)."""
        last = self._last_sample_s.get(cadence)
        if interval_s is None or last is None:
            return False
        return time.monotonic() - last < interval_s / 2

    def push(self, cadence: str) -> None:
        """Spool the window of one cadence (sampling first when sampling is per push); the first
        push also begins the static snapshot."""
        try:
            # A push samples when sampling is per push, or when its window is empty and no sample
            # was taken in the last half of the shorter of the two intervals (sampling slower than
            # pushing: each push brings a fresh sample; the sample job just ran: none twice).
            self._take_decoded(cadence)
            if self.sample_interval_s is None:
                self.sample(cadence)
            elif not self._windows[cadence]:
                push_interval_s = self.intervals_ms[cadence] / 1000
                if not self._sampled_recently(cadence, min(self.sample_interval_s, push_interval_s)):
                    self.sample(cadence)
            self._take_decoded(cadence)
            with self._window_lock:
                window, self._windows[cadence] = self._windows[cadence], []
            if not window:
                return
            for endpoint, payload in payloads.push_requests(
                window, per_kind_endpoints=self.per_kind_endpoints, resolution=self.resolution
            ):
                self.spool_entry(endpoint, payload, kind=PERIODIC)
            self._last_push_ms = _now_ms()
            self.write_status()
        finally:
            if self._static_wanted:
                self.start_static_collection(after_first_push=True)

    def heartbeat(self) -> None:
        """``update_status()``, then apply the intervals it recommends. Never raises."""
        try:
            reply = self.link.get().update_status()
        except errors.CometApiError as exc:
            log.debug("heartbeat failed: %s", exc)
            return
        if self.sender.stats.consecutive_failures:
            self.sender.notify()  # the server is back: resend now instead of at the end of a long backoff
        self.apply_intervals(reply if isinstance(reply, dict) else {})

    def apply_intervals(self, reply: dict[str, Any]) -> None:
        """Apply the intervals of an ``update_status()`` reply from the next tick on (clamped; garbage ignored)."""
        changed = False
        for name, server_key in SERVER_INTERVAL_KEYS.items():
            value_ms, reason = clamp_interval_ms(name, reply.get(server_key))
            if reason is not None and reason != "not given":
                self._warn(
                    ("interval", name, reason),
                    logging.WARNING,
                    "the server recommended %s=%s (%s)",
                    server_key,
                    reply.get(server_key),
                    reason if value_ms is not None else f"{reason}; keeping {self.intervals_ms[name]} ms",
                )
            if value_ms is None or value_ms == self.intervals_ms[name]:
                continue
            self.intervals_ms[name] = value_ms
            job = _SCHEDULER_JOB[name]
            if self._scheduler is not None and job in self._scheduler.jobs():
                self._scheduler.set_interval(job, value_ms / 1000)
            log.info("%s interval is now %d ms (from the server)", name, value_ms)
            changed = True
        if self._apply_sample_interval(reply.get(SERVER_SAMPLE_INTERVAL_KEY)) or changed:
            self.write_status(force=True)

    def _apply_sample_interval(self, value: Any) -> bool:
        """Sample as often as the server recommends, unless the job was given an interval; True when it changed."""
        if self._sample_interval_given:
            return False
        value_ms, reason = clamp_interval_ms("sample", value)
        if reason is not None and reason != "not given":
            self._warn(
                ("interval", "sample", reason),
                logging.WARNING,
                "the server recommended %s=%s (%s)",
                SERVER_SAMPLE_INTERVAL_KEY,
                value,
                reason if value_ms is not None else f"{reason}; keeping the current sampling",
            )
        if value_ms is None or self.sample_interval_s == value_ms / 1000:
            return False
        self.sample_interval_s = value_ms / 1000
        if self._scheduler is not None:
            if "sample" in self._scheduler.jobs():
                self._scheduler.set_interval("sample", self.sample_interval_s)
            else:
                self._add_sample_job(self._scheduler)
        log.info("sample interval is now %d ms (from the server)", value_ms)
        return True

    def _add_sample_job(self, scheduler: Scheduler) -> None:
        assert self.sample_interval_s is not None
        scheduler.add("sample", self.sample_interval_s, self._sample_all, first_run_in_s=self.sample_interval_s)

    def _check_watched_pid(self) -> None:
        if self.pid is not None and not pid_alive(self.pid, files=self._watch_files):
            log.info("the watched process %d exited", self.pid)
            if self._scheduler is not None and "watch" in self._scheduler.jobs():
                self._scheduler.set_interval("watch", 3600.0)  # tell once
            if self.on_watched_exit is not None:
                self.on_watched_exit()

    def watched_pid_alive(self) -> bool:
        """Whether the watched pid still runs (True when none is watched)."""
        return self.pid is None or pid_alive(self.pid, files=self._watch_files)

    # ------------------------------------------------------------------ recording

    def spool_entry(self, endpoint: str, payload: dict[str, Any], *, kind: str = PERIODIC) -> None:
        """Store one record for the sender; a full disk counts it as dropped instead of raising."""
        try:
            self.spool.append(self.experiment_key, endpoint, payload, kind=kind)
            if self._unstored:
                # The spool writes again (space came back): what it could not hold counts as dropped,
                # and is reported to the experiment with the other drops.
                self.spool.count_dropped(self.experiment_key, self._unstored)
                self._unstored = 0
        except SpoolError as exc:
            self._unstored += samples_in(payload)
            self._warn(("spool", str(exc)[:60]), logging.ERROR, "cannot store a %s record: %s", endpoint, exc)
            return
        self.sender.notify()

    def log_output(self, text: str, *, stderr: bool) -> None:
        """Record console output of the watched job (lines, as captured), in order."""
        if self._running:
            self.spool_entry("output", {"output": text, "stderr": stderr, "timestamp_ms": _now_ms()}, kind=PERIODIC)

    def log_other(self, key: str, value: Any) -> None:
        """Record an "other" key/value on the experiment (through the spool)."""
        self.spool_entry("other", {"key": key, "value": value, "timestamp_ms": _now_ms()}, kind=STATIC)

    # ------------------------------------------------------------------ stop

    def stop(self, timeout_s: float, *, job_ended: bool = False) -> bool:
        """Push a last sample, record the end, and flush the spool for at most ``timeout_s``.

        ``job_ended``: the watched job ended (writes the end time even for an experiment created
        elsewhere). Returns True when everything was delivered; otherwise the rest stays in the
        spool. Never raises; safe to call twice.
        """
        with self._stop_lock:
            if not self._running:
                return bool(self._delivered_at_stop)
            self._running = False
            deadline = time.monotonic() + timeout_s
            delivered = False
            try:
                if self._scheduler is not None:
                    self._scheduler.stop(timeout_s=min(2.0, timeout_s))
                if self._static_wanted:  # stopped before the first push: the snapshot still belongs to the run
                    self.start_static_collection()
                for cadence in CADENCES:
                    if self._has(cadence):
                        self.push(cadence)
                if self.set_end_time or job_ended:
                    self.spool_entry("end_time", {"timestamp_ms": _now_ms()}, kind=STATIC)
                if self._static_thread is not None:
                    self._static_thread.join(max(STATIC_SNAPSHOT_GRACE_S, deadline - time.monotonic()))
                delivered = self.sender.flush(max(0.0, deadline - time.monotonic()))
                self.sender.stop(timeout_s=max(0.1, deadline - time.monotonic()))
                pending = self.spool.depth()
                if pending:
                    log.warning(
                        "%d records of experiment %s were not delivered yet; they stay in %s and go out "
                        "on the next start or with `comet-agent flush`",
                        pending,
                        self.experiment_key,
                        self.spool.path,
                    )
            except Exception as exc:  # stop() must never raise into training code
                log.warning("stopping the job failed: %s", exc)
            finally:
                self._delivered_at_stop = delivered
                if self.election is not None:
                    self.election.release()
                close_collectors(self._own_collectors)
                self._watch_files.close()
                self._remove_status()
                self.spool.close()
            return delivered

    def forget_after_fork(self) -> None:
        """In a forked child: this copy has none of the job's threads and must record nothing."""
        self._running = False
        if self.election is not None:
            self.election.release_in_child()

    # ------------------------------------------------------------------ status

    @property
    def running(self) -> bool:
        return self._running

    def healthy(self) -> bool:
        """True while the job runs and its sampling thread is alive (what a watchdog should check)."""
        return self._running and self._scheduler is not None and self._scheduler.alive

    @property
    def url(self) -> Optional[str]:
        """The experiment's page (known once the experiment was reached, or when its workspace is)."""
        return self.link.url

    def status(self, pid: Optional[int] = None) -> JobStatus:
        """A snapshot of what the job is doing (``pid``: the process shown; default this one)."""
        stats = self.sender.stats
        alive = self._running
        return JobStatus(
            pid=pid if pid is not None else os.getpid(),
            experiment_key=self.experiment_key,
            experiment_url=self.url,
            server=self.link.api.server_url,
            intervals_ms=dict(self.intervals_ms),
            sample_interval_s=self.sample_interval_s,
            started_ms=self.started_ms,
            last_push_ms=self._last_push_ms,
            last_success_ms=stats.last_success_ms,
            spool_depth=self.spool.depth() if alive else 0,
            dropped_total=self.spool.dropped_total(self.experiment_key) if alive else 0,
            rejected=stats.rejected,
            quarantined=self.spool.quarantined_total() if alive else 0,
            last_error=stats.last_error,
            watching=str(self.pid) if self.pid is not None else None,
            node_id=self.node_id,
            host_sampler=self.election is None or self.election.held,
            resolution=self.resolution,
        )

    def write_status(self, force: bool = False) -> None:
        """Rewrite the status file, at most every ``STATUS_WRITE_INTERVAL_S`` unless forced."""
        # The file is for a person running `comet-agent status`; rewriting it at every push was a
        # tenth of the agent's steady CPU.
        if self.status_path is None:
            return
        now = time.monotonic()
        if not force and now - self._status_written_s < STATUS_WRITE_INTERVAL_S:
            return
        self._status_written_s = now
        try:
            ensure_private_dir(self.status_path.parent)
            write_private_file(self.status_path, json.dumps(self.status().__dict__).encode("utf-8"))
        except (OSError, ValueError) as exc:
            log.debug("cannot write the status file: %s", exc)

    def _remove_status(self) -> None:
        if self.status_path is not None:
            try:
                self.status_path.unlink()
            except OSError:
                pass


def _now_ms() -> int:
    return int(time.time() * 1000)
