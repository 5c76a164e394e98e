"""Git metadata and patch of the job's working directory (static, once per run).

Reads: the git working tree containing the job's directory (default: the current directory),
through ``sources.gitrepo`` (GitPython for layout, HEAD and config, run in a short-lived child
process so it never stays in the agent; bounded ``git`` commands for the root commit and the patch).

Feeds: ``write/experiment/git/metadata`` (``{user, root, branch, parent, origin}``) and the
git-patch upload; ``comet-agent collect --json`` shows them as ``gitMetadata`` and
``gitPatchBytes``.

Absent source: no git binary, a directory outside any repository, or a GitPython child that fails,
runs past ``describe_timeout_s`` or prints something unreadable makes ``collect()`` raise
``Unavailable`` with the reason. Inside a repository, each fact that cannot be had (no commits
yet, detached HEAD, no remote, a command that ran past its timeout) is ``None`` and, where it is
not self-evident, explained in ``GitSnapshot.notes``.

Patch policy (also stated in every snapshot): the working tree and index against HEAD, binary
safe; untracked files are excluded (as Comet does: they may be data, secrets or build output);
capped at ``max_patch_bytes`` (default 5 MB), cut at the last complete line before the cap and
followed by a note giving the full size. The origin URL has credentials removed.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

from comet_agent.collectors import Unavailable
from comet_agent.records import GitSnapshot
from comet_agent.sources import gitrepo

logger = logging.getLogger(__name__)

DEFAULT_MAX_PATCH_BYTES = 5 * 1000 * 1000
DEFAULT_PATCH_TIMEOUT_S = 10.0
DEFAULT_ROOT_TIMEOUT_S = 3.0
UNTRACKED_POLICY = "untracked files are excluded from the patch (only the working tree and index against HEAD)"


def truncation_note(kept_bytes: int, total_bytes: int) -> bytes:
    """The line appended to a cut patch, saying how much was kept out of how much."""
    return (
        f"\n# comet-agent: patch truncated: kept the first {kept_bytes} of {total_bytes} bytes "
        f"(cap set by max_patch_bytes)\n"
    ).encode()


class GitCollector:
    """Collects a ``GitSnapshot`` for the repository around ``directory``.

    Args:
        directory: where the job runs; the repository is searched upward from it (default: cwd).
        max_patch_bytes: the most patch bytes kept (default 5 MB); 0 disables the patch.
        patch_timeout_s: seconds ``git diff-index`` may take before the patch is skipped.
        root_timeout_s: seconds ``git rev-list`` may take to find the root commit.
        describe_timeout_s: seconds the child reading the repository with GitPython may take.

    Raises:
        ValueError: ``max_patch_bytes`` is negative or a timeout is not positive.
    """

    name = "git"

    def __init__(
        self,
        *,
        directory: Optional[str] = None,
        max_patch_bytes: int = DEFAULT_MAX_PATCH_BYTES,
        patch_timeout_s: float = DEFAULT_PATCH_TIMEOUT_S,
        root_timeout_s: float = DEFAULT_ROOT_TIMEOUT_S,
        describe_timeout_s: float = gitrepo.DEFAULT_DESCRIBE_TIMEOUT_S,
    ):
        if max_patch_bytes < 0:
            raise ValueError(f"max_patch_bytes must be 0 or more, got {max_patch_bytes}")
        if patch_timeout_s <= 0 or root_timeout_s <= 0 or describe_timeout_s <= 0:
            raise ValueError("git timeouts must be positive numbers of seconds")
        self.directory = os.path.abspath(directory or os.getcwd())
        self.max_patch_bytes = max_patch_bytes
        self.patch_timeout_s = patch_timeout_s
        self.root_timeout_s = root_timeout_s
        self.describe_timeout_s = describe_timeout_s

    def collect(self) -> GitSnapshot:
        """Read the repository's metadata and capped patch.

        Raises:
            Unavailable: no git binary, ``directory`` is not inside a git working tree, or the
                GitPython child failed or ran past ``describe_timeout_s``.
        """
        try:
            repo = gitrepo.open_repository(self.directory, timeout_s=self.describe_timeout_s)
        except gitrepo.GitUnavailable as exc:
            raise Unavailable(exc.reason) from None
        notes: list[str] = [UNTRACKED_POLICY]
        parent = repo.head_commit()
        if parent is None:
            notes.append("no commits yet: parent and root are null, the patch is against the empty tree")
        branch = repo.branch_ref()
        if branch is None:
            notes.append("detached HEAD: branch is null")
        origin = repo.origin_url()
        if origin is None:
            notes.append("no remote named origin")
        root: Optional[str] = None
        try:
            root = repo.root_commit(timeout_s=self.root_timeout_s)
        except gitrepo.GitUnavailable as exc:
            notes.append(f"root commit unknown: {exc.reason}")
        if root is not None and repo.is_shallow:
            notes.append("shallow clone: root is the oldest commit fetched, not the repository's first")
        patch, total_bytes, truncated = self._patch(repo, notes)
        return GitSnapshot(
            working_dir=repo.working_dir,
            user=repo.user_name(),
            root=root,
            branch=branch,
            parent=parent,
            origin=origin,
            patch=patch,
            patch_total_bytes=total_bytes,
            patch_truncated=truncated,
            max_patch_bytes=self.max_patch_bytes,
            untracked_policy=UNTRACKED_POLICY,
            notes=tuple(notes),
        )

    def _patch(self, repo: "gitrepo.GitRepository", notes: list[str]) -> tuple[Optional[bytes], Optional[int], bool]:
        if self.max_patch_bytes == 0:
            notes.append("patch disabled (max_patch_bytes=0)")
            return None, None, False
        try:
            output = repo.diff_against_head(max_bytes=self.max_patch_bytes, timeout_s=self.patch_timeout_s)
        except gitrepo.GitUnavailable as exc:
            notes.append(f"patch skipped: {exc.reason}")
            return None, None, False
        if not output.truncated:
            return output.data, output.total_bytes, False
        note = truncation_note(0, output.total_bytes)
        budget = max(0, self.max_patch_bytes - len(note) - 16)
        kept = output.data[:budget]
        # Cut at a line end so the last hunk line is whole; a partial binary literal is useless anyway.
        newline = kept.rfind(b"\n")
        if newline >= 0:
            kept = kept[: newline + 1]
        notes.append(
            f"patch truncated to {len(kept)} of {output.total_bytes} bytes (max_patch_bytes={self.max_patch_bytes})"
        )
        return kept + truncation_note(len(kept), output.total_bytes), output.total_bytes, True


def git_metadata_payload(snapshot: GitSnapshot) -> dict:
    """The body keys of Comet's ``git/metadata`` write: ``{user, root, branch, parent, origin}``."""
    return {
        "user": snapshot.user,
        "root": snapshot.root,
        "branch": snapshot.branch,
        "parent": snapshot.parent,
        "origin": snapshot.origin,
    }
