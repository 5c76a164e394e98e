"""Item 3: slow clients cannot exhaust the server's connections ("slowloris").

Real loopback sockets against a real ``LocalServer``, with short timeouts so that each attack
lasts a few seconds: 200 connections that trickle their request head, or their body, a byte at
a time. While they do, a normal client's requests still succeed; afterwards the server has
closed every slow connection, and never held more than its cap.
"""

from __future__ import annotations

import logging
import socket
import time

import pytest
import requests

from comet_agent.server.app import LocalServer
from tests.security.raw_http import closed_by_peer, connect, request_head
from tests.support.local_server_http import auth, create_experiment, rest

ATTACKERS = 200
#: Every attack ends within this many seconds, whatever happens.
ATTACK_BUDGET_S = 20.0


def _open_slow_heads(url: str, count: int) -> list[socket.socket]:
    """``count`` connections that each sent the first line of a request and nothing more."""
    sockets = []
    for index in range(count):
        sock = connect(url, timeout_s=5)
        sock.sendall(f"GET /clientlib/isAlive/ver?n={index} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
        sockets.append(sock)
    return sockets


def _trickle(sockets: list[socket.socket], piece: bytes) -> int:
    """Send ``piece`` on every socket still open; returns how many accepted it."""
    alive = 0
    for sock in sockets:
        try:
            sock.sendall(piece)
            alive += 1
        except OSError:
            pass
    return alive


def _normal_client_works(server, experiment_key: str) -> None:
    started = time.monotonic()
    alive = requests.get(server.url + "/clientlib/isAlive/ver", timeout=5)
    write = requests.post(
        rest(server, "write/experiment/log-other"),
        headers=auth(server),
        timeout=5,
        json={"experimentKey": experiment_key, "key": "during-attack", "value": 1},
    )
    assert alive.status_code == 200 and write.status_code == 200, write.text
    assert time.monotonic() - started < 5


def _all_closed(sockets: list[socket.socket], timeout_s: float) -> list[int]:
    """Indices of the sockets the server has not closed within ``timeout_s`` (in total)."""
    deadline = time.monotonic() + timeout_s
    return [i for i, sock in enumerate(sockets) if not closed_by_peer(sock, max(0.01, deadline - time.monotonic()))]


def _close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


@pytest.fixture
def no_errors_logged(caplog):
    caplog.set_level(logging.WARNING)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def test_slow_request_heads_are_closed_and_a_normal_client_gets_through(tmp_path, no_errors_logged):
    """Pass: 200 connections trickling a header line every 0.3 s: a normal client's requests
    answer within 5 s throughout, and the server closes every slow connection within its 2 s
    header timeout (plus slack), having never held more than its 1024 default cap."""
    with LocalServer(tmp_path / "heads", api_keys=["slow-heads-key"], header_timeout_s=2.0) as server:
        experiment_key = create_experiment(server, key="slow-heads-key")
        attackers = _open_slow_heads(server.url, ATTACKERS)
        try:
            started = time.monotonic()
            while time.monotonic() - started < 3.0:
                _trickle(attackers, b"X-Slow: 1\r\n")
                _normal_client_works(server, experiment_key)
                assert server.open_connections <= ATTACKERS + 2
                time.sleep(0.3)
            still_open = _all_closed(attackers, ATTACK_BUDGET_S - 3.0)
            assert not still_open, f"{len(still_open)} slow connections still open"
        finally:
            _close_all(attackers)
        assert server.connections.closed_slow >= ATTACKERS
        _normal_client_works(server, experiment_key)


def test_beyond_the_cap_the_longest_waiting_connection_makes_room(tmp_path, no_errors_logged):
    """Pass: with a cap of 32 connections and 200 slow heads open (long timeouts, so only the
    cap protects the server), the server holds at most 32 and a normal client still gets
    through every time; the attackers were evicted oldest first."""
    with LocalServer(tmp_path / "cap", api_keys=["cap-key"], max_connections=32, header_timeout_s=60.0) as server:
        experiment_key = create_experiment(server, key="cap-key")
        attackers = _open_slow_heads(server.url, ATTACKERS)
        try:
            for _ in range(5):
                _trickle(attackers, b"X-Slow: 1\r\n")
                _normal_client_works(server, experiment_key)
                assert server.open_connections <= 32
            # The first ones were evicted first (oldest waiting), the last 31 or so are still there.
            assert not _all_closed(attackers[:100], 5.0)
        finally:
            _close_all(attackers)
        assert server.connections.evicted >= ATTACKERS - 32


def test_a_body_trickled_below_the_minimum_rate_is_cut(tmp_path, no_errors_logged):
    """Pass: 50 authenticated writes announcing 1 MB and sending a byte every 0.2 s are closed
    once past the 1.5 s grace (a byte per 0.2 s is far below 16 KiB/s); a normal client's
    writes go through meanwhile and nothing is logged as an error."""
    with LocalServer(tmp_path / "bodies", api_keys=["body-key"], body_timeout_s=1.5) as server:
        experiment_key = create_experiment(server, key="body-key")
        attackers = []
        for _ in range(50):
            sock = connect(server.url, timeout_s=5)
            sock.sendall(
                request_head(
                    "POST",
                    "/api/rest/v2/write/experiment/log-other",
                    {"Authorization": "body-key", "Content-Type": "application/json", "Content-Length": str(10**6)},
                )
                + b'{"experimentKey": "'
            )
            attackers.append(sock)
        try:
            started = time.monotonic()
            while time.monotonic() - started < 2.5:
                _trickle(attackers, b"a")
                _normal_client_works(server, experiment_key)
                time.sleep(0.2)
            still_open = _all_closed(attackers, 8.0)
            assert not still_open, f"{len(still_open)} slow bodies still open"
        finally:
            _close_all(attackers)
        others = requests.get(
            rest(server, "experiment/log-other"),
            params={"experimentKey": experiment_key},
            headers=auth(server, "body-key"),
            timeout=10,
        ).json()["values"]
        assert [o["name"] for o in others] == ["during-attack"]


def test_a_slow_but_steady_upload_is_not_cut(tmp_path):
    """Pass: a body sent in 64 KiB pieces every 0.25 s (256 KiB/s, above the minimum rate)
    for 3 s, past the 1 s grace, is received whole and stored."""
    with LocalServer(tmp_path / "steady", api_keys=["steady-key"], body_timeout_s=1.0) as server:
        experiment_key = create_experiment(server, key="steady-key")
        text = "y" * (12 * 64 * 1024)
        body = ('{"experimentKey": "%s", "key": "steady", "value": "%s"}' % (experiment_key, text)).encode()
        pieces = [body[i : i + 64 * 1024] for i in range(0, len(body), 64 * 1024)]
        with connect(server.url, timeout_s=10) as sock:
            sock.sendall(
                request_head(
                    "POST",
                    "/api/rest/v2/write/experiment/log-other",
                    {
                        "Authorization": "steady-key",
                        "Content-Type": "application/json",
                        "Content-Length": str(len(body)),
                    },
                )
            )
            for piece in pieces:
                sock.sendall(piece)
                time.sleep(0.25)
            reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        others = requests.get(
            rest(server, "experiment/log-other"),
            params={"experimentKey": experiment_key},
            headers=auth(server, "steady-key"),
            timeout=10,
        ).json()["values"]
        assert others[0]["valueCurrent"] == text
