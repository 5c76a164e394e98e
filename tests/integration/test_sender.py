"""The sender against a scriptable server: what each reply leads to, with exact request counts."""

from __future__ import annotations

import random

import pytest

from comet_agent.api import API, APIExperiment
from comet_agent.api.client import RetryPolicy
from comet_agent.delivery.sender import DROPPED_OTHER_KEY, Sender
from comet_agent.delivery.spool import PERIODIC, Spool
from tests.support.recording_server import RecordingServer

KEY = "a" * 32
BATCH = "/clientlib/batch/logger/experiment/metric"


@pytest.fixture
def server():
    with RecordingServer() as recording:
        yield recording


@pytest.fixture
def sender(server, tmp_path):
    api = API(api_key="sender-test-key", url_override=server.clientlib_url, retry=RetryPolicy(max_retries=0))
    experiment = APIExperiment(api=api, metadata={"experimentKey": KEY, "workspaceName": "ws", "projectName": "p"})
    spool = Spool(tmp_path / "spool.db")
    yield Sender(spool, lambda key: experiment, rng=random.Random(7))
    spool.close()
    api.close()


def _batch(n: int, start: int = 0) -> dict:
    return {"values": [{"metricName": "m", "metricValue": i, "timestamp": 1000 + i} for i in range(start, start + n)]}


def test_entries_are_sent_in_order_then_deleted(server, sender):
    for i in range(3):
        sender.spool.append(KEY, "metrics_batch", _batch(1, i))
    assert sender.send_pending() is None
    values = [r.json["values"][0]["metricValue"] for r in server.requests_to(BATCH)]
    assert values == [0, 1, 2]
    assert sender.spool.depth() == 0
    assert sender.stats.sent == 3


def test_each_entry_carries_its_own_stable_request_id(server, sender):
    entry = sender.spool.append(KEY, "cpu_metrics", {"cpu_metrics": [1.0], "timestamp": 5})
    server.fail_next(1, 503)
    assert sender.send_pending() is not None  # kept for later
    assert sender.send_pending() is None
    ids = [r.header("X-Comet-Agent-Request-Id") for r in server.requests_to("write/experiment/cpu-metrics")]
    assert ids == [f"{entry.request_id}/1", f"{entry.request_id}/1"]


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_retryable_status_keeps_the_entry_and_order(server, sender, status):
    sender.spool.append(KEY, "metrics_batch", _batch(1, 0))
    sender.spool.append(KEY, "metrics_batch", _batch(1, 1))
    server.fail_next(2, status)
    assert sender.send_pending() is not None
    assert sender.send_pending() is not None
    assert sender.spool.depth() == 2
    assert sender.send_pending() is None
    values = [r.json["values"][0]["metricValue"] for r in server.requests_to(BATCH)]
    assert values == [0, 0, 0, 1]  # two failed tries of the first entry, then both in order


def test_retry_after_is_honoured_when_longer_than_the_backoff(server, sender):
    sender.spool.append(KEY, "metrics_batch", _batch(1))
    server.fail_next(1, 429, headers={"Retry-After": "42"})
    assert sender.send_pending() == pytest.approx(42, abs=0.01)


@pytest.mark.parametrize("status", [400, 404, 409])
def test_permanent_rejection_drops_only_that_entry(server, sender, status):
    sender.spool.append(KEY, "metrics_batch", _batch(1, 0))
    sender.spool.append(KEY, "metrics_batch", _batch(1, 1))
    server.fail_next(1, status)
    assert sender.send_pending() is None
    assert sender.stats.rejected == 1
    assert len(server.requests_to(BATCH)) == 2  # no retry of the rejected one
    assert sender.spool.depth() == 0
    assert sender.spool.quarantined_total() == 1, "set aside, not lost"


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_key_keeps_everything(server, sender, status):
    sender.spool.append(KEY, "metrics_batch", _batch(1))
    server.fail_next(1, status)
    assert sender.send_pending() == sender.auth_backoff_s
    assert sender.spool.depth() == 1
    assert sender.stats.rejected == 0


def test_413_splits_a_batch_until_it_fits(server, sender):
    entry = sender.spool.append(KEY, "metrics_batch", _batch(8))
    server.fail_next(1, 413)  # the whole batch is too large; halves are accepted
    assert sender.send_pending() is None
    requests = server.requests_to(BATCH)
    assert [len(r.json["values"]) for r in requests] == [8, 4, 4]
    assert [r.header("X-Comet-Agent-Request-Id") for r in requests[1:]] == [f"{entry.request_id}.a/1", f"{entry.request_id}.b/1"]
    assert sorted(v["metricValue"] for r in requests[1:] for v in r.json["values"]) == list(range(8))


def test_dropped_count_is_reported_after_a_successful_push(server, tmp_path, sender):
    payload = _batch(1)
    small = Spool(tmp_path / "small.db", max_bytes=3 * len(str(payload)))
    sender.spool = small
    for _ in range(6):
        small.append(KEY, "metrics_batch", payload, kind=PERIODIC)
    dropped = small.dropped_total(KEY)
    assert dropped > 0
    assert sender.send_pending() is None
    others = server.requests_to("write/experiment/log-other")
    assert [(r.json["key"], r.json["value"]) for r in others] == [(DROPPED_OTHER_KEY, dropped)]
    assert small.dropped(KEY) == 0
    small.close()
