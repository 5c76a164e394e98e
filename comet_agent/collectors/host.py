"""Host and job identity (static, once per run).

Reads: ``platform`` and ``socket`` for the OS and host name; ``<procfs>/cpuinfo`` and
``<procfs>/meminfo`` for the CPU model, counts and total RAM (psutil as fallback); the
os-release file through ``distro``; ``psutil.net_if_addrs()`` for interface addresses; the
job's cgroup (``<procfs>/<pid>/cgroup`` under a cgroup v1 or v2 mount) for CPU and memory limits;
the job's environment for Slurm, Kubernetes and torchrun identity. With a watched ``pid`` the
command line, executable, user and environment are the watched process's (from
``<procfs>/<pid>/``), otherwise our own.

Feeds: the host keys of Comet's system details (``hostname``, ``user``, ``pid``, ``executable``,
``command``, ``os``, ``osType``, ``osRelease``, ``machine``, ``processor``, ``pythonVersion``,
``pythonVersionVerbose``, ``ip``, ``networkInterfaceIps``, ``totalRam``) and additional system
info (distro, CPU counts, cgroup limits, cluster identity).

Absent source: never unavailable as a whole. A fact that cannot be read is ``None`` (or an empty
tuple); the user falls back to ``$USER``/``$LOGNAME`` and then ``uid:<n>`` in containers without a
passwd entry. The command line is masked (``--api-key X``, ``--password=X``, ``TOKEN=...``).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import platform
import socket
import sys
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from comet_agent.collectors.python_packages import parse_environ
from comet_agent.records import HostSnapshot
from comet_agent.redaction import mask_command_line

logger = logging.getLogger(__name__)

OS_RELEASE_PATH = "/etc/os-release"
CGROUP_ROOT = "/sys/fs/cgroup"
# When no server is configured we still report the address that routes off the host: the
# source address the kernel would pick for TEST-NET-1 (RFC 5737). No packet is ever sent.
_DEFAULT_ROUTE_PROBE = ("192.0.2.1", 9)
_RESOLVE_TIMEOUT_S = 1.0
# cgroup v1 reports "no limit" as a huge page-aligned number (e.g. 9223372036854771712).
_CGROUP_V1_UNLIMITED_BYTES = 1 << 62

# Environment variables that identify a job's place in a cluster: (variable, reported key).
CLUSTER_IDENTITY_VARIABLES = (
    ("SLURM_JOB_ID", "slurm.job_id"),
    ("SLURM_JOB_NAME", "slurm.job_name"),
    ("SLURM_ARRAY_JOB_ID", "slurm.array_job_id"),
    ("SLURM_ARRAY_TASK_ID", "slurm.array_task_id"),
    ("SLURM_JOB_NODELIST", "slurm.job_nodelist"),
    ("SLURMD_NODENAME", "slurm.node"),
    ("SLURM_NODEID", "slurm.node_id"),
    ("SLURM_PROCID", "slurm.rank"),
    ("SLURM_LOCALID", "slurm.local_rank"),
    ("SLURM_NTASKS", "slurm.ntasks"),
    ("KUBERNETES_POD_NAME", "kubernetes.pod"),
    ("POD_NAME", "kubernetes.pod"),
    ("POD_NAMESPACE", "kubernetes.namespace"),
    ("KUBERNETES_NAMESPACE", "kubernetes.namespace"),
    ("NODE_NAME", "kubernetes.node"),
    ("KUBERNETES_NODE_NAME", "kubernetes.node"),
    ("RANK", "torchrun.rank"),
    ("LOCAL_RANK", "torchrun.local_rank"),
    ("WORLD_SIZE", "torchrun.world_size"),
    ("LOCAL_WORLD_SIZE", "torchrun.local_world_size"),
    ("GROUP_RANK", "torchrun.group_rank"),
    ("TORCHELASTIC_RUN_ID", "torchrun.run_id"),
    ("MASTER_ADDR", "torchrun.master_addr"),
    ("MASTER_PORT", "torchrun.master_port"),
)


# ------------------------------------------------------------------------------------------------
# Pure parsers
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuInfo:
    """What ``/proc/cpuinfo`` says: the model name and the logical and physical core counts (None when not stated)."""

    model: Optional[str]
    logical_count: Optional[int]
    physical_count: Optional[int]


# Where each architecture states its CPU model, most specific first.
_MODEL_KEYS = ("model name", "Model", "Hardware", "cpu")


def parse_cpuinfo(text: str) -> CpuInfo:
    """Parse ``/proc/cpuinfo``.

    The model comes from ``model name`` (x86), ``Model`` or ``Hardware`` (ARM) or ``cpu``
    (POWER). Logical CPUs are the ``processor`` entries; physical cores are the distinct
    (``physical id``, ``core id``) pairs, None when the kernel does not give them (ARM).
    """
    models: dict[str, str] = {}
    logical = 0
    cores: set[tuple[str, str]] = set()
    physical_id = core_id = None

    def end_block() -> None:
        if core_id is not None:
            cores.add((physical_id or "0", core_id))

    for line in text.splitlines() + [""]:
        if not line.strip():
            end_block()
            physical_id = core_id = None
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "processor" and value.isdigit():
            logical += 1
        elif key in _MODEL_KEYS and value:
            models.setdefault(key, value)
        elif key == "physical id":
            physical_id = value
        elif key == "core id":
            core_id = value
    model = next((models[key] for key in _MODEL_KEYS if key in models), None)
    return CpuInfo(model=model, logical_count=logical or None, physical_count=len(cores) or None)


def parse_meminfo_total_bytes(text: str) -> Optional[int]:
    """``MemTotal`` of ``/proc/meminfo`` in bytes (the file states kB), or None."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def parse_proc_cgroup(text: str) -> tuple[Optional[str], dict[str, str]]:
    """``/proc/<pid>/cgroup`` as (the cgroup v2 path or None, {v1 controller: path})."""
    unified = None
    v1: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            unified = path
        for controller in controllers.split(","):
            if controller:
                v1[controller] = path
    return unified, v1


def parse_cpu_max(text: str) -> Optional[float]:
    """cgroup v2 ``cpu.max`` (``"QUOTA PERIOD"`` or ``"max PERIOD"``) as CPUs, None when unlimited."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota_us, period_us = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def parse_cfs_quota(quota_text: str, period_text: str) -> Optional[float]:
    """cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` as CPUs, None when unlimited (-1)."""
    try:
        quota_us, period_us = int(quota_text.strip()), int(period_text.strip())
    except ValueError:
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def parse_memory_limit(text: str) -> Optional[int]:
    """cgroup ``memory.max`` (v2) or ``memory.limit_in_bytes`` (v1) in bytes, None when unlimited."""
    value = text.strip()
    if not value.isdigit():
        return None  # "max"
    limit = int(value)
    return None if limit >= _CGROUP_V1_UNLIMITED_BYTES else limit


def cluster_identity(environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Slurm, Kubernetes and torchrun identity found in ``environ``, as sorted (key, value) pairs.

    Kubernetes is recognised by ``KUBERNETES_SERVICE_HOST``; its pod name is ``HOSTNAME`` unless
    the downward API set ``POD_NAME``. Only the listed variables are read: nothing else of the
    environment leaves the host.
    """
    found: dict[str, str] = {}
    for variable, key in CLUSTER_IDENTITY_VARIABLES:
        value = environ.get(variable)
        if value and key not in found:
            found[key] = value
    if environ.get("KUBERNETES_SERVICE_HOST"):
        found["kubernetes"] = "true"
        if "kubernetes.pod" not in found and environ.get("HOSTNAME"):
            found["kubernetes.pod"] = environ["HOSTNAME"]
    return tuple(sorted(found.items()))


def interface_ips(addresses: Mapping[str, Sequence[object]]) -> tuple[str, ...]:
    """IPv4 and IPv6 addresses of all interfaces except loopback, sorted and unique.

    ``addresses`` has the shape of ``psutil.net_if_addrs()``: interface name to entries with
    ``family`` and ``address``. IPv6 zone suffixes (``%eth0``) are kept: they say which link.
    """
    found = set()
    for entries in addresses.values():
        for entry in entries:
            if getattr(entry, "family", None) not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = str(getattr(entry, "address", "") or "")
            try:
                parsed = ipaddress.ip_address(address.split("%", 1)[0])
            except ValueError:
                continue
            if not parsed.is_loopback:
                found.add(address)
    return tuple(sorted(found))


# ------------------------------------------------------------------------------------------------
# Readers
# ------------------------------------------------------------------------------------------------


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _resolve_with_timeout(host: str, port: int, timeout_s: float) -> Optional[tuple]:
    """``getaddrinfo`` cannot be given a timeout, so it runs in a daemon thread we stop waiting for."""
    result: list = []

    def resolve() -> None:
        try:
            result.extend(socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM))
        except OSError:
            pass

    thread = threading.Thread(target=resolve, name="comet-agent-resolve", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return result[0] if result else None


def routing_ip(server_url: Optional[str], *, resolve_timeout_s: float = _RESOLVE_TIMEOUT_S) -> Optional[str]:
    """The local IP of the interface that routes to ``server_url`` (the default route when None).

    A UDP socket is "connected" to the server's host and port, which makes the kernel choose
    the route and source address without sending any packet. Returns None on any failure.
    """
    target = _DEFAULT_ROUTE_PROBE
    family = socket.AF_INET
    if server_url:
        parsed = urllib.parse.urlsplit(server_url if "//" in server_url else "//" + server_url)
        host = parsed.hostname
        if not host:
            return None
        try:
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
        except ValueError:
            return None
        info = _resolve_with_timeout(host, port, resolve_timeout_s)
        if info is None:
            return None
        family, target = info[0], info[4]
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(target)
            address = probe.getsockname()[0]
    except OSError:
        return None
    return address.split("%", 1)[0] if isinstance(address, str) else None


def resolve_user(uid: int, environ: Mapping[str, str], *, prefer_environment: bool = True) -> str:
    """The user name for ``uid``: ``$LOGNAME``/``$USER`` (like ``getpass``), then passwd, then ``uid:<n>``.

    Containers often run with a uid that has no passwd entry, where ``getpass.getuser()``
    raises; the fallback keeps a stable, truthful value.
    """
    if prefer_environment:
        for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
            if environ.get(name):
                return environ[name]
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError, OSError):
        pass
    if not prefer_environment:
        for name in ("LOGNAME", "USER"):
            if environ.get(name):
                return environ[name]
    return f"uid:{uid}"


def _parse_status_uid(text: Optional[str]) -> Optional[int]:
    for line in (text or "").splitlines():
        if line.startswith("Uid:"):
            parts = line.split()
            if len(parts) > 1 and parts[1].isdigit():
                return int(parts[1])
    return None


class HostCollector:
    """Collects a ``HostSnapshot``.

    Args:
        pid: the watched job; ``None`` describes this process.
        server_url: the Comet (or local) server, for the routing ``ip``; None uses the default route.
        procfs_root: where ``/proc`` is mounted (``cpuinfo``, ``meminfo``, ``<pid>/...``).
        cgroup_root: where the cgroup hierarchy is mounted.
        os_release_path: the os-release file read by ``distro``.
        environ: our environment (identity and user fallback when no pid is watched).
        argv: our command line when no pid is watched (default ``sys.argv``).
        secrets: exact strings to mask in the command line (the API key).
        net_if_addrs: returns interface addresses (default ``psutil.net_if_addrs``).
    """

    name = "host"

    def __init__(
        self,
        *,
        pid: Optional[int] = None,
        server_url: Optional[str] = None,
        procfs_root: str = "/proc",
        cgroup_root: str = CGROUP_ROOT,
        os_release_path: str = OS_RELEASE_PATH,
        environ: Optional[Mapping[str, str]] = None,
        argv: Optional[Sequence[str]] = None,
        secrets: Sequence[str] = (),
        net_if_addrs=None,
    ):
        self.pid = pid
        self.server_url = server_url
        self.procfs_root = procfs_root
        self.cgroup_root = cgroup_root
        self.os_release_path = os_release_path
        self.environ = os.environ if environ is None else environ
        self.argv = list(sys.argv if argv is None else argv)
        self.secrets = tuple(secrets)
        self._net_if_addrs = net_if_addrs

    def _proc(self, *parts: str) -> str:
        return os.path.join(self.procfs_root, *parts)

    def collect(self) -> HostSnapshot:
        """Return the host snapshot; never raises for a missing fact (it becomes None)."""
        uname = platform.uname()
        pid, executable, argv, environ, user = self._job_identity()
        cpu = parse_cpuinfo(_read_text(self._proc("cpuinfo")) or "")
        logical, physical = cpu.logical_count, cpu.physical_count
        if self.procfs_root == "/proc" and (logical is None or physical is None):
            import psutil

            logical = logical or psutil.cpu_count(logical=True)
            physical = physical or psutil.cpu_count(logical=False)
        cgroup_version, cpu_quota, memory_limit = self._cgroup_limits(pid)
        distro_name, distro_version, distro_id = self._distro()
        return HostSnapshot(
            hostname=socket.gethostname(),
            user=user,
            pid=pid,
            executable=executable,
            command=tuple(mask_command_line(argv, self.secrets)),
            python_version=platform.python_version(),
            python_version_verbose=sys.version,
            os_platform=platform.platform(aliased=True),
            os_type=uname.system,
            os_release=uname.release,
            machine=uname.machine,
            # uname's processor is "" on most Linux systems; the CPU model says more.
            processor=uname.processor or cpu.model or uname.machine,
            cpu_model=cpu.model,
            physical_cpu_count=physical,
            logical_cpu_count=logical,
            total_ram_bytes=parse_meminfo_total_bytes(_read_text(self._proc("meminfo")) or ""),
            distro_name=distro_name,
            distro_version=distro_version,
            distro_id=distro_id,
            ip=routing_ip(self.server_url),
            network_interface_ips=self._interface_ips(),
            cgroup_version=cgroup_version,
            cpu_quota_cores=cpu_quota,
            memory_limit_bytes=memory_limit,
            cluster_identity=cluster_identity(environ),
        )

    def _job_identity(self) -> tuple[int, Optional[str], list[str], Mapping[str, str], str]:
        """(pid, executable, argv, environment, user) of the watched process, or of ours."""
        if self.pid is None:
            return os.getpid(), sys.executable or None, self.argv, self.environ, resolve_user(os.getuid(), self.environ)
        pid = self.pid
        try:
            executable: Optional[str] = os.readlink(self._proc(str(pid), "exe")).removesuffix(" (deleted)")
        except OSError:
            executable = None
        cmdline = _read_text(self._proc(str(pid), "cmdline")) or ""
        argv = [a for a in cmdline.split("\0")]
        while argv and argv[-1] == "":
            argv.pop()
        try:
            with open(self._proc(str(pid), "environ"), "rb") as f:
                environ: Mapping[str, str] = parse_environ(f.read())
        except OSError:
            environ = {}  # another user's process: its identity variables stay unknown
        uid = _parse_status_uid(_read_text(self._proc(str(pid), "status")))
        user = resolve_user(uid, environ, prefer_environment=False) if uid is not None else resolve_user(os.getuid(), self.environ)
        return pid, executable, argv, environ, user

    def _cgroup_limits(self, pid: int) -> tuple[Optional[int], Optional[float], Optional[int]]:
        """(cgroup version, CPU quota in CPUs, memory limit in bytes) of the job's cgroup."""
        own = pid if self.pid is not None else "self"
        unified, v1 = parse_proc_cgroup(_read_text(self._proc(str(own), "cgroup")) or "")
        if unified is not None and os.path.exists(os.path.join(self.cgroup_root, "cgroup.controllers")):
            directory = self._cgroup_dir(self.cgroup_root, unified, "cpu.max")
            cpu_text = _read_text(os.path.join(directory, "cpu.max"))
            directory_mem = self._cgroup_dir(self.cgroup_root, unified, "memory.max")
            mem_text = _read_text(os.path.join(directory_mem, "memory.max"))
            return 2, parse_cpu_max(cpu_text or ""), parse_memory_limit(mem_text or "")
        if v1:
            cpu_mount = next((os.path.join(self.cgroup_root, m) for m in ("cpu,cpuacct", "cpu") if os.path.isdir(os.path.join(self.cgroup_root, m))), None)
            quota = None
            if cpu_mount and "cpu" in v1:
                directory = self._cgroup_dir(cpu_mount, v1["cpu"], "cpu.cfs_quota_us")
                quota = parse_cfs_quota(_read_text(os.path.join(directory, "cpu.cfs_quota_us")) or "",
                                        _read_text(os.path.join(directory, "cpu.cfs_period_us")) or "")
            limit = None
            memory_mount = os.path.join(self.cgroup_root, "memory")
            if "memory" in v1 and os.path.isdir(memory_mount):
                directory = self._cgroup_dir(memory_mount, v1["memory"], "memory.limit_in_bytes")
                limit = parse_memory_limit(_read_text(os.path.join(directory, "memory.limit_in_bytes")) or "")
            return 1, quota, limit
        return None, None, None

    @staticmethod
    def _cgroup_dir(mount: str, path: str, filename: str) -> str:
        """The job's cgroup directory; inside a cgroup namespace the path is "/" relative to the mount."""
        candidate = os.path.join(mount, path.lstrip("/"))
        if os.path.exists(os.path.join(candidate, filename)):
            return candidate
        return mount

    def _distro(self) -> tuple[Optional[str], Optional[str], Optional[str]]:
        try:
            import distro

            # No lsb_release subprocess, no uname call: the os-release file is enough and fast.
            info = distro.LinuxDistribution(include_lsb=False, include_uname=False, include_oslevel=False,
                                            os_release_file=self.os_release_path, distro_release_file=os.devnull)
            return info.name() or None, info.version() or None, info.id() or None
        except Exception as exc:  # distro missing or an unreadable file: the other facts still count
            logger.debug("cannot read the distribution from %s: %s", self.os_release_path, exc)
            return None, None, None

    def _interface_ips(self) -> tuple[str, ...]:
        try:
            if self._net_if_addrs is None:
                import psutil

                return interface_ips(psutil.net_if_addrs())
            return interface_ips(self._net_if_addrs())
        except Exception as exc:  # psutil failing on an exotic platform must not lose the snapshot
            logger.debug("cannot list network interfaces: %s", exc)
            return ()


def host_additional_info(snapshot: HostSnapshot) -> list[dict]:
    """Additional system info items (``{key, value}``) for what system details has no key for."""
    items = [
        ("distro.name", snapshot.distro_name),
        ("distro.version", snapshot.distro_version),
        ("distro.id", snapshot.distro_id),
        ("cpu.model", snapshot.cpu_model),
        ("cpu.count.physical", snapshot.physical_cpu_count),
        ("cpu.count.logical", snapshot.logical_cpu_count),
        ("cgroup.version", snapshot.cgroup_version),
        ("cgroup.cpu_quota_cores", snapshot.cpu_quota_cores),
        ("cgroup.memory_limit_bytes", snapshot.memory_limit_bytes),
    ]
    items.extend(snapshot.cluster_identity)
    return [{"key": key, "value": value} for key, value in items if value is not None]
