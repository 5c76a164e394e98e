"""`comet-agent daemon` as a subprocess: jobs register, each experiment gets its own metrics, bad input is refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from comet_agent.api import API, APIExperiment
from tests.e2e.agent_support import REPO, agent_argv, agent_env, wait_for

pytestmark = pytest.mark.e2e

#: A job whose process tree has a known thread count: the interpreter's main thread plus N sleepers.
JOB_SCRIPT = (
    "import sys, threading, time\n"
    "for _ in range(int(sys.argv[1])):\n"
    "    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
    "print('ready', flush=True)\n"
    "time.sleep(600)\n"
)


@pytest.fixture
def short_dir():
    # AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="ca-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _api(server) -> API:
    return API(api_key=server.api_key, url_override=server.clientlib_url)


def _experiment(server, key=None) -> APIExperiment:
    if key is None:
        return APIExperiment(api=_api(server), workspace="ws", project_name="daemon")
    return APIExperiment(api=_api(server), previous_experiment=key)


def _start_daemon(server, data_dir: Path, socket_path: Path, *args: str, **env: str) -> subprocess.Popen:
    # Each job pushes at the cadence the server recommends (as an in-process agent does): a fast one.
    server.set_intervals(heartbeat_ms=1000, cpu_interval_ms=1000, gpu_interval_ms=1000)
    process = subprocess.Popen(
        agent_argv("daemon", "--socket", str(socket_path), "--interval", "0.5", "--no-gpu", *args),
        env=agent_env(server, data_dir, **env),
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for(lambda: socket_path.exists() or process.poll() is not None, timeout_s=30, what="the daemon's socket")
    if process.poll() is not None:
        raise AssertionError(f"the daemon exited {process.returncode}: {process.stderr.read().decode()}")
    return process


def _stop(process: subprocess.Popen, *, signalled: bool = False) -> tuple[int, str]:
    # A second SIGTERM would hit the default handler during the final flush: send one only.
    if process.poll() is None and not signalled:
        process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    return process.returncode, stderr.decode()


def _start_job(threads: int) -> subprocess.Popen:
    job = subprocess.Popen([sys.executable, "-c", JOB_SCRIPT, str(threads)], stdout=subprocess.PIPE)
    assert job.stdout.readline() == b"ready\n"
    return job


def _attach(server, data_dir, socket_path, key, pid, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        agent_argv("attach", "--experiment", key, "--pid", str(pid), "--socket", str(socket_path)),
        env=agent_env(server, data_dir, **env),
        cwd=str(REPO),
        capture_output=True,
        timeout=60,
    )


def _raw(socket_path: Path, payload: bytes) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(socket_path))
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def _values(experiment: APIExperiment, name: str) -> list:
    return [float(point["metricValue"]) for point in experiment.get_metrics(name)]


def _ended(server, key) -> bool:
    return bool(_experiment(server, key).end_server_timestamp)


def test_two_jobs_each_get_their_process_metrics_and_the_shared_host_metrics(local_server, tmp_path, short_dir):
    data_dir = tmp_path / "daemon-data"
    socket_path = short_dir / "daemon.sock"
    daemon = _start_daemon(local_server, data_dir, socket_path)
    job_a, job_b = _start_job(5), _start_job(0)
    try:
        exp_a, exp_b = _experiment(local_server), _experiment(local_server)
        for experiment, job in ((exp_a, job_a), (exp_b, job_b)):
            result = _attach(local_server, tmp_path / "job-data", socket_path, experiment.id, job.pid)
            assert result.returncode == 0, result.stderr.decode()

        for experiment in (exp_a, exp_b):
            wait_for(
                lambda experiment=experiment: (
                    _values(experiment, "sys.proc.threads")
                    and _values(experiment, "sys.ram.total")
                    and _values(experiment, "sys.cpu.percent.avg")
                ),
                timeout_s=30,
                what="metrics in each experiment",
            )
        # Each experiment holds its own job's process tree: 1 + 5 threads against 1.
        assert set(_values(exp_a, "sys.proc.threads")) == {6}
        assert set(_values(exp_b, "sys.proc.threads")) == {1}
        # The host metrics are shared: same machine, same total memory in both.
        assert set(_values(exp_a, "sys.ram.total")) == set(_values(exp_b, "sys.ram.total"))
        assert not _ended(local_server, exp_a.id) and not _ended(local_server, exp_b.id)

        # A registration ends with its process: A's experiment gets its end time, B goes on.
        job_a.kill()
        job_a.wait()
        wait_for(lambda: _ended(local_server, exp_a.id), timeout_s=30, what="experiment A's end time")
        count_b = len(_values(exp_b, "sys.proc.threads"))
        wait_for(lambda: len(_values(exp_b, "sys.proc.threads")) > count_b, timeout_s=30, what="B still fed")
        assert not _ended(local_server, exp_b.id)
        job_b.kill()
        job_b.wait()
        wait_for(lambda: _ended(local_server, exp_b.id), timeout_s=30, what="experiment B's end time")
    finally:
        for job in (job_a, job_b):
            if job.poll() is None:
                job.kill()
                job.wait()
        status, stderr = _stop(daemon)
    assert status == 0, stderr
    # The users' key went over the socket only: never into the daemon's log or its spool files.
    assert local_server.api_key not in stderr
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert local_server.api_key.encode() not in path.read_bytes(), path


def test_monitor_registers_with_a_running_daemon_instead_of_sampling(local_server, tmp_path, short_dir):
    socket_path = short_dir / "daemon.sock"
    daemon = _start_daemon(local_server, tmp_path / "daemon-data", socket_path)
    try:
        experiment = _experiment(local_server)
        script = (
            "import sys, time, comet_agent\n"
            "with comet_agent.monitor(experiment_key=sys.argv[1]) as handle:\n"
            "    print(type(handle).__name__, flush=True)\n"
            "    time.sleep(3)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script, experiment.id],
            capture_output=True,
            timeout=60,
            env=agent_env(local_server, tmp_path / "job-data", COMET_AGENT_DAEMON_SOCKET=str(socket_path)),
            cwd=str(REPO),
        )
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout.decode().strip() == "DaemonRegistration"
        wait_for(lambda: _ended(local_server, experiment.id), timeout_s=30, what="the end time after the block")
        assert _values(experiment, "sys.proc.rss"), "the daemon fed the training process's tree"
        # Nothing was sampled in-process: the job's own data dir holds no spool.
        assert not (tmp_path / "job-data" / "spool").exists()
    finally:
        status, stderr = _stop(daemon)
    assert status == 0, stderr


def test_bad_registrations_are_refused_with_a_reason_and_the_daemon_keeps_serving(local_server, tmp_path, short_dir):
    socket_path = short_dir / "daemon.sock"
    daemon = _start_daemon(local_server, tmp_path / "daemon-data", socket_path, "--registrations-per-minute", "8")
    job = _start_job(0)
    try:
        experiment = _experiment(local_server)
        key = local_server.api_key
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()

        reply = _raw(socket_path, b"this is not json\n")
        assert reply["ok"] is False and "JSON" in reply["error"]
        reply = _raw(socket_path, b'{"op": "attach", "experiment_key": "' + b"x" * 40000 + b'"}\n')
        assert reply["ok"] is False and "longer than" in reply["error"]
        reply = _raw(
            socket_path, json.dumps({"op": "attach", "experiment_key": "short", "pid": job.pid}).encode() + b"\n"
        )
        assert reply["ok"] is False and "experiment_key" in reply["error"]

        result = _attach(local_server, tmp_path / "job-data", socket_path, experiment.id, dead.pid)
        assert result.returncode == 1
        assert f"no process {dead.pid} exists" in result.stderr.decode()

        result = _attach(
            local_server,
            tmp_path / "job-data",
            socket_path,
            experiment.id,
            job.pid,
            COMET_API_KEY="wrong-key-0123456789",
        )
        assert result.returncode == 3, result.stderr.decode()
        assert "wrong-key-0123456789" not in result.stderr.decode()

        # A flood: the per-user limit (8 a minute, 2 used above) refuses the rest, each with the reason.
        replies = [
            _raw(
                socket_path,
                json.dumps({"op": "attach", "experiment_key": "0" * 32, "pid": dead.pid, "api_key": key}).encode()
                + b"\n",
            )
            for _ in range(12)
        ]
        assert all(not reply["ok"] for reply in replies)
        limited = [reply for reply in replies if reply.get("code") == "rate_limited"]
        assert len(limited) == 12 - 6 and "too many registrations" in limited[0]["error"]

        # The daemon still answers, and still serves a job registered before the flood would have been.
        assert _raw(socket_path, b'{"op": "ping"}\n')["ok"] is True
    finally:
        job.kill()
        job.wait()
        status, stderr = _stop(daemon)
    assert status == 0, stderr
    # Logged once per user and reason, not once per attempt.
    assert stderr.count("too many registrations") == 1, stderr
    assert stderr.count("not one JSON object") == 1, stderr
    assert "wrong-key-0123456789" not in stderr and local_server.api_key not in stderr


#: A registration client that needs nothing but the stdlib, so another user can run it with the system Python.
RAW_CLIENT = (
    "import json, socket, sys\n"
    "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(30); s.connect(sys.argv[1])\n"
    "s.sendall(sys.argv[2].encode() + b'\\n'); print(s.makefile('rb').readline().decode().strip())\n"
)


def test_another_users_pid_is_refused(local_server, tmp_path, short_dir):
    socket_path = short_dir / "daemon.sock"
    job = _start_job(0)  # ours
    experiment = _experiment(local_server)
    message = {"op": "attach", "experiment_key": experiment.id, "api_key": local_server.api_key}
    if os.getuid() == 0:
        # As root, act as nobody (with the system Python: our venv may not be theirs to run), and let
        # nobody's group reach the socket; nobody then tries to register root's process.
        import grp
        import pwd

        try:
            nobody = pwd.getpwnam("nobody")
            group = grp.getgrgid(nobody.pw_gid).gr_name
        except KeyError:
            job.kill()
            pytest.skip("no 'nobody' user to act as another user")
        if not os.access("/usr/bin/python3", os.X_OK):
            job.kill()
            pytest.skip("no /usr/bin/python3 to run a client as another user")
        short_dir.chmod(0o711)
        daemon = _start_daemon(local_server, tmp_path / "daemon-data", socket_path, "--socket-group", group)
        target_pid = job.pid
        argv = ["/usr/bin/python3", "-c", RAW_CLIENT, str(socket_path), json.dumps(dict(message, pid=target_pid))]
        caller = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    else:
        daemon = _start_daemon(local_server, tmp_path / "daemon-data", socket_path)
        target_pid = 1  # init belongs to root
        argv = [sys.executable, "-c", RAW_CLIENT, str(socket_path), json.dumps(dict(message, pid=target_pid))]
        caller = {}
    try:
        assert oct(socket_path.stat().st_mode & 0o777) == ("0o660" if caller else "0o600")
        result = subprocess.run(argv, cwd="/", capture_output=True, timeout=60, env={"PATH": "/usr/bin:/bin"}, **caller)
        assert result.returncode == 0, result.stderr.decode()
        reply = json.loads(result.stdout)
        assert reply["ok"] is False and reply["code"] == "not_owner"
        assert f"process {target_pid} belongs to another user" in reply["error"]
        assert _raw(socket_path, b'{"op": "ping"}\n')["ok"] is True
    finally:
        job.kill()
        job.wait()
        status, stderr = _stop(daemon)
    assert status == 0, stderr
    assert "belongs to another user" in stderr and local_server.api_key not in stderr


def _notify_socket(path_or_abstract: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + path_or_abstract[1:] if path_or_abstract.startswith("@") else path_or_abstract)
    sock.settimeout(30)
    return sock


def _receive_until(sock: socket.socket, wanted: str, seen: list) -> list:
    while not any(wanted in message for message in seen):
        seen.append(sock.recv(4096).decode())
    return seen


def test_daemon_sends_ready_watchdog_and_stopping(local_server, tmp_path, short_dir):
    notify_path = str(short_dir / "notify.sock")
    sock = _notify_socket(notify_path)
    daemon = _start_daemon(
        local_server, tmp_path / "data", short_dir / "daemon.sock", NOTIFY_SOCKET=notify_path, WATCHDOG_USEC="600000"
    )
    seen: list = []
    try:
        _receive_until(sock, "READY=1", seen)
        assert f"MAINPID={daemon.pid}" in seen[0]
        pings = 0
        while pings < 3:  # every 0.3 s: half the watchdog timeout
            pings += sock.recv(4096).decode() == "WATCHDOG=1"
        daemon.send_signal(signal.SIGTERM)
        _receive_until(sock, "STOPPING=1", seen)
    finally:
        status, stderr = _stop(daemon, signalled="STOPPING=1" in "".join(seen))
        sock.close()
    assert status == 0, stderr


def test_run_sends_ready_and_stopping_to_an_abstract_socket(local_server, tmp_path):
    name = f"@comet-agent-test-{os.getpid()}-{id(tmp_path)}"
    sock = _notify_socket(name)
    job = _start_job(0)
    experiment = _experiment(local_server)
    agent = subprocess.Popen(
        agent_argv("run", "--experiment", experiment.id, "--pid", str(job.pid), "--no-os-packages", "--no-git"),
        env=agent_env(local_server, tmp_path / "data", NOTIFY_SOCKET=name, WATCHDOG_USEC="600000"),
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    seen: list = []
    try:
        _receive_until(sock, "READY=1", seen)
        _receive_until(sock, "WATCHDOG=1", seen)
        agent.send_signal(signal.SIGTERM)
        _receive_until(sock, "STOPPING=1", seen)
    finally:
        job.kill()
        job.wait()
        status, stderr = _stop(agent, signalled="STOPPING=1" in "".join(seen))
        sock.close()
    assert status == 0, stderr


@pytest.mark.parametrize("command", ["daemon", "run"])
@pytest.mark.parametrize("problem", ["missing", "world-readable"])
def test_an_unusable_credential_file_exits_78_naming_it(local_server, tmp_path, command, problem):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    if problem == "world-readable":
        (credentials / "api-key").write_text(local_server.api_key + "\n")
        (credentials / "api-key").chmod(0o644)
    args = (
        ["daemon", "--socket", str(tmp_path / "d.sock")] if command == "daemon" else ["run", "--experiment", "0" * 32]
    )
    result = subprocess.run(
        agent_argv(*args),
        capture_output=True,
        timeout=60,
        cwd=str(REPO),
        env=agent_env(local_server, tmp_path / "data", CREDENTIALS_DIRECTORY=str(credentials)),
    )
    stderr = result.stderr.decode()
    assert result.returncode == 78, stderr
    assert str(credentials / "api-key") in stderr
    assert ("missing" if problem == "missing" else "readable by other users") in stderr
    assert local_server.api_key not in stderr


def test_a_node_of_a_multi_node_job_gets_its_prefix_through_the_daemon(local_server, tmp_path, short_dir):
    # The job's own environment says it is node 1 of 2 (torchrun's variables): the daemon reads it
    # from /proc/PID/environ, as run and monitor() would, and prefixes the job's system series.
    data_dir = tmp_path / "daemon-data"
    socket_path = short_dir / "daemon.sock"
    daemon = _start_daemon(local_server, data_dir, socket_path)
    env = dict(os.environ, GROUP_RANK="1", WORLD_SIZE="4", LOCAL_WORLD_SIZE="2", LOCAL_RANK="0")
    job = subprocess.Popen([sys.executable, "-c", JOB_SCRIPT, "0"], stdout=subprocess.PIPE, env=env)
    other = _start_job(0)
    try:
        assert job.stdout.readline() == b"ready\n"
        derived, explicit = _experiment(local_server), _experiment(local_server)
        assert _attach(local_server, tmp_path / "job-data", socket_path, derived.id, job.pid).returncode == 0
        result = subprocess.run(
            agent_argv(
                "attach",
                "--experiment",
                explicit.id,
                "--pid",
                str(other.pid),
                "--socket",
                str(socket_path),
                "--node-id",
                "gpu-b07",
            ),
            env=agent_env(local_server, tmp_path / "job-data"),
            cwd=str(REPO),
            capture_output=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr.decode()
        wait_for(lambda: _values(derived, "node1.sys.proc.threads"), timeout_s=30, what="node1's series")
        wait_for(lambda: _values(explicit, "gpu-b07.sys.ram.total"), timeout_s=30, what="gpu-b07's series")
        for experiment in (derived, explicit):
            assert not any(point["metricName"].startswith("sys.") for point in experiment.get_metrics())
        bad = _raw(
            socket_path,
            json.dumps(
                {"op": "attach", "experiment_key": _experiment(local_server).id, "pid": other.pid, "node_id": "a b"}
            ).encode()
            + b"\n",
        )
        assert not bad["ok"] and bad["code"] == "malformed", bad
    finally:
        for process in (job, other):
            process.kill()
            process.wait()
        status, stderr = _stop(daemon)
    assert status == 0, stderr
