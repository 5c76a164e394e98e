"""The sender: drains the spool through ``APIExperiment``, in order, at least once, never twice.

Each spooled entry names the client call that carries it (``endpoint``) and its arguments
(``payload``). The sender sends entries strictly in spool order; an entry is deleted from the
spool only after the server acknowledged it. Every write of one entry goes inside
``APIExperiment.idempotent(entry.request_id)``, so a resend after a crash (or after a reply lost
on the way back) carries the same ids and is applied once by a server that honours them.

Consecutive ``metrics_batch`` entries of one experiment (a backlog after an outage, a spool left
by an earlier run) travel together: one metric batch of at most ``MAX_COALESCED_POINTS`` points,
in spool order. Before the first attempt the group is recorded in the spool
(``Spool.record_batch``) under the id ``<first request id>..<last request id>``, and every resend,
in this process or after a restart, sends exactly those entries under that id, so the
at-most-once promise holds for the group as it does for one entry. An entry that was already
tried alone never joins a group (it goes alone again, under its own id): one tried and not
acknowledged in this process, and the spool's first entry when a sender starts (it may have been
in flight when an earlier run stopped). A group the server refuses as a whole (413, another 4xx,
a payload our client refuses) is forgotten and its entries go one by one, so one bad entry is set
aside alone.

What each failure leads to. Its class comes from ``comet_agent.errors.classify`` (the one place
that decides it, shared with the REST client's retries), the waits from the same ``RetryPolicy``
type the client uses (``comet_agent.delivery.retry``):

| failure | what happens |
|---|---|
| connection refused or reset, timeout, 408, 5xx, 429 | the entry stays; the sender waits (full-jitter backoff doubling up to ``max_backoff_s``, or the server's ``Retry-After``/``Retry-After-Custom`` when longer, capped at ``MAX_RETRY_AFTER_S``) and resends it, order kept |
| 413 on a metric batch | the batch is split in halves, each sent with its own derived id; a single point that is still too large is dropped and counted |
| 401/403 | the key was rejected: entries stay, one ERROR line naming the key's source, slow retry (``auth_backoff_s``) |
| 400, 404, 409, other 4xx | the entry can never succeed: it is moved to the spool's quarantine table (``Spool.quarantine``), counted in ``rejected``, and logged once per endpoint and status; the entries behind it go on |
| a malformed reply (HTML page, bad JSON) | retried like a 5xx: proxies and restarting servers answer that way |
| an entry we cannot send at all (an unknown record kind, a payload missing its fields) | quarantined like a 4xx |

An entry whose row cannot even be decoded never reaches the sender: ``Spool.peek`` quarantines it.

After each successful send, samples the spool dropped at its cap are reported to the
experiment as the other ``comet_agent.dropped_samples`` (the running total).

When the spool runs empty after a burst that delivered at least ``TRIM_HEAP_AFTER_POINTS``
metric points (a full-resolution push, a drained backlog), the C heap's free pages go back to the
OS (``sources/heap.py``, ``malloc_trim``, which covers every thread's arena). Building, spooling,
decoding, re-encoding and gzipping a push of ~2,000 points leaves ~1 MB of freed memory mapped
otherwise, most of what the agent's RSS grows by at its first full push (bench/README.md). The
push's own thread is done with its share before the burst ends (three requests take longer than
its last few lines), so one trim here covers both; a second one in the push measured no lower.
"""

from __future__ import annotations

import base64
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from comet_agent import errors
from comet_agent.delivery.retry import RetryPolicy
from comet_agent.delivery.spool import Spool, SpoolEntry
from comet_agent.errors import SpoolError
from comet_agent.sources.heap import trim_heap
from comet_agent.warn_once import WarnOnce

if TYPE_CHECKING:
    from comet_agent.api.experiment import APIExperiment

log = logging.getLogger(__name__)

DROPPED_OTHER_KEY = "comet_agent.dropped_samples"
#: The most metric points one coalesced request carries (Comet's metric batch limit).
MAX_COALESCED_POINTS = 1000
#: The longest server-requested wait (``Retry-After``/``Retry-After-Custom``) the sender honours, in seconds.
MAX_RETRY_AFTER_S = 600.0
#: Metric points delivered since the last trim after which a sender that runs out of work trims
#: the C heap: a full-resolution push at 1 s sampling carries ~2,000; a 1 s push ~30, which never
#: pays the trim's ~0.1-0.2 ms each second.
TRIM_HEAP_AFTER_POINTS = 500


def _send_system_details(exp: APIExperiment, p: dict[str, Any]) -> object:
    return exp.update_system_details(p["fields"])


def _send_git_patch(exp: APIExperiment, p: dict[str, Any]) -> object:
    return exp.set_git_patch(base64.b64decode(p["patch_base64"]))


def _send_output(exp: APIExperiment, p: dict[str, Any]) -> object:
    return exp.log_output(p["output"], stderr=p["stderr"], timestamp=p["timestamp_ms"] / 1000.0)


#: endpoint name -> how an entry's payload is sent. One table: adding a record kind is one line.
DISPATCH: dict[str, Callable[[APIExperiment, dict[str, Any]], object]] = {
    "system_details": _send_system_details,
    "git_metadata": lambda exp, p: exp.set_git_metadata(p["user"], p["root"], p["branch"], p["parent"], p["origin"]),
    "git_patch": _send_git_patch,
    "cpu_metrics": lambda exp, p: exp.log_cpu_metrics(p["cpu_metrics"], timestamp=p["timestamp"]),
    "ram_metrics": lambda exp, p: exp.log_ram_metrics(p["total_ram"], p["used_ram"], timestamp=p["timestamp"]),
    "load_metrics": lambda exp, p: exp.log_load_metrics(p["load_avg"], timestamp=p["timestamp"]),
    "gpu_metrics": lambda exp, p: exp.log_gpu_metrics(p["gpus"]),
    "metrics_batch": lambda exp, p: exp.log_metrics_batch(p["values"]),
    "output": _send_output,
    "other": lambda exp, p: exp.log_other(p["key"], p["value"], timestamp=p.get("timestamp_ms", 0) / 1000.0 or None),
    "start_time": lambda exp, p: exp.set_start_time(p["timestamp_ms"]),
    "end_time": lambda exp, p: exp.set_end_time(p["timestamp_ms"]),
    "tags": lambda exp, p: exp.add_tags(p["tags"]),
}


@dataclass
class SenderStats:
    """What the sender did so far (shown by ``comet-agent status``)."""

    sent: int = 0
    rejected: int = 0
    too_large_points: int = 0
    last_success_ms: Optional[int] = None
    last_error: Optional[str] = None
    consecutive_failures: int = 0


class Sender:
    """Drains a ``Spool`` into experiments on a background thread.

    Args:
        spool: the spool to drain.
        experiment_for: returns the ``APIExperiment`` for an experiment key.
        batch_size: entries read from the spool at a time.
        base_backoff_s, max_backoff_s: full-jitter backoff after a retryable failure, in seconds
            (the ``RetryPolicy`` built when ``retry`` is not given).
        auth_backoff_s: wait after a rejected key (the operator must fix it; no need to hammer).
        rng: randomness for jitter (tests pass a seeded one).
        wall_clock_ms: epoch ms, for ``last_success_ms``.
        retry: the policy for the waits between passes; its ``max_retries`` is unused (an entry
            is resent until it is delivered or found permanent).
    """

    def __init__(
        self,
        spool: Spool,
        experiment_for: Callable[[str], APIExperiment],
        *,
        batch_size: int = 50,
        base_backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        auth_backoff_s: float = 60.0,
        rng: Optional[random.Random] = None,
        wall_clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        retry: Optional[RetryPolicy] = None,
    ) -> None:
        self.spool = spool
        self._experiment_for = experiment_for
        self.batch_size = batch_size
        self.retry = retry or RetryPolicy(
            backoff_base_s=base_backoff_s, backoff_max_s=max_backoff_s, retry_after_cap_s=MAX_RETRY_AFTER_S
        )
        self.auth_backoff_s = auth_backoff_s
        self._rng = rng or random.Random()
        self._wall_clock_ms = wall_clock_ms
        self.stats = SenderStats()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._warn = WarnOnce(log)
        self._in_outage = False  # a retryable failure happened since the last delivery
        # Entries tried alone and not done with (and the spool's first entry, which an earlier run
        # may have had in flight): they go alone again, under their own id, never in a group.
        self._alone: set[int] = set()
        self._first_pass = True
        self._points_since_trim = 0
        #: How often the thread handed the C heap's free pages back (``TRIM_HEAP_AFTER_POINTS``).
        self.heap_trims = 0

    # -- one pass --------------------------------------------------------------------------

    def send_pending(self) -> Optional[float]:
        """Send entries in order until the spool is empty or a send fails.

        Returns None when the spool is empty, else the seconds to wait before trying again.
        Never raises for a delivery failure.
        """
        while not self._stop.is_set():
            entries = self.spool.peek(self.batch_size)
            if not entries:
                self.stats.consecutive_failures = 0
                return None
            if self._first_pass:
                self._first_pass = False
                self._alone.add(entries[0].seq)
            batch_ids = self.spool.batch_ids(e for e in entries if e.endpoint == "metrics_batch")
            index = 0
            while index < len(entries):
                entry = entries[index]
                batch_id = batch_ids.get(entry.seq)
                if batch_id is not None:  # recorded by an earlier attempt: exactly the same group again
                    group = self.spool.batch_members(batch_id)
                    done = {member.seq for member in group} | {entry.seq}
                    wait_s = self._send_group(group, batch_id) if group else None
                    index += 1
                    while index < len(entries) and entries[index].seq in done:
                        index += 1
                else:
                    group = self._coalescible(entries, index, batch_ids)
                    if (
                        index > 0
                        and index + len(group) == len(entries) == self.batch_size
                        and self._points_in(entry) is not None
                    ):
                        break  # it may grow with entries beyond this window: form it from the next peek, which starts at it
                    index += len(group)
                    wait_s = self._send_new_group(group) if len(group) > 1 else self._send_entry(entry)
                if wait_s is not None:
                    return wait_s
        return 0.0

    @staticmethod
    def _points_in(entry: SpoolEntry) -> Optional[int]:
        values = entry.payload.get("values") if entry.endpoint == "metrics_batch" else None
        return len(values) if isinstance(values, list) else None

    def _coalescible(self, entries: list[SpoolEntry], index: int, batch_ids: dict[int, str]) -> list[SpoolEntry]:
        """The entries from ``index`` on that can travel as one metric batch (at least the first)."""
        head = entries[index]
        points = self._points_in(head)
        group = [head]
        if points is None or head.seq in self._alone:
            return group
        for entry in entries[index + 1 :]:
            more = self._points_in(entry)
            if (
                more is None
                or entry.experiment_key != head.experiment_key
                or entry.seq in batch_ids
                or entry.seq in self._alone
                or points + more > MAX_COALESCED_POINTS
            ):
                break
            group.append(entry)
            points += more
        return group

    def _send_new_group(self, group: list[SpoolEntry]) -> Optional[float]:
        batch_id = f"{group[0].request_id}..{group[-1].request_id}"
        try:
            self.spool.record_batch(group, batch_id)
        except SpoolError:  # it cannot be recorded, so it cannot be resent as the same group: one by one
            return self._send_one_by_one(group)
        return self._send_group(group, batch_id)

    def _send_one_by_one(self, entries: list[SpoolEntry]) -> Optional[float]:
        for entry in entries:
            wait_s = self._send_entry(entry)
            if wait_s is not None:
                return wait_s
        return None

    def _send_group(self, group: list[SpoolEntry], batch_id: str) -> Optional[float]:
        """Send a recorded group as one metric batch with ``batch_id``; None when it is done with."""
        claimed = [entry for entry in group if self.spool.claim(entry)]  # the rest were dropped at the cap
        try:
            if not claimed:
                return None
            try:
                experiment = self._experiment_for(claimed[0].experiment_key)
                values = [point for entry in claimed for point in entry.payload["values"]]
                with experiment.idempotent(batch_id):
                    experiment.log_metrics_batch(values)
            except errors.CometApiError as exc:
                if not isinstance(exc, errors.PayloadTooLarge) and errors.classify(exc) != errors.Failure.PERMANENT:
                    return self._on_failure(claimed[0], exc)  # the group waits, recorded, and goes again as it is
                return self._ungroup(claimed, batch_id)  # refused as a whole: none of it was applied
            except (OSError, ValueError, KeyError, TypeError):
                return self._ungroup(claimed, batch_id)  # our client refuses it: find the bad entry alone
            return self._acknowledge_all(claimed)
        finally:
            for entry in claimed:
                self.spool.release(entry)

    def _ungroup(self, claimed: list[SpoolEntry], batch_id: str) -> Optional[float]:
        try:
            self.spool.forget_batch(batch_id)
        except SpoolError as exc:
            self._warn(("spool-batch",), logging.ERROR, "%s; retrying in %.0f s", exc, self.retry.backoff_base_s)
            return self.retry.backoff_base_s
        for entry in claimed:
            wait_s = self._send_claimed(entry)
            if wait_s is not None:
                return wait_s
        return None

    def _send_entry(self, entry: SpoolEntry) -> Optional[float]:
        """Send one entry; None when it is done with (acked or dropped), else seconds to wait."""
        if not self.spool.claim(entry):
            self._alone.discard(entry.seq)
            return None  # dropped at the spool's cap since it was peeked: counted there, not sent
        try:
            return self._send_claimed(entry)
        finally:
            self.spool.release(entry)

    def _send_claimed(self, entry: SpoolEntry) -> Optional[float]:
        self._alone.add(entry.seq)  # tried alone from now on: never part of a group
        send = DISPATCH.get(entry.endpoint)
        if send is None:
            return self._reject(
                entry, f"unknown record kind {entry.endpoint!r} (spool from a newer agent?)", by_server=False
            )
        try:
            experiment = self._experiment_for(entry.experiment_key)
            with experiment.idempotent(entry.request_id):
                send(experiment, entry.payload)
        except errors.PayloadTooLarge as exc:
            if entry.endpoint == "metrics_batch":
                return self._send_split(entry)
            return self._on_failure(entry, exc)
        except errors.CometApiError as exc:
            return self._on_failure(entry, exc)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # A payload our own client refuses (ValueError) or cannot read can never succeed.
            return self._reject(entry, f"{type(exc).__name__}: {exc}", by_server=False)
        return self._acknowledge(entry)

    def _send_split(self, entry: SpoolEntry) -> Optional[float]:
        """Send a metric batch the server found too large as halves (recursively), then ack the entry.

        Halves get derived ids (``<id>.a``, ``<id>.b``, ``<id>.a.b``...), the same on every replay."""
        experiment = self._experiment_for(entry.experiment_key)

        def send(values: list[dict[str, Any]], request_id: str) -> None:
            try:
                with experiment.idempotent(request_id):
                    experiment.log_metrics_batch(values)
            except errors.PayloadTooLarge:
                if len(values) == 1:
                    self.stats.too_large_points += 1
                    self._warn(
                        ("too-large-point",),
                        logging.WARNING,
                        "a metric point is larger than the server accepts (413); it was dropped",
                    )
                    return
                middle = len(values) // 2
                send(values[:middle], request_id + ".a")
                send(values[middle:], request_id + ".b")

        values = list(entry.payload["values"])
        middle = len(values) // 2
        try:
            if middle == 0:
                send(values, entry.request_id)  # a single point: dropped and counted inside
            else:
                send(values[:middle], entry.request_id + ".a")
                send(values[middle:], entry.request_id + ".b")
        except errors.CometApiError as exc:
            return self._on_failure(entry, exc)
        return self._acknowledge(entry)

    def _on_failure(self, entry: SpoolEntry, exc: errors.CometApiError) -> Optional[float]:
        """What a failed send leads to (the table in the module docstring): seconds to wait, or
        None once the entry was dropped for good."""
        failure = errors.classify(exc)
        if failure == errors.Failure.UNAUTHORIZED:
            self._note_failure(exc, once_key=("auth",), level=logging.ERROR)
            return self.auth_backoff_s
        if failure == errors.Failure.PERMANENT:
            return self._reject(entry, f"{exc.status} {type(exc).__name__}")
        return self._retry_after(exc)

    def _acknowledge(self, entry: SpoolEntry) -> Optional[float]:
        """Remove a sent entry; on a spool that cannot write, the seconds to wait instead."""
        return self._acknowledge_all([entry])

    def _acknowledge_all(self, entries: list[SpoolEntry]) -> Optional[float]:
        """Remove entries sent together (one transaction); on a spool that cannot write, the seconds to wait instead."""
        try:
            self.spool.ack(entries)
        except SpoolError as exc:
            # The entry stays and is sent again later with the same id (the server dedupes it); wait
            # rather than resend in a tight loop while the disk is full.
            self._warn(("spool-ack",), logging.ERROR, "%s; retrying in %.0f s", exc, self.retry.backoff_base_s)
            return self.retry.backoff_base_s
        self._warn.clear(("spool-ack",))
        self._alone.difference_update(entry.seq for entry in entries)
        self._points_since_trim += sum(self._points_in(entry) or 0 for entry in entries)
        self.stats.sent += len(entries)
        self.stats.consecutive_failures = 0
        self.stats.last_success_ms = self._wall_clock_ms()
        if self._in_outage:
            self._in_outage = False
            log.info("the server accepts data again; sending what waited in the spool")
        self._report_dropped(entries[0].experiment_key)
        return None

    def _report_dropped(self, experiment_key: str) -> None:
        pending = self.spool.dropped(experiment_key)
        if not pending:
            return
        total = self.spool.dropped_total(experiment_key)
        try:
            self._experiment_for(experiment_key).log_other(DROPPED_OTHER_KEY, total)
        except errors.CometApiError:
            return  # reported at the next successful push
        try:
            self.spool.take_dropped(experiment_key, pending)
        except SpoolError:
            return  # the running total is reported again next time: harmless (it is a total, not a delta)

    def _reject(self, entry: SpoolEntry, reason: str, *, by_server: bool = True) -> Optional[float]:
        """Set aside an entry that can never be sent (the spool's quarantine), so the rest flows."""
        try:
            self.spool.quarantine(entry, reason if by_server else f"cannot be sent: {reason}")
        except SpoolError as exc:
            # Still in the spool: refused again on the next pass, and counted then. Wait rather than
            # resend in a tight loop while the disk is full.
            self._warn(("spool-quarantine",), logging.ERROR, "%s; retrying in %.0f s", exc, self.retry.backoff_base_s)
            return self.retry.backoff_base_s
        self._alone.discard(entry.seq)
        self.stats.rejected += 1
        what = "the server refused a %s record for good (%s)" if by_server else "a %s record cannot be sent (%s)"
        self._warn(
            ("reject", entry.endpoint, reason),
            logging.WARNING,
            what + "; it was moved to the quarantine table of %s (further ones are counted, not logged)",
            entry.endpoint,
            reason,
            self.spool.path,
        )
        return None

    def _retry_after(self, exc: errors.CometApiError) -> float:
        self.stats.consecutive_failures += 1
        # Only a 429 carries the server's wait this far (Throttled.retry_after_s); the policy caps it.
        wait_s = self.retry.wait_s(self.stats.consecutive_failures, self._rng, getattr(exc, "retry_after_s", None))
        self._note_failure(exc, once_key=("retry", type(exc).__name__), level=logging.WARNING)
        self._in_outage = True
        return wait_s

    def _note_failure(self, exc: errors.CometApiError, *, once_key: tuple[str, ...], level: int) -> None:
        self.stats.last_error = str(exc)
        self._warn(
            once_key, level, "cannot deliver to the server (%s); data waits in the spool %s", exc, self.spool.path
        )

    # -- the thread ------------------------------------------------------------------------

    def start(self) -> None:
        """Start draining on a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="comet-agent-sender", daemon=True)
            self._thread.start()

    def notify(self) -> None:
        """New entries are in the spool: send them now rather than at the next wake-up."""
        self._idle.clear()
        self._wake.set()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until the thread found the spool empty after the latest ``notify()`` (True), or
        ``timeout_s`` passed (False). Sends nothing itself."""
        return self._idle.wait(timeout_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                wait_s = self.send_pending()
            except Exception as exc:  # a bug or a broken spool must not kill delivery for good
                log.exception("the sender failed unexpectedly; retrying in 5 s: %s", exc)
                wait_s = 5.0
            if wait_s is None:
                self._trim_heap_after_burst()
                self._idle.set()
                self._wake.wait(30.0)
            else:
                self._wake.wait(wait_s)
            self._wake.clear()

    def _trim_heap_after_burst(self) -> None:
        if self._points_since_trim >= TRIM_HEAP_AFTER_POINTS:
            self._points_since_trim = 0
            if trim_heap():
                self.heap_trims += 1

    def flush(self, timeout_s: float) -> bool:
        """Wait until the spool is empty (True) or ``timeout_s`` passed (False).

        Retries go on at their own pace meanwhile; a server that is down keeps the data in the
        spool, where the next start (or ``comet-agent flush``) sends it.
        """
        deadline = time.monotonic() + timeout_s
        self.notify()
        while time.monotonic() < deadline:
            if self.spool.depth() == 0:
                return True
            if self._thread is None:
                wait_s = self.send_pending()
                if wait_s is None:
                    return True
                time.sleep(min(wait_s, max(0.0, deadline - time.monotonic())))
            else:
                # The thread keeps its own backoff: flushing must not hammer a server that is down.
                self._idle.wait(min(0.1, max(0.0, deadline - time.monotonic())))
        return self.spool.depth() == 0

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread (a send in flight finishes or times out); safe to call twice."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
