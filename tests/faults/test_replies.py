"""What the agent does with each kind of bad reply: status codes, Retry-After, hangs, torn and garbage
replies, redirects to another host, a rejected key."""

from __future__ import annotations

import email.utils
import stat
import time

import pytest

from comet_agent.api.api import API
from comet_agent.api.client import RetryPolicy
from comet_agent.api.experiment import APIExperiment
from comet_agent.delivery.sender import MAX_RETRY_AFTER_S, Sender
from comet_agent.delivery.spool import Spool
from tests.faults.support import (
    BATCH_PATH,
    EXPERIMENT_KEY,
    backend,
    delivered_ids,
    entry_id,
    spool_rows,
    start,
    terminate,
    wait_for,
)
from tests.support.recording_server import Fault, RecordingServer


def _inject(server, fault: Fault) -> "object":
    """Apply ``fault`` to the next metric batch; return that request once the agent sent it and the
    server has moved on to a later batch answered 2xx (the fault was handled, one way or the other)."""
    start_index = len(server.requests_to(BATCH_PATH))
    server.add_fault(fault, times=1, path=BATCH_PATH)
    faulted = wait_for(
        lambda: server.requests_to(BATCH_PATH)[start_index : start_index + 1], 30, what=f"the batch that meets {fault}"
    )[0]
    wait_for(
        lambda: any(
            r.answered_status == 200 and r is not faulted and entry_id(r) != entry_id(faulted).split(".")[0]
            for r in server.requests_to(BATCH_PATH)[start_index + 1 :]
        ),
        30,
        what="a later batch delivered",
    )
    return faulted


RETRIED = (408, 429, 500, 502, 503, 504)
DROPPED = (400, 404, 409)
KEY_REJECTED = (401, 403)


def test_status_code_matrix_causes_exactly_the_stated_requests(tmp_path):
    """Pass: for one metric batch each: 408, 429 and 5xx cost exactly 2 requests with the batch's id (the
    failure, then the success); 400, 404, 409 exactly 1 and the batch is dropped and counted; 401 and 403
    exactly 2 (kept in the spool, resent), with an ERROR naming the key's source and never the key;
    413 makes the batch go out as two halves with derived ids."""
    data_dir = tmp_path / "data"
    faulted: dict = {}
    with backend() as server:
        agent = start(server, data_dir)
        try:
            wait_for(lambda: delivered_ids(server, BATCH_PATH), 20, what="a first batch")
            for status in RETRIED + DROPPED + KEY_REJECTED + (413,):
                faulted[status] = entry_id(_inject(server, Fault(status=status)))
            # the halves of the split batch are sent before the next entry
        finally:
            code, stderr = terminate(agent)
        sent = [entry_id(r) for r in server.requests_to(BATCH_PATH)]
        ok = set(delivered_ids(server, BATCH_PATH))
    assert code == 0, stderr
    for status in RETRIED + KEY_REJECTED:
        assert sent.count(faulted[status]) == 2 and faulted[status] in ok, (status, sent.count(faulted[status]))
    for status in DROPPED:
        assert sent.count(faulted[status]) == 1 and faulted[status] not in ok, status
    split = faulted[413]
    assert sent.count(split) == 1 and {split + ".a", split + ".b"} <= ok
    assert "API key from environment variable COMET_API_KEY was rejected" in stderr
    assert stderr.count("refused a metrics_batch record for good") == 3, "each permanent status logged once"
    assert server.api_key not in stderr
    assert not spool_rows(data_dir)


def test_retry_after_seconds_http_date_and_custom_are_honoured(tmp_path):
    """Pass: after a 429 with Retry-After: 2, with an HTTP date 3 s ahead, and with Retry-After-Custom: 2.0,
    the same batch is not resent before the requested wait (minus 0.1 s; for the date, what is left of
    it when the 429 went out), and then is delivered."""
    data_dir = tmp_path / "data"
    gaps: dict = {}
    with backend() as server:
        agent = start(server, data_dir)
        try:
            wait_for(lambda: delivered_ids(server, BATCH_PATH), 20, what="a first batch")
            for name, headers, floor_s in (
                ("seconds", lambda: {"Retry-After": "2"}, lambda faulted, sent: 1.9),
                # Made when injected, 3 s ahead; the 429 goes out with the next batch, up to a push
                # interval later, so the wait it asks for is the date (1 s resolution) less the moment
                # that batch arrived.
                (
                    "date",
                    lambda: {"Retry-After": email.utils.formatdate(time.time() + 3, usegmt=True)},
                    lambda faulted, sent: (
                        email.utils.parsedate_to_datetime(sent["Retry-After"]).timestamp()
                        - (time.time() - (time.monotonic() - faulted.received_monotonic_s))
                        - 0.1
                    ),
                ),
                ("custom", lambda: {"Retry-After-Custom": "2.0"}, lambda faulted, sent: 1.9),
            ):
                sent = headers()
                faulted = _inject(server, Fault(status=429, headers=sent))
                retry = wait_for(
                    lambda faulted=faulted: [
                        r
                        for r in server.requests_to(BATCH_PATH)
                        if entry_id(r) == entry_id(faulted) and r is not faulted
                    ],
                    10,
                    what="the retry",
                )[0]
                gaps[name] = (retry.received_monotonic_s - faulted.received_monotonic_s, floor_s(faulted, sent))
                assert retry.answered_status == 200
        finally:
            code, stderr = terminate(agent)
    assert code == 0, stderr
    for name, (gap_s, floor_s) in gaps.items():
        assert gap_s >= floor_s, f"{name}: resent after {gap_s:.2f} s"


@pytest.mark.parametrize("header", [{"Retry-After": "999999"}, {"Retry-After-Custom": "1e9"}])
def test_a_huge_retry_after_is_capped(tmp_path, header):
    """Pass: a 429 asking for days makes the sender wait exactly MAX_RETRY_AFTER_S (600 s), not days."""
    with RecordingServer() as server:
        server.add_fault(Fault(status=429, headers=header), times=1, path=BATCH_PATH)
        api = API(
            api_key="cap-test-key-0123456789", url_override=server.clientlib_url, retry=RetryPolicy(max_retries=0)
        )
        experiment = APIExperiment(api=api, previous_experiment=EXPERIMENT_KEY)
        with Spool(tmp_path / "spool.db") as spool:
            spool.append(
                EXPERIMENT_KEY, "metrics_batch", {"values": [{"metricName": "m", "metricValue": 1, "timestamp": 1}]}
            )
            wait_s = Sender(spool, lambda key: experiment).send_pending()
            assert spool.depth() == 1, "kept for the retry"
        api.close()
    assert wait_s == MAX_RETRY_AFTER_S


def test_hung_torn_garbage_wrong_type_and_html_replies_are_retried_cleanly(tmp_path):
    """Pass: a reply that never comes (read timeout, 10 s), a body torn mid-way, garbage JSON, a non-JSON
    text/plain body and a proxy's HTML 502 page each fail one attempt without a traceback, and the same
    batch id is sent exactly once more and answered 200."""
    data_dir = tmp_path / "data"
    faults = {
        "hung": Fault(delay_s=11),
        "torn": Fault(status=200, body=b'{"msg": "Saved", "padding": "' + b"x" * 200 + b'"}', partial_body_bytes=10),
        "garbage": Fault.garbage(200),
        "wrong type": Fault(status=200, body=b"saved, probably", content_type="text/plain"),
        "html": Fault.html_error_page(502),
    }
    ids: dict = {}
    with backend() as server:
        agent = start(server, data_dir)
        try:
            wait_for(lambda: delivered_ids(server, BATCH_PATH), 20, what="a first batch")
            for name, fault in faults.items():
                ids[name] = entry_id(_inject(server, fault))
        finally:
            code, stderr = terminate(agent)
        tries = {
            name: [r for r in server.requests_to(BATCH_PATH) if entry_id(r) == request_id]
            for name, request_id in ids.items()
        }
    assert code == 0, stderr
    for name, attempts in tries.items():
        # the faulty answer, then one clean 200 (a 2xx with a broken body is not an acknowledgement)
        assert len(attempts) == 2, (name, len(attempts))
        assert attempts[1].answered_status == 200, name
    assert "Traceback" not in stderr and " ERROR " not in stderr, "a transient fault is retried, not an error"


def test_a_redirect_to_another_host_does_not_carry_the_key(tmp_path):
    """Pass: a 307 from the configured server to 127.0.0.2 is followed without the key: the other host
    sees no Authorization header and the key nowhere in any request."""
    data_dir = tmp_path / "data"
    with backend() as server, RecordingServer(host="127.0.0.2") as other:
        agent = start(server, data_dir)
        try:
            wait_for(lambda: delivered_ids(server, BATCH_PATH), 20, what="a first batch")
            server.add_fault(
                Fault(status=307, headers={"Location": f"http://127.0.0.2:{other.port}{BATCH_PATH}"}),
                times=1,
                path=BATCH_PATH,
            )
            wait_for(lambda: other.requests, 20, what="the redirected request")
        finally:
            code, stderr = terminate(agent)
        foreign = list(other.requests)
    assert code == 0, stderr
    assert foreign and all(r.header("Authorization") is None for r in foreign)
    for r in foreign:
        assert (
            server.api_key not in (r.path + repr(r.query) + repr(r.headers)) and server.api_key.encode() not in r.body
        )


def test_a_wrong_key_from_a_key_file_is_named_and_the_data_kept(tmp_path):
    """Pass: a key the server rejects (401), read from COMET_API_KEY_FILE, never stops the agent: the
    log names the file, never the key; the snapshot collected meanwhile stays in the spool."""
    wrong = "WRONG-canary-" + "ab12" * 8
    key_file = tmp_path / "api-key"
    key_file.write_text(wrong + "\n")
    key_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
    data_dir = tmp_path / "data"
    with backend() as server:
        server.add_fault(Fault(status=401, body=b'{"msg": "Invalid API key"}'), times=10**6)
        agent = start(server, data_dir, env={"COMET_API_KEY": "", "COMET_API_KEY_FILE": str(key_file)})
        try:
            wait_for(
                lambda: [r for r in spool_rows(data_dir) if r[1] == "system_details"] and server.requests,
                30,
                what="the snapshot spooled and a request refused",
            )
            assert agent.poll() is None, "a rejected key never stops the agent"
        finally:
            code, stderr = terminate(agent)
        seen = [r for r in server.requests]
    assert code == 0, stderr
    assert str(key_file) in stderr
    assert wrong not in stderr and "Traceback" not in stderr
    assert any(r.header("Authorization") == wrong for r in seen), "the key was sent where it belongs"
    assert [r for r in spool_rows(data_dir) if r[1] == "system_details"], "the snapshot waits in the spool"
