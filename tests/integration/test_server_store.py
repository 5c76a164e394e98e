"""The server's SQLite store on a real database in tmp_path: summaries, merges, atomicity."""

from __future__ import annotations

import json
import math
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comet_agent.server.store import Store, key_id_of, render_value

KEY_ID = key_id_of("test-key-store")

metric_values = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.text(max_size=5),
    st.booleans(),
)


@pytest.fixture
def store(tmp_path):
    opened = Store(tmp_path / "store")
    yield opened
    opened.close()


def new_experiment(store: Store) -> str:
    with store.transaction():
        store.ensure_workspace("ws", KEY_ID)
        return store.create_experiment("ws", "general", None)


def finite_number(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(points=st.lists(st.tuples(metric_values, st.one_of(st.none(), st.integers(0, 100))), min_size=1, max_size=30))
def test_the_summary_is_min_max_over_numbers_and_current_is_the_last_point(store, points):
    experiment_key = new_experiment(store)
    rows = [("m", value, step, None, None, 1000 + i) for i, (value, step) in enumerate(points)]
    with store.transaction():
        store.add_metrics(experiment_key, rows)
    (summary,) = store.metrics_summary(experiment_key)
    numbers = [(finite_number(value), i) for i, (value, _) in enumerate(points) if finite_number(value) is not None]
    last_value, last_step = points[-1]
    assert summary["valueCurrent"] == render_value(json.dumps(last_value))
    assert (summary["stepCurrent"], summary["timestampCurrent"]) == (last_step, 1000 + len(points) - 1)
    if not numbers:
        assert summary["valueMin"] is None and summary["valueMax"] is None
    else:
        smallest = min(numbers, key=lambda pair: pair[0])
        largest = max(numbers, key=lambda pair: pair[0])
        assert float(summary["valueMin"]) == smallest[0] and float(summary["valueMax"]) == largest[0]
        # The first point reaching the extreme gives the timestamp.
        assert summary["timestampMin"] == 1000 + min(i for n, i in numbers if n == smallest[0])
        assert summary["timestampMax"] == 1000 + min(i for n, i in numbers if n == largest[0])
    assert len(store.metrics(experiment_key)) == len(points)


@pytest.mark.parametrize(
    "value, rendered",
    [
        (0.5, "0.5"),
        (3, "3"),
        (1.0, "1.0"),
        (True, "true"),
        ("text", "text"),
        (None, None),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        ([1, 2], "[1,2]"),
    ],
)
def test_values_render_as_comet_strings(value, rendered):
    assert render_value(json.dumps(value)) == rendered


def test_a_failed_write_leaves_nothing(store):
    experiment_key = new_experiment(store)
    with pytest.raises(sqlite3.IntegrityError):
        with store.transaction():
            store.add_metrics(experiment_key, [("m", 1, None, None, None, 1)])
            store.add_other(experiment_key, None, 2, 2)  # name is NOT NULL: fails after the first insert
    assert store.metrics(experiment_key) == []


def test_a_failed_write_inside_a_group_rolls_back_only_itself(store):
    experiment_key = new_experiment(store)
    store.begin_group()
    with store.transaction():
        store.add_metrics(experiment_key, [("kept", 1, None, None, None, 1)])
    with pytest.raises(sqlite3.IntegrityError):
        with store.transaction():
            store.add_metrics(experiment_key, [("lost", 1, None, None, None, 1)])
            store.add_other(experiment_key, None, 2, 2)
    store.commit_group()
    assert [p["metricName"] for p in store.metrics(experiment_key)] == ["kept"]


def test_the_data_survives_a_reopen_in_wal_mode(tmp_path):
    first = Store(tmp_path / "s")
    experiment_key = new_experiment(first)
    with first.transaction():
        first.merge_system_details(experiment_key, {"hostname": "h"})
    first.close()
    second = Store(tmp_path / "s")
    try:
        assert second.connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert second.system_details(experiment_key)["hostname"] == "h"
    finally:
        second.close()


def test_commits_never_checkpoint_the_wal_and_the_checkpointer_does(tmp_path):
    """A COMMIT does not pay for a checkpoint (SQLite's automatic one is off); the WalCheckpointer,
    on its own connection, copies the WAL back, after which the writer starts the WAL over."""
    from comet_agent.server.store import WalCheckpointer

    store = Store(tmp_path / "store")
    try:
        assert store.connection.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        store.checkpointer.stop()  # its thread would checkpoint on its own; here the test drives it
        key = new_experiment(store)
        wal = store.checkpointer.wal_path
        for step in range(800):  # a commit each: ~1,600 pages, past SQLite's automatic 1,000
            with store.transaction():
                store.add_metrics(key, [("loss", step * 0.5, step, None, None, 1_000 + step)])
        assert wal.stat().st_size > 5 * 1024 * 1024, "no commit checkpointed (it would have started the WAL over)"
        checkpointer = WalCheckpointer(store.database_path, min_wal_bytes=1024)
        assert checkpointer.run_once() and checkpointer.checkpoints == 1
        assert not checkpointer.run_once(), "nothing changed since: no second checkpoint"
        with store.transaction():  # the WAL is checkpointed: this write starts it over
            store.add_metrics(key, [("loss", 1.0, 800, None, None, 2_000)])
        probe = sqlite3.connect(store.database_path)
        try:
            _busy, wal_frames, _done = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            assert wal_frames < 10, "the WAL was started over after the checkpoint"
            assert probe.execute("SELECT COUNT(*) FROM metrics WHERE experiment_key=?", (key,)).fetchone()[0] == 801
        finally:
            probe.close()
        checkpointer.stop()
    finally:
        store.close()
    reopened = Store(tmp_path / "store")
    try:
        assert len(reopened.metrics(key, "loss")) == 801
    finally:
        reopened.close()


def test_a_store_can_keep_sqlites_own_checkpoints(tmp_path):
    store = Store(tmp_path / "store", background_checkpoints=False)
    try:
        assert store.checkpointer is None
        assert store.connection.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    finally:
        store.close()
