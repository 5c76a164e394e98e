"""`comet-agent run` as a subprocess against the local server, read back through both clients."""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import sys
import time

import pytest

from comet_agent.api import API, APIExperiment
from comet_agent.server.app import LocalServer
from tests.e2e.agent_support import (
    experiment_key_from,
    run_agent,
    spool_entries,
    start_agent,
    wait_for,
)
from tests.support.recording_server import RecordingServer

pytestmark = pytest.mark.e2e

FAST = {"heartbeat_ms": 1000, "cpu_interval_ms": 1000, "gpu_interval_ms": 1000}


def _our_api(server) -> API:
    return API(api_key=server.api_key, url_override=server.clientlib_url)


def _new_experiment(server) -> APIExperiment:
    return APIExperiment(api=_our_api(server), workspace="ws", project_name="agent")


def _cpu_timestamps(experiment) -> list[int]:
    return [p["timestamp"] for p in experiment.get_metrics("sys.cpu.percent.avg")]


def _spooled_cpu_timestamps(data_dir, experiment_key) -> list[int]:
    """Sample times of the ``sys.cpu.percent.avg`` points waiting in the spool (each push's metric batch)."""
    return [
        point["timestamp"]
        for endpoint, payload, _ in spool_entries(data_dir, experiment_key)
        if endpoint == "metrics_batch"
        for point in json.loads(payload)["values"]
        if point["metricName"] == "sys.cpu.percent.avg"
    ]


def test_wrapped_command_output_exit_code_and_snapshot_round_trip(local_server, tmp_path):
    """The child's stdout/stderr pass through unchanged and land in the experiment; its exit code is ours."""
    local_server.set_intervals(**FAST)
    script = (
        "import sys, time\n"
        "print('out line 1'); sys.stderr.write('err line 1\\n'); sys.stderr.flush()\n"
        "sys.stdout.buffer.write(b'bytes \\xff\\xfe not utf-8\\n'); sys.stdout.flush()\n"
        "time.sleep(1.5)\n"
        "print('out line 2')\n"
        "sys.exit(3)\n"
    )
    result = run_agent(
        local_server,
        tmp_path / "data",
        "run",
        "--workspace",
        "ws",
        "--project",
        "wrapped",
        "--",
        sys.executable,
        "-c",
        script,
        "--api-key",
        "hunter2-not-a-real-key",
    )
    assert result.returncode == 3, result.stderr.decode()
    assert result.stdout == b"out line 1\nbytes \xff\xfe not utf-8\nout line 2\n"
    assert b"err line 1\n" in result.stderr
    key = experiment_key_from(result.stderr.decode())

    ours = APIExperiment(api=_our_api(local_server), previous_experiment=key)
    output = ours.get_output()
    assert "out line 1" in output and "out line 2" in output and "err line 1" in output
    assert "bytes \ufffd\ufffd not utf-8" in output  # undecodable bytes are replaced visibly
    details = ours.get_system_details()
    assert details["hostname"] == socket.gethostname()
    assert details["command"][:2] == [sys.executable, "-c"]
    assert "hunter2-not-a-real-key" not in json.dumps(details)
    assert details["installedPackages"], "the job's interpreter packages were recorded"
    others = {o["name"]: o["valueCurrent"] for o in ours.get_others_summary()}
    assert others["comet_agent.exit_code"] == "3"
    assert "hunter2-not-a-real-key" not in others["comet_agent.command"]
    names = {m["metricName"] for m in ours.get_metrics()}
    assert {"sys.cpu.percent.avg", "sys.ram.used", "sys.load.avg", "sys.proc.rss"} <= names
    assert ours.end_server_timestamp and ours.start_server_timestamp
    assert ours.end_server_timestamp >= ours.start_server_timestamp

    comet_ml = pytest.importorskip("comet_ml")
    os.environ["COMET_URL_OVERRIDE"] = local_server.clientlib_url
    os.environ["COMET_API_KEY"] = local_server.api_key
    try:
        theirs = comet_ml.API(cache=False).get_experiment_by_key(key)
        assert theirs.get_system_details()["hostname"] == details["hostname"]
        assert theirs.get_output() == output
        assert {m["metricName"] for m in theirs.get_metrics()} == names
    finally:
        del os.environ["COMET_URL_OVERRIDE"], os.environ["COMET_API_KEY"]


def test_push_rate_follows_the_intervals_the_server_recommends(local_server, tmp_path):
    """update_status() answers 1 s, then 3 s: the gaps between CPU pushes follow from the next tick."""
    # Sampling slower than any push: each push takes its own sample, so point times are push times.
    local_server.set_intervals(**FAST, sample_interval_ms=3_600_000)
    experiment = _new_experiment(local_server)
    agent = start_agent(local_server, tmp_path / "data", "run", "--experiment", experiment.id)
    try:
        wait_for(lambda: len(_cpu_timestamps(experiment)) >= 5, 30, what="five pushes at 1 s")
        local_server.set_intervals(cpu_interval_ms=3000)
        changed_at_ms = int(time.time() * 1000)
        wait_for(
            lambda: len([t for t in _cpu_timestamps(experiment) if t > changed_at_ms + 2000]) >= 3,
            40,
            what="three pushes at 3 s",
        )
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
    stamps = _cpu_timestamps(experiment)
    before = [b - a for a, b in zip(stamps, stamps[1:]) if b < changed_at_ms]
    after = [b - a for a, b in zip(stamps, stamps[1:]) if a > changed_at_ms + 2000]
    assert statistics.median(before) == pytest.approx(1000, abs=300)
    assert statistics.median(after) == pytest.approx(3000, abs=500)
    assert agent.returncode == 0


def test_outage_of_30_seconds_delivers_every_sample_once_in_order(local_server, tmp_path):
    """The server is stopped for 30 s mid-run and restarted: no sample is lost or duplicated, order holds."""
    local_server.set_intervals(**FAST)
    experiment = _new_experiment(local_server)
    port, key, data_dir = local_server.port, local_server.api_key, local_server.data_dir
    agent = start_agent(local_server, tmp_path / "data", "run", "--experiment", experiment.id)
    restarted = None
    try:
        wait_for(lambda: len(_cpu_timestamps(experiment)) >= 3, 30, what="pushes before the outage")
        local_server.stop()
        outage_started_ms = int(time.time() * 1000)
        time.sleep(30)
        assert len(spool_entries(tmp_path / "data", experiment.id)) >= 20, "the agent spooled during the outage"
        restarted = LocalServer(data_dir, port=port, api_keys=[key]).start()
        restarted.set_intervals(**FAST)
        wait_for(lambda: not spool_entries(tmp_path / "data", experiment.id), 60, what="the spool to drain")
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        stamps = _cpu_timestamps(
            APIExperiment(api=API(api_key=key, url_override=restarted.clientlib_url), previous_experiment=experiment.id)
        )
    finally:
        if agent.poll() is None:
            agent.kill()
        if restarted is not None:
            restarted.stop()
    assert stamps == sorted(stamps), "delivered in order"
    assert len(stamps) == len(set(stamps)), "nothing delivered twice"
    during = [t for t in stamps if outage_started_ms < t < outage_started_ms + 30_000]
    assert len(during) >= 25, f"samples taken during the outage arrived ({len(during)})"
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert max(gaps) < 2500, f"no hole in the series (largest gap {max(gaps)} ms)"


def test_sigkill_then_restart_replays_the_spool(local_server, tmp_path):
    """Killed with SIGKILL while the server is away, the agent's spool replays on the next start."""
    local_server.set_intervals(**FAST)
    experiment = _new_experiment(local_server)
    port, key, data_dir = local_server.port, local_server.api_key, local_server.data_dir
    local_server.stop()
    agent = start_agent(local_server, tmp_path / "data", "run", "--experiment", experiment.id)
    restarted = None
    try:
        # The server is down: the agent runs on and spools, snapshot included.
        wait_for(
            lambda: any(e[0] == "system_details" for e in spool_entries(tmp_path / "data", experiment.id)),
            30,
            what="the snapshot in the spool while the server is down",
        )
        assert agent.poll() is None, agent.stderr.read().decode()
        restarted = LocalServer(data_dir, port=port, api_keys=[key]).start()
        restarted.set_intervals(**FAST)
        # The same agent reaches the server once it is back (its heartbeat, then the sender).
        wait_for(lambda: len(_cpu_timestamps(experiment)) >= 2, 60, what="first pushes")
        restarted.stop()  # the server goes away again; the agent spools
        wait_for(
            lambda: len(_spooled_cpu_timestamps(tmp_path / "data", experiment.id)) >= 3,
            30,
            what="cpu samples in the spool",
        )
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(10)
        pending = _spooled_cpu_timestamps(tmp_path / "data", experiment.id)
        assert len(pending) >= 3
        restarted = LocalServer(data_dir, port=port, api_keys=[key]).start()
        restarted.set_intervals(**FAST)
        agent = start_agent(restarted, tmp_path / "data", "run", "--experiment", experiment.id)
        wait_for(lambda: all(t in set(_cpu_timestamps(experiment)) for t in pending), 60, what="the replay")
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        stamps = _cpu_timestamps(experiment)
        details = experiment.get_system_details()
    finally:
        if agent.poll() is None:
            agent.kill()
        if restarted is not None:
            restarted.stop()
    assert len(stamps) == len(set(stamps))
    assert set(pending) <= set(stamps)
    assert details["hostname"] == socket.gethostname(), "the snapshot spooled before the first failure arrived"


@pytest.mark.parametrize("case", ["wrong key", "unknown experiment", "server down"])
def test_a_bad_server_side_never_stops_the_job(local_server, tmp_path, case):
    """The job runs and its exit status is its own; one warning says what happens and where the data waits."""
    experiment = _new_experiment(local_server)
    args = [
        "run",
        "--stop-timeout",
        "1",
        "--experiment",
        experiment.id,
        "--",
        sys.executable,
        "-c",
        "import sys; print('ran'); sys.exit(7)",
    ]
    env = {}
    if case == "wrong key":
        env["COMET_API_KEY"] = "WRONG-canary-key-0123456789"
    elif case == "unknown experiment":
        args[4] = "0" * 32
    else:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free_port = probe.getsockname()[1]
        env["COMET_URL_OVERRIDE"] = f"http://127.0.0.1:{free_port}/clientlib/"
    result = run_agent(local_server, tmp_path / "data", *args, **env)
    stderr = result.stderr.decode()
    assert result.returncode == 7, stderr
    assert result.stdout == b"ran\n"
    warnings = [line for line in stderr.splitlines() if "cannot reach experiment" in line]
    assert len(warnings) == 1, stderr
    assert "comet-agent flush" in warnings[0] and str(tmp_path / "data" / "spool") in warnings[0]
    assert "WRONG-canary-key-0123456789" not in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("case", ["unwritable data dir", "no such command"])
def test_bad_local_input_gives_one_clear_line_and_a_distinct_exit_status(local_server, tmp_path, case):
    experiment = _new_experiment(local_server)
    args = ["run", "--experiment", experiment.id, "--", sys.executable, "-c", "print('ran')"]
    data_dir = tmp_path / "data"
    if case == "unwritable data dir":
        blocker = tmp_path / "a-file"
        blocker.write_text("x")
        data_dir = blocker / "data"
        expected, says = 78, "data directory"
    else:
        args[-3:] = ["/no/such/program-xyz"]
        expected, says = 127, "cannot run"
    result = run_agent(local_server, data_dir, *args)
    stderr = result.stderr.decode()
    assert result.returncode == expected, stderr
    assert says in stderr
    assert b"ran" not in result.stdout
    assert "Traceback" not in stderr


def test_status_shows_what_a_running_agent_does(local_server, tmp_path):
    local_server.set_intervals(**FAST)
    experiment = _new_experiment(local_server)
    agent = start_agent(
        local_server, tmp_path / "data", "run", "--experiment", experiment.id, "--sample-interval", "0.5"
    )
    try:

        def running_status():
            result = run_agent(local_server, tmp_path / "data", "status", "--json")
            statuses = json.loads(result.stdout or b"[]")
            return [s for s in statuses if s.get("last_success_ms")]

        (status,) = wait_for(running_status, 30, what="a status with a delivery")
        assert status["experiment_key"] == experiment.id
        assert status["intervals_ms"] == {"heartbeat": 1000, "cpu": 1000, "gpu": 1000}
        assert status["sample_interval_s"] == 0.5
        assert status["spool_depth"] >= 0 and status["dropped_total"] == 0
        text = run_agent(local_server, tmp_path / "data", "status").stdout.decode()
        assert (
            experiment.id in text and "records waiting" in text and "sampled every 500 ms, every sample pushed" in text
        )
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
    assert json.loads(run_agent(local_server, tmp_path / "data", "status", "--json").stdout) == []


def test_server_down_at_start_then_up_then_flush(local_server, tmp_path):
    """A user with only a key and a URL, the server down: the job runs, the agent chooses the key,
    and `comet-agent flush` later creates the experiment with the run's own times and data."""
    port, key, data_dir = local_server.port, local_server.api_key, local_server.data_dir
    local_server.stop()
    result = run_agent(
        local_server, tmp_path / "data", "run", "--stop-timeout", "1", "--", sys.executable, "-c", "print('trained')"
    )
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert result.stdout == b"trained\n"
    experiment_key = experiment_key_from(stderr)
    waiting = spool_entries(tmp_path / "data", experiment_key)
    started_ms = next(json.loads(p)["timestamp_ms"] for e, p, _ in waiting if e == "start_time")
    cpu_stamps = _spooled_cpu_timestamps(tmp_path / "data", experiment_key)
    assert cpu_stamps, "samples taken while the server was down wait in the spool"
    restarted = LocalServer(data_dir, port=port, api_keys=[key]).start()
    try:
        flushed = run_agent(restarted, tmp_path / "data", "flush")
        assert flushed.returncode == 0, flushed.stderr.decode()
        assert not spool_entries(tmp_path / "data", experiment_key)
        experiment = APIExperiment(
            api=API(api_key=key, url_override=restarted.clientlib_url), previous_experiment=experiment_key
        )
        assert experiment.get_system_details()["hostname"] == socket.gethostname()
        assert experiment.start_server_timestamp == started_ms, "the run's own start, not the flush time"
        assert experiment.end_server_timestamp >= started_ms
        assert set(cpu_stamps) <= set(_cpu_timestamps(experiment)), "samples keep their original timestamps"
    finally:
        restarted.stop()


def test_a_real_run_renders_as_an_experiment_page(local_server, tmp_path):
    """The page of an experiment written by `comet-agent run` shows every section and charts with data."""
    from tests.browser.pages_support import check_experiment_page, require_chromium

    require_chromium()
    local_server.set_intervals(**FAST)
    result = run_agent(
        local_server,
        tmp_path / "data",
        "run",
        "--workspace",
        "ws",
        "--project",
        "pages",
        "--sample-interval",
        "0.25",
        "--",
        sys.executable,
        "examples/train.py",
        "--steps",
        "400",
    )
    assert result.returncode == 0, result.stderr.decode()
    key = experiment_key_from(result.stderr.decode())
    # The README's screenshot is the recorded 64-core run (tests/browser/test_browser_charts.py).
    check = check_experiment_page(local_server, key, tmp_path)
    assert check.missing_sections == [], check.sections
    assert check.empty_charts == []
    assert not check.pwned
    rendered = {name for chart in check.charts.values() for name in chart["series"]}
    assert {"sys.cpu.percent.avg", "sys.ram.used", "sys.proc.cpu.percent"} <= rendered
    assert "step 400 loss" in check.text, "the captured output is on the page"


def test_the_first_sample_is_pushed_before_the_static_snapshot_starts(tmp_path):
    """Rates are primed at start and the first push follows a short window; the static snapshot
    begins only once that push is spooled, so the sender, which keeps spool order, delivers the
    first sample (with its rates) before the system details."""
    with RecordingServer() as server:
        server.api_key = "first-sample-key-0123456789"  # type: ignore[attr-defined]
        agent = start_agent(
            server,
            tmp_path / "data",
            "run",
            "--experiment",
            "c" * 32,
            "--no-os-packages",
            "--",
            sys.executable,
            "-c",
            "import time; time.sleep(60)",
        )
        try:
            wait_for(lambda: server.requests_to("write/experiment/system-details"), 30, what="the static snapshot")
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(30)
        paths = [request.path for request in server.requests]
        first_batch = paths.index("/clientlib/batch/logger/experiment/metric")
        first_details = next(i for i, path in enumerate(paths) if path.endswith("write/experiment/system-details"))
        first_push = server.requests[first_batch].json["values"]
    assert first_batch < first_details, paths
    names = {point["metricName"] for point in first_push}
    assert {"sys.cpu.percent.avg", "sys.proc.cpu.percent", "sys.ram.used"} <= names, "the first push carries rates"


def test_a_watching_run_ends_when_its_process_exits_and_at_once_on_a_signal(local_server, tmp_path):
    """`run --pid` and a bare `run` wait in one long wait (no polling): the watched process's exit
    and SIGTERM/SIGINT each end that wait at once."""
    import subprocess

    watched = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)"])
    experiment = _new_experiment(local_server)
    agent = start_agent(
        local_server, tmp_path / "data", "run", "--experiment", experiment.id, "--pid", str(watched.pid)
    )
    try:
        watched.wait(30)
        ended = time.monotonic()
        assert agent.wait(30) == 0
        assert time.monotonic() - ended < 5.0  # the exit is noticed by the 0.5 s watch, not an hour later
    finally:
        if agent.poll() is None:
            agent.kill()
    for sig in (signal.SIGTERM, signal.SIGINT):
        fresh = _new_experiment(local_server)  # its first push is this agent's: the handlers are in place
        bare = start_agent(local_server, tmp_path / f"data-{sig}", "run", "--experiment", fresh.id)
        try:
            wait_for(lambda fresh=fresh: _cpu_timestamps(fresh), 30, what="a first push")
            sent = time.monotonic()
            bare.send_signal(sig)
            assert bare.wait(30) == 0
            assert time.monotonic() - sent < 3.0
        finally:
            if bare.poll() is None:
                bare.kill()
