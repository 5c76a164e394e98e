"""The REST client against a misbehaving server on loopback: status mapping, retries, timeouts, redirects."""

from __future__ import annotations

import email.utils
import logging
import random
import socket

import pytest

from comet_agent import errors
from comet_agent.api import API, APIExperiment
from comet_agent.api.client import GZIP_MIN_BYTES, REQUEST_ID_HEADER, RestClient, RetryPolicy, Timeouts
from tests.support.recording_server import Fault, RecordingServer

API_KEY = "FaultTestKey0123456789"
KEY_SOURCE = "environment variable COMET_API_KEY"
FIXED_NOW_S = 1_800_000_000.0


class SleepRecorder:
    """Stands in for time.sleep: records the requested waits, never waits."""

    def __init__(self):
        self.waits_s: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits_s.append(seconds)


@pytest.fixture
def server():
    with RecordingServer() as running:
        yield running


@pytest.fixture
def sleep():
    return SleepRecorder()


def make_client(server, sleep, **overrides) -> RestClient:
    options = dict(
        key_source=KEY_SOURCE,
        sleep=sleep,
        rng=random.Random(1234),
        now=lambda: FIXED_NOW_S,
        retry=RetryPolicy(max_retries=3, backoff_base_s=1.0, backoff_max_s=30.0, retry_after_cap_s=600.0),
        timeouts=Timeouts(connect_s=2.0, read_s=2.0),
    )
    options.update(overrides)
    return RestClient(API_KEY, server.clientlib_url, **options)


@pytest.mark.parametrize(
    "status, error_type",
    [
        (401, errors.Unauthorized),
        (403, errors.Unauthorized),
        (404, errors.NotFound),
        (400, errors.BadRequest),
        (413, errors.PayloadTooLarge),
        (402, errors.ClientError),
        (409, errors.ClientError),
    ],
)
def test_permanent_4xx_is_raised_after_one_request(server, sleep, status, error_type):
    server.fail_next(1, status)
    client = make_client(server, sleep)
    with pytest.raises(error_type) as info:
        client.get("experiment/tags", {"experimentKey": "k"})
    assert info.value.status == status
    assert info.value.retryable is False
    assert len(server.requests) == 1
    assert sleep.waits_s == []


def test_unauthorized_names_the_key_source_not_the_key(server, sleep):
    server.fail_next(1, 401)
    client = make_client(server, sleep)
    with pytest.raises(errors.Unauthorized) as info:
        client.get("experiment/tags", {"experimentKey": "k"})
    message = str(info.value)
    assert "the API key from environment variable COMET_API_KEY was rejected" in message
    assert "Check environment variable COMET_API_KEY" in message
    assert API_KEY not in message and API_KEY not in repr(info.value)


def test_not_found_carries_the_server_message(server, sleep):
    server.add_fault(Fault(status=404, body=b'{"msg": "experiment not found", "sdk_error_code": 90210}'))
    with pytest.raises(errors.NotFound) as info:
        make_client(server, sleep).get("experiment/metadata", {"experimentKey": "k"})
    assert info.value.server_message == "experiment not found"
    assert info.value.sdk_error_code == 90210
    assert "experiment not found" in str(info.value)


def test_429_retry_after_seconds_is_honoured(server, sleep):
    server.fail_next(1, 429, {"Retry-After": "7"})
    assert make_client(server, sleep).get("experiment/tags", {"experimentKey": "k"}) == {"tags": ["t1"]}
    assert sleep.waits_s == [7.0]
    assert len(server.requests) == 2


def test_429_retry_after_http_date_is_honoured(server, sleep):
    when = email.utils.formatdate(FIXED_NOW_S + 30, usegmt=True)
    server.fail_next(1, 429, {"Retry-After": when})
    make_client(server, sleep).get("experiment/tags", {"experimentKey": "k"})
    assert sleep.waits_s == [pytest.approx(30.0)]


def test_429_retry_after_custom_is_honoured(server, sleep):
    server.fail_next(1, 429, {"Retry-After-Custom": "2.5"})
    make_client(server, sleep).get("experiment/tags", {"experimentKey": "k"})
    assert sleep.waits_s == [2.5]


def test_retry_after_is_capped(server, sleep):
    server.fail_next(1, 429, {"Retry-After": "86400"})
    make_client(server, sleep, retry=RetryPolicy(retry_after_cap_s=45.0)).get("experiment/tags", {"experimentKey": "k"})
    assert sleep.waits_s == [45.0]


def test_429_without_header_uses_jittered_backoff_and_finally_raises_throttled(server, sleep):
    server.fail_next(10, 429, {"Retry-After-Custom": "3"})
    with pytest.raises(errors.Throttled) as info:
        make_client(server, sleep).post("write/experiment/tags", {"experimentKey": "k", "addedTags": []})
    assert info.value.retry_after_s == 3.0
    assert info.value.retryable is True
    assert len(server.requests) == 4
    assert sleep.waits_s == [3.0, 3.0, 3.0]


def test_503_streak_is_retried_with_full_jitter_exact_count(server, sleep):
    server.fail_next(3, 503)
    client = make_client(server, sleep)
    assert client.get("experiment/tags", {"experimentKey": "k"}) == {"tags": ["t1"]}
    assert len(server.requests) == 4
    assert len(sleep.waits_s) == 3
    for retry_number, wait_s in enumerate(sleep.waits_s, start=1):
        assert 0.0 <= wait_s <= 2 ** (retry_number - 1)
    expected_rng = random.Random(1234)
    assert sleep.waits_s == [expected_rng.uniform(0, c) for c in (1.0, 2.0, 4.0)]


def test_408_is_resent_within_the_request_like_a_5xx(server, sleep):
    # The same classification as the sender's (errors.classify): 408 is the server giving up on a slow request.
    server.fail_next(1, 408)
    assert make_client(server, sleep).get("experiment/tags", {"experimentKey": "k"}) == {"tags": ["t1"]}
    assert len(server.requests) == 2 and len(sleep.waits_s) == 1


def test_503_streak_longer_than_budget_raises_server_error_after_exact_attempts(server, sleep):
    server.fail_next(50, 503)
    with pytest.raises(errors.ServerError) as info:
        make_client(server, sleep, retry=RetryPolicy(max_retries=5)).get("experiment/tags", {"experimentKey": "k"})
    assert info.value.status == 503 and info.value.retryable
    assert len(server.requests) == 6
    assert len(sleep.waits_s) == 5


def test_read_timeout_is_retried_then_raised(server, sleep):
    server.add_fault(Fault(delay_s=5.0), times=2)
    client = make_client(server, sleep, timeouts=Timeouts(connect_s=2.0, read_s=0.2), retry=RetryPolicy(max_retries=1))
    with pytest.raises(errors.RequestTimedOut) as info:
        client.get("experiment/tags", {"experimentKey": "k"})
    assert info.value.retryable
    assert "read timeout" in str(info.value)
    assert len(server.requests) == 2
    assert len(sleep.waits_s) == 1


def test_refused_connection_is_retried_then_raised(sleep):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = RestClient(
        API_KEY,
        f"http://127.0.0.1:{port}/clientlib/",
        key_source=KEY_SOURCE,
        sleep=sleep,
        rng=random.Random(0),
        retry=RetryPolicy(max_retries=2),
    )
    with pytest.raises(errors.ConnectionFailed) as info:
        client.get("experiment/tags", {"experimentKey": "k"})
    assert "cannot reach the Comet server" in str(info.value)
    assert "COMET_URL_OVERRIDE" in str(info.value)
    assert len(sleep.waits_s) == 2


def test_dropped_connection_is_retried(server, sleep):
    server.add_fault(Fault(close_connection=True))
    assert make_client(server, sleep).get("experiment/tags", {"experimentKey": "k"}) == {"tags": ["t1"]}
    assert len(server.requests) == 2


def test_malformed_json_is_invalid_reply_not_retried(server, sleep):
    server.add_fault(Fault.garbage())
    with pytest.raises(errors.InvalidReply, match="malformed JSON"):
        make_client(server, sleep).get("experiment/tags", {"experimentKey": "k"})
    assert len(server.requests) == 1


def test_wrong_content_type_is_invalid_reply(server, sleep):
    server.add_fault(Fault(status=200, body=b'{"tags": []}', content_type="text/plain"))
    with pytest.raises(errors.InvalidReply, match="content type 'text/plain'"):
        make_client(server, sleep).get("experiment/tags", {"experimentKey": "k"})


def test_html_page_on_200_is_invalid_reply_with_a_hint(server, sleep):
    server.add_fault(Fault.html_error_page(200))
    with pytest.raises(errors.InvalidReply, match="HTML page"):
        make_client(server, sleep).post("write/experiment/tags", {"experimentKey": "k"})


def test_html_502_from_a_proxy_is_a_retried_server_error(server, sleep):
    server.add_fault(Fault.html_error_page(502), times=10)
    with pytest.raises(errors.ServerError):
        make_client(server, sleep).get("experiment/tags", {"experimentKey": "k"})
    assert len(server.requests) == 4


def test_same_host_redirect_keeps_the_key(server, sleep):
    server.set_route("GET", "/api/rest/v2/experiment/tags", (307, {"Location": "/api/rest/v2/experiment/html"}, b""))
    assert make_client(server, sleep).get("experiment/tags", {"experimentKey": "k"}) == {"html": "<b>x</b>"}
    assert [r.header("authorization") for r in server.requests] == [API_KEY, API_KEY]


def test_cross_host_redirect_never_carries_the_key(server, sleep):
    with RecordingServer() as elsewhere:
        target = elsewhere.url + "/download/blob"
        elsewhere.set_route("GET", "/download/blob", b"blob-bytes")
        server.set_route("GET", "/api/rest/v2/experiment/asset/get-asset", (302, {"Location": target}, b""))
        data = make_client(server, sleep).get("experiment/asset/get-asset", {"assetId": "a"}, return_type="binary")
        assert data == b"blob-bytes"
        (followed,) = elsewhere.requests
        assert followed.header("authorization") is None
        assert API_KEY not in str(followed.headers) and API_KEY not in followed.path


def test_a_cookie_the_server_sets_goes_back_with_later_requests(server, sleep):
    """A load balancer's sticky-session cookie (AWSALB and the like) is honoured, as comet_ml's
    requests session honours it; and each request still carries the key, the SDK headers and its
    params, whether its URL was prepared before or not."""
    server.set_route(
        "POST", "/api/rest/v2/write/experiment/tags", (200, {"Set-Cookie": "AWSALB=node-7; Path=/"}, b"{}")
    )
    client = make_client(server, sleep)
    client.post("write/experiment/tags", {"experimentKey": "k", "addedTags": ["a"]})
    client.post("write/experiment/tags", {"experimentKey": "k", "addedTags": ["b"]})
    client.get("experiment/tags", {"experimentKey": "k"})
    first, second, third = server.requests
    assert first.header("cookie") is None
    assert second.header("cookie") == third.header("cookie") == "AWSALB=node-7"
    assert [r.header("authorization") for r in server.requests] == [API_KEY] * 3
    assert all(r.header("x-comet-debug-sdk-version") for r in server.requests)
    assert [r.json for r in (first, second)] == [
        {"experimentKey": "k", "addedTags": ["a"]},
        {"experimentKey": "k", "addedTags": ["b"]},
    ]
    assert third.query_single == {"experimentKey": "k"}


def test_redirect_loop_is_bounded(server, sleep):
    server.set_route("GET", "/api/rest/v2/experiment/tags", (302, {"Location": "/api/rest/v2/experiment/tags"}, b""))
    with pytest.raises(errors.TooManyRedirects):
        make_client(server, sleep, max_redirects=3).get("experiment/tags")
    assert len(server.requests) == 4


def test_request_id_is_sent_on_every_attempt(server, sleep):
    server.fail_next(2, 503)
    make_client(server, sleep).post(
        "write/experiment/tags", {"experimentKey": "k", "addedTags": ["x"]}, request_id="req-42"
    )
    assert [r.header(REQUEST_ID_HEADER) for r in server.requests] == ["req-42"] * 3
    assert [r.json for r in server.requests] == [{"experimentKey": "k", "addedTags": ["x"]}] * 3


def test_multipart_upload_is_resent_whole_after_a_failure(server, sleep, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 4096)  # 1 MiB, streamed from disk
    server.fail_next(1, 503)
    client = make_client(server, sleep)
    client.post_multipart(
        "write/experiment/upload-asset",
        [("file", "file", big), ("metadata", None, b'{"a":1}')],
        params={"experimentKey": "k"},
    )
    assert len(server.requests) == 2
    for request in server.requests:
        assert request.parts["file"].content == big.read_bytes()
        assert request.parts["metadata"].content == b'{"a":1}'
        assert int(request.header("content-length")) == len(request.body)


def test_empty_write_reply_returns_none(server, sleep):
    server.set_route("POST", "/api/rest/v2/write/experiment/tags", (204, {}, b""))
    assert make_client(server, sleep).post("write/experiment/tags", {"experimentKey": "k"}) is None


def test_metric_batch_goes_gzip_to_clientlib_with_request_id(server, sleep):
    api = API(api_key=API_KEY, url_override=server.clientlib_url, sleep=sleep)
    experiment = APIExperiment(api=api, metadata={"experimentKey": "k" * 32, "workspaceName": "ws", "projectName": "p"})
    points = [
        {"metricName": "sys.cpu.percent.avg", "metricValue": 12.5, "step": 3, "timestamp": 1_700_000_000_000},
        {"metricName": "loss", "metricValue": 0.1},
    ]
    points += [
        {"metricName": f"sys.cpu.percent.{n:02d}", "metricValue": n, "timestamp": 1_700_000_000_000}
        for n in range(1, 17)
    ]
    experiment.log_metrics_batch(points, request_id="batch-7")
    (request,) = server.requests
    assert request.path == "/clientlib/batch/logger/experiment/metric"
    assert request.was_gzipped and len(request.body) >= GZIP_MIN_BYTES
    assert request.header(REQUEST_ID_HEADER) == "batch-7"
    assert request.header("authorization") == API_KEY
    assert request.json["experimentKey"] == "k" * 32
    assert request.json["values"][:2] == [
        {
            "metricName": "sys.cpu.percent.avg",
            "metricValue": 12.5,
            "step": 3,
            "epoch": None,
            "context": None,
            "timestamp": 1_700_000_000_000,
        },
        {"metricName": "loss", "metricValue": 0.1, "step": None, "epoch": None, "context": None, "timestamp": None},
    ]
    assert len(request.json["values"]) == 18


def test_a_metric_batch_under_the_gzip_threshold_goes_plain(server, sleep):
    """gzip costs ~70 us whatever the size: a body under GZIP_MIN_BYTES is not worth it."""
    api = API(api_key=API_KEY, url_override=server.clientlib_url, sleep=sleep)
    experiment = APIExperiment(api=api, metadata={"experimentKey": "k" * 32, "workspaceName": "ws", "projectName": "p"})
    experiment.log_metrics_batch([{"metricName": "loss", "metricValue": 0.1}])
    (request,) = server.requests
    assert not request.was_gzipped and request.header("content-encoding") is None
    assert len(request.body) < GZIP_MIN_BYTES
    assert request.json["values"] == [
        {"metricName": "loss", "metricValue": 0.1, "step": None, "epoch": None, "context": None, "timestamp": None}
    ]


def test_combined_system_details_is_one_request(server, sleep):
    api = API(api_key=API_KEY, url_override=server.clientlib_url, sleep=sleep)
    experiment = APIExperiment(api=api, metadata={"experimentKey": "k" * 32})
    experiment.set_system_details(hostname="h", os_release="6.1", python_version="3.11.7", request_id="sd-1")
    (request,) = server.requests
    assert request.path == "/clientlib/rest/v2/write/experiment/system-details"
    assert request.json == {"experimentKey": "k" * 32, "hostname": "h", "osRelease": "6.1", "pythonVersion": "3.11.7"}
    assert request.header(REQUEST_ID_HEADER) == "sd-1"
    with pytest.raises(ValueError, match="unknown system-details field 'colour'"):
        experiment.update_system_details({"colour": "blue"})
    assert len(server.requests) == 1


def test_canary_key_never_appears_in_logs_errors_reprs_or_urls(server, sleep, caplog, monkeypatch, tmp_path):
    canary = "CanaryKey_9f8e7d6c5b4a3210"
    monkeypatch.setenv("COMET_API_KEY", canary)
    monkeypatch.setenv("COMET_URL_OVERRIDE", server.clientlib_url)
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3", "requests", "comet_agent"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    api = API(sleep=sleep)
    experiment = APIExperiment(api=api, previous_experiment="k" * 32)
    texts = [
        repr(api),
        str(api),
        repr(api.config),
        str(api.config),
        repr(api._client),
        repr(experiment),
        experiment.url,
    ]
    experiment.set_hostname("h")
    for status, call in ((503, lambda: experiment.get_hostname()), (401, lambda: experiment.add_tags(["x"]))):
        server.clear()
        server.fail_next(10, status)
        with pytest.raises(errors.CometApiError) as info:
            call()
        texts += [str(info.value), repr(info.value), repr(info.value.args)]
    server.clear()
    server.add_fault(Fault.garbage())
    with pytest.raises(errors.InvalidReply) as info:
        experiment.get_tags()
    texts += [str(info.value), repr(info.value)]
    server.clear()
    server.fail_next(1, 401, {"WWW-Authenticate": canary})
    with pytest.raises(errors.Unauthorized) as info:
        experiment.get_code()
    texts.append(str(info.value))
    assert "urllib3" in {r.name.split(".")[0] for r in caplog.records}, "urllib3 debug logging was not captured"
    texts += [caplog.text] + [r.getMessage() for r in caplog.records]
    for text in texts:
        assert canary not in text
    for request in server.requests:
        assert canary not in request.path and canary not in str(request.query)


def test_allow_header_from_configuration_is_sent(server, sleep, monkeypatch):
    monkeypatch.setenv("COMET_ALLOW_HEADER_NAME", "X-Gateway")
    monkeypatch.setenv("COMET_ALLOW_HEADER_VALUE", "open-sesame")
    api = API(api_key=API_KEY, url_override=server.clientlib_url, sleep=sleep)
    api.get_workspaces()
    (request,) = server.requests
    assert request.header("x-gateway") == "open-sesame"
    assert request.header("x-comet-sdk-source") == "API"


def test_proxies_come_from_the_environment_of_each_request(server, sleep, monkeypatch):
    """The proxy lookup is remembered per host, but a change of a proxy variable takes effect at the
    next request: through the proxy (the recording server), then around it (no_proxy)."""
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as probe:  # a port where nothing listens: only the proxy can answer
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setenv("http_proxy", server.url)
    client = RestClient(
        API_KEY,
        f"http://127.0.0.1:{closed_port}/clientlib/",
        sleep=sleep,
        retry=RetryPolicy(max_retries=0),
        timeouts=Timeouts(connect_s=2.0, read_s=2.0),
    )
    for _ in range(2):
        client.post("write/experiment/log-other", {"experimentKey": "k", "key": "a", "value": 1})
    assert [r.path for r in server.requests] == ["/api/rest/v2/write/experiment/log-other"] * 2, "through the proxy"
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with pytest.raises(errors.ConnectionFailed):  # straight to the closed port
        client.post("write/experiment/log-other", {"experimentKey": "k", "key": "a", "value": 1})
    assert len(server.requests) == 2
    client.close()
