"""Bad local inputs: a corrupt spool, a full disk, garbage intervals, umask 000, odd child output."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from comet_agent.delivery.spool import Spool
from tests.e2e.agent_support import agent_argv
from tests.faults.support import (
    BATCH_PATH,
    EXPERIMENT_KEY,
    FAST_INTERVALS,
    STATUS_PATH,
    backend,
    cpu_pushes,
    cpu_stamp,
    delivered_ids,
    spool_path,
    start,
    terminate,
    wait_for,
)
from tests.support.recording_server import Fault

OUTPUT_PATH = "/clientlib/rest/v2/write/experiment/output"
OTHER_KEY = "e" * 32


def _filled_spool(path: Path, key: str, count: int) -> list[str]:
    with Spool(path) as spool:
        return [
            spool.append(key, "other", {"key": f"k{i}", "value": i, "timestamp_ms": 1_700_000_000_000 + i}).request_id
            for i in range(count)
        ]


@pytest.mark.parametrize("damage", ["torn", "flipped"])
def test_a_corrupt_spool_is_quarantined_with_one_warning_and_the_rest_is_delivered(tmp_path, damage):
    """Pass: a spool truncated mid-page (torn) or with garbage over its middle (flipped) is renamed to
    <name>.corrupt-<ms> (not deleted) with one WARNING naming it; the agent runs on with a fresh spool
    and delivers; `comet-agent flush` then delivers every entry of another, intact spool."""
    data_dir = tmp_path / "data"
    bad = spool_path(data_dir)
    _filled_spool(bad, EXPERIMENT_KEY, 200)
    intact_ids = _filled_spool(spool_path(data_dir, OTHER_KEY), OTHER_KEY, 5)
    size = bad.stat().st_size
    if damage == "torn":
        os.truncate(bad, size // 2 + 100)
    else:
        with open(bad, "r+b") as handle:
            handle.seek(size // 3)
            handle.write(b"\xde\xad\xbe\xef" * 1024)
    with backend() as server:
        agent = start(server, data_dir)
        try:
            wait_for(lambda: cpu_pushes(server), 20, what="delivery from the fresh spool")
        finally:
            code, stderr = terminate(agent)
        flush = start(server, data_dir, command="flush")
        _, flush_err = flush.communicate(timeout=60)
        flush_code = flush.returncode
        delivered = set(delivered_ids(server))
    quarantined = list((data_dir / "spool").glob(f"{EXPERIMENT_KEY}.db.corrupt-*"))
    assert code == 0 and "Traceback" not in stderr, stderr
    assert len(quarantined) == 1 and quarantined[0].stat().st_size > 0, "kept for a post-mortem, not deleted"
    assert stderr.count("is unreadable") == 1 and str(bad) in stderr
    assert flush_code == 0, flush_err
    assert set(intact_ids) <= delivered


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir(parents=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("the full-disk test mounts a tmpfs and needs root (not available here)")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)], capture_output=True, timeout=10
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode(errors='replace').strip()}")


def _fill(filler: Path) -> Path:
    """Grow ``filler`` (created before the agent started, so that creating it cannot itself fail
    for lack of space) until the filesystem is full; returns it."""
    # Unbuffered: with a buffer, the last ENOSPC surfaced at close(), outside the try below.
    with open(filler, "ab", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_keeps_the_agent_running_says_so_once_and_recovers(tmp_path):
    """Pass: with the data directory on a 16 MiB tmpfs that fills up during an outage, the agent keeps
    running, logs exactly one "cannot store" ERROR naming "disk is full", and once space is freed
    new samples are spooled and delivered, and the records it could not store are reported as
    comet_agent.dropped_samples; no corrupt spool is left behind.

    Simulation: a real ENOSPC from a tmpfs (needs root; skips visibly otherwise)."""
    mount = tmp_path / "mnt"
    # Roomy enough that the agent's own spool (snapshot, WAL) never fills it before the filler does.
    _mount_tmpfs(mount, "16m")
    data_dir = mount / "data"
    log_path = tmp_path / "agent.log"
    try:
        filler = mount / "filler"
        filler.touch()
        with backend() as server, open(log_path, "wb") as log_file:
            agent = start(server, data_dir, stderr_file=log_file)
            try:
                wait_for(lambda: cpu_pushes(server), 20, what="a first CPU push")
                server.add_fault(Fault(status=503), times=10**6, path=BATCH_PATH)
                _fill(filler)
                wait_for(lambda: b"cannot store" in log_path.read_bytes(), 30, what="the disk-full error")
                time.sleep(2.5)  # a few more pushes fail to store: they must not log again
                assert agent.poll() is None, "still running on a full disk"
                filler.unlink()
                freed_at_ms = int(time.time() * 1000)
                server.remove_faults()
                wait_for(
                    lambda: [r for r in cpu_pushes(server) if cpu_stamp(r) > freed_at_ms + 500],
                    30,
                    what="a sample taken after space returned",
                )
                # What could not be stored while the disk was full is counted and reported.
                reported = wait_for(
                    lambda: [
                        r.json["value"]
                        for r in server.requests_to("write/experiment/log-other")
                        if r.answered_status == 200 and r.json.get("key") == "comet_agent.dropped_samples"
                    ],
                    30,
                    what="the report of what could not be stored",
                )
            finally:
                code, _ = terminate(agent)
        stderr = log_path.read_text(errors="replace")
        corrupt = list((data_dir / "spool").glob("*.corrupt-*"))
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=10)
    assert code == 0, stderr
    assert stderr.count("cannot store") == 1, stderr
    assert "disk is full" in stderr
    assert not corrupt and "Traceback" not in stderr
    assert max(reported) >= 1


def test_garbage_intervals_from_update_status_are_ignored_or_clamped_and_logged_once(tmp_path):
    """Pass: update_status() answering 0, -5, "abc" and 10**12 keeps the agent running; each bad value is
    logged exactly once over several heartbeats (10**12 clamped to 1 h, the others ignored), and the
    agent keeps its 1 s heartbeat (no busy loop, no stall)."""
    data_dir = tmp_path / "data"
    with backend() as server:
        agent = start(server, data_dir)
        try:
            wait_for(lambda: cpu_pushes(server), 20, what="a first CPU push")
            server.set_route(
                "GET",
                STATUS_PATH,
                {"isAliveBeatDurationMillis": 0, "cpuMonitorIntervalMillis": "abc", "gpuMonitorIntervalMillis": -5},
            )
            mark = len(server.requests_to(STATUS_PATH))
            wait_for(lambda: len(server.requests_to(STATUS_PATH)) >= mark + 3, 15, what="three garbage heartbeats")
            server.set_route("GET", STATUS_PATH, dict(FAST_INTERVALS, cpuMonitorIntervalMillis=10**12))
            mark = len(server.requests_to(STATUS_PATH))
            wait_for(lambda: len(server.requests_to(STATUS_PATH)) >= mark + 3, 15, what="three huge heartbeats")
            assert agent.poll() is None
        finally:
            code, stderr = terminate(agent)
    assert code == 0, stderr
    for text in (
        "isAliveBeatDurationMillis=0",
        "cpuMonitorIntervalMillis=abc",
        "gpuMonitorIntervalMillis=-5",
        "cpuMonitorIntervalMillis=1000000000000",
    ):
        assert stderr.count(text) == 1, (text, stderr)
    assert "clamped to 3600000" in stderr
    assert "Traceback" not in stderr


def test_under_umask_000_every_file_is_0600_in_0700_directories(tmp_path):
    """Pass: an agent run under umask 000 with the embedded local server leaves only 0600 files in 0700
    directories in its data directory (spool, generated key, status, store); a key file at 0644 is
    refused with exit 78 naming the file and its mode."""
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    env.update(
        {"HOME": str(tmp_path / "home"), "COMET_AGENT_DATA_DIR": str(data_dir), "COMET_ERROR_TRACKING_ENABLE": "false"}
    )
    result = subprocess.run(
        agent_argv(
            "run",
            "--workspace",
            "ws",
            "--project",
            "umask",
            "--no-os-packages",
            "--no-git",
            "--no-gpu",
            "--stop-timeout",
            "5",
            "--",
            sys.executable,
            "-c",
            "print('hi')",
        ),
        env=env,
        capture_output=True,
        timeout=90,
        preexec_fn=lambda: os.umask(0),
    )
    assert result.returncode == 0, result.stderr.decode()
    loose = []
    for root, dirs, files in os.walk(data_dir):
        for name in dirs:
            mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
            if mode != 0o700:
                loose.append((os.path.join(root, name), oct(mode)))
        for name in files:
            mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
            if mode != 0o600:
                loose.append((os.path.join(root, name), oct(mode)))
    assert list((data_dir / "spool").glob("*.db")), "the spool was made"
    assert not loose, loose
    key_file = tmp_path / "open-key"
    key_file.write_text("a-key-nobody-should-read-0123456789\n")
    key_file.chmod(0o644)
    refused = subprocess.run(
        agent_argv("run", "--experiment", EXPERIMENT_KEY),
        env=dict(env, COMET_API_KEY_FILE=str(key_file), COMET_URL_OVERRIDE="http://127.0.0.1:9/clientlib/"),
        capture_output=True,
        timeout=60,
    )
    assert refused.returncode == 78, refused.stderr.decode()
    assert str(key_file) in refused.stderr.decode() and "644" in refused.stderr.decode()
    assert b"a-key-nobody-should-read" not in refused.stderr


@pytest.mark.parametrize("case", ["non-utf-8", "long lines", "nothing"])
def test_odd_child_output_round_trips_or_is_replaced_visibly(tmp_path, case):
    """Pass: the wrapped command's bytes pass through to our stdout unchanged and the agent exits with the
    child's status; the recorded output holds the text (undecodable bytes as U+FFFD, a 3 MiB line in full
    across 1 MiB pieces), and silence records nothing and breaks nothing."""
    scripts = {
        "non-utf-8": "import sys; sys.stdout.buffer.write(b'a\\xff\\xfeb\\n\\x80\\n'); sys.exit(4)",
        "long lines": "import sys; sys.stdout.write('x' * (3 << 20) + '\\n' + 'y' * 70000 + '\\n'); sys.exit(4)",
        "nothing": "import sys; sys.exit(4)",
    }
    data_dir = tmp_path / "data"
    with backend() as server:
        agent = start(server, data_dir, "--", sys.executable, "-c", scripts[case])
        out, err = agent.communicate(timeout=90)
        recorded = "".join(
            line["output"] for r in server.requests_to(OUTPUT_PATH) if r.json for line in r.json["outputLines"]
        )
    stderr = err.decode(errors="replace")
    assert agent.returncode == 4, stderr
    assert "Traceback" not in stderr
    if case == "non-utf-8":
        assert out == b"a\xff\xfeb\n\x80\n"
        assert "a\ufffd\ufffdb" in recorded and "\ufffd" in recorded
    elif case == "long lines":
        assert out == b"x" * (3 << 20) + b"\n" + b"y" * 70000 + b"\n"
        assert recorded.count("x") == 3 << 20 and recorded.count("y") == 70000
    else:
        assert out == b"" and recorded == ""
