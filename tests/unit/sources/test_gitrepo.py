"""sources.gitrepo on real repositories made in tmp_path."""

from __future__ import annotations

import os
import subprocess

import pytest

from comet_agent.sources import gitrepo

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.org",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.org",
}


def git(cwd, *args, date=None) -> str:
    env = dict(os.environ, **GIT_ENV)
    if date:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = date
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "a.txt").write_text("one\n")
    git(path, "add", "a.txt")
    git(path, "commit", "-q", "-m", "first", date="2020-01-01T00:00:00")
    return path


def test_open_repository_outside_a_repository_raises_not_a_repository(tmp_path):
    with pytest.raises(gitrepo.NotARepository, match="not inside a git repository"):
        gitrepo.open_repository(str(tmp_path))


def test_open_repository_missing_directory_raises_not_a_repository(tmp_path):
    with pytest.raises(gitrepo.NotARepository, match="does not exist"):
        gitrepo.open_repository(str(tmp_path / "gone"))


def test_open_repository_missing_git_binary_raises_git_unavailable(repo, monkeypatch, tmp_path):
    monkeypatch.setenv("GIT_PYTHON_GIT_EXECUTABLE", str(tmp_path / "no" / "git"))
    with pytest.raises(gitrepo.GitUnavailable, match="git binary not found"):
        gitrepo.open_repository(str(repo))


def test_open_repository_finds_the_top_from_a_subdirectory(repo):
    (repo / "sub" / "deeper").mkdir(parents=True)
    opened = gitrepo.open_repository(str(repo / "sub" / "deeper"))
    assert os.path.realpath(opened.working_dir) == os.path.realpath(repo)


def test_root_commit_is_the_oldest_of_several_roots(repo):
    first_root = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "--orphan", "other")
    git(repo, "rm", "-q", "-rf", ".")
    (repo / "b.txt").write_text("b\n")
    git(repo, "add", "b.txt")
    git(repo, "commit", "-q", "-m", "second root", date="2021-01-01T00:00:00")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--allow-unrelated-histories", "-m", "merge", "other", date="2022-01-01T00:00:00")
    opened = gitrepo.open_repository(str(repo))
    assert opened.root_commit(timeout_s=10) == first_root


def test_diff_against_head_is_bounded_and_reports_the_full_size(repo):
    (repo / "a.txt").write_text("".join(f"line {i}\n" for i in range(20000)))
    opened = gitrepo.open_repository(str(repo))
    full = opened.diff_against_head(max_bytes=10_000_000, timeout_s=20)
    capped = opened.diff_against_head(max_bytes=1000, timeout_s=20)
    assert not full.truncated
    assert capped.truncated
    assert len(capped.data) == 1000
    assert capped.total_bytes == len(full.data) == full.total_bytes
    assert full.data.startswith(capped.data)


def test_diff_against_head_does_not_write_the_index(repo):
    # A touched file makes `git diff` want to refresh the index; GIT_OPTIONAL_LOCKS=0 forbids it.
    index = repo / ".git" / "index"
    before = index.stat().st_mtime_ns
    os.utime(repo / "a.txt", ns=(before + 10**9, before + 10**9))
    gitrepo.open_repository(str(repo)).diff_against_head(max_bytes=1000, timeout_s=10)
    assert index.stat().st_mtime_ns == before
