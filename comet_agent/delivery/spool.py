"""The spool: a durable, bounded, first-in-first-out queue of payloads waiting to be sent.

Every record the agent produces is written here *before* any attempt to send it, and deleted
only after the server acknowledged it (at-least-once delivery). Resends after a crash carry the
same ``request_id``, which the local server uses to apply each write at most once.

Storage is SQLite in WAL mode (stdlib, transactional, survives ``kill -9``); the file is 0600 in a
0700 directory. What is stored: the experiment key, the endpoint name, the JSON payload and its
request id. What is *never* stored: the API key or the server URL: both are bound at send time
from configuration, so a tampered spool cannot send the key elsewhere.

Bounds: the total payload size is capped (``max_bytes``, default 256 MiB). When an append would
exceed it, the oldest *periodic* entries are dropped first (never static ones: the snapshot is
sent once and cannot be re-collected), nor the entry the sender has ``claim()``ed and is sending,
and the number dropped per experiment is counted in the same transaction, so the count is exact. ``take_dropped()`` hands the count to the sender, which
reports it to the experiment at the next successful push.

A spool file that SQLite cannot open or that fails its integrity check is quarantined (renamed to
``<name>.corrupt-<epoch ms>``) with one WARNING line, and a fresh spool is started.

One bad *row* must not stop the rows behind it (they are sent strictly in order): a row that
cannot be decoded (its payload is not a JSON object, a text column is not UTF-8) is moved to the
``quarantine`` table by ``peek()``, and a row the server refuses for good is moved there by the
sender (``quarantine()``). There it can be inspected::

    sqlite3 SPOOL.db 'SELECT seq, endpoint, reason, payload FROM quarantine'

``quarantined_total()`` counts every row ever moved there. The table keeps the latest rows, up
to an eighth of ``max_bytes`` of payload (a larger payload is kept cut to that size); older ones
are deleted, and stay counted. A table dropped behind the spool's back (a hand edit, a damaged
file) is recreated at the next use and the running totals recounted, with one WARNING line.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, TypeVar, cast

from comet_agent.errors import SpoolError
from comet_agent.paths import ensure_private_dir

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 256 * 1024 * 1024

STATIC = "static"
PERIODIC = "periodic"

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    experiment_key TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    kind TEXT NOT NULL,
    request_id TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dropped (
    experiment_key TEXT PRIMARY KEY,
    count INTEGER NOT NULL,          -- dropped and not yet reported to the experiment
    total INTEGER NOT NULL DEFAULT 0 -- dropped since the spool was created
);
-- Running totals kept by triggers in the same transaction as each insert and delete, so that the
-- cap check of every append is O(1) instead of a SUM over the whole spool (which made appends
-- 30x slower after an hour-long outage).
CREATE TABLE IF NOT EXISTS totals (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    entries INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL
);
-- Recounted at every open: a table dropped and recreated, or a row edited by hand, must not leave
-- a phantom count that keeps flush() waiting for entries that do not exist.
INSERT OR REPLACE INTO totals (id, entries, size_bytes)
    SELECT 1, COUNT(*), COALESCE(SUM(size_bytes), 0) FROM entries;
CREATE TRIGGER IF NOT EXISTS totals_after_insert AFTER INSERT ON entries BEGIN
    UPDATE totals SET entries = entries + 1, size_bytes = size_bytes + NEW.size_bytes WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS totals_after_delete AFTER DELETE ON entries BEGIN
    UPDATE totals SET entries = entries - 1, size_bytes = size_bytes - OLD.size_bytes WHERE id = 1;
END;
-- Rows that can never be sent, as they were (no types, no constraints: they may be undecodable).
CREATE TABLE IF NOT EXISTS quarantine (
    seq INTEGER PRIMARY KEY,
    experiment_key, endpoint, kind, request_id, payload, created_ms,
    size_bytes INTEGER NOT NULL,      -- the payload's size before any cut
    reason TEXT NOT NULL,
    quarantined_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
-- The quarantine's payload bytes, kept up to date on each move so that trimming it is not a scan.
INSERT OR REPLACE INTO counters (name, value)
    SELECT 'quarantine_bytes', COALESCE(SUM(length(CAST(payload AS BLOB))), 0) FROM quarantine;
-- Entries the sender coalesced into one request, recorded before the first attempt, so that a
-- resend (after a timeout, or a crash) sends exactly the same entries under the same id.
CREATE TABLE IF NOT EXISTS batched (
    seq INTEGER PRIMARY KEY,
    batch_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS batched_by_id ON batched (batch_id);
CREATE TRIGGER IF NOT EXISTS batched_after_delete AFTER DELETE ON entries BEGIN
    DELETE FROM batched WHERE seq = OLD.seq;
END;
"""

# Text columns are read as bytes and decoded per row, so that one row SQLite cannot hand back as
# text fails alone instead of failing the whole query.
_PEEK_SQL = (
    "SELECT seq, CAST(experiment_key AS BLOB), CAST(endpoint AS BLOB), CAST(kind AS BLOB),"
    " CAST(request_id AS BLOB), CAST(payload AS BLOB), created_ms FROM entries"
)

_QUARANTINED = "quarantined"
_QUARANTINE_BYTES = "quarantine_bytes"


def samples_in(payload: Any) -> int:
    """How many samples a periodic entry holds: the distinct point timestamps of a metric batch
    (a full-resolution push carries every sample of its window), else 1. What the drop count adds
    up, so ``comet_agent.dropped_samples`` counts samples, not pushes. Never raises."""
    try:
        decoded = json.loads(payload) if isinstance(payload, (str, bytes)) else payload
        values = decoded.get("values")
        stamps = {value.get("timestamp") for value in values if isinstance(value, dict)}
    except (TypeError, ValueError, AttributeError):
        return 1
    return max(1, len(stamps))


@dataclass(frozen=True)
class SpoolEntry:
    """One queued payload. ``seq`` orders entries; ``request_id`` makes resends idempotent."""

    seq: int
    experiment_key: str
    endpoint: str
    kind: str
    request_id: str
    payload: dict[str, Any]
    created_ms: int


def _decode_row(row: tuple[Any, ...]) -> SpoolEntry:
    """A ``_PEEK_SQL`` row as an entry; ``ValueError`` saying what is wrong when it cannot be one."""
    seq, *texts, created_ms = row
    decoded = []
    for name, raw in zip(("experiment_key", "endpoint", "kind", "request_id", "payload"), texts):
        if raw is None:
            raise ValueError(f"{name} is null")
        try:
            decoded.append(bytes(raw).decode("utf-8"))
        except UnicodeDecodeError:
            raise ValueError(f"{name} is not UTF-8 text") from None
    experiment_key, endpoint, kind, request_id, text = decoded
    try:
        payload = json.loads(text)
    except RecursionError:
        raise ValueError("payload is nested too deeply") from None
    except ValueError as exc:  # the message says where, never what: no payload content in logs
        raise ValueError(f"payload is not JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise ValueError(f"payload is a JSON {type(payload).__name__}, not an object")
    if not isinstance(created_ms, int):
        raise ValueError("created_ms is not an integer")
    return SpoolEntry(seq, experiment_key, endpoint, kind, request_id, payload, created_ms)


class Spool:
    """A durable FIFO of payloads per experiment, bounded in bytes.

    Args:
        path: the SQLite file (its directory is created 0700; the file is 0600).
        max_bytes: cap on the total size of stored payloads, in bytes.

    Raises:
        SpoolError: when the directory or file cannot be created (with the path in the message).

    Thread-safe: one connection guarded by a lock (the agent has one writer and one sender).
    """

    def __init__(self, path: Path | str, max_bytes: int = DEFAULT_MAX_BYTES):
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        # seqs the sender is sending right now: never dropped at the cap, or a sample could be both
        # delivered and counted as dropped (the drop count must be exact)
        self._claimed: set[int] = set()
        # undecodable rows that could not be moved to the quarantine (disk full): skipped in memory
        self._unmovable: set[int] = set()
        # The last peek's entries by seq: the sender peeks overlapping windows (a group cut at a
        # window's end is formed again from the next peek), and decoding the payload's JSON is
        # most of a peek's cost. A row is never rewritten; its request id tells a reused seq apart.
        self._recent: dict[int, SpoolEntry] = {}
        try:
            ensure_private_dir(self.path.parent)
        except OSError as exc:
            raise SpoolError(f"cannot create spool directory {self.path.parent}: {exc.strerror or exc}") from None
        self._conn = self._open()

    # -- opening, quarantine ---------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and not self._looks_corrupt(exc):
                raise SpoolError(f"cannot open spool {self.path}: {exc}") from None
            self._quarantine_file(str(exc))
            try:
                return self._connect()
            except sqlite3.DatabaseError as exc2:
                raise SpoolError(f"cannot open spool {self.path}: {exc2}") from None

    @staticmethod
    def _looks_corrupt(exc: sqlite3.Error) -> bool:
        text = str(exc).lower()
        return "malformed" in text or "not a database" in text or "corrupt" in text

    def _connect(self) -> sqlite3.Connection:
        # Create the file 0600 before SQLite does, so the umask never widens it.
        if not self.path.exists():
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
        os.chmod(self.path, 0o600)
        conn = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check}")
            conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError:
            conn.close()
            raise
        for suffix in ("-wal", "-shm"):
            side = Path(str(self.path) + suffix)
            if side.exists():
                os.chmod(side, 0o600)
        return conn

    def _quarantine_file(self, reason: str) -> None:
        stamp = int(time.time() * 1000)
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                os.replace(src, Path(str(target) + suffix))
        log.warning("spool %s is unreadable (%s); moved it to %s and started a fresh spool", self.path, reason, target)

    def _locked(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` on the connection under the lock. A table dropped behind our back is
        recreated (and the totals recounted), then ``work`` runs once more. sqlite3 errors propagate."""
        with self._lock:
            try:
                return work(self._conn)
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    raise
                self._rollback()
                # executescript() commits first, and the schema recounts the totals from the rows left.
                self._conn.executescript(_SCHEMA)
                log.warning(
                    "spool %s had lost a table (%s); recreated it and recounted the entries waiting", self.path, exc
                )
                return work(self._conn)

    def _write(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """``work`` in one immediate transaction (see ``_locked``), rolled back on any failure."""

        def transaction(conn: sqlite3.Connection) -> _T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            return result

        return self._locked(transaction)

    # -- writing ---------------------------------------------------------------------------

    def append(
        self,
        experiment_key: str,
        endpoint: str,
        payload: dict[str, Any],
        *,
        kind: str = PERIODIC,
        request_id: Optional[str] = None,
        created_ms: Optional[int] = None,
    ) -> SpoolEntry:
        """Store one payload durably and return its entry.

        Args:
            experiment_key: the experiment the payload belongs to.
            endpoint: which client call sends it (e.g. ``"metrics_batch"``, ``"system_details"``).
            payload: a JSON-serialisable dict (never holding the API key).
            kind: ``"static"`` (never dropped) or ``"periodic"`` (dropped oldest-first at the cap).
            request_id: idempotency id; generated when omitted.
            created_ms: epoch ms; now when omitted.

        Raises:
            SpoolError: the entry could not be stored (disk full, I/O error, larger than the cap).
        """
        text = json.dumps(payload, separators=(",", ":"), sort_keys=True)
        size = len(text.encode("utf-8"))
        if size > self.max_bytes:
            raise SpoolError(f"payload of {size} bytes is larger than the spool cap of {self.max_bytes} bytes")
        request_id = request_id or uuid.uuid4().hex
        created_ms = int(time.time() * 1000) if created_ms is None else int(created_ms)

        def insert(conn: sqlite3.Connection) -> int:
            self._make_room(conn, size)
            cursor = conn.execute(
                "INSERT INTO entries (experiment_key, endpoint, kind, request_id, payload, size_bytes, created_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (experiment_key, endpoint, kind, request_id, text, size, created_ms),
            )
            # Set by every successful INSERT into a rowid table (sqlite3 leaves it None only before one).
            return cast(int, cursor.lastrowid)

        try:
            seq = self._write(insert)
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot write to spool {self.path}: {exc}") from None
        return SpoolEntry(seq, experiment_key, endpoint, kind, request_id, payload, created_ms)

    def _make_room(self, conn: sqlite3.Connection, incoming_bytes: int) -> None:
        used = self._totals(conn)[1]
        excess = used + incoming_bytes - self.max_bytes
        if excess <= 0:
            return
        victims = []
        freed = 0
        # The key as bytes: one row whose key is not UTF-8 must not make every append fail at the cap.
        for seq, key, size, payload in conn.execute(
            "SELECT seq, CAST(experiment_key AS BLOB), size_bytes, payload FROM entries WHERE kind = ? ORDER BY seq",
            (PERIODIC,),
        ):
            if seq in self._claimed:
                continue
            victims.append((seq, bytes(key or b"").decode("utf-8", errors="replace"), samples_in(payload)))
            freed += size
            if freed >= excess:
                break
        if freed < excess:
            raise SpoolError(
                f"spool {self.path} is full of unsent static records ({used} bytes, cap {self.max_bytes}); "
                "nothing periodic left to drop"
            )
        counts: dict[str, int] = {}
        for _seq, key, samples in victims:
            counts[key] = counts.get(key, 0) + samples
        conn.executemany("DELETE FROM entries WHERE seq = ?", [(seq,) for seq, _, _ in victims])
        conn.executemany(
            "INSERT INTO dropped (experiment_key, count, total) VALUES (?, ?, ?)"
            " ON CONFLICT(experiment_key) DO UPDATE SET count = count + excluded.count, total = total + excluded.count",
            [(key, n, n) for key, n in counts.items()],
        )
        log.warning(
            "spool at its cap of %d bytes: dropped the %d oldest periodic entries (%d samples)",
            self.max_bytes,
            len(victims),
            sum(counts.values()),
        )

    @staticmethod
    def _totals(conn: sqlite3.Connection) -> tuple[int, int]:
        # The subquery reads nothing; naming entries makes a dropped entries table fail here (and be
        # recreated, see _locked) instead of its count living on as phantom entries.
        sql = "SELECT entries, size_bytes FROM totals WHERE id = 1 AND NOT EXISTS (SELECT 1 FROM entries WHERE 0)"
        row = conn.execute(sql).fetchone()
        if row is None:  # the row was deleted by hand: count again rather than fail every call
            conn.execute(
                "INSERT OR REPLACE INTO totals (id, entries, size_bytes)"
                " SELECT 1, COUNT(*), COALESCE(SUM(size_bytes), 0) FROM entries"
            )
            row = conn.execute(sql).fetchone()
        return row[0], row[1]

    # -- reading and acknowledging ---------------------------------------------------------

    def peek(self, limit: int = 100, experiment_key: Optional[str] = None) -> list[SpoolEntry]:
        """The oldest ``limit`` entries (optionally of one experiment), in the order they were appended.

        A row that cannot be decoded is moved to the quarantine on the way (one WARNING line per
        row), so that the rows behind it still come out, in order.

        Raises:
            SpoolError: the spool cannot be read.
        """
        while True:
            conditions: list[str] = []
            args: list[object] = []
            if experiment_key is not None:
                conditions.append("experiment_key = ?")
                args.append(experiment_key)
            if self._unmovable:
                conditions.append(f"seq NOT IN ({','.join('?' * len(self._unmovable))})")
                args.extend(sorted(self._unmovable))
            sql = _PEEK_SQL + (" WHERE " + " AND ".join(conditions) if conditions else "") + " ORDER BY seq LIMIT ?"

            def read(
                conn: sqlite3.Connection, sql: str = sql, params: tuple[object, ...] = (*args, int(limit))
            ) -> list[Any]:
                return conn.execute(sql, params).fetchall()

            try:
                rows = self._locked(read)
            except sqlite3.Error as exc:
                raise SpoolError(f"cannot read spool {self.path}: {exc}") from None
            entries, poisoned = [], []
            for row in rows:
                known = self._recent.get(row[0])
                if known is not None and row[4] is not None and bytes(row[4]) == known.request_id.encode():
                    entries.append(known)
                    continue
                try:
                    entries.append(_decode_row(row))
                except ValueError as exc:
                    poisoned.append((row[0], f"undecodable: {exc}"))
            for seq, reason in poisoned:
                self._quarantine_row(seq, reason)
            self._recent = {entry.seq: entry for entry in entries}
            if entries or not poisoned:
                return entries

    def _quarantine_row(self, seq: int, reason: str) -> None:
        try:
            self.quarantine(seq, reason)
        except SpoolError as exc:
            # It cannot leave the table now (disk full?); skip it in this process so the rest still flows.
            self._unmovable.add(seq)
            log.warning(
                "spool %s: row %d is undecodable (%s) and could not be set aside (%s); skipping it",
                self.path,
                seq,
                reason,
                exc,
            )
            return
        log.warning("spool %s: row %d is undecodable (%s); moved it to the quarantine table", self.path, seq, reason)

    def quarantine(self, entry: SpoolEntry | int, reason: str) -> bool:
        """Move an entry (or the row ``seq``) that can never be sent to the ``quarantine`` table,
        with ``reason`` (no payload content, no secret), and count it. False if it was already gone.

        Raises:
            SpoolError: the move could not be committed; the entry stays where it was.
        """
        seq = entry.seq if isinstance(entry, SpoolEntry) else int(entry)
        keep_bytes = max(1, self.max_bytes // 8)

        def move(conn: sqlite3.Connection) -> bool:
            moved = conn.execute(
                "INSERT OR REPLACE INTO quarantine (seq, experiment_key, endpoint, kind, request_id, payload, created_ms,"
                " size_bytes, reason, quarantined_ms)"
                " SELECT seq, experiment_key, endpoint, kind, request_id,"
                " CASE WHEN length(CAST(payload AS BLOB)) <= :keep THEN payload ELSE substr(CAST(payload AS BLOB), 1, :keep) END,"
                " created_ms, COALESCE(length(CAST(payload AS BLOB)), 0), :reason, :now FROM entries WHERE seq = :seq",
                {"keep": keep_bytes, "reason": reason, "now": int(time.time() * 1000), "seq": seq},
            ).rowcount
            if not moved:
                return False
            conn.execute("DELETE FROM entries WHERE seq = ?", (seq,))
            stored = conn.execute(
                "SELECT length(CAST(payload AS BLOB)) FROM quarantine WHERE seq = ?", (seq,)
            ).fetchone()[0]
            self._add_to_counter(conn, _QUARANTINED, 1)
            kept_bytes = self._add_to_counter(conn, _QUARANTINE_BYTES, stored or 0)
            if kept_bytes > keep_bytes:
                self._trim_quarantine(conn, kept_bytes - keep_bytes)
            return True

        try:
            moved = self._write(move)
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot move row {seq} of spool {self.path} to its quarantine: {exc}") from None
        self._unmovable.discard(seq)
        return moved

    @staticmethod
    def _add_to_counter(conn: sqlite3.Connection, name: str, amount: int) -> int:
        conn.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, amount),
        )
        value: int = conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0]
        return value

    @classmethod
    def _trim_quarantine(cls, conn: sqlite3.Connection, excess_bytes: int) -> None:
        # Oldest first, in spool order (the order rows are set aside in), until the rest fits.
        doomed, freed = [], 0
        for seq, size in conn.execute("SELECT seq, length(CAST(payload AS BLOB)) FROM quarantine ORDER BY seq"):
            doomed.append((seq,))
            freed += size or 0
            if freed >= excess_bytes:
                break
        conn.executemany("DELETE FROM quarantine WHERE seq = ?", doomed)
        cls._add_to_counter(conn, _QUARANTINE_BYTES, -freed)

    def quarantined_total(self) -> int:
        """How many rows were ever moved to the quarantine (undecodable, or refused for good by the
        server); the table itself keeps only the newest."""
        row = self._locked(
            lambda conn: conn.execute("SELECT value FROM counters WHERE name = ?", (_QUARANTINED,)).fetchone()
        )
        return row[0] if row else 0

    def claim(self, entry: SpoolEntry) -> bool:
        """Mark an entry as being sent, so the cap cannot drop it meanwhile; False if it is already gone
        (dropped at the cap after it was peeked: it must not be sent). Pair with ``release()``."""

        def mark(conn: sqlite3.Connection) -> bool:
            if conn.execute("SELECT 1 FROM entries WHERE seq = ?", (entry.seq,)).fetchone() is None:
                return False
            self._claimed.add(entry.seq)
            return True

        return self._locked(mark)

    def release(self, entry: SpoolEntry) -> None:
        """End ``claim()``: the entry may be dropped at the cap again (if it is still there)."""
        with self._lock:
            self._claimed.discard(entry.seq)

    def ack(self, entries: Iterable[SpoolEntry | int]) -> int:
        """Delete acknowledged entries (entries or their ``seq``). Returns how many were deleted.

        Raises:
            SpoolError: the deletion could not be committed (disk full, I/O error); the entries
                stay and are sent again later, with the same request ids.
        """
        seqs = [(e.seq if isinstance(e, SpoolEntry) else int(e),) for e in entries]
        if not seqs:
            return 0
        try:
            return self._write(lambda conn: conn.executemany("DELETE FROM entries WHERE seq = ?", seqs).rowcount)
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot delete sent entries from spool {self.path}: {exc}") from None

    # -- coalesced sends -------------------------------------------------------------------

    def batch_ids(self, entries: Iterable[SpoolEntry]) -> dict[int, str]:
        """``{seq: batch id}`` of those ``entries`` that ``record_batch`` put in a batch.

        Raises:
            SpoolError: the spool cannot be read.
        """
        seqs = [entry.seq for entry in entries]
        if not seqs:
            return {}
        sql = f"SELECT seq, batch_id FROM batched WHERE seq IN ({','.join('?' * len(seqs))})"
        try:
            return dict(self._locked(lambda conn: conn.execute(sql, seqs).fetchall()))
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot read spool {self.path}: {exc}") from None

    def record_batch(self, entries: Iterable[SpoolEntry], batch_id: str) -> None:
        """Record durably that ``entries`` travel together, as one request with ``batch_id``.

        Raises:
            SpoolError: it could not be committed (the entries are then sent one by one).
        """
        rows = [(entry.seq, batch_id) for entry in entries]
        try:
            self._write(
                lambda conn: conn.executemany("INSERT OR REPLACE INTO batched (seq, batch_id) VALUES (?, ?)", rows)
            )
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot write to spool {self.path}: {exc}") from None

    def batch_members(self, batch_id: str) -> list[SpoolEntry]:
        """The entries still waiting in batch ``batch_id``, in spool order (an undecodable one is
        left out; ``peek`` moves it to the quarantine).

        Raises:
            SpoolError: the spool cannot be read.
        """
        sql = _PEEK_SQL + " WHERE seq IN (SELECT seq FROM batched WHERE batch_id = ?) ORDER BY seq"
        try:
            rows = self._locked(lambda conn: conn.execute(sql, (batch_id,)).fetchall())
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot read spool {self.path}: {exc}") from None
        members = []
        for row in rows:
            try:
                members.append(_decode_row(row))
            except ValueError:
                continue
        return members

    def forget_batch(self, batch_id: str) -> None:
        """Undo ``record_batch``: its entries go one by one again (after the server refused the batch,
        so none of it was applied).

        Raises:
            SpoolError: it could not be committed.
        """
        try:
            self._write(lambda conn: conn.execute("DELETE FROM batched WHERE batch_id = ?", (batch_id,)))
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot write to spool {self.path}: {exc}") from None

    def _rollback(self) -> None:
        # After some failures (SQLITE_FULL at COMMIT) SQLite has already rolled back; a second
        # ROLLBACK would raise "no transaction is active" and hide the real error (disk full).
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def dropped(self, experiment_key: str) -> int:
        """How many periodic entries of this experiment were dropped and not yet reported."""
        row = self._locked(
            lambda conn: conn.execute(
                "SELECT count FROM dropped WHERE experiment_key = ?", (experiment_key,)
            ).fetchone()
        )
        return row[0] if row else 0

    def dropped_total(self, experiment_key: str) -> int:
        """How many periodic entries of this experiment were ever dropped at the cap (reported or not)."""
        row = self._locked(
            lambda conn: conn.execute(
                "SELECT total FROM dropped WHERE experiment_key = ?", (experiment_key,)
            ).fetchone()
        )
        return row[0] if row else 0

    def count_dropped(self, experiment_key: str, count: int) -> None:
        """Count ``count`` records of this experiment that never reached the spool as dropped
        (the agent could not store them: a full disk), so that they are reported like those
        dropped at the cap. Raises ``SpoolError`` when the count cannot be stored."""
        if count <= 0:
            return
        try:
            self._locked(
                lambda conn: conn.execute(
                    "INSERT INTO dropped (experiment_key, count, total) VALUES (?, ?, ?)"
                    " ON CONFLICT(experiment_key) DO UPDATE SET count = count + excluded.count, total = total + excluded.count",
                    (experiment_key, int(count), int(count)),
                )
            )
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot update spool {self.path}: {exc}") from None

    def take_dropped(self, experiment_key: str, reported: int) -> None:
        """Subtract ``reported`` from the experiment's drop count once the server has acknowledged the report.

        Raises ``SpoolError`` when the update cannot be stored (the count is then reported again)."""
        try:
            self._locked(
                lambda conn: conn.execute(
                    "UPDATE dropped SET count = MAX(count - ?, 0) WHERE experiment_key = ?",
                    (int(reported), experiment_key),
                )
            )
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot update spool {self.path}: {exc}") from None

    def depth(self) -> int:
        """Number of entries waiting."""
        return self._locked(self._totals)[0]

    def size_bytes(self) -> int:
        """Total size of the payloads waiting, in bytes (what the cap applies to)."""
        return self._locked(self._totals)[1]

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> "Spool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Spool(path={str(self.path)!r}, max_bytes={self.max_bytes})"
