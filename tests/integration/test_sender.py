"""The sender against a scriptable server: what each reply leads to, with exact request counts."""

from __future__ import annotations

import random

import pytest

from comet_agent.api import API, APIExperiment
from comet_agent.api.client import RetryPolicy
from comet_agent.delivery.sender import DROPPED_OTHER_KEY, Sender
from comet_agent.delivery.spool import PERIODIC, Spool
from comet_agent.sources.heap import trim_heap
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


def _past_the_first_entry(server, sender) -> None:
    """A started sender sends the spool's first entry alone (an earlier run may have had it in
    flight); deliver one so that the entries a test appends next are not that first one."""
    sender.spool.append(KEY, "other", {"key": "warm-up", "value": 0})
    assert sender.send_pending() is None
    server.clear()


def test_entries_are_sent_in_order_then_deleted(server, sender):
    sender.spool.append(KEY, "metrics_batch", _batch(1, 0))
    sender.spool.append(KEY, "other", {"key": "k", "value": 1})
    for i in (1, 2):
        sender.spool.append(KEY, "metrics_batch", _batch(1, i))
    assert sender.send_pending() is None
    sent = [
        (r.path, [v["metricValue"] for v in r.json["values"]] if r.path == BATCH else r.json["key"])
        for r in server.requests
    ]
    # the other write is not coalesced with anything: order holds across kinds
    assert sent == [(BATCH, [0]), ("/api/rest/v2/write/experiment/log-other", "k"), (BATCH, [1, 2])]
    assert sender.spool.depth() == 0
    assert sender.stats.sent == 4


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
    # the first entry alone (tried alone, it stays alone), then the second
    assert values == [0, 0, 0, 1]


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_group_that_failed_is_resent_as_the_same_group_under_the_same_id(server, sender, status):
    _past_the_first_entry(server, sender)
    sender.spool.append(KEY, "metrics_batch", _batch(1, 0))
    sender.spool.append(KEY, "metrics_batch", _batch(1, 1))
    server.fail_next(2, status)
    assert sender.send_pending() is not None
    sender.spool.append(KEY, "metrics_batch", _batch(1, 2))  # arrives meanwhile: not in the recorded group
    assert sender.send_pending() is not None
    assert sender.spool.depth() == 3
    assert sender.send_pending() is None
    requests = server.requests_to(BATCH)
    assert [[v["metricValue"] for v in r.json["values"]] for r in requests] == [[0, 1], [0, 1], [0, 1], [2]]
    assert len({r.header("X-Comet-Agent-Request-Id") for r in requests[:3]}) == 1


def test_an_entry_tried_alone_is_never_grouped_afterwards(server, sender):
    """Its first try may have been applied (a lost reply): only its own id lets the server see the repeat."""
    _past_the_first_entry(server, sender)
    alone = sender.spool.append(KEY, "metrics_batch", _batch(1, 0))
    server.fail_next(1, 503)
    assert sender.send_pending() is not None
    for i in (1, 2):
        sender.spool.append(KEY, "metrics_batch", _batch(1, i))
    assert sender.send_pending() is None
    requests = server.requests_to(BATCH)
    assert [[v["metricValue"] for v in r.json["values"]] for r in requests] == [[0], [0], [1, 2]]
    assert [r.header("X-Comet-Agent-Request-Id") for r in requests[:2]] == [f"{alone.request_id}/1"] * 2


def test_a_starting_sender_sends_the_spools_first_entry_alone(server, sender):
    entries = [sender.spool.append(KEY, "metrics_batch", _batch(1, i)) for i in range(3)]
    assert sender.send_pending() is None
    requests = server.requests_to(BATCH)
    assert [[v["metricValue"] for v in r.json["values"]] for r in requests] == [[0], [1, 2]]
    assert requests[0].header("X-Comet-Agent-Request-Id") == f"{entries[0].request_id}/1"


def test_retry_after_is_honoured_when_longer_than_the_backoff(server, sender):
    sender.spool.append(KEY, "metrics_batch", _batch(1))
    server.fail_next(1, 429, headers={"Retry-After": "42"})
    assert sender.send_pending() == pytest.approx(42, abs=0.01)


@pytest.mark.parametrize("status", [400, 404, 409])
def test_permanent_rejection_drops_only_that_entry(server, sender, status):
    sender.spool.append(KEY, "metrics_batch", _batch(1, 0))
    sender.spool.append(KEY, "other", {"key": "k", "value": 1})  # not coalesced: the first entry goes alone
    sender.spool.append(KEY, "metrics_batch", _batch(1, 1))
    server.fail_next(1, status)
    assert sender.send_pending() is None
    assert sender.stats.rejected == 1
    assert len(server.requests_to(BATCH)) == 2  # no retry of the rejected one
    assert sender.spool.depth() == 0
    assert sender.spool.quarantined_total() == 1, "set aside, not lost"


@pytest.mark.parametrize("status", [400, 413])
def test_a_group_refused_as_a_whole_goes_one_by_one_and_only_the_bad_entry_is_set_aside(server, sender, status):
    _past_the_first_entry(server, sender)
    first = sender.spool.append(KEY, "metrics_batch", _batch(1, 0))
    second = sender.spool.append(KEY, "metrics_batch", _batch(1, 1))
    server.fail_next(1, status)  # the group (nothing of it applied) ...
    server.fail_next(1, 400)  # ... then the first entry alone: that one is bad
    assert sender.send_pending() is None
    requests = server.requests_to(BATCH)
    assert [[v["metricValue"] for v in r.json["values"]] for r in requests] == [[0, 1], [0], [1]]
    assert [r.header("X-Comet-Agent-Request-Id") for r in requests[1:]] == [
        f"{first.request_id}/1",
        f"{second.request_id}/1",
    ]
    assert (sender.stats.rejected, sender.stats.sent, sender.spool.depth()) == (
        1,
        2,
        0,
    )  # the warm-up entry and the second
    assert sender.spool.batch_ids([first, second]) == {}


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
    assert [r.header("X-Comet-Agent-Request-Id") for r in requests[1:]] == [
        f"{entry.request_id}.a/1",
        f"{entry.request_id}.b/1",
    ]
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


def test_consecutive_metric_batches_of_one_experiment_travel_together_up_to_1000_points(server, sender):
    _past_the_first_entry(server, sender)
    for i in range(5):
        sender.spool.append(KEY, "metrics_batch", _batch(400, 1000 * i))  # 400 points each
    sender.spool.append("e" * 32, "metrics_batch", _batch(3))  # another experiment: its own request
    assert sender.send_pending() is None
    requests = server.requests_to(BATCH)
    assert [(r.json["experimentKey"], len(r.json["values"])) for r in requests] == [
        (KEY, 800),
        (KEY, 800),
        (KEY, 400),
        (KEY, 3),
    ]  # the fixture answers KEY's experiment for any key
    values = [v["metricValue"] for r in requests[:3] for v in r.json["values"]]
    assert values == [1000 * i + n for i in range(5) for n in range(400)], "spool order, nothing twice"
    assert (sender.stats.sent, sender.spool.depth()) == (7, 0)


def test_a_group_id_names_its_first_and_last_entry_and_is_recorded_before_sending(server, sender):
    _past_the_first_entry(server, sender)
    entries = [sender.spool.append(KEY, "metrics_batch", _batch(2, 10 * i)) for i in range(3)]
    server.fail_next(1, 503)
    assert sender.send_pending() is not None
    batch_id = f"{entries[0].request_id}..{entries[-1].request_id}"
    assert sender.spool.batch_ids(entries) == {entry.seq: batch_id for entry in entries}
    (request,) = server.requests_to(BATCH)
    assert request.header("X-Comet-Agent-Request-Id") == f"{batch_id}/1"


def test_after_a_restart_the_recorded_group_is_resent_exactly_even_with_more_entries_behind_it(server, tmp_path):
    """A crash after the server may have applied a group: the next run sends the same entries under the
    same id (never a bigger group under a new id, which would apply the first entries twice)."""
    api = API(api_key="sender-test-key", url_override=server.clientlib_url, retry=RetryPolicy(max_retries=0))
    experiment = APIExperiment(api=api, metadata={"experimentKey": KEY, "workspaceName": "ws", "projectName": "p"})
    path = tmp_path / "restart.db"
    with Spool(path) as spool:
        sender = Sender(spool, lambda key: experiment, rng=random.Random(1))
        _past_the_first_entry(server, sender)
        first = [spool.append(KEY, "metrics_batch", _batch(2, 10 * i)) for i in range(2)]
        server.fail_next(1, 503)  # the reply is lost: the agent cannot know whether it was applied
        assert sender.send_pending() is not None
    with Spool(path) as spool:  # the next run: more samples were spooled meanwhile
        later = [spool.append(KEY, "metrics_batch", _batch(2, 100 + 10 * i)) for i in range(2)]
        assert Sender(spool, lambda key: experiment, rng=random.Random(1)).send_pending() is None
        assert spool.depth() == 0
    api.close()
    requests = server.requests_to(BATCH)
    ids = [r.header("X-Comet-Agent-Request-Id") for r in requests]
    group = f"{first[0].request_id}..{first[-1].request_id}/1"
    assert ids == [group, group, f"{later[0].request_id}..{later[-1].request_id}/1"]
    assert requests[0].json["values"] == requests[1].json["values"]
    assert [v["metricValue"] for v in requests[2].json["values"]] == [100, 101, 110, 111]


def test_a_group_at_the_end_of_the_read_window_is_formed_again_from_the_next_read(server, sender):
    """Read 4 entries at a time: the group that reaches the window's end could take more entries
    beyond it, so it is formed from the next read, which starts at it."""
    sender.batch_size = 4
    _past_the_first_entry(server, sender)
    sender.spool.append(KEY, "other", {"key": "k", "value": 1})
    for i in range(5):
        sender.spool.append(KEY, "metrics_batch", _batch(1, i))
    assert sender.send_pending() is None
    assert [len(r.json["values"]) for r in server.requests_to(BATCH)] == [4, 1]
    assert [v["metricValue"] for r in server.requests_to(BATCH) for v in r.json["values"]] == [0, 1, 2, 3, 4]


def test_the_thread_hands_the_heap_back_after_a_burst_of_many_points_only(server, sender):
    if not trim_heap():
        pytest.skip("this C library has no malloc_trim (glibc only)")
    sender.start()
    try:
        for start in range(0, 300, 30):  # 10 small pushes, 300 points in all: under the threshold
            sender.spool.append(KEY, "metrics_batch", _batch(30, start))
            sender.notify()
            assert sender.wait_idle(5.0)
        assert sender.heap_trims == 0
        for start in range(300, 2300, 1000):  # a full-resolution push: 2,000 points
            sender.spool.append(KEY, "metrics_batch", _batch(1000, start))
        sender.notify()
        assert sender.wait_idle(5.0)
        assert sender.spool.depth() == 0
        assert sender.heap_trims == 1  # once the spool ran empty, not once per request
        sender.spool.append(KEY, "metrics_batch", _batch(30, 5000))
        sender.notify()
        assert sender.wait_idle(5.0)
        assert sender.heap_trims == 1  # the count starts again from zero after a trim
    finally:
        sender.stop()
    stored = [v["metricValue"] for r in server.requests if r.path == BATCH for v in r.json["values"]]
    assert stored == list(range(0, 2300)) + list(range(5000, 5030))
