"""The spool keeps every entry until acknowledged, in order, within its byte cap, privately."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import stat
import sys

import pytest

from comet_agent.delivery.spool import STATIC, Spool, samples_in
from comet_agent.errors import SpoolError


def test_spool_entries_come_back_in_append_order_until_acked(tmp_path):
    with Spool(tmp_path / "spool.db") as spool:
        for i in range(5):
            spool.append("exp1", "metrics_batch", {"i": i})
        first = spool.peek(3)
        assert [e.payload["i"] for e in first] == [0, 1, 2]
        assert spool.ack(first[:2]) == 2
        assert [e.payload["i"] for e in spool.peek(10)] == [2, 3, 4]
        assert spool.depth() == 3


def test_spool_survives_reopen_with_same_request_ids(tmp_path):
    path = tmp_path / "spool.db"
    with Spool(path) as spool:
        entry = spool.append("exp1", "system_details", {"hostname": "h"}, kind=STATIC, created_ms=1234)
    with Spool(path) as reopened:
        (again,) = reopened.peek()
    assert again.request_id == entry.request_id
    assert again.created_ms == 1234
    assert again.payload == {"hostname": "h"}


def test_spool_peek_filters_by_experiment(tmp_path):
    with Spool(tmp_path / "s.db") as spool:
        spool.append("a", "m", {"n": 1})
        spool.append("b", "m", {"n": 2})
        spool.append("a", "m", {"n": 3})
        assert [e.payload["n"] for e in spool.peek(experiment_key="a")] == [1, 3]


def test_spool_at_cap_drops_oldest_periodic_first_and_counts_exactly(tmp_path):
    payload = {"x": "y" * 90}
    size = len(json.dumps(payload, separators=(",", ":")))
    with Spool(tmp_path / "s.db", max_bytes=size * 4) as spool:
        spool.append("exp", "system_details", payload, kind=STATIC)
        for _ in range(3):
            spool.append("exp", "metrics_batch", payload)
        assert spool.dropped("exp") == 0
        spool.append("exp", "metrics_batch", payload)  # one over the cap: the oldest periodic entry goes
        spool.append("other", "metrics_batch", payload)  # and another
        kinds = [e.kind for e in spool.peek(10)]
        assert kinds[0] == STATIC
        assert spool.depth() == 4
        assert spool.dropped("exp") == 2
        assert spool.dropped("other") == 0
        assert spool.size_bytes() <= spool.max_bytes
        spool.take_dropped("exp", 2)
        assert spool.dropped("exp") == 0
        assert spool.dropped_total("exp") == 2


def test_spool_full_of_static_entries_refuses_with_a_reason(tmp_path):
    with Spool(tmp_path / "s.db", max_bytes=50) as spool:
        spool.append("exp", "system_details", {"a": "b" * 30}, kind=STATIC)
        with pytest.raises(SpoolError, match="static"):
            spool.append("exp", "system_details", {"a": "b" * 30}, kind=STATIC)
        assert spool.depth() == 1


def test_spool_rejects_a_payload_larger_than_the_cap(tmp_path):
    with Spool(tmp_path / "s.db", max_bytes=10) as spool:
        with pytest.raises(SpoolError, match="larger than the spool cap"):
            spool.append("exp", "m", {"a": "b" * 30})


def test_spool_files_are_private_under_a_wide_umask(tmp_path):
    old = os.umask(0)
    try:
        path = tmp_path / "d" / "spool.db"
        with Spool(path) as spool:
            spool.append("exp", "m", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for f in path.parent.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_corrupt_spool_is_quarantined_and_a_fresh_one_started(tmp_path, caplog):
    path = tmp_path / "spool.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with Spool(path) as spool:
        assert spool.depth() == 0
        spool.append("exp", "m", {"a": 1})
    quarantined = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(quarantined) == 1
    assert quarantined[0].read_bytes().startswith(b"this is not sqlite")
    assert any("moved it to" in r.getMessage() for r in caplog.records)


def test_unwritable_spool_directory_is_a_clear_error(tmp_path):
    if os.geteuid() == 0:
        # root ignores directory permissions; use a path under a regular file instead.
        blocker = tmp_path / "file"
        blocker.write_text("x")
        target = blocker / "spool.db"
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        target = ro / "sub" / "spool.db"
    with pytest.raises(SpoolError, match="cannot create spool directory"):
        Spool(target)


def _append_forever(path: str, ready) -> None:
    spool = Spool(path)
    i = 0
    while True:
        spool.append("exp", "m", {"i": i})
        if i == 50:
            ready.set()
        i += 1


def test_spool_keeps_every_committed_entry_across_sigkill(tmp_path):
    path = tmp_path / "spool.db"
    ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_append_forever, args=(str(path), ready))
    proc.start()
    assert ready.wait(30)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    with Spool(path) as spool:
        values = [e.payload["i"] for e in spool.peek(1_000_000)]
    # Every committed append is there, contiguous from 0: nothing lost, nothing torn.
    assert len(values) > 50
    assert values == list(range(len(values)))


def test_records_that_never_reached_the_spool_are_counted_with_the_drops(tmp_path):
    with Spool(tmp_path / "s.db") as spool:
        spool.count_dropped("exp", 3)
        spool.count_dropped("exp", 0)
        assert spool.dropped("exp") == 3
        assert spool.dropped_total("exp") == 3


def test_running_totals_match_the_entries_across_appends_acks_drops_and_reopen(tmp_path):
    path = tmp_path / "s.db"
    payload = {"x": "y" * 50}
    with Spool(path, max_bytes=10_000) as spool:
        entries = [spool.append("exp", "m", payload) for _ in range(300)]  # past the cap: drops happen
        spool.ack(spool.peek(7))
        import sqlite3

        reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        count, size = reader.execute("SELECT COUNT(*), SUM(size_bytes) FROM entries").fetchone()
        reader.close()
        assert (spool.depth(), spool.size_bytes()) == (count, size)
        assert spool.size_bytes() <= 10_000
        assert len(entries) == 300
    with Spool(path, max_bytes=10_000) as reopened:
        assert (reopened.depth(), reopened.size_bytes()) == (count, size)


def test_a_spool_from_before_the_totals_table_gets_its_totals_computed(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE entries (seq INTEGER PRIMARY KEY AUTOINCREMENT, experiment_key TEXT NOT NULL, endpoint TEXT NOT NULL,"
        " kind TEXT NOT NULL, request_id TEXT NOT NULL UNIQUE, payload TEXT NOT NULL, size_bytes INTEGER NOT NULL,"
        " created_ms INTEGER NOT NULL);"
        "INSERT INTO entries VALUES (NULL, 'exp', 'm', 'periodic', 'r1', '{}', 2, 1);"
        "INSERT INTO entries VALUES (NULL, 'exp', 'm', 'periodic', 'r2', '{}', 2, 1);"
    )
    conn.close()
    with Spool(path) as spool:
        assert (spool.depth(), spool.size_bytes()) == (2, 4)
        spool.ack(spool.peek(1))
        assert (spool.depth(), spool.size_bytes()) == (1, 2)


def test_a_recorded_batch_survives_reopen_and_leaves_with_its_entries(tmp_path):
    path = tmp_path / "spool.db"
    with Spool(path) as spool:
        entries = [spool.append("exp1", "metrics_batch", {"values": [i]}) for i in range(4)]
        spool.record_batch(entries[:3], "first..third")
    with Spool(path) as spool:
        assert spool.batch_ids(entries) == {
            entries[0].seq: "first..third",
            entries[1].seq: "first..third",
            entries[2].seq: "first..third",
        }
        assert [member.payload["values"] for member in spool.batch_members("first..third")] == [[0], [1], [2]]
        spool.ack(entries[:1])  # an entry that leaves the spool leaves its batch
        spool.quarantine(entries[1], "refused")
        assert [member.seq for member in spool.batch_members("first..third")] == [entries[2].seq]
        spool.forget_batch("first..third")
        assert spool.batch_ids(entries) == {} and spool.batch_members("first..third") == []
        assert spool.depth() == 2


def test_an_entry_dropped_at_the_cap_leaves_its_batch(tmp_path):
    payload = {"values": ["x" * 100]}
    size = len(json.dumps(payload, separators=(",", ":")))
    with Spool(tmp_path / "spool.db", max_bytes=3 * size) as spool:
        entries = [spool.append("exp1", "metrics_batch", payload) for _ in range(3)]
        spool.record_batch(entries, "b")
        spool.append("exp1", "metrics_batch", payload)  # drops the oldest
        assert [member.seq for member in spool.batch_members("b")] == [entries[1].seq, entries[2].seq]


def test_overlapping_peeks_answer_what_a_fresh_read_does(tmp_path):
    # The sender peeks overlapping windows; entries seen by the last peek are not decoded again,
    # and that must never hand back another row's payload.
    path = tmp_path / "spool.db"
    with Spool(path) as spool:
        for i in range(6):
            spool.append("exp1", "metrics_batch", {"i": i})
        first = spool.peek(4)
        spool.ack(first[:2])
        spool.append("exp2", "metrics_batch", {"i": 100})
        again = spool.peek(10)
        assert again[:2] == first[2:4]
        other = spool.peek(10, experiment_key="exp2")
        assert [e.payload["i"] for e in other] == [100]
        with Spool(path) as fresh:
            assert fresh.peek(10) == again
        assert [e.payload["i"] for e in again] == [2, 3, 4, 5, 100]


def test_the_drop_count_counts_samples_not_pushes(tmp_path):
    # A full-resolution push holds every sample of its window: dropping it drops that many samples.
    def push(first_ms: int, samples: int) -> dict:
        return {
            "values": [
                {"metricName": name, "metricValue": 1.0, "timestamp": first_ms + 1000 * i}
                for i in range(samples)
                for name in ("sys.cpu.percent.avg", "sys.ram.used")
            ]
        }

    size = len(json.dumps(push(1_000_000, 3), separators=(",", ":"), sort_keys=True))
    with Spool(tmp_path / "s.db", max_bytes=size * 2) as spool:
        spool.append("exp", "metrics_batch", push(1_000_000, 3))
        spool.append("exp", "metrics_batch", push(1_003_000, 3))
        spool.append("exp", "metrics_batch", push(1_006_000, 3))  # the first push (3 samples) goes
        spool.append("exp", "output", {"output": "x" * 10, "stderr": False})  # room for it: the second goes
        assert spool.dropped("exp") == 6
    assert samples_in('{"values": []}') == 1 and samples_in("not json") == 1 and samples_in({"output": "x"}) == 1
