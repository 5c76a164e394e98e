"""The recording server itself (tests/support/recording_server.py), briefly: it records, answers and misbehaves as scripted."""

from __future__ import annotations

import gzip
import http.client
import json
import socket

import pytest
import requests

from tests.support.recording_server import Fault, RecordingServer


@pytest.fixture
def server():
    with RecordingServer() as running:
        yield running


def test_records_method_path_query_headers_and_json(server):
    reply = requests.post(
        server.url + "/api/rest/v2/write/experiment/tags?experimentKey=k&flag=True",
        json={"addedTags": ["a"]},
        headers={"X-Test": "1"},
        timeout=5,
    )
    assert reply.status_code == 200 and reply.json() == {"msg": "Saved"}
    assert reply.headers["Content-Type"] == "application/json"
    (recorded,) = server.requests
    assert (recorded.method, recorded.path) == ("POST", "/api/rest/v2/write/experiment/tags")
    assert recorded.query == {"experimentKey": ["k"], "flag": ["True"]}
    assert recorded.header("X-Test") == "1"
    assert recorded.json == {"addedTags": ["a"]}


def test_gzip_bodies_are_decoded(server):
    body = gzip.compress(json.dumps({"values": [1, 2]}).encode())
    requests.post(
        server.url + "/clientlib/batch/logger/experiment/metric",
        data=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        timeout=5,
    )
    (recorded,) = server.requests
    assert recorded.was_gzipped and recorded.json == {"values": [1, 2]}


def test_multipart_parts_are_parsed(server):
    requests.post(
        server.url + "/api/rest/v2/write/experiment/upload-asset",
        files={"file": ("name.bin", b"\x00\x01binary"), "metadata": (None, '{"a":1}')},
        timeout=5,
    )
    (recorded,) = server.requests
    assert recorded.parts["file"].filename == "name.bin"
    assert recorded.parts["file"].content == b"\x00\x01binary"
    assert recorded.parts["metadata"].filename is None
    assert recorded.parts["metadata"].content == b'{"a":1}'


def test_default_replies_have_comet_shapes(server):
    details = requests.get(server.url + "/api/rest/v2/experiment/system-details?experimentKey=k", timeout=5).json()
    assert details["installedPackages"] == [] and details["hostname"] is None
    assert requests.get(server.url + "/clientlib/isAlive/ver", timeout=5).json() == {"version": "3.99.0"}
    meta = requests.get(server.url + "/api/rest/v2/experiment/metadata?experimentKey=abc", timeout=5).json()
    assert meta["experimentKey"] == "abc"
    assert requests.get(server.url + "/api/rest/v2/unknown", timeout=5).json() == {}


def test_faults_apply_in_order_for_the_given_count_and_path(server):
    server.fail_next(2, 503, {"Retry-After": "1"}, path="/a")
    server.add_fault(Fault.html_error_page(502))
    first = requests.get(server.url + "/b", timeout=5)  # not /a: takes the HTML fault
    assert first.status_code == 502 and first.headers["Content-Type"] == "text/html"
    statuses = [requests.get(server.url + "/a", timeout=5).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert len(server.requests) == 4


def test_garbage_and_close_connection_faults(server):
    server.add_fault(Fault.garbage())
    with pytest.raises(ValueError):
        requests.get(server.url + "/x", timeout=5).json()
    server.add_fault(Fault(close_connection=True))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/y")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        conn.getresponse()
    conn.close()


def test_delay_fault_makes_a_read_timeout(server):
    server.add_fault(Fault(delay_s=5.0))
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(server.url + "/slow", timeout=(2, 0.2))


def test_routes_override_replies(server):
    server.set_route("GET", "/r", (201, {"X-A": "b", "Content-Type": "text/plain"}, b"hi"))
    server.set_route("GET", "/c", lambda request: {"echo": request.query_single})
    reply = requests.get(server.url + "/r", timeout=5)
    assert (reply.status_code, reply.headers["X-A"], reply.text) == (201, "b", "hi")
    assert requests.get(server.url + "/c?q=1", timeout=5).json() == {"echo": {"q": "1"}}


def test_stop_releases_the_port():
    server = RecordingServer().start()
    port = server.port
    server.stop()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
