"""sd_notify over a real AF_UNIX datagram socket made by the test (path and abstract forms)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path

import pytest

from comet_agent.sdnotify import Notifier, WatchdogPinger, watchdog_interval_s


@pytest.fixture
def receiver():
    directory = Path(tempfile.mkdtemp(prefix="sdn-", dir="/tmp"))  # AF_UNIX paths: at most 108 bytes
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = directory / "notify"
    sock.bind(str(path))
    sock.settimeout(10)
    try:
        yield str(path), sock
    finally:
        sock.close()
        shutil.rmtree(directory, ignore_errors=True)


def test_ready_stopping_and_status_reach_a_path_socket(receiver):
    path, sock = receiver
    notifier = Notifier(path)
    assert notifier.ready(status="listening")
    assert sock.recv(4096).decode().split("\n") == ["READY=1", f"MAINPID={os.getpid()}", "STATUS=listening"]
    assert notifier.status("two\nlines")
    assert sock.recv(4096) == b"STATUS=two"
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"


def test_an_abstract_socket_is_named_with_a_leading_at():
    name = f"comet-agent-sdnotify-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(10)
    try:
        assert Notifier.from_environment({"NOTIFY_SOCKET": "@" + name}).watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
    finally:
        sock.close()


def test_without_notify_socket_everything_is_a_no_op():
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert notifier.ready() is False and notifier.watchdog_if_due() is False and notifier.stopping() is False


def test_a_vanished_socket_returns_false_instead_of_raising(tmp_path):
    assert Notifier(str(tmp_path / "gone")).ready() is False


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "PID"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "sixty"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
    ],
)
def test_watchdog_interval(environ, expected):
    environ = {k: (str(os.getpid()) if v == "PID" else v) for k, v in environ.items()}
    assert watchdog_interval_s(environ) == expected


def test_watchdog_pings_at_half_the_timeout_on_an_injected_clock(receiver):
    path, sock = receiver
    now = [100.0]
    notifier = Notifier(path, watchdog_s=10.0, clock=lambda: now[0])
    assert notifier.watchdog_if_due()  # the first one goes at once
    assert not notifier.watchdog_if_due()  # not due yet
    now[0] += 4.9
    assert not notifier.watchdog_if_due()
    now[0] += 0.2
    assert notifier.watchdog_if_due()
    assert [sock.recv(4096), sock.recv(4096)] == [b"WATCHDOG=1", b"WATCHDOG=1"]


def test_the_pinger_pings_only_while_healthy(receiver):
    path, sock = receiver
    checks = []
    answers = iter([True] + [False] * 1000)
    asked = threading.Event()

    def healthy():
        checks.append(1)
        if len(checks) >= 4:
            asked.set()
        return next(answers)

    pinger = WatchdogPinger(Notifier(path, watchdog_s=0.02), healthy).start()
    try:
        assert asked.wait(10), "the pinger stopped asking"
    finally:
        pinger.stop()
    sock.setblocking(False)
    received = []
    while True:
        try:
            received.append(sock.recv(4096))
        except BlockingIOError:
            break
    # One healthy answer, one ping; the unhealthy ones sent nothing (a hung sampler gets restarted).
    assert received == [b"WATCHDOG=1"]
