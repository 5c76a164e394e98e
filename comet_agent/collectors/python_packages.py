"""Python packages of the job's interpreter (static, once per run).

Reads: in-process (``pid=None``), our own ``importlib.metadata.distributions()``. For a watched
process, the agent may live in another virtual environment, so the *job's* interpreter is asked:
its executable is found from ``/proc/<pid>/exe`` and the command line (keeping the virtual
environment's ``bin/python`` symlink, which ``exe`` resolves away), then run as
``<python> -c SCRIPT`` with a timeout and bounded output. The script prints the distributions,
the Python version and ``sys.prefix`` as JSON.

Not ``-I`` (isolated mode): it would drop ``PYTHONPATH`` and the user site directory, which the
job does see. The interpreter finds its own virtual environment from its path (``pyvenv.cfg``),
and it gets the job's ``PYTHON*``, ``HOME`` and ``PATH`` variables from ``/proc/<pid>/environ``
(when readable), nothing else from ours; it runs in ``/`` so no stray directory lands on its path.

Feeds: Comet's system details ``installedPackages`` (sorted ``name==version``; editable installs
marked `` (editable)``, local ``file://`` installs `` (local)``), and ``pythonVersion`` /
``pythonVersionVerbose`` / ``executable`` of the watched job.

Absent source: the watched process is gone, is not a Python interpreter (nor has a Python child),
or its interpreter fails or times out: ``collect()`` raises ``Unavailable`` with the reason.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from typing import Iterable, Mapping, Optional

from comet_agent.collectors import Unavailable
from comet_agent.records import PythonPackage, PythonPackagesSnapshot
from comet_agent.redaction import strip_url_credentials
from comet_agent.sources import procfs
from comet_agent.sources.commands import CommandError, CommandTimedOut, run_command

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_OUTPUT_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_PACKAGES = 20000
_PYTHON_NAME = re.compile(r"^(python|pypy)[0-9.]*[a-z]?(-dbg)?$")
# Variables of the job's environment that decide what its interpreter imports.
_INTERPRETER_ENV_NAMES = (
    "PATH",
    "HOME",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONUSERBASE",
    "PYTHONNOUSERSITE",
    "PYTHONPLATLIBDIR",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "LANG",
    "LC_ALL",
)

# Runs inside the job's interpreter: keep it compatible with Python 3.8+ and dependency-free.
PACKAGES_SCRIPT = r"""
import json, sys
sys.path[:] = [p for p in sys.path if p not in ("", ".")]
import importlib.metadata as md
def read(d, filename):
    try:
        return d.read_text(filename)
    except Exception:
        return None
out = []
for d in md.distributions():
    name = version = None
    # Header lines only: much faster than d.metadata, which parses the whole long description.
    for line in ((read(d, "METADATA") or read(d, "PKG-INFO") or "").split("\n\n", 1)[0]).splitlines():
        if name is None and line.startswith("Name:"):
            name = line[5:].strip()
        elif version is None and line.startswith("Version:"):
            version = line[8:].strip()
    if name:
        out.append([name, version or "", read(d, "direct_url.json")])
print(json.dumps({"packages": out, "python_version": ".".join(map(str, sys.version_info[:3])),
                  "version_verbose": sys.version, "executable": sys.executable, "prefix": sys.prefix}))
"""


def package_from_metadata(name: str, version: str, direct_url_json: Optional[str]) -> PythonPackage:
    """A ``PythonPackage`` from a distribution's name, version and ``direct_url.json`` text (PEP 610).

    ``dir_info.editable`` marks an editable install; any other ``file://`` URL a local one. The
    URL is kept with credentials stripped (VCS URLs may carry a token).
    """
    editable = local = False
    url = None
    if direct_url_json:
        try:
            info = json.loads(direct_url_json)
        except ValueError:
            info = {}
        if isinstance(info, dict):
            url = strip_url_credentials(info.get("url")) if isinstance(info.get("url"), str) else None
            dir_info = info.get("dir_info")
            if not isinstance(dir_info, dict):
                dir_info = {}
            editable = bool(dir_info.get("editable"))
            local = not editable and bool(url and url.startswith("file://"))
    return PythonPackage(name=name.lower(), version=version, editable=editable, local=local, url=url)


def unique_sorted(packages: Iterable[PythonPackage]) -> list[PythonPackage]:
    """First occurrence of each name wins (as for imports: earlier ``sys.path`` entries shadow later ones); sorted by name."""
    seen: dict[str, PythonPackage] = {}
    for package in packages:
        seen.setdefault(package.name, package)
    return sorted(seen.values(), key=lambda p: (p.name, p.version))


def parse_metadata_header(text: str) -> tuple[Optional[str], Optional[str]]:
    """``Name`` and ``Version`` from the header of a METADATA / PKG-INFO file.

    Reading two header lines is several times faster than ``Distribution.metadata``, which runs
    the full e-mail parser over the long description as well.
    """
    name = version = None
    for line in text.split("\n\n", 1)[0].splitlines():
        if name is None and line.startswith("Name:"):
            name = line[5:].strip()
        elif version is None and line.startswith("Version:"):
            version = line[8:].strip()
        if name and version:
            break
    return name, version


def _read_distribution_text(dist, filename: str) -> Optional[str]:
    try:
        return dist.read_text(filename)
    except Exception:  # a broken dist-info directory must not lose the whole list
        return None


def read_own_packages() -> list[PythonPackage]:
    """The distributions our own interpreter sees."""
    import importlib.metadata as md

    found = []
    for dist in md.distributions():
        text = _read_distribution_text(dist, "METADATA") or _read_distribution_text(dist, "PKG-INFO") or ""
        name, version = parse_metadata_header(text)
        if not name:
            continue
        found.append(package_from_metadata(name, version or "", _read_distribution_text(dist, "direct_url.json")))
    return unique_sorted(found)


def is_python_executable(path: str) -> bool:
    """True when the file name looks like a CPython or PyPy interpreter (``python3.11``, ``pypy3``)."""
    return bool(_PYTHON_NAME.match(os.path.basename(path)))


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def find_interpreter_path(exe: str, argv0: Optional[str], cwd: Optional[str], environ: Mapping[str, str]) -> str:
    """The path to run the job's interpreter with, keeping its virtual environment.

    ``/proc/<pid>/exe`` is the resolved binary (``/usr/bin/python3.11``), which would not see a
    virtual environment whose ``bin/python`` is a symlink to it. ``argv[0]`` usually is that
    symlink: it is used when it names the same file as ``exe`` (resolved against the job's
    ``cwd`` or its ``PATH``). Otherwise ``exe`` is the best we have.
    """
    candidates = []
    if argv0:
        if os.sep in argv0:
            candidates.append(argv0 if os.path.isabs(argv0) or not cwd else os.path.join(cwd, argv0))
        else:
            for directory in environ.get("PATH", "").split(os.pathsep):
                if directory:
                    candidates.append(os.path.join(directory, argv0))
    venv = environ.get("VIRTUAL_ENV")
    if venv:
        candidates.append(os.path.join(venv, "bin", os.path.basename(exe)))
        candidates.append(os.path.join(venv, "bin", "python"))
    for candidate in candidates:
        if os.path.isfile(candidate) and _same_file(candidate, exe):
            return candidate
    return exe


class PythonPackagesCollector:
    """Collects a ``PythonPackagesSnapshot`` in-process or from a watched job's interpreter.

    Args:
        pid: the watched process; ``None`` reads our own interpreter's packages.
        procfs_root: where ``/proc`` is (its ``<pid>/exe``, ``cmdline``, ``cwd``, ``environ`` are read).
        timeout_s: seconds the job's interpreter may take to list its packages.
        max_output_bytes: the most output read from it.
        max_packages: the most packages kept; the rest is counted in ``truncated_count``.
    """

    name = "python_packages"

    def __init__(
        self,
        *,
        pid: Optional[int] = None,
        procfs_root: str = "/proc",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        max_packages: int = DEFAULT_MAX_PACKAGES,
    ):
        self.pid = pid
        self.procfs_root = procfs_root
        self.timeout_s = timeout_s
        self.max_output_bytes = max_output_bytes
        self.max_packages = max_packages

    def collect(self) -> PythonPackagesSnapshot:
        """Return the job's packages.

        Raises:
            Unavailable: the watched process is gone, is not Python, or its interpreter failed.
        """
        if self.pid is None or self.pid == os.getpid():
            return self._finish(read_own_packages(), "in-process", sys.executable, _own_version(), sys.version)
        interpreter, environ = self._locate_interpreter(self.pid)
        return self._query(interpreter, environ)

    def _locate_interpreter(self, pid: int) -> tuple[str, dict[str, str]]:
        for candidate_pid in [pid, *self._descendants(pid)]:
            try:
                exe = procfs.read_pid_executable(self.procfs_root, candidate_pid)
            except FileNotFoundError:
                if candidate_pid == pid:
                    raise Unavailable(f"watched process {pid} does not exist") from None
                continue
            except PermissionError:
                if candidate_pid == pid:
                    raise Unavailable(f"cannot read the executable of process {pid}: permission denied") from None
                continue
            if not is_python_executable(exe):
                continue
            try:
                cmdline = procfs.read_pid_cmdline(self.procfs_root, candidate_pid)
            except OSError:
                cmdline = []
            argv0 = cmdline[0] if cmdline and cmdline[0] else None
            try:
                environ = procfs.read_pid_environ(self.procfs_root, candidate_pid)
            except OSError:
                environ = {}
            try:
                cwd: Optional[str] = procfs.read_pid_cwd(self.procfs_root, candidate_pid)
            except OSError:
                cwd = None
            return find_interpreter_path(exe, argv0, cwd, environ), environ
        raise Unavailable(f"watched process {pid} is not a Python interpreter and has no Python child process")

    def _descendants(self, pid: int) -> list[int]:
        """Child processes of ``pid``, breadth first and by pid within a level (nearest candidates first)."""
        try:
            tree = procfs.read_process_tree(self.procfs_root, pid)
        except OSError:
            return []
        if tree is None:
            return []
        children: dict[int, list[int]] = {}
        for stat in tree.values():
            if stat.pid != pid:
                children.setdefault(stat.parent_pid, []).append(stat.pid)
        found, queue = [], [pid]
        while queue:
            for child in sorted(children.get(queue.pop(0), [])):
                found.append(child)
                queue.append(child)
        return found

    def _query(self, interpreter: str, environ: Mapping[str, str]) -> PythonPackagesSnapshot:
        env = {name: environ[name] for name in _INTERPRETER_ENV_NAMES if name in environ}
        env.setdefault("PATH", os.defpath)
        env["PYTHONIOENCODING"] = "utf-8"
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        try:
            result = run_command(
                [interpreter, "-c", PACKAGES_SCRIPT],
                timeout_s=self.timeout_s,
                max_output_bytes=self.max_output_bytes,
                cwd="/",
                env=env,
            )
        except CommandTimedOut:
            raise Unavailable(
                f"the job's interpreter {interpreter} did not list its packages within {self.timeout_s:g} s"
            ) from None
        except CommandError as exc:
            raise Unavailable(f"cannot run the job's interpreter {interpreter}: {exc}") from None
        if not result.ok:
            lines = result.stderr.decode("utf-8", "replace").strip().splitlines()
            raise Unavailable(
                f"the job's interpreter {interpreter} failed to list packages: {lines[-1] if lines else result.returncode}"
            )
        if result.stdout_truncated:
            raise Unavailable(f"the job's interpreter printed more than {self.max_output_bytes} bytes of package data")
        try:
            data = json.loads(result.text())
            packages = [package_from_metadata(str(n), str(v), d) for n, v, d in data["packages"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise Unavailable(f"unexpected package listing from {interpreter}: {exc}") from None
        return self._finish(
            unique_sorted(packages), "interpreter", interpreter, data.get("python_version"), data.get("version_verbose")
        )

    def _finish(
        self,
        packages: list[PythonPackage],
        source: str,
        interpreter: Optional[str],
        version: Optional[str],
        verbose: Optional[str],
    ) -> PythonPackagesSnapshot:
        kept = packages[: self.max_packages]
        return PythonPackagesSnapshot(
            packages=tuple(kept),
            source=source,
            interpreter=interpreter,
            python_version=version,
            python_version_verbose=verbose,
            truncated_count=len(packages) - len(kept),
        )


def _own_version() -> str:
    import platform

    return platform.python_version()
