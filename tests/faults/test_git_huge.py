"""A git repository at its worst: 100,000 files, binary changes, non-UTF-8 names, a 1 GB untracked file."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

import pytest

from comet_agent.collectors.git import DEFAULT_PATCH_TIMEOUT_S, DEFAULT_ROOT_TIMEOUT_S, GitCollector

FILES = 100_000
CAP_BYTES = 64 * 1024


def _git(repo, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "core.quotepath=off", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        timeout=120,
        env=dict(
            os.environ,
            GIT_AUTHOR_NAME="t",
            GIT_AUTHOR_EMAIL="t@example.com",
            GIT_COMMITTER_NAME="t",
            GIT_COMMITTER_EMAIL="t@example.com",
        ),
    )


@pytest.fixture
def huge_repo(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    for d in range(100):
        sub = repo / f"d{d:03d}"
        sub.mkdir()
        for i in range(FILES // 100):
            (sub / f"f{i:04d}.txt").write_bytes(b"%d\n" % i)
    (repo / "big.txt").write_bytes(b"".join(b"line %06d original\n" % i for i in range(50_000)))
    (repo / "blob.bin").write_bytes(bytes(range(256)) * 64)
    os.mkdir(os.path.join(bytes(repo), b"dir-\xff\xfe"))  # a non-UTF-8 name, as on Linux any byte goes
    with open(os.path.join(bytes(repo), b"dir-\xff\xfe", b"name-\xe9.txt"), "wb") as handle:
        handle.write(b"latin-1 name\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "100k files")
    # changes: a big text rewrite (patch far over the cap), a binary change, a non-UTF-8 path change
    (repo / "big.txt").write_bytes(b"".join(b"line %06d changed\n" % i for i in range(50_000)))
    (repo / "blob.bin").write_bytes(bytes(reversed(range(256))) * 64)
    with open(os.path.join(bytes(repo), b"dir-\xff\xfe", b"name-\xe9.txt"), "ab") as handle:
        handle.write(b"more\n")
    with open(repo / "untracked-1GB.bin", "wb") as handle:
        handle.truncate(1 << 30)  # sparse: 1 GB long, no blocks used
    return repo


def test_a_huge_odd_repository_snapshots_within_its_time_bound_and_the_patch_cap(huge_repo):
    """Pass: the git snapshot of a 100,000-file repository with binary changes, a non-UTF-8 path and a
    1 GB untracked file finishes within the collector's own bound (patch + root timeouts + 10 s of
    slack), its patch is at most the cap plus the truncation note, says so, records the full size,
    and leaves the untracked file out."""
    collector = GitCollector(directory=str(huge_repo), max_patch_bytes=CAP_BYTES)
    result: dict = {}

    def collect() -> None:
        try:
            result["snapshot"] = collector.collect()
        except Exception as exc:  # reported below as the test's failure
            result["error"] = exc

    worker = threading.Thread(target=collect, daemon=True)
    worker.start()
    worker.join(DEFAULT_PATCH_TIMEOUT_S + DEFAULT_ROOT_TIMEOUT_S + 10)
    assert not worker.is_alive(), "the snapshot did not finish within its time bound"
    assert "error" not in result, result.get("error")
    snapshot = result["snapshot"]
    assert snapshot.parent and snapshot.branch
    assert snapshot.patch is not None and snapshot.patch_truncated
    assert snapshot.patch_total_bytes > CAP_BYTES
    assert len(snapshot.patch) <= CAP_BYTES + 512
    assert b"untracked-1GB" not in snapshot.patch
    assert b"big.txt" in snapshot.patch
