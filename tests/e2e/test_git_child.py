"""`comet-agent run` in a git repository: the git facts GitPython reads in the agent's short-lived
child reach the experiment, read back with the official comet_ml."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile

import pytest

from tests.e2e.agent_support import agent_argv, agent_env, experiment_key_from

pytestmark = pytest.mark.e2e

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.org",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.org",
}


def git(cwd, *args) -> str:
    env = dict(os.environ, **GIT_ENV)
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def test_run_in_a_linked_worktree_records_its_git_metadata_and_patch(local_server, tmp_path):
    main = tmp_path / "main"
    main.mkdir()
    git(main, "init", "-q", "-b", "main")
    git(main, "config", "user.name", "Ada Lovelace")
    git(main, "config", "remote.origin.url", "https://bob:ghp_e2etoken99@example.org/proj.git")
    (main / "train.py").write_text("print('hello')\n")
    git(main, "add", "train.py")
    git(main, "commit", "-q", "-m", "first")
    root = git(main, "rev-parse", "HEAD")
    git(main, "branch", "feature")
    worktree = tmp_path / "wt"
    git(main, "worktree", "add", "-q", str(worktree), "feature")
    (worktree / "train.py").write_text("print('changed in the worktree')\n")

    result = subprocess.run(
        agent_argv("run", "--no-os-packages", "--workspace", "ws", "--project", "git", "--", sys.executable, "-c", "0"),
        env=agent_env(local_server, tmp_path / "data"),
        cwd=str(worktree),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    key = experiment_key_from(result.stderr.decode())
    assert b"ghp_e2etoken99" not in result.stderr

    comet_ml = pytest.importorskip("comet_ml")
    os.environ["COMET_URL_OVERRIDE"] = local_server.clientlib_url
    os.environ["COMET_API_KEY"] = local_server.api_key
    try:
        theirs = comet_ml.API(cache=False).get_experiment_by_key(key)
        assert theirs.get_git_metadata() == {
            "user": "Ada Lovelace",
            "root": root,
            "branch": "refs/heads/feature",
            "parent": root,
            "origin": "https://example.org/proj.git",
        }
        patch = theirs.get_git_patch()
    finally:
        del os.environ["COMET_URL_OVERRIDE"], os.environ["COMET_API_KEY"]
    with zipfile.ZipFile(io.BytesIO(patch)) as archive:  # a zip holding git_diff.patch, as Comet keeps it
        assert b"+print('changed in the worktree')" in archive.read("git_diff.patch")
