"""The git collector on real repositories made in tmp_path, one per case."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from comet_agent.collectors import Unavailable
from comet_agent.collectors.git import UNTRACKED_POLICY, GitCollector, git_metadata_payload

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.org",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.org",
    # Submodules from a local path need the file protocol (disabled by default since git 2.38.1).
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "protocol.file.allow",
    "GIT_CONFIG_VALUE_0": "always",
}


def git(cwd, *args) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=dict(os.environ, **GIT_ENV), check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(path, *, commit=True, user="Ada Lovelace"):
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    if user:
        git(path, "config", "user.name", user)
    (path / "train.py").write_text("print('hello')\n")
    if commit:
        git(path, "add", "train.py")
        git(path, "commit", "-q", "-m", "first")
    return path


def test_clean_repository_gives_metadata_and_empty_patch(tmp_path):
    repo = make_repo(tmp_path / "repo")
    git(repo, "remote", "add", "origin", "https://bob:ghp_secrettoken123@github.com/org/proj.git")
    head = git(repo, "rev-parse", "HEAD")
    snapshot = GitCollector(directory=str(repo)).collect()
    assert git_metadata_payload(snapshot) == {
        "user": "Ada Lovelace",
        "root": head,
        "branch": "refs/heads/main",
        "parent": head,
        "origin": "https://github.com/org/proj.git",
    }
    assert snapshot.patch == b""
    assert snapshot.patch_truncated is False
    assert snapshot.untracked_policy == UNTRACKED_POLICY
    assert "ghp_secrettoken123" not in repr(snapshot)


def test_scp_style_origin_is_kept(tmp_path):
    repo = make_repo(tmp_path / "repo")
    git(repo, "remote", "add", "origin", "git@github.com:org/proj.git")
    assert GitCollector(directory=str(repo)).collect().origin == "git@github.com:org/proj.git"


def test_dirty_repository_patch_has_worktree_and_index_but_not_untracked(tmp_path):
    repo = make_repo(tmp_path / "repo")
    (repo / "train.py").write_text("print('changed')\n")
    (repo / "staged.py").write_text("x = 1\n")
    git(repo, "add", "staged.py")
    (repo / "untracked-secret.env").write_text("TOKEN=abc\n")
    patch = GitCollector(directory=str(repo)).collect().patch.decode()
    assert "+print('changed')" in patch
    assert "b/staged.py" in patch and "+x = 1" in patch
    assert "untracked-secret.env" not in patch


def test_binary_change_is_in_the_patch_as_a_binary_literal(tmp_path):
    repo = make_repo(tmp_path / "repo")
    (repo / "weights.bin").write_bytes(bytes(range(256)) * 4)
    git(repo, "add", "weights.bin")
    patch = GitCollector(directory=str(repo)).collect().patch
    assert b"GIT binary patch" in patch


def test_detached_head_has_no_branch_and_says_so(tmp_path):
    repo = make_repo(tmp_path / "repo")
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "--detach", head)
    snapshot = GitCollector(directory=str(repo)).collect()
    assert snapshot.branch is None
    assert snapshot.parent == head
    assert any("detached HEAD" in note for note in snapshot.notes)


def test_repository_without_commits_patches_against_the_empty_tree(tmp_path):
    repo = make_repo(tmp_path / "repo", commit=False)
    git(repo, "add", "train.py")
    snapshot = GitCollector(directory=str(repo)).collect()
    assert snapshot.parent is None
    assert snapshot.root is None
    assert snapshot.branch == "refs/heads/main"
    assert b"+print('hello')" in snapshot.patch
    assert any("no commits yet" in note for note in snapshot.notes)


def test_repository_without_remote_or_user_has_null_origin_and_user(tmp_path):
    repo = make_repo(tmp_path / "repo", user=None)
    snapshot = GitCollector(directory=str(repo)).collect()
    assert snapshot.origin is None
    assert snapshot.user is None
    assert any("no remote named origin" in note for note in snapshot.notes)


def test_submodule_pointer_change_appears_as_subproject_commit(tmp_path):
    library = make_repo(tmp_path / "library")
    repo = make_repo(tmp_path / "repo")
    git(repo, "submodule", "add", "-q", str(library), "lib")
    git(repo, "commit", "-q", "-m", "add submodule")
    (library / "more.py").write_text("y = 2\n")
    git(library, "add", "more.py")
    git(library, "commit", "-q", "-m", "more")
    git(repo / "lib", "pull", "-q", "origin", "main")
    snapshot = GitCollector(directory=str(repo)).collect()
    assert b"Subproject commit" in snapshot.patch
    assert b"more.py" not in snapshot.patch  # the submodule's own files are its business


def test_patch_over_the_cap_is_cut_at_a_line_and_says_so(tmp_path):
    repo = make_repo(tmp_path / "repo")
    (repo / "train.py").write_text("".join(f"print({i})\n" for i in range(50000)))
    snapshot = GitCollector(directory=str(repo), max_patch_bytes=20_000).collect()
    assert snapshot.patch_truncated is True
    assert len(snapshot.patch) <= 20_000
    assert snapshot.patch_total_bytes > 400_000
    body, _, note = snapshot.patch.rpartition(b"\n# comet-agent: patch truncated")
    assert body.endswith(b"\n")
    assert str(snapshot.patch_total_bytes).encode() in note
    assert any("patch truncated" in n for n in snapshot.notes)


def test_patch_disabled_with_zero_cap(tmp_path):
    repo = make_repo(tmp_path / "repo")
    snapshot = GitCollector(directory=str(repo), max_patch_bytes=0).collect()
    assert snapshot.patch is None
    assert "patch disabled (max_patch_bytes=0)" in snapshot.notes


def test_slow_patch_is_skipped_after_its_timeout_with_the_reason(tmp_path):
    # A clean filter that hangs stands in for a huge repository: git must read the file through it.
    repo = make_repo(tmp_path / "repo")
    (repo / ".gitattributes").write_text("*.dat filter=slow\n")
    git(repo, "config", "filter.slow.clean", "sleep 30; cat")
    (repo / "big.dat").write_text("data\n")
    git(repo, "-c", "filter.slow.clean=cat", "add", ".gitattributes", "big.dat")
    git(repo, "-c", "filter.slow.clean=cat", "commit", "-q", "-m", "data")
    (repo / "big.dat").write_text("changed data\n")
    snapshot = GitCollector(directory=str(repo), patch_timeout_s=0.5).collect()
    assert snapshot.patch is None
    assert snapshot.parent is not None  # the metadata survives
    assert any("patch skipped" in n and "did not finish within 0.5 s" in n for n in snapshot.notes)


def test_repository_hooks_and_external_diff_are_not_run(tmp_path):
    repo = make_repo(tmp_path / "repo")
    marker = tmp_path / "ran"
    script = tmp_path / "hook.sh"
    script.write_text(f"#!/bin/sh\necho ran > {marker}\n")
    script.chmod(0o755)
    git(repo, "config", "core.fsmonitor", str(script))
    git(repo, "config", "diff.external", str(script))
    (repo / "train.py").write_text("print('changed')\n")
    snapshot = GitCollector(directory=str(repo)).collect()
    assert b"+print('changed')" in snapshot.patch
    assert not marker.exists()


def test_subdirectory_of_a_repository_finds_the_repository(tmp_path):
    repo = make_repo(tmp_path / "repo")
    (repo / "src" / "pkg").mkdir(parents=True)
    snapshot = GitCollector(directory=str(repo / "src" / "pkg")).collect()
    assert os.path.realpath(snapshot.working_dir) == os.path.realpath(repo)


def test_directory_outside_a_repository_is_unavailable(tmp_path):
    with pytest.raises(Unavailable, match="not inside a git repository"):
        GitCollector(directory=str(tmp_path)).collect()


def test_missing_git_executable_is_unavailable(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo")
    monkeypatch.setenv("GIT_PYTHON_GIT_EXECUTABLE", str(tmp_path / "nowhere" / "git"))
    with pytest.raises(Unavailable, match="git binary not found"):
        GitCollector(directory=str(repo)).collect()


@pytest.mark.parametrize("broken_git", [None, "#!/bin/sh\nexit 1\n"], ids=["no-git-on-path", "git-that-fails"])
def test_no_usable_git_makes_only_git_unavailable_in_a_fresh_interpreter(tmp_path, broken_git):
    # A fresh interpreter with a PATH holding no git, or a git that fails its `git version`, shows
    # that a missing or broken git ends as Unavailable, not as an error out of the collector.
    repo = make_repo(tmp_path / "repo")
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    if broken_git:
        (empty_bin / "git").write_text(broken_git)
        (empty_bin / "git").chmod(0o755)
    code = (
        "from comet_agent.collectors import Unavailable\n"
        "from comet_agent.collectors.git import GitCollector\n"
        f"try:\n    GitCollector(directory={str(repo)!r}).collect()\n"
        "except Unavailable as e:\n    print('UNAVAILABLE:', e.reason)\n"
    )
    env = {"PATH": str(empty_bin), "HOME": str(tmp_path), "PYTHONPATH": os.getcwd()}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("UNAVAILABLE: git binary not found")


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="max_patch_bytes"):
        GitCollector(max_patch_bytes=-1)
    with pytest.raises(ValueError, match="timeouts"):
        GitCollector(patch_timeout_s=0)
    with pytest.raises(ValueError, match="timeouts"):
        GitCollector(describe_timeout_s=0)


def test_repository_of_another_user_keeps_metadata_and_states_why_the_patch_is_missing(tmp_path):
    # An agent running as a service user watching someone else's checkout: git refuses to run
    # commands there ("dubious ownership"), but HEAD and branch are plain files we can still read.
    if os.geteuid() != 0:
        pytest.skip("needs root to give the repository to another uid")
    repo = make_repo(tmp_path / "repo")
    git(repo, "config", "remote.origin.url", "https://example.org/r.git")
    head = git(repo, "rev-parse", "HEAD")
    (repo / "train.py").write_text("print('changed')\n")
    for path in [repo, *repo.rglob("*")]:
        os.lchown(path, 54321, 54321)
    snapshot = GitCollector(directory=str(repo)).collect()
    assert (snapshot.parent, snapshot.branch) == (head, "refs/heads/main")
    # git skips the repository's config there; its values are read from the file all the same
    assert (snapshot.user, snapshot.origin) == ("Ada Lovelace", "https://example.org/r.git")
    assert snapshot.patch is None
    assert any(
        n.startswith("patch skipped: git diff-index failed: fatal: detected dubious ownership") for n in snapshot.notes
    )


def test_static_snapshot_leaves_no_gitpython_in_the_agent_and_no_secret_in_its_children(tmp_path):
    # A fresh interpreter as the agent: a git wrapper records the environment and arguments of every
    # git process (GitPython's probe in the child, the agent's rev-list and diff-index).
    repo = make_repo(tmp_path / "repo")
    git(repo, "remote", "add", "origin", "https://example.org/r.git")
    (repo / "train.py").write_text("print('changed')\n")
    log = tmp_path / "git-calls.log"
    real_git = subprocess.run(["sh", "-c", "command -v git"], capture_output=True, text=True).stdout.strip()
    wrapper = tmp_path / "bin" / "git"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\n{{ echo "ARGS $*"; env; }} >> {log}\nexec {real_git} "$@"\n')
    wrapper.chmod(0o755)
    api_key = "k3yABCDEFGHIJKLMNOPQRSTUVWXYZ012"
    code = (
        "import sys\n"
        "from comet_agent.redaction import register_secret\n"
        "from comet_agent.collectors.snapshot import collect_static\n"
        "register_secret('registered-secret-value')\n"
        f"snapshot = collect_static(directory={str(repo)!r}, include_os_packages=False, include_gpu=False)\n"
        "print(snapshot.unavailable)\n"
        "print(snapshot.git.parent, snapshot.git.branch, snapshot.git.origin, b'changed' in snapshot.git.patch)\n"
        "print('git' in sys.modules, sorted(m for m in sys.modules if m.startswith(('git.', 'gitdb', 'smmap'))))\n"
    )
    env = dict(
        os.environ,
        PATH=f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}",
        PYTHONPATH=os.getcwd(),
        COMET_API_KEY=api_key,
        TRAINING_DATA_URL="https://user:registered-secret-value@example.org/data",
    )
    env.pop("GIT_PYTHON_GIT_EXECUTABLE", None)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    unavailable, facts, modules = result.stdout.splitlines()
    assert "git" not in unavailable
    assert facts == f"{git(repo, 'rev-parse', 'HEAD')} refs/heads/main https://example.org/r.git True"
    assert modules == "False []"
    calls = log.read_text()
    assert "ARGS version" in calls and "ARGS -c core.fsmonitor=false" in calls  # the child's probe, the agent's git
    assert api_key not in calls and "registered-secret-value" not in calls
    assert "COMET_API_KEY" not in calls and "TRAINING_DATA_URL" not in calls


def test_a_gitpython_child_printing_garbage_makes_git_unavailable(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("print('not json')\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    with pytest.raises(Unavailable, match="GitPython child printed no description"):
        GitCollector(directory=str(repo)).collect()
