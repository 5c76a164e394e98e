"""Pure parts of the REST client: Retry-After parsing, backoff, the streamed multipart body, URLs, errors."""

from __future__ import annotations

import email.utils
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from comet_agent import errors
from comet_agent.api.client import MultipartBody, RestClient, RetryPolicy, parse_retry_after_s, server_root

NOW_S = 1_800_000_000.0


@pytest.mark.parametrize(
    "headers, expected_s",
    [
        ({"Retry-After": "12"}, 12.0),
        ({"Retry-After": " 1.5 "}, 1.5),
        ({"Retry-After": email.utils.formatdate(NOW_S + 90, usegmt=True)}, 90.0),
        ({"Retry-After": email.utils.formatdate(NOW_S - 90, usegmt=True)}, 0.0),
        ({"Retry-After-Custom": "60"}, 60.0),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After-Custom": "x"}, None),
        ({}, None),
        ({"Retry-After": "-5"}, 0.0),
    ],
)
def test_parse_retry_after(headers, expected_s):
    parsed = parse_retry_after_s(headers, NOW_S)
    assert parsed == (pytest.approx(expected_s) if expected_s is not None else None)


def test_retry_after_wins_over_custom():
    assert parse_retry_after_s({"Retry-After": "3", "Retry-After-Custom": "60"}, NOW_S) == 3.0


@given(retry_number=st.integers(min_value=1, max_value=30), seed=st.integers(0, 2**32))
def test_full_jitter_stays_within_the_doubling_ceiling(retry_number, seed):
    policy = RetryPolicy(backoff_base_s=0.5, backoff_max_s=20.0)
    wait_s = policy.backoff_s(retry_number, random.Random(seed))
    assert 0.0 <= wait_s <= min(20.0, 0.5 * 2 ** (retry_number - 1))


def test_multipart_body_streams_files_and_knows_its_length(tmp_path):
    payload = tmp_path / "data.bin"
    payload.write_bytes(b"x" * 200_000)
    body = MultipartBody([("file", "file", payload), ("metadata", None, b'{"a":1}')], boundary="BOUNDARY")
    assert body.content_type == "multipart/form-data; boundary=BOUNDARY"
    chunks = []
    while True:
        chunk = body.read(8192)
        if not chunk:
            break
        assert len(chunk) <= 8192
        chunks.append(chunk)
    data = b"".join(chunks)
    assert len(data) == len(body)
    assert data.startswith(b'--BOUNDARY\r\nContent-Disposition: form-data; name="file"; filename="file"\r\n\r\nxxx')
    assert b'Content-Disposition: form-data; name="metadata"\r\n\r\n{"a":1}\r\n--BOUNDARY--\r\n' in data
    assert data == b"".join(
        MultipartBody([("file", "file", payload), ("metadata", None, b'{"a":1}')], boundary="BOUNDARY")
    )


def test_multipart_quotes_names():
    data = MultipartBody([("file", 'we"ird\nname', b"")], boundary="B").read()
    assert b'filename="we\\"ird name"' in data


@pytest.mark.parametrize(
    "url, root",
    [
        ("http://127.0.0.1:5055/clientlib/", "http://127.0.0.1:5055"),
        ("https://www.comet.com/clientlib/", "https://www.comet.com"),
        ("https://comet.example.org/", "https://comet.example.org"),
    ],
)
def test_server_root_strips_the_path(url, root):
    assert server_root(url) == root


@pytest.mark.parametrize("url", ["ftp://host/clientlib/", "127.0.0.1:5055/clientlib/", "http:///clientlib/"])
def test_bad_server_url_is_a_clear_error(url):
    with pytest.raises(ValueError, match="COMET_URL_OVERRIDE"):
        server_root(url)


def test_client_url_layout():
    client = RestClient("K1234567", "http://127.0.0.1:8080/clientlib")
    assert client.url_for("experiment/tags") == "http://127.0.0.1:8080/api/rest/v2/experiment/tags"
    assert (
        client.url_for("write/experiment/system-details", "crest")
        == "http://127.0.0.1:8080/clientlib/rest/v2/write/experiment/system-details"
    )
    assert (
        client.url_for("batch/logger/experiment/metric", "clientlib")
        == "http://127.0.0.1:8080/clientlib/batch/logger/experiment/metric"
    )


@pytest.mark.parametrize("key", ["", "has space", "tab\tkey"])
def test_client_refuses_unusable_keys_without_echoing_them(key):
    with pytest.raises(ValueError) as info:
        RestClient(key, "http://127.0.0.1:1/clientlib/", key_source="environment variable COMET_API_KEY")
    assert "COMET_API_KEY" in str(info.value)
    if key:
        assert key not in str(info.value)


def test_client_repr_has_no_key():
    client = RestClient("ReprKey_abcdef123", "http://127.0.0.1:1/clientlib/")
    assert "ReprKey_abcdef123" not in repr(client)


def test_error_hierarchy_flags():
    assert issubclass(errors.RequestTimedOut, errors.ConnectionFailed)
    for cls in (
        errors.Unauthorized,
        errors.NotFound,
        errors.BadRequest,
        errors.PayloadTooLarge,
        errors.ClientError,
        errors.Throttled,
        errors.ServerError,
        errors.ConnectionFailed,
        errors.InvalidReply,
        errors.TooManyRedirects,
    ):
        assert issubclass(cls, errors.CometApiError)
    assert errors.ServerError("x", status=503).retryable
    assert errors.Throttled("x", status=429, retry_after_s=4.0).retry_after_s == 4.0
    assert not errors.NotFound("x", status=404).retryable
    assert errors.ServerError("x", retryable=False).retryable is False
    assert (
        repr(errors.NotFound("gone", status=404, endpoint="GET /x"))
        == "NotFound(status=404, endpoint='GET /x', message='gone')"
    )
