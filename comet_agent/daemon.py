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
- Registrations are rate-limited per uid (``--registrations-per-minute``) and a uid holds at most
  ``--max-jobs`` of them; a refusal is answered with a reason, logged once per uid and reason, and
  the daemon keeps serving everyone else.
- Connections are bounded: at most ``MAX_CONNECTION_THREADS`` handled at once and
  ``MAX_CONNECTIONS_PER_UID`` per uid (others are answered ``busy`` at once, without a thread);
  a message must arrive whole within ``CLIENT_TIMEOUT_S`` and be one flat JSON object (nesting
  past ``MAX_MESSAGE_DEPTH`` is refused before parsing).
- Only the kernel's word counts (``SO_PEERCRED``: pid and uid, translated into the daemon's pid
  namespace). The pid in a message is a number in the *caller's* pid namespace, which may not be
  the daemon's (a container): when the caller's ``NSpid`` (``/proc/PID/status``) says it lives in
  a nested namespace, the message's pid must be the caller itself or one of its ancestors in that
  namespace, and is translated to the daemon's number; a caller the daemon cannot see at all (peer
  pid 0: a sibling or parent namespace) is refused. Then, as always, the process must exist in the
  daemon's namespace and belong to the caller's uid (root: any).

Protocol: one JSON line (at most ``MAX_MESSAGE_BYTES``) per connection, answered by one JSON line
``{"ok": bool, "error": str|null, ...}``. Operations: ``attach`` (``experiment_key``, ``pid``,
``api_key``, ``cuda_visible_devices``), ``detach`` (``experiment_key``), ``ping``.
"""

from __future__ import annotations

import collections
import grp
import json
import logging
import os
import re
import socket
import socketserver
import struct
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Optional

from comet_agent.config import NodeIdentity, check_node_id, node_identity
from comet_agent.delivery.spool import Spool
from comet_agent.engine.host_sampler import HostSampler
from comet_agent.engine.job import GpuView, Job, job_directory
from comet_agent.engine.link import ExperimentLink
from comet_agent.errors import ConfigError
from comet_agent.paths import default_data_dir, ensure_private_dir
from comet_agent.redaction import strip_url_credentials
from comet_agent.sources.procfs import pid_alive
from comet_agent.warn_once import WarnOnce

log = logging.getLogger(__name__)

#: The system daemon's socket (systemd/comet-agent.service); see ``socket_path()`` for the rule.
DEFAULT_SOCKET_PATH = "/run/comet-agent/daemon.sock"
SOCKET_ENV = "COMET_AGENT_DAEMON_SOCKET"
MAX_MESSAGE_BYTES = 16 * 1024
#: A message is a flat object; nesting deeper than this is refused unparsed (no RecursionError).
MAX_MESSAGE_DEPTH = 4
#: Connections handled at once (one thread each), and per uid: a flood by one user delays only it.
MAX_CONNECTION_THREADS = 64
MAX_CONNECTIONS_PER_UID = 8
#: How far up a caller's process tree a registration's pid is looked for (nested pid namespaces).
MAX_ANCESTOR_STEPS = 64
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


def _read_environ(pid: int, procfs_root: str = "/proc") -> Optional[dict[str, str]]:
    """The environment of ``pid`` from ``/proc/PID/environ`` (its first MiB), or None when it is
    unreadable (another user's process, for a daemon that is not root)."""
    try:
        with open(f"{procfs_root}/{pid}/environ", "rb") as handle:
            raw = handle.read(1 << 20)
    except OSError:
        return None
    environ: dict[str, str] = {}
    for item in raw.split(b"\0"):
        name, separator, value = item.partition(b"=")
        if separator and name:
            environ[name.decode("utf-8", errors="replace")] = value.decode("utf-8", errors="replace")
    return environ


def _pid_owner_uid(pid: int, procfs_root: str = "/proc") -> Optional[int]:
    try:
        return os.stat(f"{procfs_root}/{pid}").st_uid
    except OSError:
        return None


def parse_status_namespace_pids(text: str) -> tuple[Optional[list[int]], Optional[int]]:
    """``(NSpid, PPid)`` from the text of ``/proc/PID/status``: the process's pid in each pid
    namespace, from the reader's down to its own (None on kernels without the line), and its
    parent's pid in the reader's namespace.

    >>> parse_status_namespace_pids("Name:\\tpython\\nPPid:\\t10\\nNSpid:\\t4242\\t7\\n")
    ([4242, 7], 10)
    """
    namespace_pids: Optional[list[int]] = None
    parent: Optional[int] = None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        try:
            if name == "NSpid":
                namespace_pids = [int(v) for v in value.split()]
            elif name == "PPid":
                parent = int(value.strip())
        except ValueError:
            return None, None
    return namespace_pids, parent


def _namespace_pids(pid: int, procfs_root: str = "/proc") -> tuple[Optional[list[int]], Optional[int]]:
    try:
        with open(f"{procfs_root}/{pid}/status", encoding="utf-8", errors="replace") as handle:
            return parse_status_namespace_pids(handle.read(1 << 16))
    except OSError:
        return None, None


def resolve_registered_pid(message_pid: int, peer_pid: int, procfs_root: str = "/proc") -> int:
    """The daemon's number for the process a caller registered as ``message_pid``.

    ``peer_pid`` is the caller's pid as the kernel reported it (``SO_PEERCRED``, in the daemon's
    namespace). A caller in the daemon's own pid namespace means what it says. A caller in a nested
    namespace (its ``NSpid`` has more than one entry) names a pid of that namespace: it must be the
    caller or one of its ancestors there, and that process's daemon-side pid is returned.

    Raises:
        Refused: the caller is invisible to the daemon (``peer_pid`` 0), or ``message_pid`` is not
            the caller nor an ancestor in the caller's namespace (code ``namespace``).
    """
    if peer_pid <= 0:
        raise Refused(
            "the calling process is not visible in the daemon's pid namespace; register from a "
            "namespace the daemon can see",
            "namespace",
        )
    namespace_pids, parent = _namespace_pids(peer_pid, procfs_root)
    if not namespace_pids or len(namespace_pids) == 1:
        return message_pid  # the daemon's own namespace (or a kernel without NSpid: one namespace)
    depth = len(namespace_pids)
    current, steps = peer_pid, 0
    while namespace_pids is not None and len(namespace_pids) == depth and steps < MAX_ANCESTOR_STEPS:
        if namespace_pids[-1] == message_pid:
            return current
        if not parent:
            break
        current, steps = parent, steps + 1
        namespace_pids, parent = _namespace_pids(current, procfs_root)
    raise Refused(
        f"pid {message_pid} is neither the caller nor one of its ancestors in the caller's pid namespace "
        "(a pid from another namespace means another process here)",
        "namespace",
    )


def _peer_credentials(connection: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of the process at the other end, as the kernel says (``SO_PEERCRED``)."""
    raw = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def _read_line(connection: socket.socket, deadline_s: float) -> bytes:
    """One line (at most ``MAX_MESSAGE_BYTES + 1`` bytes kept), which must arrive whole by
    ``deadline_s`` (monotonic): a caller sending a byte at a time cannot hold its thread longer.

    Raises ``socket.timeout`` past the deadline."""
    data = b""
    while b"\n" not in data and len(data) <= MAX_MESSAGE_BYTES:
        remaining = deadline_s - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("the message did not arrive in time")
        connection.settimeout(remaining)
        chunk = connection.recv(4096)
        if not chunk:
            break
        data += chunk
    line, newline, _rest = data.partition(b"\n")
    return (line + newline)[: MAX_MESSAGE_BYTES + 1]


def _message_too_deep(line: bytes, limit: int = MAX_MESSAGE_DEPTH) -> bool:
    """Whether brackets nest past ``limit`` (strings skipped): checked before ``json.loads``, whose
    recursion a 16 KiB message of ``[`` would otherwise exhaust."""
    depth, in_string, escaped = 0, False, False
    for byte in line:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


# ------------------------------------------------------------------------------------------------
# the daemon
# ------------------------------------------------------------------------------------------------


class Registration:
    """One registered job: the engine's ``Job`` plus who registered it and the client it writes with."""

    def __init__(self, *, job: Job, uid: int, api: Any):
        self.job = job
        self.uid = uid
        self._api = api

    def __repr__(self) -> str:  # never shows the client (which holds the key)
        return f"Registration(experiment_key={self.job.experiment_key!r}, pid={self.job.pid}, uid={self.uid})"

    def end(self, *, job_ended: bool, timeout_s: float = END_FLUSH_TIMEOUT_S) -> bool:
        """Stop the job: the end time when the job ended (pid exited, detach), then a bounded flush.

        A daemon shutting down passes ``job_ended=False``: the job still runs and registers again."""
        try:
            return self.job.stop(timeout_s, job_ended=job_ended)
        finally:
            self._api.close()


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
        max_jobs: registrations held at once by one user (uid).
        registrations_per_minute: per uid.
    """

    def __init__(
        self,
        socket_path: os.PathLike | str,
        *,
        data_dir: os.PathLike | str,
        interval_s: float = DEFAULT_INTERVAL_S,
        socket_group: Optional[str] = None,
        url_override: Optional[str] = None,
        include_gpu: bool = True,
        procfs_root: str = "/proc",
        max_jobs: int = DEFAULT_MAX_JOBS,
        registrations_per_minute: int = DEFAULT_REGISTRATIONS_PER_MINUTE,
        notifier: Any = None,
    ):
        from comet_agent.config import resolution_setting, resolve_config
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
        # Checked at start (ConfigError), not at the first registration: every job pushes this way.
        self.resolution = resolution_setting(self._config)
        self.url_override = self._config.url_override
        self._own_key = self._config.api_key  # used for root's registrations only
        self._limiter = RateLimiter(registrations_per_minute)
        self.notifier = notifier or Notifier.from_environment()
        self._jobs: dict[str, Registration] = {}
        self._jobs_lock = threading.Lock()
        self._connections_lock = threading.Lock()
        self._connections_total = 0
        self._connections_by_uid: dict[int, int] = {}
        self._connection_uids: dict[int, int] = {}  # id(socket) -> uid, while it is handled
        self._warn = WarnOnce(log)
        self._stop = threading.Event()
        self._host: Optional[HostSampler] = None
        self._local: Any = None
        self._server: Optional[socketserver.UnixStreamServer] = None
        self.ticks = 0

    # -- setup ----------------------------------------------------------------------------------

    def open(self) -> "Daemon":
        """Build the host sampler, create the spool directory and listen. Raises ``OSError``/``ValueError``.

        With no Comet configured (no key, no URL), the daemon serves the local server of its data
        directory (``comet_agent.embedded``), and registrations need no key of their own.
        """
        os.umask(0o077)
        ensure_private_dir(self.data_dir / "spool")
        self._refuse_if_served()
        if self._own_key is None and not self._config.server_configured:
            from comet_agent.embedded import connect_local

            self._local = connect_local(self.data_dir)
            self._own_key, self.url_override = self._local.api_key, self._local.clientlib_url
        # Every job reads this one sampler; a reading younger than half a tick is shared, so the
        # host is sampled once per tick however many jobs there are.
        self._host, unavailable = HostSampler.build(
            procfs_root=self.procfs_root, include_gpu=self.include_gpu, reuse_within_s=self.interval_s / 2
        )
        for name, reason in unavailable.items():
            log.info("collector %s unavailable: %s", name, reason)
        self._listen()
        return self

    @property
    def serves_local_server(self) -> bool:
        """True when the daemon writes to its own local server (registrations need no key then)."""
        return self._local is not None

    def _refuse_if_served(self) -> None:
        """A second daemon must not take over a live socket: refuse with a clear message."""
        if self.socket_path.is_socket():
            try:
                answered = request(self.socket_path, {"op": "ping"}, timeout_s=2.0).get("ok")
            except OSError:
                answered = False
            if answered:
                raise ValueError(
                    f"another comet-agent daemon already listens on {self.socket_path}; "
                    "stop it first, or give this one another --socket"
                )

    def _listen(self) -> None:
        gid = None
        if self.socket_group:
            try:
                gid = grp.getgrnam(self.socket_group).gr_gid
            except KeyError:
                raise ValueError(f"the socket group {self.socket_group!r} does not exist") from None
        if not self.socket_path.parent.is_dir():
            raise ValueError(f"the socket's directory {self.socket_path.parent} does not exist")
        if self.socket_path.is_socket():
            self.socket_path.unlink()  # left by a daemon that was killed
        daemon = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                daemon._handle_connection(self.request)

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True
            # socketserver's default backlog of 5 fills under a flood of connections, and a
            # client's connect then fails at once (EAGAIN on a Unix socket), not after a wait.
            request_queue_size = 128

            def process_request(self, request, client_address) -> None:
                # In the accepting thread: a connection over the caps gets "busy" and no thread.
                if daemon._admit_connection(request):
                    super().process_request(request, client_address)
                else:
                    self.shutdown_request(request)

            def process_request_thread(self, request, client_address) -> None:
                try:
                    super().process_request_thread(request, client_address)
                finally:
                    daemon._release_connection(request)

        self._server = Server(str(self.socket_path), Handler)
        # Set the mode on the socket itself: connecting needs write permission on it.
        os.chmod(self.socket_path, 0o660 if gid is not None else 0o600)
        if gid is not None and self.socket_path.stat().st_gid != gid:
            # Under the unit, Group= makes the socket ours already: chown is in @privileged, which
            # its SystemCallFilter denies.
            os.chown(self.socket_path, -1, gid)
        threading.Thread(target=self._server.serve_forever, name="comet-agent-registrations", daemon=True).start()

    # -- registrations --------------------------------------------------------------------------

    def _admit_connection(self, connection: socket.socket) -> bool:
        """Count a new connection against the caps; answer ``busy`` and return False when over one."""
        try:
            _pid, uid, _gid = _peer_credentials(connection)
        except OSError:
            return False
        with self._connections_lock:
            held = self._connections_by_uid.get(uid, 0)
            if self._connections_total < MAX_CONNECTION_THREADS and held < MAX_CONNECTIONS_PER_UID:
                self._connections_total += 1
                self._connections_by_uid[uid] = held + 1
                self._connection_uids[id(connection)] = uid
                return True
        self._log_refusal(uid, Refused("too many connections at once", "busy"))
        try:
            connection.settimeout(0.5)  # a caller that does not read must not hold the accepting thread
            connection.sendall(
                (
                    json.dumps(
                        {
                            "ok": False,
                            "error": "the daemon is busy with this user's other connections; try again",
                            "code": "busy",
                        }
                    )
                    + "\n"
                ).encode("utf-8")
            )
        except OSError:
            pass
        return False

    def _release_connection(self, connection: socket.socket) -> None:
        with self._connections_lock:
            uid = self._connection_uids.pop(id(connection), None)
            if uid is None:
                return
            self._connections_total -= 1
            remaining = self._connections_by_uid.get(uid, 1) - 1
            if remaining > 0:
                self._connections_by_uid[uid] = remaining
            else:
                self._connections_by_uid.pop(uid, None)

    def _handle_connection(self, connection: socket.socket) -> None:
        peer_pid, uid, _gid = _peer_credentials(connection)
        try:
            line = _read_line(connection, time.monotonic() + CLIENT_TIMEOUT_S)
            reply = self.handle_message(line, uid, peer_pid=peer_pid)
        except Refused as exc:
            self._log_refusal(uid, exc)
            reply = {"ok": False, "error": str(exc), "code": exc.code}
        except (OSError, socket.timeout) as exc:
            self._log_refusal(uid, Refused(f"connection failed: {exc}", "connection"))
            return
        try:
            connection.settimeout(CLIENT_TIMEOUT_S)
            connection.sendall((json.dumps(reply) + "\n").encode("utf-8"))
        except OSError:
            pass  # the caller went away; nothing to tell

    def _log_refusal(self, uid: int, exc: Refused) -> None:
        # A flood must not flood the journal: once per uid and reason.
        self._warn(("refused", uid, exc.code), logging.WARNING, "refused a registration from uid %d: %s", uid, exc)

    def handle_message(self, line: bytes, uid: int, *, peer_pid: Optional[int] = None) -> dict:
        """Answer one registration message from a caller whose uid (and pid, ``peer_pid``) the kernel
        told us. ``peer_pid`` None: the message's pid is taken as the daemon's own number (callers
        inside this process). Raises ``Refused``."""
        if len(line) > MAX_MESSAGE_BYTES:
            raise Refused(f"the message is longer than {MAX_MESSAGE_BYTES} bytes", "malformed")
        if _message_too_deep(line):
            raise Refused(f"the message nests deeper than {MAX_MESSAGE_DEPTH} levels", "malformed")
        try:
            message = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise Refused("the message is not one JSON object on one line", "malformed") from None
        if not isinstance(message, dict):
            raise Refused("the message is not a JSON object", "malformed")
        op = message.get("op")
        if op == "ping":
            return {"ok": True, "error": None, "jobs": len(self._jobs), "local_server": self.serves_local_server}
        if op == "status":
            return {
                "ok": True,
                "error": None,
                "pid": os.getpid(),
                "socket": str(self.socket_path),
                "interval_s": self.interval_s,
                "server": strip_url_credentials(self.url_override),
                "jobs": self.job_statuses(uid),
            }
        if op not in ("attach", "detach"):
            raise Refused(f"unknown op {str(op)[:40]!r} (expected attach, detach, status or ping)", "malformed")
        key = message.get("experiment_key")
        if not isinstance(key, str) or not EXPERIMENT_KEY_RE.match(key):
            raise Refused("experiment_key must be 32 to 50 letters and digits", "malformed")
        if op == "detach":
            return self._detach(key, uid)
        if not self._limiter.allow(uid):
            raise Refused("too many registrations from this user; try again in a minute", "rate_limited")
        return self._attach(key, message, uid, peer_pid)

    def _attach(self, key: str, message: dict, uid: int, peer_pid: Optional[int] = None) -> dict:
        from comet_agent import errors
        from comet_agent.api.api import API
        from comet_agent.delivery.retry import RetryPolicy

        pid = message.get("pid")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise Refused("pid must be a positive integer", "malformed")
        if peer_pid is not None:
            pid = resolve_registered_pid(pid, peer_pid, self.procfs_root)
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
        if api_key is None or self.serves_local_server:
            # The daemon's own key: for root, and for everyone when it serves its own local server
            # (that server is the daemon's; a user key would not be known there).
            if not self._own_key or (uid != 0 and not self.serves_local_server):
                raise Refused("the registration carries no API key (attach sends the job user's own key)", "no_key")
            api_key = self._own_key
        with self._jobs_lock:
            existing = self._jobs.get(key)
            if existing is not None:
                if existing.job.pid == pid and existing.uid == uid:
                    return {"ok": True, "error": None, "already": True}
                raise Refused(f"experiment {key} is already attached to another process", "busy")
            held = sum(1 for registration in self._jobs.values() if registration.uid == uid)
            if held >= self.max_jobs:
                raise Refused(f"this user already has {self.max_jobs} registrations with the daemon", "full")
        job_environ = _read_environ(pid, self.procfs_root)
        if job_environ is not None:
            visible = job_environ.get("CUDA_VISIBLE_DEVICES")
        node = self._node_of(message.get("node_id"), job_environ or {})
        api = API(
            api_key=api_key,
            url_override=self.url_override,
            retry=RetryPolicy(max_retries=1, backoff_base_s=0.5, backoff_max_s=2.0),
        )
        link = ExperimentLink(api, key, create=False)
        try:
            # Reading the experiment with the job user's key is the permission check: Comet decides.
            link.get()
        except errors.Unauthorized:
            api.close()
            raise Refused("the server rejected this user's API key for the experiment", "unauthorized") from None
        except errors.NotFound:
            api.close()
            raise Refused(f"the server knows no experiment {key} for this user's key", "not_found") from None
        except errors.CometApiError as exc:
            api.close()
            raise Refused(f"cannot reach the Comet server: {type(exc).__name__}", "unreachable") from None
        if not pid_alive(pid):
            api.close()
            raise Refused(f"no process {pid} exists", "no_such_pid")
        spool = Spool(ensure_private_dir(self.data_dir / "spool") / f"{key}.db")
        assert self._host is not None, "open() first"
        job = Job(
            link,
            spool,
            self._host,
            pid=pid,
            directory=job_directory(pid, self.procfs_root),
            sample_interval_s=self.interval_s,
            resolution=self.resolution,
            gpus=GpuView(select=True, cuda_visible_devices=visible),
            node=node,
            include_gpu=self.include_gpu,
            procfs_root=self.procfs_root,
            secrets=[api_key],
        )
        registration = Registration(job=job, uid=uid, api=api)
        with self._jobs_lock:
            if key in self._jobs:  # a concurrent registration won
                spool.close()
                api.close()
                raise Refused(f"experiment {key} is already attached to another process", "busy")
            self._jobs[key] = registration
        job.start()  # sends whatever an earlier registration left in the spool too
        log.info("attached pid %d (uid %d) to experiment %s", pid, uid, key)
        return {"ok": True, "error": None, "experiment_url": job.url}

    @staticmethod
    def _node_of(explicit: Any, job_environ: Mapping[str, str]) -> NodeIdentity:
        """The node a registered job runs on: the registration's ``node_id`` (``attach --node-id``),
        else what the job's own environment says (``COMET_DISTRIBUTED_NODE_IDENTIFIER``, or a
        multi-node launcher's variables, as ``run`` and ``monitor()`` read them). Its host series are
        prefixed with it; no rank part: the daemon takes one registration per experiment and
        samples the host once whatever the ranks."""
        if explicit is not None:
            if not isinstance(explicit, str):
                raise Refused("node_id must be a string", "malformed")
            try:
                explicit = check_node_id(explicit)
            except ConfigError as exc:
                raise Refused(str(exc), "malformed") from None
        environ = {name: value for name, value in job_environ.items() if name != "COMET_API_KEY"}
        try:
            node = node_identity(explicit, environ=environ)
        except ConfigError as exc:
            raise Refused(f"the job's environment names a bad node id: {exc}", "malformed") from None
        return NodeIdentity(node_id=node.node_id, node_index=node.node_index, source=node.source)

    def _detach(self, key: str, uid: int) -> dict:
        with self._jobs_lock:
            registration = self._jobs.get(key)
            if registration is None:
                raise Refused(f"experiment {key} is not attached", "not_attached")
            if uid != 0 and registration.uid != uid:
                raise Refused(f"experiment {key} was attached by another user", "not_owner")
            del self._jobs[key]
        log.info("detached experiment %s (pid %s)", key, registration.job.pid)
        self._end_async(registration, job_ended=True)
        return {"ok": True, "error": None}

    def _end_async(self, registration: "Registration", *, job_ended: bool) -> threading.Thread:
        thread = threading.Thread(
            target=registration.end,
            kwargs={"job_ended": job_ended},
            name=f"comet-agent-end-{registration.job.pid}",
            daemon=True,
        )
        thread.start()
        return thread

    def jobs(self) -> list[Job]:
        """The registered jobs (a copy)."""
        with self._jobs_lock:
            return [registration.job for registration in self._jobs.values()]

    def job_statuses(self, uid: int) -> list[dict]:
        """The status of each registration this uid may see (root: all)."""
        with self._jobs_lock:
            registrations = list(self._jobs.values())
        return [
            {**registration.job.status(pid=registration.job.pid).__dict__, "uid": registration.uid}
            for registration in registrations
            if uid == 0 or registration.uid == uid
        ]

    # -- ticking --------------------------------------------------------------------------------

    def tick(self) -> None:
        """End the registrations whose pid exited (each job samples and pushes on its own clock)."""
        for key, registration in self._registrations():
            if not registration.job.watched_pid_alive():
                with self._jobs_lock:
                    if self._jobs.get(key) is registration:
                        del self._jobs[key]
                    else:
                        continue
                log.info("pid %s exited: experiment %s ends", registration.job.pid, key)
                self._end_async(registration, job_ended=True)
        self.ticks += 1

    def _registrations(self) -> list[tuple[str, "Registration"]]:
        with self._jobs_lock:
            return list(self._jobs.items())

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
            registrations, self._jobs = list(self._jobs.values()), {}
        threads = [self._end_async(registration, job_ended=False) for registration in registrations]
        deadline = time.monotonic() + timeout_s + 2
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._host is not None:
            self._host.close()
        if self._local is not None:
            self._local.stop()


# ------------------------------------------------------------------------------------------------
# the client side: attach, and monitor()'s registration
# ------------------------------------------------------------------------------------------------


def socket_path(
    explicit: Optional[os.PathLike | str] = None,
    *,
    environ: Optional[Mapping[str, str]] = None,
    data_dir: Optional[os.PathLike | str] = None,
) -> Path:
    """Where the daemon listens, and where ``attach`` and ``monitor()`` look: one rule for all three.

    In order: ``explicit`` (``--socket``); ``$COMET_AGENT_DAEMON_SOCKET``; ``$RUNTIME_DIRECTORY/
    daemon.sock`` (systemd's ``RuntimeDirectory=comet-agent``: ``/run/comet-agent``); the system
    socket ``/run/comet-agent/daemon.sock`` when it exists or when running as root; the user's
    ``$XDG_RUNTIME_DIR/comet-agent/daemon.sock``; else ``<data dir>/daemon.sock``.
    """
    environ = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if environ.get(SOCKET_ENV):
        return Path(environ[SOCKET_ENV])
    runtime = environ.get("RUNTIME_DIRECTORY")
    if runtime:
        return Path(runtime.split(":")[0]) / "daemon.sock"
    system = Path(DEFAULT_SOCKET_PATH)
    if system.exists() or os.geteuid() == 0:
        return system
    if environ.get("XDG_RUNTIME_DIR"):
        return Path(environ["XDG_RUNTIME_DIR"]) / "comet-agent" / "daemon.sock"
    return Path(data_dir or default_data_dir()) / "daemon.sock"


def request(socket_path: os.PathLike | str, message: dict, timeout_s: float = 30.0) -> dict:
    """Send one message to the daemon and return its reply. Raises ``OSError`` when it cannot be reached."""
    deadline = time.monotonic() + timeout_s
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(timeout_s)
        while True:
            try:
                sock.connect(str(socket_path))
                break
            except BlockingIOError:
                # The daemon's listen backlog is full (a burst of clients): a Unix socket says so at
                # once instead of waiting, so wait here, within the timeout.
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
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
    path = socket_path(environ=environ)
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

    def __init__(
        self,
        socket_path: os.PathLike | str,
        experiment_key: str,
        *,
        pid: Optional[int] = None,
        api_key: Optional[str] = None,
        node_id: Optional[str] = None,
    ):
        self.socket_path = Path(socket_path)
        self.experiment_key = experiment_key
        self.pid = pid or os.getpid()
        self._api_key = api_key
        self.node_id = node_id  # None: the daemon reads the job's environment
        self._running = False
        self.url: Optional[str] = None

    def start(self) -> "DaemonRegistration":
        """Register with the daemon. Raises ``AgentError`` (with the CLI exit status) when refused."""
        from comet_agent.errors import AgentError

        if self._running:
            return self
        reply = attach_request(
            self.socket_path, self.experiment_key, self.pid, api_key=self._api_key, node_id=self.node_id
        )
        if not reply.get("ok"):
            raise AgentError(
                f"the comet-agent daemon refused the registration: {reply.get('error')}",
                REFUSAL_EXIT_STATUS.get(str(reply.get("code")), 1),
            )
        self.url = reply.get("experiment_url")
        self._running = True
        return self

    def stop(self, timeout_s: Optional[float] = None) -> bool:
        """Unregister (the experiment gets its end time). Never raises; True when the daemon acknowledged."""
        if not self._running:
            return False
        self._running = False
        try:
            return bool(
                request(
                    self.socket_path,
                    {"op": "detach", "experiment_key": self.experiment_key},
                    timeout_s=timeout_s or 10.0,
                ).get("ok")
            )
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


def attach_request(
    socket_path: os.PathLike | str,
    experiment_key: str,
    pid: int,
    *,
    api_key: Optional[str] = None,
    node_id: Optional[str] = None,
) -> dict:
    """Register ``pid`` for ``experiment_key`` with the user's own key (from configuration unless given).

    Without a configured key the registration goes without one: a daemon that serves its own
    local server accepts it, any other refuses it (``no_key``).
    Returns the daemon's reply; ``{"ok": False, "code": "unreachable_daemon", ...}`` when no daemon answers.
    Raises ``ConfigError`` when the configuration is unreadable.
    """
    from comet_agent.config import resolve_config

    key = api_key or resolve_config().api_key
    message = {
        "op": "attach",
        "experiment_key": experiment_key,
        "pid": pid,
        "api_key": key,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "node_id": node_id,
    }
    try:
        return request(socket_path, message)
    except OSError as exc:
        return {
            "ok": False,
            "error": f"no comet-agent daemon answers at {socket_path}: {exc.strerror or exc}",
            "code": "unreachable_daemon",
        }
