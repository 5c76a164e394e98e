"""The static snapshot: every once-per-run collector together, and ``comet-agent collect``.

``collect_static()`` runs the host, Python packages, OS packages, git and GPU static collectors
concurrently (each is bounded by its own timeouts) and returns a ``StaticSnapshot``; a collector
that is unavailable or crashes is listed in ``unavailable`` with the reason and the others carry
on. ``system_details()`` turns it into exactly the object a ``get_system_details()`` read
returns once the agent has written it; ``git_metadata_payload()`` (in ``collectors.git``) and
``patch`` give the git writes.

``comet_agent.cli.collect`` implements ``comet-agent collect [--json]`` with it: the snapshot plus one
periodic sample, taken while the static collectors run (``collect_static_alongside``).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from comet_agent.collectors import Unavailable
from comet_agent.collectors.git import DEFAULT_MAX_PATCH_BYTES, GitCollector
from comet_agent.collectors.host import HostCollector, host_additional_info
from comet_agent.collectors.os_packages import OsPackagesCollector
from comet_agent.collectors.python_packages import PythonPackagesCollector
from comet_agent.records import (
    GitSnapshot,
    HostSnapshot,
    OsPackagesSnapshot,
    PythonPackagesSnapshot,
)
from comet_agent.sources.heap import trim_heap

logger = logging.getLogger(__name__)

# The longest the whole static snapshot may take; longer than any collector's own timeouts.
DEFAULT_DEADLINE_S = 60.0


@dataclass
class StaticSnapshot:
    """What the static collectors found. A ``None`` part is explained in ``unavailable`` (name -> reason)."""

    host: HostSnapshot
    python_packages: Optional[PythonPackagesSnapshot] = None
    os_packages: Optional[OsPackagesSnapshot] = None
    git: Optional[GitSnapshot] = None
    gpu_static: Any = None
    unavailable: dict[str, str] = field(default_factory=dict)

    def gpu_static_info_list(self) -> list[dict]:
        """``gpuStaticInfoList`` items (``gpuIndex``, ``name``, ``uuid``, ``totalMemory``, ``powerLimit``)."""
        if self.gpu_static is None:
            return []
        from comet_agent.collectors.gpu_static import gpu_static_info_payload

        return list(gpu_static_info_payload(self.gpu_static))

    def additional_info(self) -> list[dict]:
        """``logAdditionalSystemInfoList`` items: facts system details has no key for, and every stated reason."""
        items = host_additional_info(self.host)
        if self.python_packages is not None:
            items.append({"key": "python_packages.source", "value": self.python_packages.source})
            if self.python_packages.truncated_count:
                items.append({"key": "python_packages.truncated_count", "value": self.python_packages.truncated_count})
        if self.os_packages is not None:
            if self.os_packages.manager:
                items.append({"key": "os_packages.manager", "value": self.os_packages.manager})
            if self.os_packages.reason:
                items.append({"key": "os_packages.reason", "value": self.os_packages.reason})
        if self.git is not None:
            items.append(
                {"key": "git.patch_bytes", "value": len(self.git.patch) if self.git.patch is not None else None}
            )
            items.append({"key": "git.patch_truncated", "value": self.git.patch_truncated})
            for note in self.git.notes:
                items.append({"key": "git.note", "value": note})
        if self.gpu_static is not None:
            items.extend(dict(item) for item in getattr(self.gpu_static, "additional", ()) or ())
        for name, reason in sorted(self.unavailable.items()):
            items.append({"key": f"unavailable.{name}", "value": reason})
        return [item for item in items if item.get("value") is not None]


def _run_static(name: str, make: Callable[[], Any]) -> tuple[str, Any, Optional[str]]:
    """Build and run one collector; returns (name, record or None, reason or None). Never raises."""
    try:
        return name, make().collect(), None
    except Unavailable as exc:
        logger.info("%s collector unavailable: %s", name, exc.reason)
        return name, None, exc.reason
    except Exception as exc:  # a collector bug must cost its own facts only
        logger.warning(
            "%s collector failed: %s: %s", name, type(exc).__name__, exc, exc_info=logger.isEnabledFor(logging.DEBUG)
        )
        return name, None, f"failed: {type(exc).__name__}: {exc}"


def _gpu_static_collector():
    try:
        from comet_agent.collectors.gpu_static import GpuStaticCollector
    except ImportError as exc:
        raise Unavailable(f"GPU static collector not installed: {exc}") from None
    return GpuStaticCollector()


def collect_static(
    *,
    directory: Optional[str] = None,
    pid: Optional[int] = None,
    include_os_packages: bool = True,
    include_gpu: bool = True,
    include_git: bool = True,
    server_url: Optional[str] = None,
    max_patch_bytes: int = DEFAULT_MAX_PATCH_BYTES,
    secrets: Sequence[str] = (),
    deadline_s: float = DEFAULT_DEADLINE_S,
) -> StaticSnapshot:
    """Run the static collectors concurrently and gather what they found.

    Args:
        directory: the job's working directory for git (default: cwd).
        pid: the watched job (its command line, user, interpreter's packages); None for this process.
        include_os_packages / include_gpu / include_git: switch those collectors off.
        server_url: the server, so ``ip`` is the address of the interface that routes to it.
        max_patch_bytes: cap on the git patch (bytes).
        secrets: exact strings masked in the recorded command line (the API key).
        deadline_s: seconds after which a collector still running is reported unavailable and
            left behind (its thread is not waited for).

    Returns:
        The ``StaticSnapshot``; collectors that could not run are in its ``unavailable``.

    Raises:
        RuntimeError: only if the host collector itself has a bug (it never gives up on a fact).

    Example:
        >>> snapshot = collect_static(directory=".", include_os_packages=False)
        >>> details = system_details(snapshot)
    """
    snapshot, _ = collect_static_alongside(
        {},
        directory=directory,
        pid=pid,
        include_os_packages=include_os_packages,
        include_gpu=include_gpu,
        include_git=include_git,
        server_url=server_url,
        max_patch_bytes=max_patch_bytes,
        secrets=secrets,
        deadline_s=deadline_s,
    )
    return snapshot


def collect_static_alongside(
    extra_jobs: dict[str, Callable[[], Any]],
    *,
    directory: Optional[str],
    pid: Optional[int],
    include_os_packages: bool,
    include_gpu: bool,
    include_git: bool,
    server_url: Optional[str],
    max_patch_bytes: int,
    secrets: Sequence[str],
    deadline_s: float = DEFAULT_DEADLINE_S,
) -> tuple[StaticSnapshot, dict[str, Any]]:
    """``collect_static``, with more zero-argument jobs run alongside it under the same deadline.

    ``comet-agent collect`` takes its periodic sample so, while the static collectors run.

    Args:
        extra_jobs: ``{name: job}``; each job's result is returned under its name, when it
            finished within ``deadline_s`` (a job still running is left out, not waited for).
        The others: as for ``collect_static``.

    Returns:
        ``(snapshot, {name: result})``.
    """
    makers: dict[str, Callable[[], Any]] = {
        "host": lambda: HostCollector(pid=pid, server_url=server_url, secrets=tuple(s for s in secrets if s)),
        "python_packages": lambda: PythonPackagesCollector(pid=pid),
    }
    if include_os_packages:
        makers["os_packages"] = OsPackagesCollector
    if include_git:
        makers["git"] = lambda: GitCollector(directory=directory, max_patch_bytes=max_patch_bytes)
    if include_gpu:
        makers["gpu_static"] = _gpu_static_collector
    pool = ThreadPoolExecutor(max_workers=len(makers) + len(extra_jobs), thread_name_prefix="comet-agent-static")
    try:
        extra_futures = {name: pool.submit(job) for name, job in extra_jobs.items()}
        futures = {name: pool.submit(_run_static, name, make) for name, make in makers.items()}
        # Each collector bounds its own commands; this deadline catches what cannot be bounded
        # from outside (a library call that hangs, such as NVML on a wedged driver).
        wait([*futures.values(), *extra_futures.values()], timeout=deadline_s)
        results = {}
        for name, future in futures.items():
            if future.done():
                results[name] = future.result()[1:]
            else:
                logger.warning("%s collector did not finish within %g s; left behind", name, deadline_s)
                results[name] = (None, f"did not finish within {deadline_s:g} s")
        extras = {name: future.result() for name, future in extra_futures.items() if future.done()}
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    host, host_reason = results.pop("host")
    if host is None:  # HostCollector never raises by design; a bug there must still be visible
        raise RuntimeError(f"host collector failed: {host_reason}")
    snapshot = StaticSnapshot(host=host)
    for name, (record, reason) in results.items():
        setattr(snapshot, name, record)
        if reason is not None:
            snapshot.unavailable[name] = reason
    for name, included in (("os_packages", include_os_packages), ("git", include_git), ("gpu_static", include_gpu)):
        if not included:
            snapshot.unavailable[name] = "switched off"
    # The pool's threads freed what they parsed (package metadata, command output) into their own
    # malloc arenas; hand those pages back rather than keep ~2 MB resident for the whole run.
    trim_heap()
    return snapshot, extras


def system_details(snapshot: StaticSnapshot, system_metric_names: Sequence[str] = ()) -> dict:
    """The system-details object, keyed exactly as Comet's ``get_system_details()`` read returns it.

    ``env`` is always null: environment variables are never sent. ``maxTotalMemory`` is the
    largest GPU's total memory in bytes (null without GPUs). For a watched Python job,
    ``executable`` and the Python versions are its interpreter's.
    """
    host = snapshot.host
    packages = snapshot.python_packages
    executable, version, verbose = host.executable, host.python_version, host.python_version_verbose
    if packages is not None and packages.source == "interpreter":
        executable = packages.interpreter or executable
        version = packages.python_version or version
        verbose = packages.python_version_verbose or verbose
    gpus = snapshot.gpu_static_info_list()
    gpu_memories: list[int] = [g["totalMemory"] for g in gpus if isinstance(g.get("totalMemory"), int)]
    details = {
        "command": list(host.command),
        "env": None,
        "executable": executable,
        "hostname": host.hostname,
        "ip": host.ip,
        "machine": host.machine,
        "os": host.os_platform,
        "osRelease": host.os_release,
        "osType": host.os_type,
        "pid": host.pid,
        "processor": host.processor,
        "pythonVersion": version,
        "pythonVersionVerbose": verbose,
        "user": host.user,
        "installedPackages": packages.requirements() if packages is not None else [],
        "osPackages": list(snapshot.os_packages.packages) if snapshot.os_packages is not None else [],
        "gpuStaticInfoList": gpus,
        "logAdditionalSystemInfoList": snapshot.additional_info(),
        "networkInterfaceIps": list(host.network_interface_ips),
        "totalRam": host.total_ram_bytes,
        "maxTotalMemory": max(gpu_memories) if gpu_memories else None,
        "systemMetricNames": sorted(system_metric_names),
    }
    return details
