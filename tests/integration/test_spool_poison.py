"""One bad spool row does not stop the rest: real spool files damaged with sqlite3, the real sender,
the real local server.

A row that cannot be decoded, or that the server refuses for good, is moved to the spool's
``quarantine`` table (inspectable with sqlite3), counted by ``Spool.quarantined_total()``, and
the rows behind it are delivered in order. A table dropped behind the spool's back is recreated
and the totals recounted: no phantom entries.
"""

from __future__ import annotations

import random
import sqlite3

import pytest

from comet_agent.api import API, APIExperiment
from comet_agent.api.client import RetryPolicy
from comet_agent.delivery.sender import Sender
from comet_agent.delivery.spool import Spool
from tests.support.recording_server import RecordingServer


@pytest.fixture
def experiment(local_server):
    api = API(api_key=local_server.api_key, url_override=local_server.clientlib_url, retry=RetryPolicy(max_retries=0))
    yield APIExperiment(api=api, workspace="ws", project_name="poison")
    api.close()


def _lines(spool: Spool, key: str, count: int) -> list:
    # One console line per entry, all with the same timestamp: the server keeps them in arrival order.
    return [
        spool.append(key, "output", {"output": f"line {i}\n", "stderr": False, "timestamp_ms": 1_700_000_000_000})
        for i in range(count)
    ]


def _damage(path, sql: str, *args) -> None:
    """What a hand edit, a bug in an older agent or a bad sector leaves: a change made by another connection."""
    conn = sqlite3.connect(path)
    try:
        conn.execute(sql, args)
        conn.commit()
    finally:
        conn.close()


def _quarantine_rows(path) -> list:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT seq, endpoint, reason, CAST(payload AS BLOB) FROM quarantine ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize(
    "damage, args, reason",
    [
        ("UPDATE entries SET payload = ? WHERE seq = ?", ("{not json",), "payload is not JSON"),
        ("UPDATE entries SET payload = ? WHERE seq = ?", ('["a", "list"]',), "payload is a JSON list"),
        ("UPDATE entries SET payload = ? WHERE seq = ?", (b"\xff\xfe\x00 binary",), "payload is not UTF-8"),
        ("UPDATE entries SET endpoint = ? WHERE seq = ?", (b"\xc3\x28",), "endpoint is not UTF-8"),
        ("UPDATE entries SET payload = ? WHERE seq = ?", ("[" * 100_000,), "payload is"),
    ],
    ids=["not-json", "json-list", "binary-payload", "binary-endpoint", "deeply-nested"],
)
def test_an_undecodable_row_is_quarantined_and_the_rest_is_delivered_in_order(
    tmp_path, experiment, damage, args, reason
):
    path = tmp_path / "spool.db"
    with Spool(path) as spool:
        entries = _lines(spool, experiment.id, 4)
        _damage(path, damage, *args, entries[1].seq)
        sender = Sender(spool, lambda key: experiment, rng=random.Random(1))
        assert sender.send_pending() is None, "the spool drains"
        assert spool.depth() == 0
        assert spool.quarantined_total() == 1
    assert experiment.get_output() == "line 0\nline 2\nline 3\n"
    ((seq, endpoint, why, _),) = _quarantine_rows(path)
    assert seq == entries[1].seq and reason in why
    with Spool(path) as reopened:
        assert reopened.quarantined_total() == 1 and reopened.depth() == 0 and reopened.peek() == []


def test_a_whole_batch_of_bad_rows_does_not_read_as_an_empty_spool(tmp_path, experiment):
    path = tmp_path / "spool.db"
    with Spool(path) as spool:
        entries = _lines(spool, experiment.id, 7)
        for entry in entries[:5]:
            _damage(path, "UPDATE entries SET payload = 'garbage' WHERE seq = ?", entry.seq)
        sender = Sender(spool, lambda key: experiment, batch_size=3)
        assert sender.send_pending() is None
        assert spool.quarantined_total() == 5
    assert experiment.get_output() == "line 5\nline 6\n"


def test_a_row_the_server_refuses_for_good_is_quarantined_and_counted(tmp_path, experiment):
    path = tmp_path / "spool.db"
    with Spool(path) as spool:
        spool.append(
            experiment.id, "output", {"output": "before\n", "stderr": False, "timestamp_ms": 1_700_000_000_000}
        )
        refused = spool.append(experiment.id, "cpu_metrics", {"cpu_metrics": "not a list", "timestamp": 1})
        spool.append(experiment.id, "output", {"output": "after\n", "stderr": False, "timestamp_ms": 1_700_000_000_000})
        sender = Sender(spool, lambda key: experiment)
        assert sender.send_pending() is None
        assert (spool.depth(), spool.quarantined_total(), sender.stats.rejected) == (0, 1, 1)
    assert experiment.get_output() == "before\nafter\n"
    ((seq, endpoint, why, payload),) = _quarantine_rows(path)
    assert (seq, endpoint) == (refused.seq, "cpu_metrics")
    assert "400" in why and b"not a list" in payload, "kept as it was, for a person to look at"


def test_a_record_of_an_unknown_kind_is_quarantined_not_sent(tmp_path, experiment):
    path = tmp_path / "spool.db"
    with Spool(path) as spool:
        spool.append(experiment.id, "from_a_newer_agent", {"x": 1})
        _lines(spool, experiment.id, 1)
        assert Sender(spool, lambda key: experiment).send_pending() is None
        assert spool.quarantined_total() == 1
    assert experiment.get_output() == "line 0\n"
    assert "unknown record kind" in _quarantine_rows(path)[0][2]


def test_rows_refused_by_the_server_do_not_grow_the_quarantine_without_bound(tmp_path):
    # 400 for every write: the quarantine keeps the newest rows up to an eighth of the cap; all are counted.
    max_bytes = 8 * 1024
    with RecordingServer() as server, Spool(tmp_path / "spool.db", max_bytes=max_bytes) as spool:
        server.fail_next(10**6, 400, path="/api/rest/v2/write/experiment/log-other")
        api = API(api_key="poison-bound-key-0123", url_override=server.clientlib_url, retry=RetryPolicy(max_retries=0))
        experiment = APIExperiment(api=api, metadata={"experimentKey": "a" * 32})
        for i in range(60):
            spool.append("a" * 32, "other", {"key": f"k{i}", "value": "v" * 100})
        assert Sender(spool, lambda key: experiment).send_pending() is None
        assert spool.quarantined_total() == 60
    rows = _quarantine_rows(tmp_path / "spool.db")
    assert 0 < len(rows) < 60 and sum(len(r[3]) for r in rows) <= max_bytes // 8
    assert rows[-1][0] == 60, "the newest are kept"


@pytest.mark.parametrize("table", ["entries", "totals"])
def test_a_table_dropped_under_an_open_spool_is_recreated_without_a_phantom_count(tmp_path, experiment, table):
    path = tmp_path / "spool.db"
    with Spool(path) as spool:
        _lines(spool, experiment.id, 3)
        _damage(path, f"DROP TABLE {table}")
        expected_depth = 0 if table == "entries" else 3
        assert spool.depth() == expected_depth, "counted from the rows that are there"
        _lines(spool, experiment.id, 1)
        assert spool.depth() == expected_depth + 1
        assert Sender(spool, lambda key: experiment).send_pending() is None
        assert spool.depth() == 0
    expected = "line 0\n" if table == "entries" else "line 0\nline 1\nline 2\nline 0\n"
    assert experiment.get_output() == expected


@pytest.mark.parametrize("table", ["entries", "totals", "quarantine", "dropped", "counters"])
def test_a_table_dropped_while_closed_is_recreated_at_open(tmp_path, table):
    path = tmp_path / "spool.db"
    with Spool(path) as spool:
        for i in range(3):
            spool.append("exp", "metrics_batch", {"i": i})
    _damage(path, f"DROP TABLE {table}")
    with Spool(path) as reopened:
        assert reopened.depth() == (0 if table == "entries" else 3)
        assert len(reopened.peek()) == reopened.depth()
        assert reopened.quarantined_total() == 0 and reopened.dropped("exp") == 0
        reopened.append("exp", "metrics_batch", {"i": 3})


def test_a_deleted_totals_row_is_recounted(tmp_path):
    path = tmp_path / "spool.db"
    with Spool(path) as spool:
        spool.append("exp", "metrics_batch", {"i": 0})
        _damage(path, "DELETE FROM totals")
        assert spool.depth() == 1
        spool.append("exp", "metrics_batch", {"i": 1})
        assert (spool.depth(), [e.payload["i"] for e in spool.peek()]) == (2, [0, 1])


def test_a_row_with_a_binary_key_does_not_stop_appends_at_the_cap(tmp_path):
    payload = {"x": "y" * 90}
    path = tmp_path / "spool.db"
    with Spool(path, max_bytes=4 * 100) as spool:
        first = spool.append("exp", "metrics_batch", payload)
        _damage(path, "UPDATE entries SET experiment_key = ? WHERE seq = ?", b"\xff\xfe", first.seq)
        for _ in range(5):
            spool.append("exp", "metrics_batch", payload)  # the cap drops the oldest, the damaged one first
        assert spool.depth() <= 4 and first.seq not in [e.seq for e in spool.peek()]
