"""The host service: one long-running agent that samples the host once per tick for many jobs.

``comet-agent daemon`` (``systemd/comet-agent.service``) listens on a Unix stream socket. A job
registers with ``comet-agent attach --experiment KEY --pid PID`` (or ``comet_agent.monitor()``,
which registers when it finds a daemon). Every tick the daemon samples the host collectors once
(CPU, memory, load, disk, network, GPUs) and, for every registered job, spools into that job's
experiment: the shared host metrics, the job's own process-tree metrics (``sys.proc.*``), and
the GPUs the job uses. When a job's pid exits, its registration ends and its experiment gets its
end time.

Which GPUs a job uses: the entries of the job's ``CUDA_VISIBLE_DEVICES`` (read from
``/proc/PID/environ``, else the value the registration carries), numbered as the job sees them
(as Comet does); without it, the GPUs on which NVML lists a process of the job's tree.

Trust (who may attach what):
- The kernel says who is calling (``SO_PEERCRED``); the caller's uid must own the pid it
  registers (root may register any pid).
- The registration carries the job user's own Comet API key, read by ``attach`` from that user's
  configuration; the daemon writes the job's experiment with that key, so Comet's own
  permissions decide whether that user may write that experiment (the daemon checks by reading
  the experiment before accepting). The key travels only over the Unix socket and is kept in
  memory: it is never logged, never written to the spool (spool entries hold payloads only) and
  never to disk, so after a daemon restart jobs must register again (what they left in the spool
  is sent once they do). Only root may register without a key: the daemon's own key is used then.
- The socket is 0600 (only the daemon's user and root), or 0660 with ``--socket-group``: only
  members of that group can connect.
- Registrations are rate-limited per uid; a refusal is answered with a reason, logged once per
  uid and reason, and the daemon keeps serving everyone else.

Protocol: one JSON line (at most ``MAX_MESSAGE_BYTES``) per connection, answered by one JSON line
``{"ok": bool, "error": str|null, ...}``. Operations: ``attach`` (``experiment_key``, ``pid``,
``api_key``, ``cuda_visible_devices``), ``detach`` (``experiment_key``), ``ping``.
"""

from __future__ import annotations

import collections
import dataclasses
import grp
import json
import logging
import os
import re
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from comet_agent.delivery import payloads
from comet_agent.delivery.sender import Sender
from comet_agent.delivery.spool import PERIODIC, STATIC, Spool
from comet_agent.paths import default_data_dir, ensure_private_dir
from comet_agent.config import systemd_credential_problem
from comet_agent.sources.procfs import pid_alive

log = logging.getLogger(__name__)

#: Where jobs look for the daemon when neither ``--socket`` nor ``$COMET_AGENT_DAEMON_SOCKET`` says.
DEFAULT_SOCKET_PATH = "/run/comet-agent/daemon.sock"
SOCKET_ENV = "COMET_AGENT_DAEMON_SOCKET"
MAX_MESSAGE_BYTES = 16 * 1024
#: A Comet experiment key: alphanumeric, 32 to 50 characters (comet_ml ``is_valid_experiment_key``).
EXPERIMENT_KEY_RE = re.compile(r"^[A-Za-z0-9]{32,50}$")
DEFAULT_INTERVAL_S = 60.0
DEFAULT_MAX_JOBS = 256
DEFAULT_REGISTRATIONS_PER_MINUTE = 30
#: How long the end of a registration may spend delivering what is left before leaving it spooled.
END_FLUSH_TIMEOUT_S = 10.0
CLIENT_TIMEOUT_S = 10.0


class Refused(Exception):
    """A registration is refused; the message is the reason sent back (never holds the key)."""

    def __init__(self, reason: str, code: str = "refused"):
        super().__init__(reason)
        self.code = code


# ------------------------------------------------------------------------------------------------
# credentials (systemd LoadCredential=)
# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
# GPU attribution
# ------------------------------------------------------------------------------------------------


def job_gpu_samples(gpu_samples: Sequence[Any], *, cuda_visible_devices: Optional[str],
                    used_gpu_indices: Sequence[int] = ()) -> list:
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
    return [dataclasses.replace(by_index[index], gpu_index=position)
            for position, index in enumerate(i for i in chosen if i in by_index)]


def _read_environ_value(pid: int, name: str, procfs_root: str = "/proc") -> tuple[bool, Optional[str]]:
    """``(readable, value)`` of one variable in ``/proc/PID/environ`` (unreadable for another user)."""
    try:
        with open(f"{procfs_root}/{pid}/environ", "rb") as handle:
            raw = handle.read(1 << 20)
    except OSError:
        return False, None
    prefix = name.encode() + b"="
    for item in raw.split(b"\0"):
        if item.startswith(prefix):
            return True, item[len(prefix):].decode("utf-8", errors="replace")
    return True, None


def _pid_owner_uid(pid: int, procfs_root: str = "/proc") -> Optional[int]:
    try:
        return os.stat(f"{procfs_root}/{pid}").st_uid
    except OSError:
        return None


# ------------------------------------------------------------------------------------------------
# one registered job
# ------------------------------------------------------------------------------------------------


class Job:
    """One registered job: its experiment (written with its user's key), spool, sender and process tree."""

    def __init__(self, *, experiment_key: str, pid: int, uid: int, experiment: Any, api: Any, spool: Spool,
                 process_collector: Any, cuda_visible_devices: Optional[str]):
        self.experiment_key = experiment_key
        self.pid = pid
        self.uid = uid
        self.experiment = experiment
        self._api = api
        self.spool = spool
        self.sender = Sender(spool, lambda key: self.experiment)
        self.process_collector = process_collector
        self.cuda_visible_devices = cuda_visible_devices
        self.registered_ms = int(time.time() * 1000)
        self.ended = False

    def __repr__(self) -> str:  # never shows the experiment's client (which holds the key)
        return f"Job(experiment_key={self.experiment_key!r}, pid={self.pid}, uid={self.uid})"

    def feed(self, host_records: Sequence[Any], gpu_samples: Sequence[Any], now_ms: int) -> None:
        """Spool one tick: host metrics, this job's process tree, and its GPUs."""
        if self.ended:  # detached while this tick was running: its spool is closing
            return
        records = list(host_records)
        used: list[int] = []
        if self.process_collector is not None:
            try:
                tree = list(self.process_collector.sample(now_ms))
            except Exception as exc:  # the job may have just exited: its registration ends next tick
                log.debug("process tree of pid %d: %s", self.pid, exc)
                tree = []
            records.extend(tree)
            for sample in tree:
                used.extend((getattr(sample, "gpu_memory_used_bytes_by_index", None) or {}).keys())
        records.extend(job_gpu_samples(gpu_samples, cuda_visible_devices=self.cuda_visible_devices,
                                       used_gpu_indices=used))
        for endpoint, payload in payloads.push_requests(payloads.metric_points(records)):
            self.spool.append(self.experiment_key, endpoint, payload, kind=PERIODIC)
        self.sender.notify()

    def end(self, *, set_end_time: bool, timeout_s: float = END_FLUSH_TIMEOUT_S) -> bool:
        """Stop feeding: record the end time (when the job exited), deliver what is left, close."""
        delivered = False
        self.ended = True
        try:
            if set_end_time:
                self.spool.append(self.experiment_key, "end_time", {"timestamp_ms": int(time.time() * 1000)}, kind=STATIC)
            delivered = self.sender.flush(timeout_s)
            self.sender.stop(timeout_s=2.0)
            if not delivered:
                log.warning("experiment %s: %d records stay in %s until the job registers again",
                            self.experiment_key, self.spool.depth(), self.spool.path)
        except Exception as exc:  # ending one job must never disturb the others
            log.warning("ending experiment %s failed: %s", self.experiment_key, exc)
        finally:
            close = getattr(self.process_collector, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # best effort
                    pass
            self.spool.close()
            self._api.close()
        return delivered


# ------------------------------------------------------------------------------------------------
# the daemon
# ------------------------------------------------------------------------------------------------


class RateLimiter:
    """At most ``limit`` events per ``window_s`` per key (a sliding window)."""

    def __init__(self, limit: int, window_s: float = 60.0):
        self.limit, self.window_s = limit, window_s
        self._events: dict[int, collections.deque] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()

    def allow(self, key: int, now_s: Optional[float] = None) -> bool:
        """Count one event for ``key``; False when it is over the limit (then it is not counted)."""
        now_s = time.monotonic() if now_s is None else now_s
        with self._lock:
            events = self._events[key]
            while events and now_s - events[0] > self.window_s:
                events.popleft()
            if len(events) >= self.limit:
                return False
            events.append(now_s)
            return True


class Daemon:
    """The host service (see the module docstring).

    Args:
        socket_path: the registration socket.
        data_dir: the spools (``<data_dir>/spool/<experiment key>.db``).
        interval_s: seconds between ticks (one host sample, one push per job).
        socket_group: group allowed to connect (socket mode 0660); None: 0600.
        url_override: the Comet server every job's experiment is written to (default: configuration).
        include_gpu: sample GPUs through NVML.
        procfs_root: the ``/proc`` tree.
        max_jobs: registrations held at once.
        registrations_per_minute: per uid.
    """

    def __init__(self, socket_path: os.PathLike | str, *, data_dir: os.PathLike | str, interval_s: float = DEFAULT_INTERVAL_S,
                 socket_group: Optional[str] = None, url_override: Optional[str] = None, include_gpu: bool = True,
                 procfs_root: str = "/proc", max_jobs: int = DEFAULT_MAX_JOBS,
                 registrations_per_minute: int = DEFAULT_REGISTRATIONS_PER_MINUTE, notifier: Any = None):
        from comet_agent.config import resolve_config
        from comet_agent.sdnotify import Notifier

        if interval_s <= 0:
            raise ValueError(f"the interval must be positive, got {interval_s}")
        self.socket_path = Path(socket_path)
        self.data_dir = Path(data_dir)
        self.interval_s = interval_s
        self.socket_group = socket_group
        self.include_gpu = include_gpu
        self.procfs_root = procfs_root
        self.max_jobs = max_jobs
        self._config = resolve_config(url_override=url_override)
        self.url_override = self._config.url_override
        self._own_key = self._config.api_key  # used for root's registrations only
        self._limiter = RateLimiter(registrations_per_minute)
        self.notifier = notifier or Notifier.from_environment()
        self._jobs: dict[str, Job] = {}
        self._jobs_lock = threading.Lock()
        self._logged: set = set()
        self._stop = threading.Event()
        self._host_collectors: list = []
        self._gpu_collector = None
        self._server: Optional[socketserver.UnixStreamServer] = None
        self.ticks = 0

    # -- setup ----------------------------------------------------------------------------------

    def open(self) -> "Daemon":
        """Build the collectors, create the spool directory and listen. Raises ``OSError``/``ValueError``."""
        from comet_agent.collectors.periodic import build_periodic_collectors

        os.umask(0o077)
        ensure_private_dir(self.data_dir / "spool")
        collectors, unavailable = build_periodic_collectors(procfs_root=self.procfs_root, include_gpu=self.include_gpu)
        for name, reason in unavailable.items():
            log.info("collector %s unavailable: %s", name, reason)
        self._host_collectors = [c for c in collectors if c.name != "gpu"]
        self._gpu_collector = next((c for c in collectors if c.name == "gpu"), None)
        self._sample_host()  # prime the rate collectors: the first tick then has rates
        self._listen()
        return self

    def _listen(self) -> None:
        gid = None
        if self.socket_group:
            try:
                gid = grp.getgrnam(self.socket_group).gr_gid
            except KeyError:
                raise ValueError(f"the socket group {self.socket_group!r} does not exist") from None
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        if self.socket_path.is_socket():
            self.socket_path.unlink()  # left by a daemon that was killed
        daemon = self

        class Handler(socketserver.StreamRequestHandler):
            timeout = CLIENT_TIMEOUT_S

            def handle(self) -> None:
                daemon._handle_connection(self.connection, self.rfile, self.wfile)

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self._server = Server(str(self.socket_path), Handler)
        # Set the mode on the socket itself: connecting needs write permission on it.
        os.chmod(self.socket_path, 0o660 if gid is not None else 0o600)
        if gid is not None and self.socket_path.stat().st_gid != gid:
            # Under the unit, Group= makes the socket ours already: chown is in @privileged, which
            # its SystemCallFilter denies.
            os.chown(self.socket_path, -1, gid)
        threading.Thread(target=self._server.serve_forever, name="comet-agent-registrations", daemon=True).start()

    # -- registrations --------------------------------------------------------------------------

    def _handle_connection(self, connection: socket.socket, rfile, wfile) -> None:
        pid_c, uid, _gid = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                     struct.calcsize("3i")))
        try:
            line = rfile.readline(MAX_MESSAGE_BYTES + 1)
            reply = self.handle_message(line, uid)
        except Refused as exc:
            self._log_refusal(uid, exc)
            reply = {"ok": False, "error": str(exc), "code": exc.code}
        except (OSError, socket.timeout) as exc:
            self._log_refusal(uid, Refused(f"connection failed: {exc}", "connection"))
            return
        try:
            wfile.write((json.dumps(reply) + "\n").encode("utf-8"))
            wfile.flush()
        except OSError:
            pass  # the caller went away; nothing to tell

    def _log_refusal(self, uid: int, exc: Refused) -> None:
        key = (uid, exc.code)
        if key not in self._logged:  # a flood must not flood the journal
            self._logged.add(key)
            log.warning("refused a registration from uid %d: %s", uid, exc)

    def handle_message(self, line: bytes, uid: int) -> dict:
        """Answer one registration message from a caller whose uid the kernel told us. Raises ``Refused``."""
        if len(line) > MAX_MESSAGE_BYTES:
            raise Refused(f"the message is longer than {MAX_MESSAGE_BYTES} bytes", "malformed")
        try:
            message = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise Refused("the message is not one JSON object on one line", "malformed") from None
        if not isinstance(message, dict):
            raise Refused("the message is not a JSON object", "malformed")
        op = message.get("op")
        if op == "ping":
            return {"ok": True, "error": None, "jobs": len(self._jobs)}
        if op not in ("attach", "detach"):
            raise Refused(f"unknown op {str(op)[:40]!r} (expected attach, detach or ping)", "malformed")
        key = message.get("experiment_key")
        if not isinstance(key, str) or not EXPERIMENT_KEY_RE.match(key):
            raise Refused("experiment_key must be 32 to 50 letters and digits", "malformed")
        if op == "detach":
            return self._detach(key, uid)
        if not self._limiter.allow(uid):
            raise Refused("too many registrations from this user; try again in a minute", "rate_limited")
        return self._attach(key, message, uid)

    def _attach(self, key: str, message: dict, uid: int) -> dict:
        from comet_agent import errors
        from comet_agent.api.api import API
        from comet_agent.api.client import RetryPolicy
        from comet_agent.api.experiment import APIExperiment
        from comet_agent.collectors.process import ProcessTreeCollector

        pid = message.get("pid")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise Refused("pid must be a positive integer", "malformed")
        api_key = message.get("api_key")
        if api_key is not None and (not isinstance(api_key, str) or not api_key or any(c.isspace() for c in api_key)):
            raise Refused("api_key must be one word", "malformed")
        visible = message.get("cuda_visible_devices")
        if visible is not None and not isinstance(visible, str):
            raise Refused("cuda_visible_devices must be a string", "malformed")
        owner = _pid_owner_uid(pid, self.procfs_root)
        if owner is None:
            raise Refused(f"no process {pid} exists", "no_such_pid")
        if uid != 0 and owner != uid:
            raise Refused(f"process {pid} belongs to another user", "not_owner")
        if api_key is None:
            if uid != 0 or not self._own_key:
                raise Refused("the registration carries no API key (attach sends the job user's own key)", "no_key")
            api_key = self._own_key
        with self._jobs_lock:
            existing = self._jobs.get(key)
            if existing is not None:
                if existing.pid == pid and existing.uid == uid:
                    return {"ok": True, "error": None, "already": True}
                raise Refused(f"experiment {key} is already attached to another process", "busy")
            if len(self._jobs) >= self.max_jobs:
                raise Refused(f"the daemon already serves {self.max_jobs} jobs", "full")
        readable, from_proc = _read_environ_value(pid, "CUDA_VISIBLE_DEVICES", self.procfs_root)
        if readable:
            visible = from_proc
        api = API(api_key=api_key, url_override=self.url_override,
                  retry=RetryPolicy(max_retries=1, backoff_base_s=0.5, backoff_max_s=2.0))
        try:
            # Reading the experiment with the job user's key is the permission check: Comet decides.
            experiment = APIExperiment(api=api, previous_experiment=key)
            if not experiment.id:
                raise errors.NotFound(f"the server knows no experiment {key}", status=404)
        except errors.Unauthorized:
            api.close()
            raise Refused("the server rejected this user's API key for the experiment", "unauthorized") from None
        except errors.NotFound:
            api.close()
            raise Refused(f"the server knows no experiment {key} for this user's key", "not_found") from None
        except errors.CometApiError as exc:
            api.close()
            raise Refused(f"cannot reach the Comet server: {type(exc).__name__}", "unreachable") from None
        try:
            process = ProcessTreeCollector(pid, procfs_root=self.procfs_root)
            process.sample(int(time.time() * 1000))  # prime the CPU rate
        except Exception as exc:
            api.close()
            raise Refused(f"cannot read process {pid}: {type(exc).__name__}", "no_such_pid") from None
        spool = Spool(ensure_private_dir(self.data_dir / "spool") / f"{key}.db")
        job = Job(experiment_key=key, pid=pid, uid=uid, experiment=experiment, api=api, spool=spool,
                  process_collector=process, cuda_visible_devices=visible)
        with self._jobs_lock:
            if key in self._jobs:  # a concurrent registration won
                job.end(set_end_time=False, timeout_s=0)
                raise Refused(f"experiment {key} is already attached to another process", "busy")
            self._jobs[key] = job
        job.sender.start()  # sends whatever an earlier registration left in the spool too
        log.info("attached pid %d (uid %d) to experiment %s", pid, uid, key)
        return {"ok": True, "error": None, "experiment_url": getattr(experiment, "url", None)}

    def _detach(self, key: str, uid: int) -> dict:
        with self._jobs_lock:
            job = self._jobs.get(key)
            if job is None:
                raise Refused(f"experiment {key} is not attached", "not_attached")
            if uid != 0 and job.uid != uid:
                raise Refused(f"experiment {key} was attached by another user", "not_owner")
            del self._jobs[key]
        log.info("detached experiment %s (pid %d)", key, job.pid)
        self._end_async(job, set_end_time=True)
        return {"ok": True, "error": None}

    def _end_async(self, job: Job, *, set_end_time: bool) -> threading.Thread:
        thread = threading.Thread(target=job.end, kwargs={"set_end_time": set_end_time},
                                  name=f"comet-agent-end-{job.pid}", daemon=True)
        thread.start()
        return thread

    def jobs(self) -> list[Job]:
        """The registered jobs (a copy)."""
        with self._jobs_lock:
            return list(self._jobs.values())

    # -- sampling -------------------------------------------------------------------------------

    def _sample_host(self) -> tuple[list, list]:
        now_ms = int(time.time() * 1000)
        host: list = []
        for collector in self._host_collectors:
            host.extend(self._safe_sample(collector, now_ms))
        gpus = list(self._safe_sample(self._gpu_collector, now_ms)) if self._gpu_collector is not None else []
        return host, gpus

    def _safe_sample(self, collector: Any, now_ms: int) -> Sequence[Any]:
        try:
            return collector.sample(now_ms)
        except Exception as exc:  # one collector's failure costs its own data only
            key = ("collector", collector.name, type(exc).__name__)
            if key not in self._logged:
                self._logged.add(key)
                log.warning("collector %s failed: %s", collector.name, exc)
            return []

    def tick(self) -> None:
        """One tick: end the registrations whose pid exited, sample the host once, feed every job."""
        for job in self.jobs():
            if not pid_alive(job.pid):
                with self._jobs_lock:
                    if self._jobs.get(job.experiment_key) is job:
                        del self._jobs[job.experiment_key]
                log.info("pid %d exited: experiment %s ends", job.pid, job.experiment_key)
                self._end_async(job, set_end_time=True)
        jobs = self.jobs()
        host, gpus = self._sample_host()
        now_ms = int(time.time() * 1000)
        for job in jobs:
            try:
                job.feed(host, gpus, now_ms)
            except Exception as exc:  # a full disk for one spool must not starve the others
                key = ("feed", job.experiment_key, type(exc).__name__)
                if key not in self._logged:
                    self._logged.add(key)
                    log.error("cannot spool for experiment %s: %s", job.experiment_key, exc)
        self.ticks += 1

    def serve(self) -> int:
        """Tick until ``stop()`` (SIGTERM/SIGINT in the CLI); pings the watchdog from this loop."""
        self.notifier.ready(status=f"listening on {self.socket_path}")
        wake_s = min(self.interval_s, self.notifier.ping_interval_s or self.interval_s)
        next_tick_s = time.monotonic() + self.interval_s
        while not self._stop.is_set():
            now_s = time.monotonic()
            if now_s >= next_tick_s:
                self.tick()
                next_tick_s = max(next_tick_s + self.interval_s, time.monotonic())
            # Pinged from the sampling loop itself: a tick that hangs stops the pings, and systemd
            # restarts the service after WatchdogSec.
            self.notifier.watchdog_if_due()
            self._stop.wait(max(0.0, min(wake_s, next_tick_s - time.monotonic())))
        return 0

    def stop(self) -> None:
        """Ask ``serve()`` to return."""
        self._stop.set()

    def close(self, timeout_s: float = END_FLUSH_TIMEOUT_S) -> None:
        """Stop listening and deliver what is spooled (the jobs still run: no end time; they re-register)."""
        self.notifier.stopping()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            try:
                self.socket_path.unlink()
            except OSError:
                pass
        with self._jobs_lock:
            jobs, self._jobs = list(self._jobs.values()), {}
        threads = [self._end_async(job, set_end_time=False) for job in jobs]
        deadline = time.monotonic() + timeout_s + 2
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for collector in self._host_collectors + ([self._gpu_collector] if self._gpu_collector else []):
            close = getattr(collector, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # best effort
                    pass


# ------------------------------------------------------------------------------------------------
# the client side: attach, and monitor()'s registration
# ------------------------------------------------------------------------------------------------


def default_socket_path(environ: Optional[Mapping[str, str]] = None) -> Path:
    """``$COMET_AGENT_DAEMON_SOCKET``, else ``/run/comet-agent/daemon.sock``."""
    environ = os.environ if environ is None else environ
    return Path(environ.get(SOCKET_ENV) or DEFAULT_SOCKET_PATH)


def request(socket_path: os.PathLike | str, message: dict, timeout_s: float = 30.0) -> dict:
    """Send one message to the daemon and return its reply. Raises ``OSError`` when it cannot be reached."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(socket_path))
        sock.sendall((json.dumps(message) + "\n").encode("utf-8"))
        with sock.makefile("rb") as reader:
            line = reader.readline(MAX_MESSAGE_BYTES)
    try:
        reply = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise OSError(f"the daemon at {socket_path} answered something that is not JSON") from None
    if not isinstance(reply, dict):
        raise OSError(f"the daemon at {socket_path} answered something that is not a JSON object")
    return reply


def find_daemon(environ: Optional[Mapping[str, str]] = None) -> Optional[Path]:
    """The daemon's socket when a daemon answers on it, else None (no socket, or nobody listening)."""
    path = default_socket_path(environ)
    if not path.exists():
        return None
    try:
        return path if request(path, {"op": "ping"}, timeout_s=2.0).get("ok") else None
    except OSError:
        return None


#: Daemon refusal code -> the CLI's exit status (see ``cli.ExitStatus``).
REFUSAL_EXIT_STATUS = {"unauthorized": 3, "not_found": 4, "no_key": 78, "unreachable": 5}


class DaemonRegistration:
    """What ``monitor()`` returns when a daemon runs: the job registered with it, same context-manager surface.

    ``start()`` registers this process (or ``pid``) with the user's own API key; ``stop()``
    unregisters it, which gives the experiment its end time. Raises ``AgentError`` from
    ``start()`` when the daemon refuses; nothing raises after that.
    """

    def __init__(self, socket_path: os.PathLike | str, experiment_key: str, *, pid: Optional[int] = None,
                 api_key: Optional[str] = None):
        self.socket_path = Path(socket_path)
        self.experiment_key = experiment_key
        self.pid = pid or os.getpid()
        self._api_key = api_key
        self._running = False
        self.url: Optional[str] = None

    def start(self) -> "DaemonRegistration":
        """Register with the daemon. Raises ``AgentError`` (with the CLI exit status) when refused."""
        from comet_agent.errors import AgentError

        if self._running:
            return self
        reply = attach_request(self.socket_path, self.experiment_key, self.pid, api_key=self._api_key)
        if not reply.get("ok"):
            raise AgentError(f"the comet-agent daemon refused the registration: {reply.get('error')}",
                             REFUSAL_EXIT_STATUS.get(reply.get("code"), 1))
        self.url = reply.get("experiment_url")
        self._running = True
        return self

    def stop(self, timeout_s: Optional[float] = None) -> bool:
        """Unregister (the experiment gets its end time). Never raises; True when the daemon acknowledged."""
        if not self._running:
            return False
        self._running = False
        try:
            return bool(request(self.socket_path, {"op": "detach", "experiment_key": self.experiment_key},
                                timeout_s=timeout_s or 10.0).get("ok"))
        except OSError as exc:
            log.warning("cannot unregister from the comet-agent daemon: %s", exc)
            return False

    @property
    def running(self) -> bool:
        return self._running

    def __enter__(self) -> "DaemonRegistration":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"DaemonRegistration(experiment_key={self.experiment_key!r}, pid={self.pid}, socket={str(self.socket_path)!r})"


def attach_request(socket_path: os.PathLike | str, experiment_key: str, pid: int, *,
                   api_key: Optional[str] = None) -> dict:
    """Register ``pid`` for ``experiment_key`` with the user's own key (from configuration unless given).

    Returns the daemon's reply; ``{"ok": False, "code": "unreachable_daemon", ...}`` when no daemon answers.
    Raises ``ConfigError`` when this user has no API key configured.
    """
    from comet_agent.config import resolve_config

    key = api_key or resolve_config().require_api_key()
    message = {"op": "attach", "experiment_key": experiment_key, "pid": pid, "api_key": key,
               "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    try:
        return request(socket_path, message)
    except OSError as exc:
        return {"ok": False, "error": f"no comet-agent daemon answers at {socket_path}: {exc.strerror or exc}",
                "code": "unreachable_daemon"}


# ------------------------------------------------------------------------------------------------
# the subcommands
# ------------------------------------------------------------------------------------------------


def _err(message: str) -> None:
    print(f"comet-agent: {message}", file=sys.stderr, flush=True)


def daemon_from_args(args) -> int:
    """``comet-agent daemon``: serve registrations until SIGTERM/SIGINT."""
    problem = systemd_credential_problem()
    if problem:
        _err(problem)
        return 78
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    runtime = os.environ.get("RUNTIME_DIRECTORY")
    socket_path = Path(args.socket) if args.socket else (
        Path(runtime.split(":")[0]) / "daemon.sock" if runtime else data_dir / "daemon.sock")
    try:
        daemon = Daemon(socket_path, data_dir=data_dir, interval_s=args.interval, socket_group=args.socket_group,
                        include_gpu=not args.no_gpu, max_jobs=args.max_jobs,
                        registrations_per_minute=args.registrations_per_minute)
        daemon.open()
    except (ValueError, OSError) as exc:
        _err(f"cannot start the daemon: {exc}")
        return 78
    previous = {sig: signal.signal(sig, lambda _s, _f: daemon.stop()) for sig in (signal.SIGTERM, signal.SIGINT)}
    print(f"comet-agent: daemon listening on {socket_path}", file=sys.stderr, flush=True)
    try:
        daemon.serve()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        daemon.close()
    return 0


def attach_from_args(args) -> int:
    """``comet-agent attach --experiment KEY --pid PID``: register a job with the running daemon."""
    from comet_agent.errors import ConfigError

    socket_path = Path(args.socket) if args.socket else default_socket_path()
    try:
        if args.detach:
            try:
                reply = request(socket_path, {"op": "detach", "experiment_key": args.experiment})
            except OSError as exc:
                reply = {"ok": False, "error": f"no comet-agent daemon answers at {socket_path}: {exc}",
                         "code": "unreachable_daemon"}
        else:
            reply = attach_request(socket_path, args.experiment, args.pid or os.getppid())
    except ConfigError as exc:
        _err(str(exc))
        return 78
    if not reply.get("ok"):
        _err(str(reply.get("error")))
        return REFUSAL_EXIT_STATUS.get(reply.get("code"), 5 if reply.get("code") == "unreachable_daemon" else 1)
    if not args.detach:
        print(f"comet-agent: pid {args.pid or os.getppid()} attached to experiment {args.experiment}", file=sys.stderr)
    return 0
