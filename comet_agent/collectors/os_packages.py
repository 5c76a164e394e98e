"""Installed OS packages (static, once per run).

Reads, in this order, the first package database present:

- dpkg: ``/var/lib/dpkg/status`` parsed directly (no subprocess), installed packages only;
- rpm: its database is binary, so ``rpm -qa --qf ...`` is run (argv list, timeout, bounded
  output) when ``rpm`` and ``/var/lib/rpm`` (or ``/usr/lib/sysimage/rpm``) exist;
- apk: ``/lib/apk/db/installed``;
- pacman: ``/var/lib/pacman/local/*/desc``.

Feeds: Comet's system details ``osPackages`` as sorted ``name=version`` strings (the shape the
official SDK sends for dpkg), and the manager name as additional system info.

Absent source: none of the databases found gives an empty list with the reason, never an error;
a database that cannot be read (permissions, a failing ``rpm``) gives an empty list with that
reason. Lists longer than ``max_packages`` are cut and the cut is stated.
"""

from __future__ import annotations

import logging
import os
from typing import Iterable, Optional, Sequence

from comet_agent.records import OsPackagesSnapshot
from comet_agent.sources.commands import CommandError, find_program, run_command

logger = logging.getLogger(__name__)

DPKG_STATUS_PATH = "/var/lib/dpkg/status"
APK_INSTALLED_PATH = "/lib/apk/db/installed"
PACMAN_LOCAL_DIR = "/var/lib/pacman/local"
RPM_DATABASE_DIRS = ("/var/lib/rpm", "/usr/lib/sysimage/rpm")
# Tab-separated so names and versions never need quoting; EPOCH prints "(none)" when unset.
RPM_QUERY_FORMAT = "%{NAME}\\t%{EPOCH}\\t%{VERSION}\\t%{RELEASE}\\n"
RPM_ARGV = ("rpm", "-qa", "--qf", RPM_QUERY_FORMAT)
DEFAULT_MAX_PACKAGES = 20000
DEFAULT_RPM_TIMEOUT_S = 20.0


def parse_dpkg_status(text: str) -> list[str]:
    """``name=version`` for every installed package in a dpkg status file, sorted, deduplicated.

    Stanzas are separated by blank lines; continuation lines (leading space) are skipped. A
    package counts as installed when its ``Status`` ends in ``installed`` (removed packages
    whose configuration files remain, ``config-files``, are left out). Stanzas without a
    ``Status`` line (as in ``available`` files) are kept.
    """
    found: set[str] = set()
    name = version = status = None

    def flush() -> None:
        if name and version and (status is None or status.split()[-1:] == ["installed"]):
            found.add(f"{name}={version}")

    for line in text.splitlines():
        if not line.strip():
            flush()
            name = version = status = None
            continue
        if line[0] in " \t":
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        if key == "Package":
            name = value.strip()
        elif key == "Version":
            version = value.strip()
        elif key == "Status":
            status = value.strip()
    flush()
    return sorted(found)


def parse_rpm_qa(text: str) -> list[str]:
    """``name=[epoch:]version-release`` from ``rpm -qa --qf RPM_QUERY_FORMAT`` output, sorted.

    The ``gpg-pubkey`` pseudo-packages (imported signing keys) are left out.
    """
    found: set[str] = set()
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 4 or not fields[0]:
            continue
        name, epoch, version, release = (f.strip() for f in fields)
        if name == "gpg-pubkey":
            continue
        full = f"{version}-{release}" if release and release != "(none)" else version
        if epoch and epoch != "(none)" and epoch != "0":
            full = f"{epoch}:{full}"
        found.add(f"{name}={full}")
    return sorted(found)


def parse_apk_installed(text: str) -> list[str]:
    """``name=version`` from Alpine's ``/lib/apk/db/installed`` (``P:`` and ``V:`` lines), sorted."""
    found: set[str] = set()
    name = version = None
    for line in text.splitlines() + [""]:
        if not line.strip():
            if name and version:
                found.add(f"{name}={version}")
            name = version = None
        elif line.startswith("P:"):
            name = line[2:].strip()
        elif line.startswith("V:"):
            version = line[2:].strip()
    return sorted(found)


def parse_pacman_desc(text: str) -> Optional[str]:
    """``name=version`` from one pacman ``desc`` file (``%NAME%`` / ``%VERSION%`` sections), or None."""
    sections: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("%") and stripped.endswith("%") and len(stripped) > 2:
            current = stripped
        elif current and stripped and current not in sections:
            sections[current] = stripped
    name, version = sections.get("%NAME%"), sections.get("%VERSION%")
    return f"{name}={version}" if name and version else None


def parse_pacman_local(directory: str) -> list[str]:
    """``name=version`` for every package directory under pacman's ``local`` database, sorted."""
    found: set[str] = set()
    for entry in sorted(os.listdir(directory)):
        desc_path = os.path.join(directory, entry, "desc")
        try:
            with open(desc_path, encoding="utf-8", errors="replace") as f:
                package = parse_pacman_desc(f.read())
        except (FileNotFoundError, NotADirectoryError):
            continue  # ALPM_DB_VERSION and other non-package entries
        if package:
            found.add(package)
    return sorted(found)


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


class OsPackagesCollector:
    """Collects an ``OsPackagesSnapshot`` from the first package database found.

    Args:
        dpkg_status_path, apk_installed_path, pacman_local_dir: database locations (tests pass
            fixture paths; ``None`` skips that manager).
        rpm_argv: the rpm query command; ``None`` skips rpm.
        rpm_database_dirs: rpm is only queried when one of these exists (rpm may be installed on
            a Debian host without any rpm database).
        rpm_timeout_s: seconds the rpm query may take.
        max_packages: the most package strings kept; the rest is counted in ``truncated_count``.
    """

    name = "os_packages"

    def __init__(
        self,
        *,
        dpkg_status_path: Optional[str] = DPKG_STATUS_PATH,
        rpm_argv: Optional[Sequence[str]] = RPM_ARGV,
        rpm_database_dirs: Iterable[str] = RPM_DATABASE_DIRS,
        apk_installed_path: Optional[str] = APK_INSTALLED_PATH,
        pacman_local_dir: Optional[str] = PACMAN_LOCAL_DIR,
        rpm_timeout_s: float = DEFAULT_RPM_TIMEOUT_S,
        max_packages: int = DEFAULT_MAX_PACKAGES,
    ):
        if max_packages <= 0:
            raise ValueError(f"max_packages must be positive, got {max_packages}")
        self.dpkg_status_path = dpkg_status_path
        self.rpm_argv = tuple(rpm_argv) if rpm_argv else None
        self.rpm_database_dirs = tuple(rpm_database_dirs)
        self.apk_installed_path = apk_installed_path
        self.pacman_local_dir = pacman_local_dir
        self.rpm_timeout_s = rpm_timeout_s
        self.max_packages = max_packages

    def collect(self) -> OsPackagesSnapshot:
        """Return the package list of the first database present; never raises for a missing one."""
        if self.dpkg_status_path and os.path.isfile(self.dpkg_status_path):
            return self._from_file("dpkg", self.dpkg_status_path, parse_dpkg_status)
        if self.rpm_argv and any(os.path.isdir(d) for d in self.rpm_database_dirs):
            if find_program(self.rpm_argv[0]):
                return self._from_rpm()
        if self.apk_installed_path and os.path.isfile(self.apk_installed_path):
            return self._from_file("apk", self.apk_installed_path, parse_apk_installed)
        if self.pacman_local_dir and os.path.isdir(self.pacman_local_dir):
            try:
                return self._finish("pacman", parse_pacman_local(self.pacman_local_dir))
            except OSError as exc:
                return OsPackagesSnapshot("pacman", (), reason=f"cannot read {self.pacman_local_dir}: {exc.strerror}")
        return OsPackagesSnapshot(None, (), reason="no dpkg, rpm, apk or pacman package database found")

    def _from_file(self, manager: str, path: str, parse) -> OsPackagesSnapshot:
        try:
            text = _read_text(path)
        except OSError as exc:
            return OsPackagesSnapshot(manager, (), reason=f"cannot read {path}: {exc.strerror}")
        return self._finish(manager, parse(text))

    def _from_rpm(self) -> OsPackagesSnapshot:
        if self.rpm_argv is None:
            return OsPackagesSnapshot("rpm", (), reason="the rpm query is switched off")
        try:
            result = run_command(self.rpm_argv, timeout_s=self.rpm_timeout_s, max_output_bytes=16 * 1024 * 1024)
        except CommandError as exc:
            return OsPackagesSnapshot("rpm", (), reason=f"rpm query failed: {exc}")
        if not result.ok:
            detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
            return OsPackagesSnapshot(
                "rpm", (), reason=f"rpm query failed: {detail[-1] if detail else 'exit status %d' % result.returncode}"
            )
        return self._finish("rpm", parse_rpm_qa(result.text()))

    def _finish(self, manager: str, packages: list[str]) -> OsPackagesSnapshot:
        if not packages:
            return OsPackagesSnapshot(manager, (), reason=f"the {manager} database lists no installed packages")
        kept = packages[: self.max_packages]
        truncated = len(packages) - len(kept)
        reason = f"list cut to {self.max_packages} of {len(packages)} packages" if truncated else None
        return OsPackagesSnapshot(manager, tuple(kept), reason=reason, truncated_count=truncated)
