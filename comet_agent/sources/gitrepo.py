"""The git repository around the job's working directory: the only importer of GitPython.

GitPython reads the repository layout (``.git`` files, linked worktrees, HEAD, loose and packed
refs) and configuration (system, global, repository, includes) from the files themselves, so HEAD,
branch, user and origin are known even where git refuses to run ("detected dubious ownership":
an agent running as another user). But it stays resident once imported (~2.5 MB of RSS, ~50 ms
of import) and fails at import without a git binary, so the agent never imports it: during the
static snapshot ``open_repository`` runs this module in a short-lived child (what
``python -m comet_agent.sources.gitrepo --describe DIR`` does) through ``sources.commands``, with a
timeout, bounded output and an environment without the API key or any other secret; the child
prints what it read as one JSON object and exits, and its memory goes with it.

The two commands that can be slow on big repositories (``rev-list`` for the root commit,
``diff-index`` for the patch) run ``git`` from the agent through ``sources.commands`` with a timeout
and bounded output.

Every git command runs with options that keep it read-only: no index refresh (plumbing
``diff-index`` and ``GIT_OPTIONAL_LOCKS=0``: the job's index is not ours to rewrite), no fsmonitor
hook, no external diff or textconv drivers, no pager, no prompt. Clean filters (git-lfs) still run,
as for the user's own ``git diff``; the timeout bounds them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from comet_agent.redaction import is_secret_env_name, redact_registered, strip_url_credentials
from comet_agent.sources.commands import (
    CommandError,
    CommandNotFound,
    CommandResult,
    CommandTimedOut,
    find_program,
    run_command,
)

logger = logging.getLogger(__name__)

# git's well-known empty tree: the base of the patch before the first commit (SHA-1 repos; a
# SHA-256 repository gets its own from `git hash-object`).
_EMPTY_TREE_SHA1 = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

_READ_ONLY_CONFIG = (
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.quotePath=false",
    "-c",
    "diff.noprefix=false",
    "-c",
    "diff.mnemonicPrefix=false",
    "-c",
    "diff.relative=false",
    "-c",
    "color.ui=false",
)


class GitUnavailable(Exception):
    """Git facts cannot be read here; ``reason`` says why (no git binary, not a repository ...)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class NotARepository(GitUnavailable):
    """The directory is not inside a git working tree."""


@dataclass(frozen=True)
class BoundedOutput:
    """The capped output of a git command: ``data`` (at most the cap), the full size, and whether it was cut."""

    data: bytes
    total_bytes: int
    truncated: bool


def git_executable() -> str:
    """The git program to run: ``$GIT_PYTHON_GIT_EXECUTABLE`` (GitPython's own variable) or ``git`` on ``PATH``."""
    return os.environ.get("GIT_PYTHON_GIT_EXECUTABLE") or "git"


# How long the child reading the repository with GitPython may take (interpreter start, GitPython's
# import and its `git version` probe, a few file reads), and how much it may print.
DEFAULT_DESCRIBE_TIMEOUT_S = 10.0
_DESCRIBE_MAX_OUTPUT_BYTES = 256 * 1024

# The directory holding the comet_agent package, so the child imports this very code whether
# comet_agent is installed or run from a checkout.
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The child's entry. It puts our package's directory on sys.path only where it is not there yet,
# and right after the script's own entry: not through PYTHONPATH, which would put an installed
# comet_agent's site-packages before the standard library. argv[1] is that directory.
_CHILD_ENTRY = (
    "import sys\n"
    "sys.argv[1] in sys.path or sys.path.insert(1, sys.argv[1])\n"
    "from comet_agent.sources.gitrepo import _main\n"
    "sys.exit(_main(sys.argv[2:]))\n"
)

# The facts the child reports, with their types: a missing or mistyped one makes its report unreadable.
_DESCRIPTION_FIELDS: dict[str, Any] = {
    "working_dir": str,
    "head_commit": (str, type(None)),
    "branch_ref": (str, type(None)),
    "user_name": (str, type(None)),
    "origin_url": (str, type(None)),
    "is_shallow": bool,
}


def child_environment(environ: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The environment for what the agent starts to read a repository: ``environ`` without secrets.

    Drops every ``COMET_*`` variable, every variable whose name says it holds a secret
    (``redaction.is_secret_env_name``: ``COMET_API_KEY``, ``HF_TOKEN`` ...) and every variable whose
    value holds a secret given to ``redaction.register_secret`` (the API key, wherever it came
    from); git and GitPython need none of them, and a git filter or hook must not see them. Adds
    what keeps git read-only and quiet (no optional locks, no prompt, no pager, C locale).

    Args:
        environ: the environment to start from (default: ``os.environ``).
    """
    source = os.environ if environ is None else environ
    env = {
        name: value
        for name, value in source.items()
        if not name.upper().startswith("COMET_") and not is_secret_env_name(name) and redact_registered(value) == value
    }
    env.update({"GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C"})
    return env


def _has_dot_git_above(directory: str) -> bool:
    """Whether ``directory`` or a parent holds a ``.git`` entry: outside any repository no child starts."""
    current = os.path.abspath(directory)
    while True:
        if os.path.lexists(os.path.join(current, ".git")):
            return True
        parent = os.path.dirname(current)
        if parent == current:
            return False
        current = parent


def open_repository(directory: str, *, timeout_s: float = DEFAULT_DESCRIBE_TIMEOUT_S) -> "GitRepository":
    """Open the git working tree that contains ``directory`` (searching parent directories).

    The layout, HEAD and configuration are read by GitPython in a short-lived child process
    (``python -c ENTRY PACKAGE_DIR --describe DIR``, the same as ``python -m
    comet_agent.sources.gitrepo --describe DIR``), so GitPython never stays resident in the agent.

    Args:
        directory: where to start looking for the working tree.
        timeout_s: seconds the child may take before it is killed and git is unavailable.

    Raises:
        GitUnavailable: no git binary, one GitPython cannot use, or a child that failed, ran past
            ``timeout_s`` or printed something other than its description.
        NotARepository: ``directory`` does not exist or is not inside a git working tree.
    """
    if not os.path.isdir(directory):
        raise NotARepository(f"directory does not exist: {directory}")
    if not _has_dot_git_above(directory):
        raise NotARepository(f"not inside a git repository: {directory}")
    program = find_program(git_executable())
    if program is None:
        raise GitUnavailable(f"git binary not found (looked for {git_executable()!r} on PATH)")
    env = child_environment()
    env["PYTHONIOENCODING"] = "utf-8"
    env["GIT_PYTHON_GIT_EXECUTABLE"] = program
    if not sys.executable:
        raise GitUnavailable("no Python interpreter to run the GitPython child in (sys.executable is empty)")
    argv = [sys.executable, "-c", _CHILD_ENTRY, _PACKAGE_PARENT, "--describe", os.path.abspath(directory)]
    try:
        # cwd "/": the child's sys.path starts with its working directory, and the job's directory
        # may hold modules named like ours or GitPython's.
        result = run_command(argv, timeout_s=timeout_s, max_output_bytes=_DESCRIBE_MAX_OUTPUT_BYTES, cwd="/", env=env)
    except CommandTimedOut:
        raise GitUnavailable(
            f"reading the repository (GitPython child) did not finish within {timeout_s:g} s"
        ) from None
    except CommandError as exc:
        raise GitUnavailable(f"cannot start the GitPython child ({sys.executable}): {exc}") from None
    if result.stdout_truncated:
        raise GitUnavailable(f"the GitPython child printed more than {_DESCRIBE_MAX_OUTPUT_BYTES} bytes")
    description = parse_description(result.text(), returncode=result.returncode, stderr=result.stderr)
    return GitRepository(description, program)


def parse_description(text: str, *, returncode: int = 0, stderr: bytes = b"") -> dict[str, Any]:
    """The child's JSON report as a dict of ``_DESCRIPTION_FIELDS``.

    Raises:
        NotARepository: the child found no working tree.
        GitUnavailable: the child reported git unusable, failed, or printed anything else.
    """
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        said = lines[-1] if lines else f"exit status {returncode}, {len(text)} bytes of output"
        raise GitUnavailable(f"the GitPython child printed no description ({said[:300]})")
    if "error" in data:
        reason = str(data.get("reason") or "no reason given")
        raise NotARepository(reason) if data["error"] == "not_a_repository" else GitUnavailable(reason)
    for name, kind in _DESCRIPTION_FIELDS.items():
        if not isinstance(data.get(name), kind) or (name == "working_dir" and not data[name]):
            raise GitUnavailable(f"the GitPython child's description has no valid {name!r}")
    return {name: data[name] for name in _DESCRIPTION_FIELDS}


def describe_repository(directory: str) -> dict[str, Any]:
    """Read the working tree around ``directory`` with GitPython: what the child prints.

    Runs in the child only (``python -m comet_agent.sources.gitrepo --describe DIR``): GitPython is
    imported here and stays in that process. Never raises: a problem is ``{"error", "reason"}``,
    ``error`` being ``not_a_repository`` or ``unavailable``.
    """
    try:
        import git  # GitPython: imported here only, it raises ImportError without a git binary
    except ImportError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {"error": "unavailable", "reason": f"git binary not found or unusable (GitPython: {first_line})"}
    try:
        version = git.Git().version()
    except Exception as exc:  # GitPython's probe at import accepts any git that exits 0
        version = f"{type(exc).__name__}: {exc}"
    if not str(version).startswith("git version"):
        line = (str(version).strip().splitlines() or [""])[0][:200]
        return {"error": "unavailable", "reason": f"git binary not found or unusable (git version: {line!r})"}
    try:
        repo = git.Repo(directory, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return {"error": "not_a_repository", "reason": f"not inside a git repository: {directory}"}
    if repo.bare or repo.working_tree_dir is None:
        return {"error": "not_a_repository", "reason": f"bare repository without a working tree: {repo.git_dir}"}
    try:
        # From the ref files, without reading the commit object: that would run git, which refuses
        # a repository owned by another user, and HEAD and branch are still worth reporting there.
        head_commit: Optional[str] = git.SymbolicReference.dereference_recursive(repo, "HEAD")
    except ValueError:  # HEAD names a branch with no commit yet
        head_commit = None
    branch_ref = None if repo.head.is_detached else str(repo.head.reference.path)
    return {
        "working_dir": str(repo.working_tree_dir),
        "head_commit": head_commit,
        "branch_ref": branch_ref,
        "user_name": _config_value(repo, "user", "name"),
        # credentials removed here already, so they never cross the pipe or reach a log line
        "origin_url": strip_url_credentials(_config_value(repo, 'remote "origin"', "url")),
        # `shallow` lives in the common directory, shared by a repository's linked worktrees
        "is_shallow": os.path.exists(os.path.join(repo.common_dir, "shallow")),
    }


def _config_value(repo: Any, section: str, option: str) -> Optional[str]:
    try:
        value = repo.config_reader().get_value(section, option, default=None)
    except Exception as exc:  # an unparsable config file must not lose the other facts
        logger.debug("cannot read git config %s.%s: %s", section, option, exc)
        return None
    return None if value is None or value == "" else str(value)


def _error_line(result: CommandResult) -> str:
    """The line of git's stderr that says what went wrong (``fatal:``/``error:``), not its hints."""
    lines = [line.strip() for line in result.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line
    return lines[-1] if lines else f"exit status {result.returncode}"


class GitRepository:
    """Read-only accessors over one working tree. Each returns ``None`` when the fact does not exist.

    Args:
        description: what ``parse_description`` returned for the child's report.
        program: the git program to run for the root commit and the patch.
    """

    def __init__(self, description: Mapping[str, Any], program: str):
        self._description = dict(description)
        self._program = program

    @property
    def working_dir(self) -> str:
        """The top directory of the working tree."""
        return str(self._description["working_dir"])

    @property
    def is_shallow(self) -> bool:
        """True for a shallow clone, whose oldest reachable commit is not the real root."""
        return bool(self._description["is_shallow"])

    def head_commit(self) -> Optional[str]:
        """The HEAD commit's id, or None before the first commit."""
        return self._description["head_commit"]

    def branch_ref(self) -> Optional[str]:
        """The full ref HEAD points at (``refs/heads/main``), or None when HEAD is detached."""
        return self._description["branch_ref"]

    def user_name(self) -> Optional[str]:
        """``user.name`` from the repository, global or system configuration."""
        return self._description["user_name"]

    def origin_url(self) -> Optional[str]:
        """``remote.origin.url`` with any ``user:password@`` removed, or None without an origin."""
        return strip_url_credentials(self._description["origin_url"])

    def _run(self, args: list[str], *, timeout_s: float, max_output_bytes: int) -> CommandResult:
        env = child_environment()
        argv = [self._program, *_READ_ONLY_CONFIG, *args]
        try:
            result = run_command(
                argv, timeout_s=timeout_s, max_output_bytes=max_output_bytes, cwd=self.working_dir, env=env
            )
        except CommandTimedOut:
            raise GitUnavailable(f"git {args[0]} did not finish within {timeout_s:g} s") from None
        except CommandNotFound:
            raise GitUnavailable("git binary not found") from None
        except CommandError as exc:
            raise GitUnavailable(f"git {args[0]} could not run: {exc}") from None
        if not result.ok:
            raise GitUnavailable(f"git {args[0]} failed: {_error_line(result)}")
        return result

    def root_commit(self, *, timeout_s: float) -> Optional[str]:
        """The oldest commit reachable from HEAD (what Comet calls ``root``); None before the first commit.

        With several root commits (merged histories) the last one listed, the oldest, is taken.

        Raises:
            GitUnavailable: ``git rev-list`` failed or ran past ``timeout_s`` seconds.
        """
        if self.head_commit() is None:
            return None
        result = self._run(["rev-list", "--max-parents=0", "HEAD"], timeout_s=timeout_s, max_output_bytes=64 * 1024)
        lines = result.text().split()
        return lines[-1] if lines else None

    def _empty_tree(self, timeout_s: float) -> str:
        try:
            result = self._run(["hash-object", "-t", "tree", os.devnull], timeout_s=timeout_s, max_output_bytes=256)
            return result.text().strip() or _EMPTY_TREE_SHA1
        except GitUnavailable:
            return _EMPTY_TREE_SHA1

    def diff_against_head(self, *, max_bytes: int, timeout_s: float) -> BoundedOutput:
        """The binary-safe patch of the working tree and index against HEAD, at most ``max_bytes``.

        Before the first commit the base is the empty tree, so staged files appear as additions.
        Untracked files (not in the index) are never included; submodules appear as
        ``Subproject commit`` lines.

        Raises:
            GitUnavailable: ``git diff-index`` failed or ran past ``timeout_s`` seconds.
        """
        base = "HEAD" if self.head_commit() is not None else self._empty_tree(timeout_s)
        result = self._run(
            # Plumbing diff-index, not porcelain diff: `git diff` rewrites the index to refresh stat
            # data even with GIT_OPTIONAL_LOCKS=0 (git 2.39), and the job's repository is not ours to touch.
            [
                "diff-index",
                "-p",
                "--no-color",
                "--no-ext-diff",
                "--no-textconv",
                "--binary",
                "--submodule=short",
                base,
                "--",
            ],
            timeout_s=timeout_s,
            max_output_bytes=max_bytes,
        )
        return BoundedOutput(
            data=result.stdout, total_bytes=result.stdout_total_bytes, truncated=result.stdout_truncated
        )


def _main(argv: list[str]) -> int:
    """``python -m comet_agent.sources.gitrepo --describe DIR``: print ``describe_repository(DIR)`` as JSON."""
    if len(argv) != 2 or argv[0] != "--describe":
        print("usage: python -m comet_agent.sources.gitrepo --describe DIRECTORY", file=sys.stderr)
        return 2
    try:
        description = describe_repository(argv[1])
    except Exception as exc:  # a GitPython surprise still ends as a reason, not a traceback
        description = {"error": "unavailable", "reason": f"GitPython failed: {type(exc).__name__}: {exc}"}
    print(json.dumps(description))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
