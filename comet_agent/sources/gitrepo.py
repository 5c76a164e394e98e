"""The git repository around the job's working directory: the only importer of GitPython.

GitPython is imported lazily, inside ``open_repository``: it raises at import time when no git
binary can be found, and that must make the git collector unavailable, not break the agent.
GitPython reads the repository layout and configuration (no subprocess); the two commands that
can be slow on big repositories (``rev-list`` for the root commit, ``diff-index`` for the patch) run
through ``sources.commands`` with a timeout and bounded output.

Every git command runs with options that keep it read-only: no index refresh (plumbing
``diff-index`` and ``GIT_OPTIONAL_LOCKS=0``: the job's index is not ours to rewrite), no fsmonitor
hook, no external diff or textconv drivers, no pager, no prompt. Clean filters (git-lfs) still run,
as for the user's own ``git diff``; the timeout bounds them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Optional

from comet_agent.redaction import strip_url_credentials
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
    """The git program GitPython will use: ``$GIT_PYTHON_GIT_EXECUTABLE`` or ``git`` on ``PATH``."""
    return os.environ.get("GIT_PYTHON_GIT_EXECUTABLE") or "git"


def open_repository(directory: str) -> "GitRepository":
    """Open the git working tree that contains ``directory`` (searching parent directories).

    Raises:
        GitUnavailable: no git binary, or GitPython cannot load.
        NotARepository: ``directory`` does not exist or is not inside a git working tree.
    """
    program = find_program(git_executable())
    if program is None:
        raise GitUnavailable(f"git binary not found (looked for {git_executable()!r} on PATH)")
    try:
        import git  # GitPython: imported here only, it raises ImportError without a git binary
    except ImportError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GitUnavailable(f"git binary not found or unusable (GitPython: {first_line})") from None
    if not os.path.isdir(directory):
        raise NotARepository(f"directory does not exist: {directory}")
    try:
        repo = git.Repo(directory, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise NotARepository(f"not inside a git repository: {directory}") from None
    if repo.bare or repo.working_tree_dir is None:
        raise NotARepository(f"bare repository without a working tree: {repo.git_dir}")
    return GitRepository(repo, program)


def _error_line(result: CommandResult) -> str:
    """The line of git's stderr that says what went wrong (``fatal:``/``error:``), not its hints."""
    lines = [line.strip() for line in result.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line
    return lines[-1] if lines else f"exit status {result.returncode}"


class GitRepository:
    """Read-only accessors over one working tree. Each returns ``None`` when the fact does not exist."""

    def __init__(self, repo, program: str):
        self._repo = repo
        self._program = program

    @property
    def working_dir(self) -> str:
        """The top directory of the working tree."""
        return str(self._repo.working_tree_dir)

    @property
    def is_shallow(self) -> bool:
        """True for a shallow clone, whose oldest reachable commit is not the real root."""
        return os.path.exists(os.path.join(self._repo.git_dir, "shallow"))

    def head_commit(self) -> Optional[str]:
        """The HEAD commit's id, or None before the first commit."""
        import git

        # Resolved from the ref files, without reading the commit object: that would run git,
        # which refuses a repository owned by another user ("detected dubious ownership"), and
        # HEAD and branch are still worth reporting there.
        try:
            return git.SymbolicReference.dereference_recursive(self._repo, "HEAD")
        except ValueError:  # HEAD names a branch with no commit yet
            return None

    def branch_ref(self) -> Optional[str]:
        """The full ref HEAD points at (``refs/heads/main``), or None when HEAD is detached."""
        if self._repo.head.is_detached:
            return None
        return self._repo.head.reference.path

    def _config_value(self, section: str, option: str) -> Optional[str]:
        try:
            reader = self._repo.config_reader()
            value = reader.get_value(section, option, default=None)
        except Exception as exc:  # an unparsable config file must not lose the other facts
            logger.debug("cannot read git config %s.%s: %s", section, option, exc)
            return None
        return None if value is None or value == "" else str(value)

    def user_name(self) -> Optional[str]:
        """``user.name`` from the repository, global or system configuration."""
        return self._config_value("user", "name")

    def origin_url(self) -> Optional[str]:
        """``remote.origin.url`` with any ``user:password@`` removed, or None without an origin."""
        return strip_url_credentials(self._config_value('remote "origin"', "url"))

    def _run(self, args: list[str], *, timeout_s: float, max_output_bytes: int) -> CommandResult:
        env = dict(os.environ)
        env.update({"GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C"})
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
