"""Delivery under faults: outages, SIGKILL loops, a crash between ack and delete, the spool cap, SIGTERM.

Oracle: a sample is a spool entry, named by its ``request_id``. "Reached the spool" is what a
read-only reader of the spool file saw; "delivered" is a request the server answered 2xx.
"""

from __future__ import annotations

import random
import signal
import time

from tests.faults.support import (
    BATCH_PATH,
    OTHER_PATH,
    backend,
    cpu_pushes,
    cpu_stamp,
    delivered_ids,
    dropped_total,
    entry_id,
    kill,
    spool_rows,
    start,
    terminate,
    wait_drained,
    wait_for,
)
from tests.support.recording_server import Fault

WRITE_PATHS = (BATCH_PATH,)


def _outage(server, status: int = 503) -> None:
    """Every metric write answers ``status`` until ``server.remove_faults()``."""
    for path in WRITE_PATHS:
        server.add_fault(Fault(status=status), times=10**6, path=path)


def _note(rows, seen, sample_times: dict) -> None:
    if isinstance(seen, dict):
        seen.update((r[2], r[0]) for r in rows)  # id -> seq, where the order matters
    else:
        seen.update(r[2] for r in rows)
    sample_times.update((r[2], r[5]) for r in rows)


def _watch_spool(data_dir, seconds: float, seen: set, probe_sizes: list, sample_times: dict, until=None) -> None:
    """Poll the spool for ``seconds`` (or until ``until()`` is true): every request id seen there (and
    its push's sample time, which tells which coalesced batch carried it), and each probe's total
    payload bytes."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (until is not None and until()):
        rows = spool_rows(data_dir)
        _note(rows, seen, sample_times)
        probe_sizes.append(sum(r[3] for r in rows))
        time.sleep(0.05)


def test_503_stretch_then_recovery_delivers_every_sample_once_in_order_under_the_cap(tmp_path):
    """Pass: after a 6 s stretch of 503s, every CPU sample that reached the spool is answered 2xx exactly
    once, CPU timestamps arrive strictly increasing, and the spool stayed under its cap at every probe."""
    cap_bytes = 64 * 1024
    data_dir = tmp_path / "data"
    with backend() as server:
        agent = start(server, data_dir, env={"COMET_AGENT_SPOOL_MAX_BYTES": str(cap_bytes)})
        try:
            wait_for(lambda: cpu_pushes(server), 20, what="a first CPU push")
            _outage(server)
            seen: set = set()
            sizes: list = []
            times: dict = {}
            _watch_spool(data_dir, 6.0, seen, sizes, times)
            server.remove_faults()
            wait_drained(data_dir)
        finally:
            status, stderr = terminate(agent)
        assert status == 0, stderr
        cpu = cpu_pushes(server)
        delivered = delivered_ids(server, sample_times=times)
    ids = [entry_id(r) for r in cpu]
    stamps = [
        point["timestamp"] for r in cpu for point in r.json["values"] if point["metricName"] == "sys.cpu.percent.avg"
    ]
    assert len(ids) == len(set(ids)), "no request acknowledged twice"
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), "in order, once each"
    assert len(delivered) == len(set(delivered)), "no sample delivered twice"
    assert seen <= set(delivered), "every sample that reached the spool was delivered"
    assert len(seen) >= 4, "samples were spooled during the outage"
    assert max(sizes) <= cap_bytes
    assert dropped_total(data_dir) == 0
    assert "Traceback" not in stderr


def test_repeated_sigkill_at_seeded_random_moments_loses_nothing_that_reached_the_spool(tmp_path):
    """Pass: across at least 6 SIGKILLs at seeded random moments (server down in every other run), every
    request id ever seen in the spool is answered 2xx after a final clean run; every restart logs no
    traceback. A loaded machine spools fewer samples per run: the kills go on (at most 12) until at
    least 10 ids were seen, so the check never passes on too few."""
    rng = random.Random(8)
    data_dir = tmp_path / "data"
    seen: set = set()
    times: dict = {}
    with backend() as server:
        for iteration in range(12):
            # Stop only after a run with the server down, so the final clean run starts with a
            # spool to drain (with none, its SIGTERM could come before its handler is in place).
            if iteration >= 6 and iteration % 2 == 0 and len(seen) >= 10:
                break
            if iteration % 2:
                _outage(server)
            agent = start(server, data_dir)
            try:
                wait_for(lambda: spool_rows(data_dir) or delivered_ids(server), 20, what="the agent to spool")
                _watch_spool(data_dir, rng.uniform(0.2, 2.5), seen, [], times)
            finally:
                stderr = kill(agent)
            assert "Traceback" not in stderr, stderr
            _note(spool_rows(data_dir), seen, times)
            server.remove_faults()
        agent = start(server, data_dir)
        try:
            wait_drained(data_dir)
        finally:
            status, stderr = terminate(agent)
    assert status == 0, stderr
    lost = seen - set(delivered_ids(server, sample_times=times))
    assert len(seen) >= 10 and not lost, f"{len(lost)} of {len(seen)} spooled samples were lost"


def test_crash_between_server_ack_and_spool_delete_resends_the_same_id_once(tmp_path):
    """Pass: the agent is SIGKILLed while the server holds a CPU write it has applied; after a restart the
    write is resent once with the same request id and body, so an id-honouring server counts it once
    (the local server's dedupe is proved in tests/integration/test_idempotent_writes.py)."""
    data_dir = tmp_path / "data"
    with backend() as server:
        agent = start(server, data_dir)
        try:
            wait_for(lambda: cpu_pushes(server), 20, what="a first CPU push")
            before = len(server.requests_to(BATCH_PATH))
            server.add_fault(Fault(delay_s=5), times=1, path=BATCH_PATH)  # "applied", reply held back
            wait_for(lambda: len(server.requests_to(BATCH_PATH)) > before, 10, what="the held CPU write")
            held = server.requests_to(BATCH_PATH)[before]
        finally:
            kill(agent)
        assert entry_id(held) in {r[2] for r in spool_rows(data_dir)}, "not deleted: the ack never arrived"
        agent = start(server, data_dir)
        try:
            wait_drained(data_dir)
        finally:
            status, _ = terminate(agent)
        resends = [r for r in server.requests_to(BATCH_PATH) if entry_id(r) == entry_id(held)]
        all_cpu = cpu_pushes(server, status=None)
    assert len(resends) == 2, "the held write and exactly one resend"
    assert resends[1].json == held.json
    by_id = {entry_id(r): cpu_stamp(r) for r in all_cpu}
    assert len(by_id) == len(set(by_id.values())), "deduped by id, no timestamp is counted twice"


def test_spool_cap_drops_oldest_with_an_exact_count_reported_to_the_experiment(tmp_path):
    """Pass: with a 12 KiB cap and the server down until at least 8 samples were dropped, the spool stays
    under the cap; the samples seen in the spool but never delivered are exactly the spool's drop count
    (none is both dropped and delivered), they are the oldest but the one in flight, and the experiment
    receives comet_agent.dropped_samples equal to that count.

    The cap holds a few pushes, so each sample sits in the spool for seconds before it can be dropped:
    the 50 ms poller sees every one of them even on a loaded machine."""
    cap_bytes = 12 * 1024
    data_dir = tmp_path / "data"
    with backend() as server:
        agent = start(server, data_dir, env={"COMET_AGENT_SPOOL_MAX_BYTES": str(cap_bytes)})
        try:
            wait_for(lambda: cpu_pushes(server), 20, what="a first CPU push")
            _outage(server)
            seen: dict = {}
            sizes: list = []
            times: dict = {}
            _watch_spool(data_dir, 40.0, seen, sizes, times, until=lambda: dropped_total(data_dir) >= 8)
            dropped_during = dropped_total(data_dir)
            kept_seqs = [r[0] for r in spool_rows(data_dir) if r[4] == "periodic"]  # static ones are never dropped
            seen_in_outage = dict(seen)
            server.remove_faults()
            # keep watching while the backlog drains: pushes made meanwhile can still meet a full spool
            _watch_spool(data_dir, 40.0, seen, [], times, until=lambda: not spool_rows(data_dir))
            wait_drained(data_dir)
            wait_for(
                lambda: [
                    r
                    for r in server.requests_to(OTHER_PATH)
                    if r.json and r.json.get("key") == "comet_agent.dropped_samples"
                ],
                10,
                what="the drop report",
            )
        finally:
            status, stderr = terminate(agent)
        assert status == 0, stderr
        total = dropped_total(data_dir)
        reports = [
            r.json
            for r in server.requests_to(OTHER_PATH)
            if r.json and r.json.get("key") == "comet_agent.dropped_samples" and r.answered_status == 200
        ]
        delivered = set(delivered_ids(server, sample_times=times))
    assert dropped_during >= 8, "the outage outgrew the cap"
    assert max(sizes) <= cap_bytes
    lost = set(seen) - delivered
    assert len(lost) == total, (len(lost), total)
    lost_in_outage = [seen_in_outage[i] for i in lost if i in seen_in_outage]
    # oldest first; the head entry the sender is sending is protected (sent, so never counted as dropped)
    assert lost_in_outage and max(lost_in_outage) < min(sorted(kept_seqs)[1:]), "the oldest were dropped"
    assert str(reports[-1]["value"]) == str(total)
    assert stderr.count("spool at its cap") >= 1


def test_sigterm_during_an_outage_exits_within_the_stop_timeout_and_loses_nothing(tmp_path):
    """Pass: SIGTERM while every write fails makes the agent exit within stop timeout (3 s) + 5 s of
    interpreter teardown, saying the rest waits in the spool; a restart against a healthy server
    delivers every sample that was in the spool."""
    data_dir = tmp_path / "data"
    with backend() as server:
        agent = start(server, data_dir)
        try:
            wait_for(lambda: cpu_pushes(server), 20, what="a first CPU push")
            _outage(server)
            wait_for(lambda: len(spool_rows(data_dir)) >= 8, 20, what="samples waiting in the spool")
        finally:
            agent.send_signal(signal.SIGTERM)
            status, stderr = terminate(agent, timeout_s=8)
        rows = spool_rows(data_dir)
        pending, times = {r[2] for r in rows}, {r[2]: r[5] for r in rows}
        assert pending, "the outage left samples in the spool"
        assert "not everything was delivered" in stderr or "not delivered yet" in stderr, stderr
        server.remove_faults()
        agent = start(server, data_dir)
        try:
            wait_drained(data_dir)
        finally:
            terminate(agent)
        assert pending <= set(delivered_ids(server, sample_times=times))
    assert "Traceback" not in stderr
