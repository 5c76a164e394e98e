"""Host and job identity (static, once per run).

Reads: ``platform`` and ``socket`` for the OS and host name; ``<procfs>/cpuinfo`` and
``<procfs>/meminfo`` for the CPU model, counts and total RAM (psutil as fallback); the
os-release file through ``distro``; ``psutil.net_if_addrs()`` for interface addresses; the
job's cgroup (``<procfs>/<pid>/cgroup`` under a cgroup v1 or v2 mount) for CPU and memory limits;
the job's environment for Slurm, Kubernetes and torchrun identity. With a watched ``pid`` the
command line, executable, user and environment are the watched process's (from
``<procfs>/<pid>/``), otherwise our own. Every ``/proc`` and cgroup file is read and parsed by
``comet_agent.sources.procfs`` (``read_cpuinfo``, ``read_meminfo``, ``read_pid_*``, ``read_cgroup_limits``).

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
from typing import Mapping, Optional, Sequence

from comet_agent.records import HostSnapshot
from comet_agent.redaction import mask_command_line
from comet_agent.sources import procfs

logger = logging.getLogger(__name__)

OS_RELEASE_PATH = "/etc/os-release"
CGROUP_ROOT = procfs.CGROUP_ROOT
# When no server is configured we still report the address that routes off the host: the
# source address the kernel would pick for TEST-NET-1 (RFC 5737). No packet is ever sent.
_DEFAULT_ROUTE_PROBE = ("192.0.2.1", 9)
_RESOLVE_TIMEOUT_S = 1.0

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
# Pure functions (the /proc and cgroup parsers live in comet_agent.sources.procfs)
# ------------------------------------------------------------------------------------------------


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

    def collect(self) -> HostSnapshot:
        """Return the host snapshot; never raises for a missing fact (it becomes None)."""
        uname = platform.uname()
        pid, executable, argv, environ, user = self._job_identity()
        try:
            cpu = procfs.read_cpuinfo(self.procfs_root)
        except OSError:
            cpu = procfs.parse_cpuinfo("")
        logical, physical = cpu.logical_count, cpu.physical_count
        if self.procfs_root == "/proc" and (logical is None or physical is None):
            import psutil

            logical = logical or psutil.cpu_count(logical=True)
            physical = physical or psutil.cpu_count(logical=False)
        # The watched job's cgroup, or ours ("self") when no pid is watched.
        limits = procfs.read_cgroup_limits(self.procfs_root, self.cgroup_root, self.pid)
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
            total_ram_bytes=self._total_ram_bytes(),
            distro_name=distro_name,
            distro_version=distro_version,
            distro_id=distro_id,
            ip=routing_ip(self.server_url),
            network_interface_ips=self._interface_ips(),
            cgroup_version=limits.version,
            cpu_quota_cores=limits.cpu_quota_cpus,
            memory_limit_bytes=limits.memory_limit_bytes,
            cluster_identity=cluster_identity(environ),
        )

    def _job_identity(self) -> tuple[int, Optional[str], list[str], Mapping[str, str], str]:
        """(pid, executable, argv, environment, user) of the watched process, or of ours."""
        if self.pid is None:
            return os.getpid(), sys.executable or None, self.argv, self.environ, resolve_user(os.getuid(), self.environ)
        pid = self.pid
        try:
            executable: Optional[str] = procfs.read_pid_executable(self.procfs_root, pid)
        except OSError:
            executable = None
        try:
            argv = procfs.read_pid_cmdline(self.procfs_root, pid)
        except OSError:
            argv = []
        try:
            environ: Mapping[str, str] = procfs.read_pid_environ(self.procfs_root, pid)
        except OSError:
            environ = {}  # another user's process: its identity variables stay unknown
        try:
            uid = procfs.read_pid_uid(self.procfs_root, pid)
        except OSError:
            uid = None
        user = (
            resolve_user(uid, environ, prefer_environment=False)
            if uid is not None
            else resolve_user(os.getuid(), self.environ)
        )
        return pid, executable, argv, environ, user

    def _total_ram_bytes(self) -> Optional[int]:
        try:
            return procfs.read_meminfo(self.procfs_root).get("MemTotal")
        except OSError:
            return None

    def _distro(self) -> tuple[Optional[str], Optional[str], Optional[str]]:
        try:
            import distro

            # No lsb_release subprocess, no uname call: the os-release file is enough and fast.
            info = distro.LinuxDistribution(
                include_lsb=False,
                include_uname=False,
                include_oslevel=False,
                os_release_file=self.os_release_path,
                distro_release_file=os.devnull,
            )
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
