"""sources.gitrepo on real repositories made in tmp_path."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

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


def test_head_and_branch_are_read_from_packed_refs(repo):
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "pack-refs", "--all", "--prune")
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()
    opened = gitrepo.open_repository(str(repo))
    assert (opened.head_commit(), opened.branch_ref()) == (head, "refs/heads/main")


def test_linked_worktree_reads_its_own_head_and_the_shared_refs_and_config(repo, tmp_path):
    git(repo, "config", "user.name", "Grace")
    git(repo, "config", "remote.origin.url", "https://user:secret@example.org/r.git")
    git(repo, "branch", "feature")
    git(repo, "worktree", "add", "-q", str(tmp_path / "wt"), "feature")
    (tmp_path / "wt" / "sub").mkdir()
    opened = gitrepo.open_repository(str(tmp_path / "wt" / "sub"))
    assert os.path.realpath(opened.working_dir) == os.path.realpath(tmp_path / "wt")
    assert opened.branch_ref() == "refs/heads/feature"
    assert opened.head_commit() == git(repo, "rev-parse", "feature")
    assert opened.user_name() == "Grace"
    assert opened.origin_url() == "https://example.org/r.git"
    assert not opened.is_shallow


def test_detached_head_and_unborn_branch(repo, tmp_path):
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "--detach")
    opened = gitrepo.open_repository(str(repo))
    assert (opened.head_commit(), opened.branch_ref()) == (head, None)
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q", "-b", "trunk")
    unborn = gitrepo.open_repository(str(empty))
    assert (unborn.head_commit(), unborn.branch_ref()) == (None, "refs/heads/trunk")


def test_repository_config_wins_over_the_global_one(repo, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tname = Global Name\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    assert gitrepo.open_repository(str(repo)).user_name() == "Global Name"
    git(repo, "config", "user.name", "Local Name")
    assert gitrepo.open_repository(str(repo)).user_name() == "Local Name"


def test_a_git_that_does_not_answer_its_version_is_unavailable(repo, monkeypatch, tmp_path):
    fake = tmp_path / "git"
    fake.write_text("#!/bin/sh\necho 'not git'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("GIT_PYTHON_GIT_EXECUTABLE", str(fake))
    with pytest.raises(gitrepo.GitUnavailable, match="git binary not found or unusable"):
        gitrepo.open_repository(str(repo))


def test_a_branch_deep_in_a_large_packed_refs_file_is_found(repo):
    head = git(repo, "rev-parse", "HEAD")
    for i in range(3000):  # ~200 kB of packed refs before the branch HEAD names
        git_dir_ref = repo / ".git" / "refs" / "tags" / f"t{i:05d}"
        git_dir_ref.parent.mkdir(parents=True, exist_ok=True)
        git_dir_ref.write_text(head + "\n")
    git(repo, "branch", "-m", "main", "zz-last")
    git(repo, "pack-refs", "--all", "--prune")
    assert (repo / ".git" / "packed-refs").stat().st_size > 100_000
    opened = gitrepo.open_repository(str(repo))
    assert (opened.head_commit(), opened.branch_ref()) == (head, "refs/heads/zz-last")


def write_script(path, text):
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_a_child_that_runs_past_its_timeout_is_unavailable_and_killed(repo, monkeypatch, tmp_path):
    # GitPython probes `git version` when the child imports it; a git that hangs holds the child.
    pid_file = tmp_path / "pid"
    hanging = write_script(tmp_path / "git", f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 30\n")
    monkeypatch.setenv("GIT_PYTHON_GIT_EXECUTABLE", str(hanging))
    with pytest.raises(gitrepo.GitUnavailable, match=r"GitPython child\) did not finish within 2 s"):
        gitrepo.open_repository(str(repo), timeout_s=2)
    # the child's whole process group was killed, its hanging git included (gone, or a zombie);
    # 2 s leave the child time to start and reach the probe even on a loaded machine
    pid = pid_file.read_text().strip()
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        state = "gone"
    assert state in ("gone", "Z")


def test_a_child_that_prints_garbage_is_unavailable(repo, monkeypatch, tmp_path):
    # A sitecustomize on PYTHONPATH runs in the child at start-up and prints before its JSON.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("print('hello from sitecustomize')\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    with pytest.raises(gitrepo.GitUnavailable, match="printed no description"):
        gitrepo.open_repository(str(repo))


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("", gitrepo.GitUnavailable, r"printed no description \(exit status 1, 0 bytes of output\)"),
        ("Traceback (most recent call last):", gitrepo.GitUnavailable, "printed no description"),
        ("[1, 2]", gitrepo.GitUnavailable, "printed no description"),
        ('{"error": "not_a_repository", "reason": "not inside a git repository: /x"}', gitrepo.NotARepository, "/x"),
        ('{"error": "unavailable", "reason": "git binary not found or unusable"}', gitrepo.GitUnavailable, "unusable"),
        ('{"working_dir": "/r", "head_commit": 5}', gitrepo.GitUnavailable, "no valid 'head_commit'"),
        ('{"working_dir": ""}', gitrepo.GitUnavailable, "no valid 'working_dir'"),
    ],
)
def test_parse_description_rejects_what_is_not_a_description(text, error, match):
    with pytest.raises(error, match=match):
        gitrepo.parse_description(text, returncode=1)


def test_parse_description_keeps_the_stated_facts_only():
    text = (
        '{"working_dir": "/r", "head_commit": null, "branch_ref": "refs/heads/main", "user_name": "Ada",'
        ' "origin_url": null, "is_shallow": false, "extra": "ignored"}'
    )
    assert gitrepo.parse_description(text) == {
        "working_dir": "/r",
        "head_commit": None,
        "branch_ref": "refs/heads/main",
        "user_name": "Ada",
        "origin_url": None,
        "is_shallow": False,
    }


def test_child_environment_carries_no_secret():
    environ = {
        "PATH": "/usr/bin",
        "HOME": "/home/ada",
        "GIT_CONFIG_NOSYSTEM": "1",
        "COMET_API_KEY": "k" * 32,
        "COMET_URL_OVERRIDE": "http://127.0.0.1:5055/",
        "HF_TOKEN": "hf_abcdef",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
    }
    env = gitrepo.child_environment(environ)
    assert {"PATH", "HOME", "GIT_CONFIG_NOSYSTEM"} <= set(env)
    assert not {"COMET_API_KEY", "COMET_URL_OVERRIDE", "HF_TOKEN", "AWS_SECRET_ACCESS_KEY"} & set(env)
    assert env["GIT_OPTIONAL_LOCKS"] == "0" and env["GIT_TERMINAL_PROMPT"] == "0"


def test_the_child_reads_a_shallow_clone(repo, tmp_path):
    git(repo, "commit", "-q", "--allow-empty", "-m", "second")
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repo}", str(shallow))
    opened = gitrepo.open_repository(str(shallow))
    assert opened.is_shallow
    assert opened.head_commit() == git(repo, "rev-parse", "HEAD")
    assert opened.origin_url() == f"file://{repo}"
    assert not gitrepo.open_repository(str(repo)).is_shallow


def test_the_module_describes_a_repository_on_its_own(repo):
    # What the agent's child runs, by hand: one JSON object on stdout; a wrong call is a usage error.
    described = subprocess.run(
        [sys.executable, "-m", "comet_agent.sources.gitrepo", "--describe", str(repo / ".git" / "..")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    facts = gitrepo.parse_description(described.stdout)
    assert (facts["branch_ref"], facts["head_commit"]) == ("refs/heads/main", git(repo, "rev-parse", "HEAD"))
    wrong = subprocess.run(
        [sys.executable, "-m", "comet_agent.sources.gitrepo"], capture_output=True, text=True, timeout=60
    )
    assert wrong.returncode == 2 and "usage:" in wrong.stderr


def test_the_child_prints_the_origin_without_its_credentials(repo):
    git(repo, "config", "remote.origin.url", "https://bob:ghp_token123@example.org/r.git")
    described = subprocess.run(
        [sys.executable, "-m", "comet_agent.sources.gitrepo", "--describe", str(repo)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "ghp_token123" not in described.stdout
    assert gitrepo.parse_description(described.stdout)["origin_url"] == "https://example.org/r.git"
