"""Item 4: a caller the server does not know yet cannot make it read or parse a large body.

The key is checked from ``Authorization`` before a body is read; a clientlib body that carries
the key itself (``apiKey``) is read only up to ``UNAUTHENTICATED_BODY_BYTES``; a known caller's
JSON body is capped per endpoint (``json_body_limit``), uploads at ``--max-upload-mb``.

Each attack announces (or streams) 40 MB and sends only a little: the 401/413 must come back
while the rest was never sent, which shows the server did not wait for it.
"""

from __future__ import annotations

import gzip
import json

import pytest
import requests

from comet_agent.server.app import LocalServer
from comet_agent.server.rest.common import UNAUTHENTICATED_BODY_BYTES
from tests.security.raw_http import connect, read_reply, request_head
from tests.support.local_server_http import assert_comet_error, auth, create_experiment, rest

FORTY_MB = 40 * 2**20

#: Endpoints whose body may carry the API key (``apiKey``), as the live SDK's clientlib calls do.
BODY_KEY_PATHS = (
    "/clientlib/batch/logger/experiment/metric",
    "/clientlib/batch/logger/experiment/parameter",
    "/clientlib/tags/add-tags-to-experiment",
    "/clientlib/logger/add/run",
    "/clientlib/logger/get/run",
    "/clientlib/status-report/update",
    "/clientlib/notification/experiment",
    "/clientlib/rest/v2/write/experiment/output",
)
#: Endpoints that take the key from ``Authorization`` only.
HEADER_KEY_PATHS = (
    "/api/rest/v2/write/experiment/metric",
    "/api/rest/v2/write/experiment/system-details",
    "/api/rest/v2/write/experiment/create",
    "/clientlib/asset/upload",
    "/local/admin/intervals",
)


def _body_prefix(api_key: str, size: int) -> bytes:
    """The start of a JSON body carrying a *valid* key, padded to ``size`` bytes (never finished)."""
    start = json.dumps({"apiKey": api_key, "experimentKey": "0" * 32}).encode()[:-1] + b', "values": ["'
    return start + b"x" * (size - len(start))


@pytest.mark.parametrize("path", BODY_KEY_PATHS)
def test_a_body_announced_at_40_mb_without_a_header_key_is_refused_before_it_is_read(local_server, path):
    """Pass: no Authorization header, Content-Length 40 MB, 128 KiB sent (with a valid apiKey in
    it): a Comet 401 arrives at once, naming the header; the other 39.9 MB were never needed."""
    with connect(local_server.url) as sock:
        sock.sendall(request_head("POST", path, {"Content-Type": "application/json", "Content-Length": str(FORTY_MB)}))
        sock.sendall(_body_prefix(local_server.api_key, 128 * 1024))
        reply = read_reply(sock, timeout_s=10)
    assert reply.status == 401 and reply.headers["content-type"] == "application/json"
    assert "Authorization" in reply.json()["msg"]
    assert local_server.api_key.encode() not in reply.body


@pytest.mark.parametrize("path", BODY_KEY_PATHS[:3])
def test_a_chunked_body_without_a_header_key_is_read_only_up_to_the_small_limit(local_server, path):
    """Pass: the same attack without a declared length (chunked): the server stops reading once
    the body passes ``UNAUTHENTICATED_BODY_BYTES`` and answers 401 while the sender still holds
    most of its 40 MB."""
    chunk = _body_prefix(local_server.api_key, 4 * UNAUTHENTICATED_BODY_BYTES)
    with connect(local_server.url) as sock:
        sock.sendall(request_head("POST", path, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}))
        sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        reply = read_reply(sock, timeout_s=10)
    assert reply.status == 401


@pytest.mark.parametrize("path", HEADER_KEY_PATHS)
def test_a_wrong_header_key_gets_401_before_a_40_mb_body(local_server, path):
    """Pass: a wrong key in Authorization with a 40 MB body announced: 401 with nothing read."""
    content_type = "multipart/form-data; boundary=x" if "upload" in path else "application/json"
    with connect(local_server.url) as sock:
        sock.sendall(
            request_head(
                "POST",
                path + "?experimentKey=" + "0" * 32,
                {"Authorization": "not-a-key", "Content-Type": content_type, "Content-Length": str(FORTY_MB)},
            )
        )
        sock.sendall(b"{" + b" " * 65536)
        reply = read_reply(sock, timeout_s=10)
    assert reply.status == 401


def test_a_known_callers_json_is_capped_per_endpoint_even_gzipped(tmp_path):
    """Pass: with a 1 MiB limit, a 2 MiB JSON body (declared, or arriving as 20 KiB of gzip that
    inflates past it) is a Comet 413; a body under the limit, sent with the key in the header or
    (small) in the body alone, is accepted."""
    with LocalServer(tmp_path / "capped", api_keys=["capped-key"], max_upload_bytes=2**20) as server:
        experiment_key = create_experiment(server, key="capped-key")
        url = server.url + "/clientlib/batch/logger/experiment/metric"
        big = json.dumps(
            {
                "experimentKey": experiment_key,
                "values": [{"metricName": "m", "metricValue": 1, "note": "x" * 1000} for _ in range(2048)],
            }
        ).encode()
        declared = requests.post(
            url, data=big, headers={"Authorization": "capped-key", "Content-Type": "application/json"}, timeout=30
        )
        assert_comet_error(declared, 413)
        bomb = gzip.compress(big)
        assert len(bomb) < 64 * 1024
        inflated = requests.post(
            url,
            data=bomb,
            headers={"Authorization": "capped-key", "Content-Encoding": "gzip", "Content-Type": "application/json"},
            timeout=30,
        )
        assert_comet_error(inflated, 413)
        small = {"experimentKey": experiment_key, "values": [{"metricName": "m", "metricValue": 1}]}
        assert requests.post(url, json=small, headers={"Authorization": "capped-key"}, timeout=30).status_code == 200
        in_body = requests.post(url, json={**small, "apiKey": "capped-key"}, timeout=30)
        assert in_body.status_code == 200, in_body.text
        points = requests.get(
            rest(server, "experiment/metrics/get-all"),
            params={"experimentKey": experiment_key},
            headers=auth(server, "capped-key"),
            timeout=30,
        ).json()["metrics"]
        assert len(points) == 2
