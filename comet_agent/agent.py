"""The agent: collectors, scheduler, spool and sender around one experiment.

One engine behind three ways in: ``comet-agent run`` (beside a job, or wrapping it), the systemd
units, and the context manager in training code::

    import comet_agent
    with comet_agent.monitor(experiment_key="0123abcd...") as agent:
        train()

What it does, in order:

1. Resolves configuration as Comet users expect (``COMET_API_KEY``, ``COMET_URL_OVERRIDE``,
   ``.comet.config``...). With nothing configured at all, it uses the local server
   (``comet_agent.embedded``).
2. Attaches to the experiment (``experiment_key``) or creates one (``workspace``/``project_name``).
3. Collects the static snapshot (system details, packages, git, GPU static info) on its own
   thread, so the first periodic sample is not delayed, and spools it.
4. Samples the periodic collectors and pushes at the cadences the server recommends: a heartbeat
   calls ``update_status()`` every ``isAliveBeatDurationMillis``; CPU, RAM, load, disk, network
   and the process tree go out every ``cpuMonitorIntervalMillis``, GPUs every
   ``gpuMonitorIntervalMillis``. A changed reply takes effect from the next tick; absurd values
   are clamped (``INTERVAL_BOUNDS_MS``); local defaults apply when the server gives none. With
   ``sample_interval_s`` the collectors are sampled more often and each push carries the
   window's aggregate (``payloads.window_rule``: mean for utilisations and rates, peak for memory
   in use, trough for memory free, last for totals, OR for throttle reasons).
5. Everything goes into the spool first; the sender drains it in order (see ``delivery.sender``).

Threads, not a child process, for the context manager, decided by measuring (``bench/``): in a
thread the agent costs the training loop +0.56% in steady state (median of 15 interleaved rounds,
within this machine's noise), i.e. its 1.5 ms/s of steady CPU at 1 s sampling; a child process
(``comet-agent run --pid``) would add a second interpreter with its own imports, ~43 MB of RSS and
~0.4 s of start-up CPU, to save a GIL share that is already below measurement. The agent's threads
are daemons and are not inherited by a forked child: after ``fork()`` the child's copy of the
agent is inert (``stop()`` does nothing there). Run ``comet-agent daemon``
where one sampler per host is wanted instead: ``monitor()`` then registers with it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from comet_agent.delivery import payloads
from comet_agent.delivery.sender import Sender
from comet_agent.delivery.spool import DEFAULT_MAX_BYTES, PERIODIC, STATIC, Spool
from comet_agent.errors import AgentError, SpoolError
from comet_agent.paths import default_data_dir, ensure_private_dir, write_private_file
from comet_agent.scheduler import Scheduler
from comet_agent.sources.procfs import pid_alive

log = logging.getLogger(__name__)

#: Comet's documented defaults, used until (or unless) the server recommends others.
DEFAULT_INTERVALS_MS = {"heartbeat": 10_000, "cpu": 68_000, "gpu": 60_000}
#: Bounds any recommended interval is clamped to: faster than 1 s costs CPU for nothing, slower
#: than an hour (10 min for the heartbeat) makes the experiment look dead.
INTERVAL_BOUNDS_MS = {"heartbeat": (1_000, 600_000), "cpu": (1_000, 3_600_000), "gpu": (1_000, 3_600_000)}
SERVER_INTERVAL_KEYS = {"heartbeat": "isAliveBeatDurationMillis", "cpu": "cpuMonitorIntervalMillis",
                        "gpu": "gpuMonitorIntervalMillis"}
#: Delay between priming the rate collectors and the first push, so the first sample has rates.
FIRST_PUSH_DELAY_S = 0.5
#: How often the status file (``comet-agent status``) is rewritten at most.
STATUS_WRITE_INTERVAL_S = 5.0


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


@dataclass
class AgentStatus:
    """What ``comet-agent status`` shows of a running agent."""

    pid: int
    experiment_key: Optional[str]
    experiment_url: Optional[str]
    server: Optional[str]
    intervals_ms: dict
    sample_interval_s: Optional[float]
    started_ms: int
    last_push_ms: Optional[int] = None
    last_success_ms: Optional[int] = None
    spool_depth: int = 0
    dropped_total: int = 0
    rejected: int = 0
    last_error: Optional[str] = None
    watching: Optional[str] = None


class Agent:
    """Collects and delivers a run's system metadata and metrics into one Comet experiment.

    Args:
        experiment_key: attach to this experiment; without it a new one is created in
            ``workspace``/``project_name`` (from configuration when not given).
        workspace, project_name, experiment_name: for a new experiment.
        api_key, url_override: override configuration (``COMET_API_KEY``, ``COMET_URL_OVERRIDE``).
        data_dir: where the spool and status files live (default: the per-user data directory).
        pid: the watched job (its process tree, interpreter packages, command line); None: no
            process tree (``monitor()`` passes the training process itself).
        directory: the job's working directory (git, disk usage); default: the current one.
        sample_interval_s: sample this often and aggregate per push; None: one sample per push.
        stop_timeout_s: how long ``stop()`` may take to flush the spool.
        spool_max_bytes: the spool's cap.
        include_os_packages, include_git, include_gpu: switch those collectors off.
        procfs_root: the ``/proc`` tree (tests pass a fixture).
        tags: tags added to the experiment.
        owns_experiment: set the start and end time of the experiment (default: when it is
            created here, or when a job is watched or wrapped).

    Raises (from ``start()``):
        AgentError: with ``exit_status`` 3 (key rejected), 4 (experiment or workspace not
            found), 5 (server unreachable), 78 (configuration or data directory unusable).
    """

    def __init__(self, experiment_key: Optional[str] = None, *, workspace: Optional[str] = None,
                 project_name: Optional[str] = None, experiment_name: Optional[str] = None,
                 api_key: Optional[str] = None, url_override: Optional[str] = None,
                 data_dir: Optional[os.PathLike | str] = None, pid: Optional[int] = None,
                 directory: Optional[str] = None, sample_interval_s: Optional[float] = None,
                 stop_timeout_s: float = 10.0, spool_max_bytes: int = DEFAULT_MAX_BYTES,
                 include_os_packages: bool = True, include_git: bool = True, include_gpu: bool = True,
                 procfs_root: str = "/proc", tags: Sequence[str] = (), owns_experiment: Optional[bool] = None,
                 command: Optional[Sequence[str]] = None):
        if sample_interval_s is not None and sample_interval_s <= 0:
            raise ValueError(f"sample_interval_s must be positive, got {sample_interval_s}")
        self.experiment_key = experiment_key
        self.workspace, self.project_name, self.experiment_name = workspace, project_name, experiment_name
        self._api_key, self._url_override = api_key, url_override
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()
        self.pid = pid
        self.directory = directory or os.getcwd()
        self.sample_interval_s = sample_interval_s
        self.stop_timeout_s = stop_timeout_s
        self.spool_max_bytes = spool_max_bytes
        self.include_os_packages, self.include_git, self.include_gpu = include_os_packages, include_git, include_gpu
        self.procfs_root = procfs_root
        self.tags = list(tags)
        self._owns_experiment = owns_experiment
        self.command = list(command) if command else None

        self.experiment = None
        self.intervals_ms = dict(DEFAULT_INTERVALS_MS)
        self.unavailable: dict[str, str] = {}
        self._local = None
        self._api = None
        self._spool: Optional[Spool] = None
        self._sender: Optional[Sender] = None
        self._scheduler: Optional[Scheduler] = None
        self._collectors: dict[str, list] = {"cpu": [], "gpu": []}
        self._windows: dict[str, list] = {"cpu": [], "gpu": []}
        self._window_lock = threading.Lock()
        self._static_thread: Optional[threading.Thread] = None
        self._started_ms = 0
        self._last_push_ms: Optional[int] = None
        self._logged_intervals: set = set()
        self._running = False
        self._owner_pid = os.getpid()
        self._stop_lock = threading.Lock()
        self._status_path: Optional[Path] = None
        self._stop_event = threading.Event()
        self._created = False
        self._key: Optional[str] = None  # kept only to mask it in the recorded command line
        self._unstored = 0  # records the spool could not store (disk full), not yet counted as dropped
        self._status_written_s = float("-inf")

    # ------------------------------------------------------------------ start

    def start(self) -> "Agent":
        """Resolve configuration, attach to (or create) the experiment and start sampling.

        Raises ``AgentError`` (with an exit status) when it cannot start; after a successful start
        nothing the agent does raises into the caller.
        """
        if self._running:
            return self
        self.prepare()
        self.begin()
        return self

    def prepare(self) -> "Agent":
        """First half of ``start()``: configuration, the experiment and the spool (raises ``AgentError``).

        ``comet-agent run -- CMD`` calls this before launching the command (a wrong key is then
        reported before the job starts), and ``begin(pid=...)`` once the command runs.
        """
        from comet_agent import errors

        self._started_ms = _now_ms()
        try:
            self._connect()
            if self.experiment_key:
                # The key is known: spool first, so what is collected survives a failure to reach the server.
                self._open_spool(self.experiment_key)
                if self.command is None:
                    self._start_static_collection()
                self._attach_or_create()
            else:
                self._attach_or_create()
                self._open_spool(self.experiment_key)
        except errors.Unauthorized as exc:
            self._abort()
            raise AgentError(str(exc), 3) from None
        except errors.NotFound as exc:
            self._abort()
            raise AgentError(f"{exc}; check the experiment key, workspace and project", 4) from None
        except (errors.ConnectionFailed, errors.ServerError, errors.Throttled, errors.InvalidReply) as exc:
            self._abort()
            where = f"; data collected so far stays in {self._spool.path}" if self._spool else ""
            raise AgentError(f"cannot reach the Comet server: {exc}{where}", 5) from None
        except errors.CometApiError as exc:
            self._abort()
            raise AgentError(str(exc), 1) from None
        except (SpoolError, OSError) as exc:
            self._abort()
            raise AgentError(f"the data directory {self.data_dir} is unusable: {exc}", 78) from None
        except ValueError as exc:  # configuration: no key, no workspace, a malformed file
            self._abort()
            raise AgentError(str(exc), 78) from None
        return self

    def begin(self, pid: Optional[int] = None) -> "Agent":
        """Second half of ``start()``: the static snapshot, sampling and delivery. Never raises."""
        if pid is not None:
            self.pid = pid
        if self._owns_experiment is None:
            watches_another = self.pid is not None and self.pid != os.getpid()
            self._owns_experiment = self._created or watches_another or self.command is not None
        if self._owns_experiment and self._created:
            self._spool_entry("start_time", {"timestamp_ms": self._started_ms}, kind=STATIC)
        if self.tags:
            self._spool_entry("tags", {"tags": self.tags}, kind=STATIC)
        if self._static_thread is None:
            self._start_static_collection()
        self._start_sampling()
        self._sender = Sender(self._spool, lambda key: self.experiment)
        self._sender.start()
        self._running = True
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget_after_fork)
        self._write_status(force=True)
        return self

    def _connect(self) -> None:
        from comet_agent.api.api import API
        from comet_agent.api.client import RetryPolicy
        from comet_agent.config import resolve_config

        config = resolve_config(api_key=self._api_key, url_override=self._url_override)
        # Few, short client-side retries: the spool and the sender's backoff carry outages.
        retry = RetryPolicy(max_retries=2, backoff_base_s=0.5, backoff_max_s=5.0)
        sleep = self._stop_event.wait
        if config.api_key is None and not config.server_configured:
            from comet_agent.embedded import connect_local

            self._local = connect_local(self.data_dir)
            self._key = self._local.api_key
            self._api = API(api_key=self._key, url_override=self._local.clientlib_url, retry=retry, sleep=sleep)
        else:
            self._key = config.require_api_key()
            self._api = API(api_key=self._api_key, url_override=self._url_override, config=config, retry=retry, sleep=sleep)

    @property
    def server_url(self) -> Optional[str]:
        return self._api.server_url if self._api else None

    @property
    def local_server(self):
        """The local server this agent started for its run, if any."""
        return self._local.server if self._local else None

    def _attach_or_create(self) -> None:
        from comet_agent.api.experiment import APIExperiment

        self._created = False
        if self.experiment_key:
            self.experiment = APIExperiment(api=self._api, previous_experiment=self.experiment_key)
            if not self.experiment.id:
                from comet_agent import errors

                raise errors.NotFound(f"the server knows no experiment {self.experiment_key}", status=404)
            return
        workspace = self.workspace or self._api.config.workspace
        if workspace is None and self._local is not None:
            workspace = self._api.get_default_workspace()  # the local server's key owns one
        self.experiment = APIExperiment(api=self._api, workspace=workspace, project_name=self.project_name,
                                        experiment_name=self.experiment_name)
        self.experiment_key = self.experiment.id
        self._created = True

    def _open_spool(self, experiment_key: str) -> None:
        spool_dir = ensure_private_dir(self.data_dir / "spool")
        self._spool = Spool(spool_dir / f"{experiment_key}.db", max_bytes=self.spool_max_bytes)

    def _abort(self) -> None:
        if self._static_thread is not None:
            self._static_thread.join(30)  # whatever it collected goes into the spool first
        self._release()

    def _release(self) -> None:
        """Close the spool, the HTTP session and a local server started for this run."""
        if self._spool is not None:
            self._spool.close()
        if self._local is not None:
            self._local.stop()
        if self._api is not None:
            self._api.close()

    # ------------------------------------------------------------------ static snapshot

    def _start_static_collection(self) -> None:
        self._static_thread = threading.Thread(target=self._collect_static, name="comet-agent-static", daemon=True)
        self._static_thread.start()

    def _collect_static(self) -> None:
        from comet_agent.collectors.snapshot import collect_static, system_details

        try:
            snapshot = collect_static(directory=self.directory, pid=self.pid, include_os_packages=self.include_os_packages,
                                      include_gpu=self.include_gpu, include_git=self.include_git,
                                      server_url=self.server_url, secrets=[self._key] if self._key else [])
        except Exception as exc:  # the static snapshot must never take the agent down
            log.warning("the static snapshot failed: %s", exc)
            return
        self.unavailable.update(snapshot.unavailable)
        for name, reason in snapshot.unavailable.items():
            log.info("collector %s unavailable: %s", name, reason)
        details = system_details(snapshot)
        fields = {k: v for k, v in details.items() if k not in ("totalRam", "maxTotalMemory", "systemMetricNames")}
        if self.command is not None:
            from comet_agent.redaction import mask_command_line

            fields["command"] = mask_command_line(self.command)
        self._spool_entry("system_details", {"fields": fields}, kind=STATIC)
        git = snapshot.git
        if git is not None:
            from comet_agent.collectors.git import git_metadata_payload

            self._spool_entry("git_metadata", git_metadata_payload(git), kind=STATIC)
            if git.patch:
                self._spool_entry("git_patch", {"patch_base64": base64.b64encode(git.patch).decode("ascii")}, kind=STATIC)

    # ------------------------------------------------------------------ periodic

    def _start_sampling(self) -> None:
        from comet_agent.collectors.periodic import build_periodic_collectors

        collectors, unavailable = build_periodic_collectors(
            procfs_root=self.procfs_root, pid=self.pid, directory=self.directory, include_gpu=self.include_gpu)
        for name, reason in unavailable.items():
            log.info("collector %s unavailable: %s", name, reason)
        self.unavailable.update(unavailable)
        for collector in collectors:
            self._collectors.setdefault(collector.cadence, []).append(collector)
        # Prime the rate collectors (CPU, disk, network need two readings); the first push, a moment
        # later, then carries rates. Priming readings are not pushed.
        for cadence in ("cpu", "gpu"):
            self._sample(cadence)
            with self._window_lock:
                self._windows[cadence].clear()
        scheduler = Scheduler()
        scheduler.add("heartbeat", self.intervals_ms["heartbeat"] / 1000, self._heartbeat, blocking=True)
        first_push_s = min(FIRST_PUSH_DELAY_S, self.sample_interval_s or FIRST_PUSH_DELAY_S)
        scheduler.add("push_cpu", self.intervals_ms["cpu"] / 1000, lambda: self._push("cpu"), first_run_in_s=first_push_s)
        if self._collectors.get("gpu"):
            scheduler.add("push_gpu", self.intervals_ms["gpu"] / 1000, lambda: self._push("gpu"), first_run_in_s=first_push_s)
        if self.sample_interval_s is not None:
            scheduler.add("sample", self.sample_interval_s, self._sample_all, first_run_in_s=self.sample_interval_s)
        if self.pid is not None and self.pid != os.getpid():
            scheduler.add("watch", 0.5, self._watch_pid, first_run_in_s=0.5)
        self._scheduler = scheduler
        scheduler.start()

    def _sample(self, cadence: str) -> list:
        """Sample one cadence's collectors into its window; returns the points added."""
        now = _now_ms()
        records: list = []
        for collector in self._collectors.get(cadence, []):
            try:
                records.extend(collector.sample(now))
            except Exception as exc:  # one collector's failure costs its own data only
                key = (collector.name, type(exc).__name__)
                if key not in self._logged_intervals:
                    self._logged_intervals.add(key)
                    log.warning("collector %s failed: %s", collector.name, exc)
        points = payloads.metric_points(records)
        with self._window_lock:
            self._windows[cadence].extend(points)
        return points

    def _sample_all(self) -> None:
        for cadence in ("cpu", "gpu"):
            if self._collectors.get(cadence):
                self._sample(cadence)

    def _push(self, cadence: str) -> None:
        if self.sample_interval_s is None or not self._windows[cadence]:
            self._sample(cadence)
        with self._window_lock:
            window, self._windows[cadence] = self._windows[cadence], []
        if not window:
            return
        for endpoint, payload in payloads.push_requests(window):
            self._spool_entry(endpoint, payload, kind=PERIODIC)
        self._last_push_ms = _now_ms()
        self._write_status()

    def _heartbeat(self) -> None:
        from comet_agent import errors

        try:
            reply = self.experiment.update_status()
        except errors.CometApiError as exc:
            log.debug("heartbeat failed: %s", exc)
            return
        if self._sender is not None and self._sender.stats.consecutive_failures:
            self._sender.notify()  # the server is back: resend now instead of at the end of a long backoff
        self.apply_intervals(reply if isinstance(reply, dict) else {})

    def apply_intervals(self, reply: dict) -> None:
        """Apply the intervals of an ``update_status()`` reply from the next tick on (clamped; garbage ignored)."""
        changed = False
        for name, server_key in SERVER_INTERVAL_KEYS.items():
            value_ms, reason = clamp_interval_ms(name, reply.get(server_key))
            if reason is not None and reason != "not given":
                once = (name, reason)
                if once not in self._logged_intervals:
                    self._logged_intervals.add(once)
                    log.warning("the server recommended %s=%s (%s)", server_key, reply.get(server_key),
                                reason if value_ms is not None else f"{reason}; keeping {self.intervals_ms[name]} ms")
            if value_ms is None or value_ms == self.intervals_ms[name]:
                continue
            self.intervals_ms[name] = value_ms
            job = {"heartbeat": "heartbeat", "cpu": "push_cpu", "gpu": "push_gpu"}[name]
            if self._scheduler is not None and job in self._scheduler.jobs():
                self._scheduler.set_interval(job, value_ms / 1000)
            log.info("%s interval is now %d ms (from the server)", name, value_ms)
            changed = True
        if changed:
            self._write_status(force=True)

    def _watch_pid(self) -> None:
        if not pid_alive(self.pid):
            log.info("the watched process %d exited", self.pid)
            self._stop_event.set()  # whoever waits in wait() now calls stop()

    # ------------------------------------------------------------------ recording

    def _spool_entry(self, endpoint: str, payload: dict, *, kind: str = PERIODIC) -> None:
        try:
            self._spool.append(self.experiment_key, endpoint, payload, kind=kind)
            if self._unstored:
                # The spool writes again (space came back): what it could not hold counts as dropped,
                # and is reported to the experiment with the other drops.
                self._spool.count_dropped(self.experiment_key, self._unstored)
                self._unstored = 0
        except SpoolError as exc:
            self._unstored += 1
            key = ("spool", str(exc)[:60])
            if key not in self._logged_intervals:
                self._logged_intervals.add(key)
                log.error("cannot store a %s record: %s", endpoint, exc)
            return
        if self._sender is not None:
            self._sender.notify()

    def log_output(self, text: str, *, stderr: bool) -> None:
        """Record console output of the watched job (lines, as captured), in order."""
        if self._running:
            self._spool_entry("output", {"output": text, "stderr": stderr, "timestamp_ms": _now_ms()}, kind=PERIODIC)

    def log_other(self, key: str, value: Any) -> None:
        """Record an "other" key/value on the experiment (through the spool)."""
        if self._spool is not None:
            self._spool_entry("other", {"key": key, "value": value, "timestamp_ms": _now_ms()}, kind=STATIC)

    # ------------------------------------------------------------------ stop

    def stop(self, timeout_s: Optional[float] = None) -> bool:
        """Push a last sample, record the end, and flush the spool for at most ``timeout_s``.

        Returns True when everything was delivered; otherwise the rest stays in the spool and goes
        out on the next start or with ``comet-agent flush``. Never raises; safe to call twice,
        and does nothing in a forked child.
        """
        if os.getpid() != self._owner_pid:
            return False
        with self._stop_lock:
            if not self._running:
                return self._spool is None or self._spool_closed_empty
            self._running = False
            timeout_s = self.stop_timeout_s if timeout_s is None else timeout_s
            deadline = time.monotonic() + timeout_s
            delivered = False
            try:
                self._stop_event.set()
                self._scheduler.stop(timeout_s=min(2.0, timeout_s))
                for cadence in ("cpu", "gpu"):
                    if self._collectors.get(cadence):
                        self._push(cadence)
                if self._owns_experiment:
                    self._spool_entry("end_time", {"timestamp_ms": _now_ms()}, kind=STATIC)
                if self._static_thread is not None:
                    self._static_thread.join(max(0.0, deadline - time.monotonic()))
                delivered = self._sender.flush(max(0.0, deadline - time.monotonic()))
                self._sender.stop(timeout_s=max(0.1, deadline - time.monotonic()))
                pending = self._spool.depth()
                if pending:
                    log.warning("%d records were not delivered yet; they stay in %s and go out on the next start "
                                "or with `comet-agent flush`", pending, self._spool.path)
            except Exception as exc:  # stop() must never raise into training code
                log.warning("stopping the agent failed: %s", exc)
            finally:
                self._spool_closed_empty = delivered
                self._close_collectors()
                self._remove_status()
                self._release()
            return delivered

    _spool_closed_empty = False

    def _close_collectors(self) -> None:
        for collectors in self._collectors.values():
            for collector in collectors:
                close = getattr(collector, "close", None)
                if close is not None:
                    try:
                        close()
                    except Exception:  # closing is best effort
                        pass

    def _forget_after_fork(self) -> None:
        # The child has none of our threads; it must neither sample nor flush our spool.
        self._running = False

    def wait(self, timeout_s: Optional[float] = None) -> bool:
        """Block until the agent is asked to stop (the watched pid exited, or ``stop()``)."""
        return self._stop_event.wait(timeout_s)

    # ------------------------------------------------------------------ status

    @property
    def running(self) -> bool:
        return self._running

    def healthy(self) -> bool:
        """True while the agent runs and its sampling thread is alive (what a watchdog should check)."""
        return self._running and self._scheduler is not None and self._scheduler.alive

    @property
    def url(self) -> Optional[str]:
        """The experiment's page on the configured server."""
        return self.experiment.url if self.experiment is not None else None

    def status(self) -> AgentStatus:
        """A snapshot of what the agent is doing."""
        sender = self._sender.stats if self._sender else None
        return AgentStatus(
            pid=os.getpid(), experiment_key=self.experiment_key, experiment_url=self.url, server=self.server_url,
            intervals_ms=dict(self.intervals_ms), sample_interval_s=self.sample_interval_s, started_ms=self._started_ms,
            last_push_ms=self._last_push_ms, last_success_ms=sender.last_success_ms if sender else None,
            spool_depth=self._spool.depth() if self._spool and self._running else 0,
            dropped_total=self._spool.dropped_total(self.experiment_key) if self._spool and self._running else 0,
            rejected=sender.rejected if sender else 0, last_error=sender.last_error if sender else None,
            watching=str(self.pid) if self.pid is not None else None)

    def _write_status(self, force: bool = False) -> None:
        # At most every STATUS_WRITE_INTERVAL_S: the file is for a person running `comet-agent
        # status`, and rewriting it at every push was a tenth of the agent's steady CPU.
        now = time.monotonic()
        if not force and now - self._status_written_s < STATUS_WRITE_INTERVAL_S:
            return
        self._status_written_s = now
        try:
            directory = ensure_private_dir(self.data_dir / "agents")
            self._status_path = directory / f"{os.getpid()}.json"
            write_private_file(self._status_path, json.dumps(self.status().__dict__).encode("utf-8"))
        except (OSError, ValueError) as exc:
            log.debug("cannot write the status file: %s", exc)

    def _remove_status(self) -> None:
        if self._status_path is not None:
            try:
                self._status_path.unlink()
            except OSError:
                pass

    def __enter__(self) -> "Agent":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Agent(experiment_key={self.experiment_key!r}, server={self.server_url!r}, running={self._running})"


def monitor(experiment_key: Optional[str] = None, **options: Any) -> Agent:
    """The agent as a context manager for training code.

    ``with comet_agent.monitor(experiment_key=KEY) as agent: train()`` starts the agent in this
    process (daemon threads) and stops it, flushing within ``stop_timeout_s``, when the block
    ends. Options are those of ``Agent``. A failure to start raises ``AgentError`` at the ``with``
    line; after that nothing the agent does raises into the block.

    When a ``comet-agent daemon`` answers on ``$COMET_AGENT_DAEMON_SOCKET`` (else
    ``/run/comet-agent/daemon.sock``) and ``experiment_key`` is given, the process registers with
    it instead (``comet_agent.daemon.DaemonRegistration``, same context-manager surface): the
    daemon samples for it, with this user's own API key. ``use_daemon=False`` forces in-process.
    """
    options.setdefault("pid", os.getpid())
    use_daemon = options.pop("use_daemon", None)
    if experiment_key and use_daemon is not False:
        from comet_agent.daemon import DaemonRegistration, find_daemon

        socket_path = find_daemon()
        if socket_path is not None:
            return DaemonRegistration(socket_path, experiment_key, pid=options["pid"], api_key=options.get("api_key"))
    return Agent(experiment_key, **options)


def read_statuses(data_dir: Optional[os.PathLike | str] = None) -> list[dict]:
    """The status of every agent running with this data directory (stale files of dead agents are skipped)."""
    directory = Path(data_dir or default_data_dir()) / "agents"
    statuses = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            status = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(status, dict) and pid_alive(int(status.get("pid", -1))):
            statuses.append(status)
    return statuses


def _now_ms() -> int:
    return int(time.time() * 1000)
