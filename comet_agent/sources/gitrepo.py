"""The git repository around the job's working directory, read without GitPython.

The layout (where the working tree and its git directory are, what HEAD names) is read from the
repository's own files, as git lays them out: a ``.git`` directory or a ``.git`` file pointing to
one (linked worktrees, submodules), ``HEAD``, loose refs and ``packed-refs`` in the common
directory. Reading files needs no git process, so HEAD and branch are still known where git
refuses to run ("detected dubious ownership": an agent running as another user). Configuration
(``user.name``, ``remote.origin.url``) and the two commands that can be slow on big repositories
(``rev-list`` for the root commit, ``diff-index`` for the patch) run ``git`` through
``sources.commands`` with a timeout and bounded output.

GitPython used to do the layout and configuration part; it stayed resident after the snapshot
(~2.5 MB of the agent's RSS, ~50 ms of import), for what a few file reads and two ``git config``
calls do (bench/README.md, memory).

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
    """The git program to run: ``$GIT_PYTHON_GIT_EXECUTABLE`` (the variable GitPython read, still
    honoured) or ``git`` on ``PATH``."""
    return os.environ.get("GIT_PYTHON_GIT_EXECUTABLE") or "git"


# The configuration the collector reads: the user's name and origin's URL.
_CONFIG_PATTERN = r"^(user\.name|remote\.origin\.url)$"

# Refs that live in each worktree's own git directory, not in the common one (git-worktree(1)).
_PER_WORKTREE_PREFIXES = ("refs/bisect/", "refs/worktree/", "refs/rewritten/")

_HEX_DIGITS = frozenset("0123456789abcdef")


def _read_small_file(path: str) -> Optional[str]:
    """The text of a small repository file (HEAD, a ref, a gitdir pointer), or None when absent."""
    try:
        with open(path, "rb") as handle:
            return handle.read(64 * 1024).decode("utf-8", "replace")
    except OSError:
        return None


def _is_object_id(value: str) -> bool:
    return len(value) in (40, 64) and set(value) <= _HEX_DIGITS


def _is_git_dir(path: str) -> bool:
    """What git itself checks before taking a directory for a repository: HEAD, plus objects/ and
    refs/ here, or a ``commondir`` file pointing to them (a linked worktree's directory)."""
    if not os.path.isfile(os.path.join(path, "HEAD")):
        return False
    if os.path.isfile(os.path.join(path, "commondir")):
        return True
    return os.path.isdir(os.path.join(path, "objects")) and os.path.isdir(os.path.join(path, "refs"))


def _git_dir_of(top: str) -> Optional[str]:
    """The git directory that ``top/.git`` is or points to (``gitdir: PATH`` in a file), or None."""
    dot_git = os.path.join(top, ".git")
    if os.path.isdir(dot_git):
        return dot_git if _is_git_dir(dot_git) else None
    text = _read_small_file(dot_git)
    if text is None or not text.startswith("gitdir:"):
        return None
    target = os.path.join(top, text[len("gitdir:") :].strip())
    return os.path.normpath(target) if _is_git_dir(target) else None


def _find_working_tree(directory: str) -> Optional[tuple[str, str]]:
    """The working tree containing ``directory`` and its git directory, searching parents; or None."""
    current = os.path.abspath(directory)
    while True:
        git_dir = _git_dir_of(current)
        if git_dir is not None:
            return current, git_dir
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def _check_git_runs(program: str) -> None:
    """Raise GitUnavailable unless ``program`` answers ``git version`` (what GitPython checked at import)."""
    try:
        result = run_command([program, "version"], timeout_s=10, max_output_bytes=4096)
    except CommandError as exc:  # not found, timed out, or could not start
        raise GitUnavailable(f"git binary not found or unusable ({program} version: {exc})") from None
    if not result.ok or not result.text().startswith("git version"):
        raise GitUnavailable(f"git binary not found or unusable ({program} version: {_error_line(result)})")


def open_repository(directory: str) -> "GitRepository":
    """Open the git working tree that contains ``directory`` (searching parent directories).

    Raises:
        GitUnavailable: no git binary, or one that does not run.
        NotARepository: ``directory`` does not exist or is not inside a git working tree.
    """
    # The files first: outside a repository no git process is started at all.
    if not os.path.isdir(directory):
        raise NotARepository(f"directory does not exist: {directory}")
    found = _find_working_tree(directory)
    if found is None:
        raise NotARepository(f"not inside a git repository: {directory}")
    working_dir, git_dir = found
    program = find_program(git_executable())
    if program is None:
        raise GitUnavailable(f"git binary not found (looked for {git_executable()!r} on PATH)")
    _check_git_runs(program)
    return GitRepository(working_dir, git_dir, program)


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
        working_dir: the top directory of the working tree.
        git_dir: its git directory (``.git``, or a linked worktree's directory under the main one).
        program: the git program to run.
    """

    def __init__(self, working_dir: str, git_dir: str, program: str):
        self._working_dir = working_dir
        self._git_dir = git_dir
        pointer = _read_small_file(os.path.join(git_dir, "commondir"))
        self._common_dir = os.path.normpath(os.path.join(git_dir, pointer.strip())) if pointer else git_dir
        self._program = program
        self._config: Optional[dict[str, str]] = None

    @property
    def working_dir(self) -> str:
        """The top directory of the working tree."""
        return self._working_dir

    @property
    def is_shallow(self) -> bool:
        """True for a shallow clone, whose oldest reachable commit is not the real root."""
        return os.path.exists(os.path.join(self._common_dir, "shallow"))

    def _read_ref(self, name: str) -> Optional[str]:
        """A ref's content (an object id or ``ref: OTHER``) from its loose file or ``packed-refs``."""
        shared = name != "HEAD" and not name.startswith(_PER_WORKTREE_PREFIXES)
        text = _read_small_file(os.path.join(self._common_dir if shared else self._git_dir, name))
        if text is not None:
            return text.strip()
        if not shared:
            return None
        wanted = name.encode("utf-8")
        try:
            # Line by line, not capped like the small files: a big repository packs many refs.
            with open(os.path.join(self._common_dir, "packed-refs"), "rb") as packed:
                for line in packed:
                    object_id, _, ref = line.partition(b" ")
                    if ref.strip() == wanted and not line.startswith((b"#", b"^")):
                        return object_id.decode("ascii", "replace")
        except OSError:
            pass
        return None

    def head_commit(self) -> Optional[str]:
        """The HEAD commit's id, or None before the first commit."""
        # Resolved from the ref files, without running git: git refuses a repository owned by
        # another user ("detected dubious ownership"), and HEAD and branch are still worth reporting.
        value = self._read_ref("HEAD")
        for _ in range(5):  # a symbolic ref may name another symbolic ref; git stops at 5 too
            if value is None or not value.startswith("ref:"):
                break
            value = self._read_ref(value[len("ref:") :].strip())
        return value if value is not None and _is_object_id(value) else None

    def branch_ref(self) -> Optional[str]:
        """The full ref HEAD points at (``refs/heads/main``), or None when HEAD is detached."""
        value = self._read_ref("HEAD")
        if value is None or not value.startswith("ref:"):
            return None
        return value[len("ref:") :].strip()

    def _config_values(self) -> dict[str, str]:
        """``user.name`` and ``remote.origin.url`` as git resolves them (system, global, repository).

        Two lookups: git's own (every level, includes followed), then the repository's config file
        read as a file, which wins; git skips the repository's file, silently, in a repository
        owned by another user, and the repository's values are still worth reporting there.
        """
        if self._config is None:
            values: dict[str, str] = {}
            local = os.path.join(self._common_dir, "config")
            for args in (["config", "-z", "--get-regexp"], ["config", "-z", "--file", local, "--get-regexp"]):
                try:
                    # status 1: no such key; anything else (an unparsable file) loses only these facts
                    result = self._run([*args, _CONFIG_PATTERN], timeout_s=10, max_output_bytes=64 * 1024, ok=(0, 1))
                except GitUnavailable as exc:
                    logger.debug("cannot read git config: %s", exc.reason)
                    continue
                for entry in result.text().split("\0"):
                    key, _, value = entry.partition("\n")
                    if key and value:
                        values[key] = value  # the last value of a multi-valued key wins, as for git
            self._config = values
        return self._config

    def user_name(self) -> Optional[str]:
        """``user.name`` from the repository, global or system configuration."""
        return self._config_values().get("user.name")

    def origin_url(self) -> Optional[str]:
        """``remote.origin.url`` with any ``user:password@`` removed, or None without an origin."""
        return strip_url_credentials(self._config_values().get("remote.origin.url"))

    def _run(
        self, args: list[str], *, timeout_s: float, max_output_bytes: int, ok: tuple[int, ...] = (0,)
    ) -> CommandResult:
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
        if result.returncode not in ok:
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
