"""The local server's store: one SQLite database (WAL mode) plus uploaded files on disk.

Layout under the data directory (directories 0700, files 0600, via ``comet_agent.paths``)::

    server.sqlite3          experiments, metrics, parameters, others, output, assets index, ...
    files/<experiment key>/<asset id>   uploaded assets, images and git patches, byte for byte
    artifacts/<version id>/<asset id>   the files of artifact versions

Concurrency model: the store is used from ONE thread only (the server's event loop), through one
connection. SQLite then never sees two writers, so "database is locked" cannot happen, and every
write is a single short transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``). With
``synchronous=NORMAL`` in WAL mode a commit appends to the WAL without an fsync (durable against
a process crash, not against a power cut), which is what makes per-request commits cheap.

Checkpoints (copying the WAL back into the database, with its fsyncs) are off the request path:
SQLite's automatic checkpoint, which runs inside whichever ``COMMIT`` crosses 1000 WAL pages, is
switched off, and ``WalCheckpointer`` runs them on its own thread and connection (``PASSIVE``:
it never blocks the writer; sqlite3 releases the GIL while it copies).

API keys are never stored: workspace ownership and request ids are recorded against the
SHA-256 of the key (``key_id``).

Metric, parameter and "other" values are kept as their JSON text; the read side renders them as
strings the way Comet's REST API does (``"0.5"``, ``"3"``, ``"true"``), see ``render_value``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

from comet_agent.paths import ensure_private_dir
from comet_agent.records import SYSTEM_DETAILS_KEYS

logger = logging.getLogger(__name__)

DATABASE_FILE_NAME = "server.sqlite3"
FILES_DIR_NAME = "files"
# The other files of a server's data directory, here rather than in app.py so that naming them
# (embedded.serve_hint, at the end of every run on the local server) does not import aiohttp.
API_KEY_FILE_NAME = "api_key"
#: {"url", "pid", "proof_secret"} of the running server, for discovery (``server/discovery.py``).
SERVER_INFO_FILE_NAME = "server.json"

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS workspaces (
    name TEXT PRIMARY KEY, owner_key_id TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS projects (
    project_id TEXT PRIMARY KEY, workspace TEXT NOT NULL, name TEXT NOT NULL,
    created_ms INTEGER NOT NULL, UNIQUE (workspace, name));
CREATE TABLE IF NOT EXISTS experiments (
    experiment_key TEXT PRIMARY KEY, workspace TEXT NOT NULL, project_id TEXT NOT NULL,
    name TEXT, created_ms INTEGER NOT NULL, start_ms INTEGER, end_ms INTEGER,
    last_heartbeat_ms INTEGER, last_update_ms INTEGER, archived INTEGER NOT NULL DEFAULT 0,
    file_path TEXT, file_name TEXT, has_crashed INTEGER NOT NULL DEFAULT 0,
    stop_requested INTEGER NOT NULL DEFAULT 0, code TEXT, html TEXT, graph TEXT,
    git_metadata TEXT, git_patch_path TEXT, system_details TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS experiments_by_project ON experiments (project_id);
CREATE TABLE IF NOT EXISTS tags (
    experiment_key TEXT NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (experiment_key, tag));
CREATE TABLE IF NOT EXISTS symlinks (
    experiment_key TEXT NOT NULL, project_id TEXT NOT NULL, PRIMARY KEY (experiment_key, project_id));
CREATE TABLE IF NOT EXISTS metrics (
    id INTEGER PRIMARY KEY, experiment_key TEXT NOT NULL, name TEXT NOT NULL,
    value_json TEXT, value_number REAL, step INTEGER, epoch INTEGER, context TEXT,
    timestamp_ms INTEGER NOT NULL, is_system INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS metrics_by_experiment ON metrics (experiment_key, name);
CREATE TABLE IF NOT EXISTS parameters (
    id INTEGER PRIMARY KEY, experiment_key TEXT NOT NULL, name TEXT NOT NULL,
    value_json TEXT, step INTEGER, context TEXT, source TEXT, timestamp_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS parameters_by_experiment ON parameters (experiment_key);
CREATE TABLE IF NOT EXISTS others (
    id INTEGER PRIMARY KEY, experiment_key TEXT NOT NULL, name TEXT NOT NULL,
    value_json TEXT, timestamp_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS others_by_experiment ON others (experiment_key);
CREATE TABLE IF NOT EXISTS output_lines (
    id INTEGER PRIMARY KEY, experiment_key TEXT NOT NULL, line TEXT NOT NULL,
    is_stderr INTEGER NOT NULL, local_timestamp INTEGER, offset_index INTEGER, context TEXT);
CREATE INDEX IF NOT EXISTS output_by_experiment ON output_lines (experiment_key);
CREATE TABLE IF NOT EXISTS assets (
    asset_id TEXT PRIMARY KEY, experiment_key TEXT NOT NULL, file_name TEXT NOT NULL,
    size_bytes INTEGER NOT NULL, asset_type TEXT NOT NULL, step INTEGER, context TEXT,
    metadata_json TEXT, grouping_name TEXT, extension TEXT, created_ms INTEGER NOT NULL,
    path TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS assets_by_experiment ON assets (experiment_key);
CREATE TABLE IF NOT EXISTS request_ids (
    key_id TEXT NOT NULL, request_id TEXT NOT NULL, response_json TEXT NOT NULL,
    created_ms INTEGER NOT NULL, PRIMARY KEY (key_id, request_id));
CREATE TABLE IF NOT EXISTS project_details (
    project_id TEXT PRIMARY KEY, description TEXT, is_public INTEGER NOT NULL DEFAULT 0, notes TEXT);
CREATE TABLE IF NOT EXISTS registry_models (
    registry_model_id TEXT PRIMARY KEY, workspace TEXT NOT NULL, name TEXT NOT NULL, description TEXT,
    is_public INTEGER NOT NULL DEFAULT 0, notes TEXT, created_ms INTEGER NOT NULL, UNIQUE (workspace, name));
CREATE TABLE IF NOT EXISTS registry_model_items (
    item_id TEXT PRIMARY KEY, registry_model_id TEXT NOT NULL, version TEXT NOT NULL,
    experiment_key TEXT NOT NULL, experiment_model_name TEXT NOT NULL, comment TEXT,
    tags_json TEXT NOT NULL DEFAULT '[]', status TEXT, created_ms INTEGER NOT NULL,
    UNIQUE (registry_model_id, version));
"""

#: Tables of remote assets and artifacts (``Store`` section "remote assets, artifacts").
COMPAT_ASSETS_SCHEMA = """
CREATE TABLE IF NOT EXISTS asset_links (asset_id TEXT PRIMARY KEY, remote_uri TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS artifacts (
    artifact_id TEXT PRIMARY KEY, workspace TEXT NOT NULL, name TEXT NOT NULL,
    artifact_type TEXT NOT NULL, tags_json TEXT NOT NULL, created_ms INTEGER NOT NULL,
    UNIQUE (workspace, name));
CREATE TABLE IF NOT EXISTS artifact_versions (
    version_id TEXT PRIMARY KEY, artifact_id TEXT NOT NULL, version TEXT NOT NULL,
    experiment_key TEXT NOT NULL, metadata_json TEXT, aliases_json TEXT NOT NULL,
    tags_json TEXT NOT NULL, state TEXT NOT NULL, created_ms INTEGER NOT NULL,
    UNIQUE (artifact_id, version));
CREATE TABLE IF NOT EXISTS artifact_assets (
    asset_id TEXT PRIMARY KEY, version_id TEXT NOT NULL, file_name TEXT NOT NULL,
    size_bytes INTEGER NOT NULL, asset_type TEXT NOT NULL, metadata_json TEXT, remote_uri TEXT,
    path TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS artifact_assets_by_version ON artifact_assets (version_id);
"""
ARTIFACTS_DIR_NAME = "artifacts"

#: System-details keys a client may write (the last three are derived from system metrics).
WRITABLE_SYSTEM_DETAILS_KEYS = frozenset(SYSTEM_DETAILS_KEYS[:-3])
_LIST_SYSTEM_DETAILS_KEYS = frozenset(
    {
        "installedPackages",
        "osPackages",
        "gpuStaticInfoList",
        "logAdditionalSystemInfoList",
        "networkInterfaceIps",
        "systemMetricNames",
    }
)

SYSTEM_METRIC_PREFIX = "sys."
REQUEST_ID_RETENTION_MS = 7 * 24 * 3600 * 1000
GIT_METADATA_KEYS = ("user", "root", "branch", "parent", "origin")


def now_ms() -> int:
    """The wall clock in epoch milliseconds."""
    return int(time.time() * 1000)


def key_id_of(api_key: str) -> str:
    """The stored identity of an API key: its SHA-256 hex digest (the key itself is never stored)."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def new_experiment_key() -> str:
    """A fresh experiment key: 32 hex characters, like the SDK's."""
    return uuid.uuid4().hex


def store_holds_experiment(data_dir: Path, experiment_key: str) -> bool:
    """Whether the store in ``data_dir`` holds ``experiment_key``, read without a ``Store``.

    For a caller outside the server (``comet-agent run`` after its embedded server stopped): one
    SELECT, the file never created or migrated. False when there is no readable store.
    """
    path = Path(data_dir) / DATABASE_FILE_NAME
    if not path.is_file():
        return False
    try:
        # mode=rw, not ro: it still never creates the file, and closing the last connection
        # removes the -wal and -shm files that opening a WAL database makes, which only a
        # connection allowed to write may do (a read-only one would leave them behind).
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=5)
    except sqlite3.Error:
        return False
    try:
        row = connection.execute("SELECT 1 FROM experiments WHERE experiment_key=?", (experiment_key,)).fetchone()
    except sqlite3.Error:
        return False
    finally:
        connection.close()
    return row is not None


def render_value(value_json: str | None) -> str | None:
    """Render a stored JSON value the way Comet's REST API returns logged values: as a string.

    Strings come back unchanged, numbers in their shortest form (``"0.5"``, ``"3"``), booleans
    as ``"true"``/``"false"``, anything else (lists, objects) as compact JSON; null stays None.
    """
    if value_json is None:
        return None
    value = json.loads(value_json)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def numeric_value(value: Any) -> float | None:
    """The number a logged value stands for (for min/max), or None when it is not a finite number.

    Numeric strings count (the SDK sends numpy scalars and some users send ``"0.5"``).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


#: The WAL size from which ``WalCheckpointer`` copies it back (SQLite's own automatic checkpoint
#: fires at 1000 pages, 4 MiB with 4 KiB pages).
CHECKPOINT_WAL_BYTES = 4 * 1024 * 1024
#: How often ``WalCheckpointer`` looks at the WAL.
CHECKPOINT_INTERVAL_S = 1.0
#: After a checkpoint lets a writer start the WAL over, SQLite truncates a larger file to this.
WAL_SIZE_LIMIT_BYTES = 16 * 1024 * 1024


class WalCheckpointer:
    """Checkpoints a WAL-mode database on its own thread and connection, off the request path.

    ``run_once()`` checkpoints (``PASSIVE``: copies what it can without waiting for, or blocking,
    the writer) when the WAL has grown to ``min_wal_bytes`` and changed since the last checkpoint;
    ``start()`` calls it every ``interval_s`` on a daemon thread. The writer's connection runs with
    ``wal_autocheckpoint=0``, so a ``COMMIT`` never pays for a checkpoint.

    Args:
        database_path: the database (its WAL is ``<path>-wal``).
        min_wal_bytes: the WAL size from which a checkpoint runs.
        interval_s: seconds between looks.
    """

    def __init__(
        self,
        database_path: Path,
        *,
        min_wal_bytes: int = CHECKPOINT_WAL_BYTES,
        interval_s: float = CHECKPOINT_INTERVAL_S,
    ):
        self.database_path = Path(database_path)
        self.wal_path = self.database_path.with_name(self.database_path.name + "-wal")
        self.min_wal_bytes = min_wal_bytes
        self.interval_s = interval_s
        self.checkpoints = 0
        self._connection: sqlite3.Connection | None = None
        self._last_seen: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run_once(self) -> bool:
        """Checkpoint now if the WAL is large enough and changed; True when a checkpoint ran."""
        with self._lock:
            try:
                status = os.stat(self.wal_path)
            except OSError:
                return False
            seen = (status.st_size, status.st_mtime_ns)
            if status.st_size < self.min_wal_bytes or seen == self._last_seen:
                return False
            if self._connection is None:
                self._connection = sqlite3.connect(
                    str(self.database_path), isolation_level=None, check_same_thread=False, timeout=0
                )
            self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self._last_seen = seen
            self.checkpoints += 1
            return True

    def start(self) -> None:
        """Look at the WAL every ``interval_s`` on a daemon thread (started at most once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="comet-agent-wal-checkpoint", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_once()
            except sqlite3.Error as exc:  # the next look tries again; the writer is never affected
                logger.debug("WAL checkpoint of %s failed: %s", self.database_path, exc)

    def stop(self) -> None:
        """Stop the thread and close its connection; safe to call twice."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


class Store:
    """The server's SQLite store. Not thread-safe by design: use it from one thread only.

    Args:
        data_dir: directory holding the database and uploaded files; created 0700 if absent.
        background_checkpoints: checkpoint the WAL on a ``WalCheckpointer`` thread (False:
            SQLite's automatic checkpoints, inside commits).

    Raises:
        OSError: the directory cannot be created.
        sqlite3.Error: the database cannot be opened or is not a comet-agent store.
    """

    def __init__(self, data_dir: Path, *, background_checkpoints: bool = True):
        self.data_dir = ensure_private_dir(Path(data_dir))
        self.files_dir = ensure_private_dir(self.data_dir / FILES_DIR_NAME)
        self.database_path = self.data_dir / DATABASE_FILE_NAME
        if not self.database_path.exists():
            # Create the file 0600 before SQLite does (SQLite would honour the umask).
            self.database_path.touch(mode=0o600)
        self.database_path.chmod(0o600)
        # check_same_thread=False: the server opens the store on the starting thread and then
        # uses it only from its event-loop thread; it is never used from two threads at once.
        self.connection = sqlite3.connect(str(self.database_path), isolation_level=None, check_same_thread=False)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=NORMAL")
        self.connection.execute("PRAGMA foreign_keys=OFF")
        self.connection.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
        self.checkpointer: WalCheckpointer | None = None
        if background_checkpoints:
            self.connection.execute("PRAGMA wal_autocheckpoint=0")
            self.checkpointer = WalCheckpointer(self.database_path)
        self.connection.executescript(SCHEMA)
        self.connection.executescript(COMPAT_ASSETS_SCHEMA)
        for suffix in ("-wal", "-shm"):
            side_file = self.database_path.with_name(self.database_path.name + suffix)
            if side_file.exists():
                side_file.chmod(0o600)
        self._in_transaction = False
        self._group_open = False
        # Request ids only need to outlive a client's retries; a week bounds the table.
        self.connection.execute("DELETE FROM request_ids WHERE created_ms < ?", (now_ms() - REQUEST_ID_RETENTION_MS,))
        if self.checkpointer is not None:
            self.checkpointer.start()

    def close(self) -> None:
        """Commit any open group, checkpoint and close the database."""
        if self.checkpointer is not None:
            self.checkpointer.stop()
        with contextlib.suppress(sqlite3.Error):
            self.commit_group()
        with contextlib.suppress(sqlite3.Error):
            self.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.connection.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write: everything inside is applied together or not at all.

        Outside a group (see ``begin_group``) it is its own ``BEGIN IMMEDIATE ... COMMIT``.
        Inside an open group it is a savepoint: rolled back alone on error, made durable by the
        group's ``commit_group()``. Nested use joins the enclosing write.
        """
        if self._in_transaction:
            yield self.connection
            return
        standalone = not self._group_open
        self.connection.execute("BEGIN IMMEDIATE" if standalone else "SAVEPOINT request_write")
        self._in_transaction = True
        try:
            yield self.connection
        except BaseException:
            if standalone:
                self.connection.execute("ROLLBACK")
            else:
                self.connection.execute("ROLLBACK TO request_write")
                self.connection.execute("RELEASE request_write")
            raise
        else:
            self.connection.execute("COMMIT" if standalone else "RELEASE request_write")
        finally:
            self._in_transaction = False

    # Group commit: the server opens one transaction, applies the writes of every request that
    # is ready in the same event-loop iteration as savepoints, then commits once and only then
    # answers those requests. One WAL append per group instead of one per request.

    @property
    def group_open(self) -> bool:
        """Whether a group transaction is open (writes pending a ``commit_group()``)."""
        return self._group_open

    def begin_group(self) -> None:
        """Open a group transaction (no-op if one is open)."""
        if not self._group_open:
            self.connection.execute("BEGIN IMMEDIATE")
            self._group_open = True

    def commit_group(self) -> None:
        """Commit the open group; on failure roll it back and raise ``sqlite3.Error``."""
        if not self._group_open:
            return
        self._group_open = False
        try:
            self.connection.execute("COMMIT")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                self.connection.execute("ROLLBACK")
            raise

    # ---------------------------------------------------------------- settings

    def get_setting(self, name: str) -> Any:
        """A stored setting's JSON value, or None."""
        row = self.connection.execute("SELECT value FROM settings WHERE name=?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_setting(self, name: str, value: Any) -> None:
        """Store a setting (any JSON value)."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO settings(name, value) VALUES(?, ?) ON CONFLICT(name) DO UPDATE SET value=excluded.value",
                (name, _dumps(value)),
            )

    # --------------------------------------------------------- idempotent writes

    def recorded_response(self, key_id: str, request_id: str) -> dict | None:
        """The response stored for an already applied request id, or None."""
        row = self.connection.execute(
            "SELECT response_json FROM request_ids WHERE key_id=? AND request_id=?", (key_id, request_id)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def record_response(self, key_id: str, request_id: str, response: dict) -> None:
        """Remember the response of an applied request (call inside the write's transaction)."""
        self.connection.execute(
            "INSERT INTO request_ids(key_id, request_id, response_json, created_ms) VALUES(?,?,?,?)",
            (key_id, request_id, _dumps(response), now_ms()),
        )

    # ------------------------------------------------- workspaces and projects

    def workspace_owner(self, workspace: str) -> str | None:
        """The key id owning ``workspace``, or None when it does not exist."""
        row = self.connection.execute("SELECT owner_key_id FROM workspaces WHERE name=?", (workspace,)).fetchone()
        return row[0] if row else None

    def workspaces_of(self, key_id: str) -> list[str]:
        """The workspaces a key owns, oldest first."""
        rows = self.connection.execute(
            "SELECT name FROM workspaces WHERE owner_key_id=? ORDER BY created_ms, rowid", (key_id,)
        )
        return [r[0] for r in rows]

    def ensure_workspace(self, workspace: str, key_id: str) -> None:
        """Create ``workspace`` owned by ``key_id`` if it does not exist yet."""
        self.connection.execute(
            "INSERT OR IGNORE INTO workspaces(name, owner_key_id, created_ms) VALUES(?,?,?)",
            (workspace, key_id, now_ms()),
        )

    def ensure_project(self, workspace: str, project_name: str) -> str:
        """The id of the project, created if absent. Returns the project id."""
        row = self.connection.execute(
            "SELECT project_id FROM projects WHERE workspace=? AND name=?", (workspace, project_name)
        ).fetchone()
        if row:
            return row[0]
        project_id = uuid.uuid4().hex
        self.connection.execute(
            "INSERT INTO projects(project_id, workspace, name, created_ms) VALUES(?,?,?,?)",
            (project_id, workspace, project_name, now_ms()),
        )
        return project_id

    def project(
        self, workspace: str | None = None, project_name: str | None = None, project_id: str | None = None
    ) -> dict | None:
        """A project's JSON (``projectId, projectName, workspaceName, ...``) or None."""
        if project_id is not None:
            row = self.connection.execute(
                "SELECT project_id, workspace, name, created_ms FROM projects WHERE project_id=?", (project_id,)
            ).fetchone()
        else:
            row = self.connection.execute(
                "SELECT project_id, workspace, name, created_ms FROM projects WHERE workspace=? AND name=?",
                (workspace, project_name),
            ).fetchone()
        if not row:
            return None
        count = self.connection.execute("SELECT COUNT(*) FROM experiments WHERE project_id=?", (row[0],)).fetchone()[0]
        extras = self.project_extras(row[0])
        return {
            "projectId": row[0],
            "workspaceName": row[1],
            "projectName": row[2],
            "projectDescription": extras["description"],
            "ownerUserName": None,
            "isPublic": extras["is_public"],
            "isShared": False,
            "numberOfExperiments": count,
            "lastUpdated": row[3],
        }

    def projects(self, workspace: str) -> list[dict]:
        """The projects of a workspace, oldest first."""
        rows = self.connection.execute(
            "SELECT project_id FROM projects WHERE workspace=? ORDER BY created_ms, rowid", (workspace,)
        )
        found = (self.project(project_id=r[0]) for r in rows.fetchall())
        return [project for project in found if project is not None]

    # --------------------------------------------------------------- experiments

    def create_experiment(
        self, workspace: str, project_name: str, name: str | None, experiment_key: str | None = None
    ) -> str:
        """Create an experiment (and its project); returns its key. Call inside a transaction.

        ``experiment_key``: the key the live SDK chose (validated by the caller); None: a new one.
        """
        project_id = self.ensure_project(workspace, project_name)
        experiment_key = experiment_key or new_experiment_key()
        created = now_ms()
        self.connection.execute(
            "INSERT INTO experiments(experiment_key, workspace, project_id, name, created_ms, "
            "start_ms, last_update_ms) VALUES(?,?,?,?,?,?,?)",
            (experiment_key, workspace, project_id, name, created, created, created),
        )
        if name is not None:
            self.add_other(experiment_key, "Name", name, created)
        return experiment_key

    def experiment_workspace(self, experiment_key: str) -> str | None:
        """The workspace of an experiment, or None when it does not exist."""
        row = self.connection.execute(
            "SELECT workspace FROM experiments WHERE experiment_key=?", (experiment_key,)
        ).fetchone()
        return row[0] if row else None

    def experiment_row(self, experiment_key: str) -> dict[str, Any] | None:
        cursor = self.connection.execute(
            "SELECT e.*, p.name AS project_name FROM experiments e JOIN projects p "
            "ON p.project_id = e.project_id WHERE e.experiment_key=?",
            (experiment_key,),
        )
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cursor.description], row))

    def update_experiment(self, experiment_key: str, **columns: Any) -> None:
        """Set columns of an experiment (names are internal, never from the request)."""
        assignments = "".join(f"{name}=?, " for name in columns)
        self.connection.execute(
            f"UPDATE experiments SET {assignments}last_update_ms=? WHERE experiment_key=?",
            (*columns.values(), now_ms(), experiment_key),
        )

    def experiment_metadata(self, experiment_key: str, heartbeat_ms: Any) -> dict | None:
        """The ``experiment/metadata`` JSON, or None when the experiment does not exist.

        ``running`` is true while the experiment has no end time and its last heartbeat (or its
        creation) is younger than three heartbeat intervals.
        """
        row = self.experiment_row(experiment_key)
        if row is None:
            return None
        start, end = row["start_ms"], row["end_ms"]
        last_seen = max(v for v in (row["last_heartbeat_ms"], row["created_ms"]) if v is not None)
        try:
            grace_ms = 3 * float(heartbeat_ms)  # may be garbage injected through the admin endpoint
        except (TypeError, ValueError):
            grace_ms = 30000.0
        running = end is None and (now_ms() - last_seen) <= max(grace_ms, 0)
        duration = None
        if start is not None:
            finish = end if end is not None else max(row["last_update_ms"] or start, last_seen)
            duration = max(finish - start, 0)
        return {
            "experimentKey": experiment_key,
            "experimentName": row["name"],
            "workspaceName": row["workspace"],
            "projectName": row["project_name"],
            "projectId": row["project_id"],
            "archived": bool(row["archived"]),
            "durationMillis": duration,
            "startTimeMillis": start,
            "endTimeMillis": end,
            "filePath": row["file_path"],
            "fileName": row["file_name"],
            "optimizationId": None,
            "running": running,
            "hasCrashed": bool(row["has_crashed"]),
            "throttle": False,
            "lastHeartbeatMillis": row["last_heartbeat_ms"],
        }

    def experiment_keys_in_project(self, workspace: str, project_name: str, archived: bool) -> list[str]:
        """Keys of the experiments of a project (symlinked ones included), oldest first."""
        project = self.project(workspace, project_name)
        if project is None:
            return []
        rows = self.connection.execute(
            "SELECT experiment_key FROM experiments WHERE archived=? AND (project_id=? OR "
            "experiment_key IN (SELECT experiment_key FROM symlinks WHERE project_id=?)) "
            "ORDER BY created_ms, rowid",
            (int(archived), project["projectId"], project["projectId"]),
        )
        return [r[0] for r in rows]

    def add_symlink(self, experiment_key: str, project_id: str) -> None:
        self.connection.execute(
            "INSERT OR IGNORE INTO symlinks(experiment_key, project_id) VALUES(?,?)", (experiment_key, project_id)
        )

    # ------------------------------------------------------------- system details

    def system_details_raw(self, experiment_key: str) -> dict:
        row = self.connection.execute(
            "SELECT system_details FROM experiments WHERE experiment_key=?", (experiment_key,)
        ).fetchone()
        return json.loads(row[0]) if row else {}

    def merge_system_details(self, experiment_key: str, fields: dict) -> None:
        """Merge a partial system-details write into the stored record (never replaces it).

        ``logAdditionalSystemInfoList`` merges by ``key``: a later value replaces the earlier one
        and the order of first appearance is kept. Every other key replaces its previous value.
        """
        details = self.system_details_raw(experiment_key)
        for name, value in fields.items():
            if name == "logAdditionalSystemInfoList":
                merged: dict[str, Any] = {item["key"]: item["value"] for item in details.get(name) or []}
                for item in value:
                    merged[item["key"]] = item["value"]
                details[name] = [{"key": k, "value": v} for k, v in merged.items()]
            else:
                details[name] = value
        self.connection.execute(
            "UPDATE experiments SET system_details=?, last_update_ms=? WHERE experiment_key=?",
            (_dumps(details), now_ms(), experiment_key),
        )

    def system_details(self, experiment_key: str) -> dict:
        """The system-details read: exactly ``SYSTEM_DETAILS_KEYS``, null or [] when unset."""
        stored = self.system_details_raw(experiment_key)
        result = {
            name: stored.get(name, [] if name in _LIST_SYSTEM_DETAILS_KEYS else None) for name in SYSTEM_DETAILS_KEYS
        }
        names = [
            r[0]
            for r in self.connection.execute(
                "SELECT DISTINCT name FROM metrics WHERE experiment_key=? AND is_system=1 ORDER BY name",
                (experiment_key,),
            )
        ]
        result["systemMetricNames"] = names
        total_ram = self.connection.execute(
            "SELECT value_number FROM metrics WHERE experiment_key=? AND name='sys.ram.total' "
            "AND value_number IS NOT NULL ORDER BY id DESC LIMIT 1",
            (experiment_key,),
        ).fetchone()
        result["totalRam"] = _integral(total_ram[0]) if total_ram else None
        max_gpu = self.connection.execute(
            "SELECT MAX(value_number) FROM metrics WHERE experiment_key=? AND is_system=1 AND "
            "name LIKE 'sys.gpu.%.total_memory'",
            (experiment_key,),
        ).fetchone()
        result["maxTotalMemory"] = _integral(max_gpu[0]) if max_gpu and max_gpu[0] is not None else None
        return result

    # ------------------------------------------------------------------ metrics

    def add_metrics(self, experiment_key: str, points: list[tuple]) -> None:
        """Insert metric points ``(name, value, step, epoch, context, timestamp_ms)``: one
        ``executemany`` of one prepared statement (sqlite3 caches it) for the whole request."""
        rows = []
        for name, value, step, epoch, context, timestamp_ms in points:
            kind = type(value)
            if kind is float and math.isfinite(value):
                # What json.dumps writes for a finite float and for an int (float.__repr__,
                # int.__repr__), without its encoder set-up: most points are numbers.
                value_json, number = float.__repr__(value), value
            elif kind is int:
                value_json, number = int.__repr__(value), numeric_value(value)
            else:
                value_json, number = _dumps(value), numeric_value(value)
            rows.append(
                (
                    experiment_key,
                    name,
                    value_json,
                    number,
                    step,
                    epoch,
                    context,
                    timestamp_ms,
                    int(name.startswith(SYSTEM_METRIC_PREFIX)),
                )
            )
        self.connection.executemany(
            "INSERT INTO metrics(experiment_key, name, value_json, value_number, step, epoch, context, "
            "timestamp_ms, is_system) VALUES(?,?,?,?,?,?,?,?,?)",
            rows,
        )

    def metrics(self, experiment_key: str, name: str | None = None) -> list[dict]:
        """Every stored point (of one metric, or all), in write order."""
        query = "SELECT id, name, value_json, timestamp_ms, step, epoch, context FROM metrics WHERE experiment_key=?"
        params: tuple = (experiment_key,)
        if name is not None:
            query += " AND name=?"
            params += (name,)
        rows = self.connection.execute(query + " ORDER BY id", params)
        return [
            {
                "metricName": r[1],
                "metricValue": render_value(r[2]),
                "timestamp": r[3],
                "step": r[4],
                "epoch": r[5],
                "runContext": r[6],
                "offset": r[0],
            }
            for r in rows
        ]

    def metrics_summary(self, experiment_key: str) -> list[dict]:
        """Per metric: min and max over numeric points, and the current (last written) point."""
        rows = self.connection.execute(
            "SELECT name, value_json, value_number, timestamp_ms, step FROM metrics WHERE experiment_key=? ORDER BY id",
            (experiment_key,),
        )
        return _summaries(rows, editable=False)

    # --------------------------------------------------------- parameters, others

    def add_parameters(self, experiment_key: str, points: list[tuple]) -> None:
        """Insert parameter values ``(name, value, step, context, source, timestamp_ms)``."""
        self.connection.executemany(
            "INSERT INTO parameters(experiment_key, name, value_json, step, context, source, "
            "timestamp_ms) VALUES(?,?,?,?,?,?,?)",
            [(experiment_key, n, _dumps(v), s, c, src, t) for n, v, s, c, src, t in points],
        )

    def parameters_summary(self, experiment_key: str) -> list[dict]:
        rows = self.connection.execute(
            "SELECT name, value_json, NULL, timestamp_ms, step FROM parameters WHERE experiment_key=? ORDER BY id",
            (experiment_key,),
        )
        return _summaries(_with_numbers(rows), editable=True)

    def add_other(self, experiment_key: str, name: str, value: Any, timestamp_ms: int) -> None:
        self.connection.execute(
            "INSERT INTO others(experiment_key, name, value_json, timestamp_ms) VALUES(?,?,?,?)",
            (experiment_key, name, _dumps(value), timestamp_ms),
        )

    def others_summary(self, experiment_key: str) -> list[dict]:
        rows = self.connection.execute(
            "SELECT name, value_json, NULL, timestamp_ms, NULL FROM others WHERE experiment_key=? ORDER BY id",
            (experiment_key,),
        )
        summaries = _summaries(_with_numbers(rows), editable=True)
        for summary in summaries:  # the log-other summary has no steps
            for key in ("stepMax", "stepMin", "stepCurrent"):
                summary.pop(key, None)
        return summaries

    # ---------------------------------------------------------------- tags, output

    def add_tags(self, experiment_key: str, tags: list[str]) -> None:
        self.connection.executemany(
            "INSERT OR IGNORE INTO tags(experiment_key, tag) VALUES(?,?)", [(experiment_key, t) for t in tags]
        )

    def delete_tags(self, experiment_key: str, tags: list[str]) -> None:
        self.connection.executemany(
            "DELETE FROM tags WHERE experiment_key=? AND tag=?", [(experiment_key, t) for t in tags]
        )

    def tags(self, experiment_key: str) -> list[str]:
        return [
            r[0]
            for r in self.connection.execute(
                "SELECT tag FROM tags WHERE experiment_key=? ORDER BY rowid", (experiment_key,)
            )
        ]

    def add_output_lines(self, experiment_key: str, lines: list[tuple]) -> None:
        """Insert output lines ``(text, is_stderr, local_timestamp, offset, context)``."""
        self.connection.executemany(
            "INSERT INTO output_lines(experiment_key, line, is_stderr, local_timestamp, offset_index, "
            "context) VALUES(?,?,?,?,?,?)",
            [(experiment_key, *line) for line in lines],
        )

    def output_line_count(self, experiment_key: str) -> int:
        return self.connection.execute(
            "SELECT COUNT(*) FROM output_lines WHERE experiment_key=?", (experiment_key,)
        ).fetchone()[0]

    def output(self, experiment_key: str, stderr_only: bool | None = None) -> str:
        """The experiment's output, lines concatenated in arrival order."""
        query = "SELECT line FROM output_lines WHERE experiment_key=?"
        params: tuple = (experiment_key,)
        if stderr_only is not None:
            query += " AND is_stderr=?"
            params += (int(stderr_only),)
        return "".join(r[0] for r in self.connection.execute(query + " ORDER BY id", params))

    # ----------------------------------------------------------------------- assets

    def experiment_files_dir(self, experiment_key: str) -> Path:
        return ensure_private_dir(self.files_dir / experiment_key)

    def add_asset(self, asset: dict) -> None:
        """Index an uploaded file already written to ``asset['path']`` (call inside a write).

        For an overwrite, the caller first removes the earlier rows with ``remove_assets_named``
        and deletes their files once the write is committed.
        """
        self.connection.execute(
            "INSERT INTO assets(asset_id, experiment_key, file_name, size_bytes, asset_type, step, "
            "context, metadata_json, grouping_name, extension, created_ms, path) "
            "VALUES(:asset_id, :experiment_key, :file_name, :size_bytes, :asset_type, :step, "
            ":context, :metadata_json, :grouping_name, :extension, :created_ms, :path)",
            asset,
        )

    def remove_assets_named(self, experiment_key: str, file_name: str, asset_type: str) -> list[str]:
        """Delete index rows of same-named assets (for overwrite); returns their file paths."""
        rows = self.connection.execute(
            "SELECT asset_id, path FROM assets WHERE experiment_key=? AND file_name=? AND asset_type=?",
            (experiment_key, file_name, asset_type),
        ).fetchall()
        self.connection.executemany("DELETE FROM assets WHERE asset_id=?", [(r[0],) for r in rows])
        return [r[1] for r in rows]

    def assets(
        self, experiment_key: str, asset_type: str | None = None, grouping_name: str | None = None
    ) -> list[dict]:
        query = "SELECT * FROM assets WHERE experiment_key=?"
        params: tuple = (experiment_key,)
        if asset_type is not None:
            query += " AND asset_type=?"
            params += (asset_type,)
        if grouping_name is not None:
            query += " AND grouping_name=?"
            params += (grouping_name,)
        cursor = self.connection.execute(query + " ORDER BY created_ms, rowid", params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def asset(self, experiment_key: str, asset_id: str) -> dict | None:
        cursor = self.connection.execute(
            "SELECT * FROM assets WHERE experiment_key=? AND asset_id=?", (experiment_key, asset_id)
        )
        row = cursor.fetchone()
        return dict(zip([d[0] for d in cursor.description], row)) if row else None

    def model_names(self, experiment_key: str) -> list[str]:
        return [
            r[0]
            for r in self.connection.execute(
                "SELECT DISTINCT grouping_name FROM assets WHERE experiment_key=? AND "
                "asset_type='model-element' AND grouping_name IS NOT NULL ORDER BY grouping_name",
                (experiment_key,),
            )
        ]

    # ------------------------------------------- remote assets, artifacts (compat)
    # Tables created by COMPAT_ASSETS_SCHEMA. A remote asset is an ``assets`` row (path "") with
    # its URI in ``asset_links``; an artifact version's files live apart from the experiment's
    # assets, under ``<data dir>/artifacts/<version id>/<asset id>``.

    def add_asset_link(self, asset_id: str, remote_uri: str) -> None:
        """Record the URI of a remote asset (its ``assets`` row has no file; call inside a write)."""
        self.connection.execute(
            "INSERT OR REPLACE INTO asset_links(asset_id, remote_uri) VALUES(?, ?)", (asset_id, remote_uri)
        )

    def asset_links(self, asset_ids: list[str]) -> dict[str, str]:
        """asset id -> remote URI, for those of ``asset_ids`` that are remote assets."""
        links: dict[str, str] = {}
        for start in range(0, len(asset_ids), 500):  # SQLite's bound-parameter limit
            chunk = asset_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for asset_id, uri in self.connection.execute(
                f"SELECT asset_id, remote_uri FROM asset_links WHERE asset_id IN ({marks})", chunk
            ):
                links[asset_id] = uri
        return links

    def asset_experiment(self, asset_id: str) -> str | None:
        """The experiment holding asset ``asset_id`` (None when no experiment does)."""
        row = self.connection.execute("SELECT experiment_key FROM assets WHERE asset_id=?", (asset_id,)).fetchone()
        return row[0] if row else None

    def remove_asset(self, asset_id: str) -> str | None:
        """Delete one asset's index rows (a re-sent upload replaces it); returns its file path."""
        row = self.connection.execute("SELECT path FROM assets WHERE asset_id=?", (asset_id,)).fetchone()
        self.connection.execute("DELETE FROM assets WHERE asset_id=?", (asset_id,))
        self.connection.execute("DELETE FROM asset_links WHERE asset_id=?", (asset_id,))
        return row[0] if row and row[0] else None

    def artifact_files_dir(self, version_id: str) -> Path:
        """Where the files of one artifact version are written (created 0700)."""
        return ensure_private_dir(ensure_private_dir(self.data_dir / ARTIFACTS_DIR_NAME) / version_id)

    def artifact(self, workspace: str, name: str) -> dict | None:
        """The artifact ``name`` of ``workspace`` (tags decoded), or None."""
        return self._artifact_where("workspace=? AND name=?", (workspace, name))

    def artifact_by_id(self, artifact_id: str) -> dict | None:
        return self._artifact_where("artifact_id=?", (artifact_id,))

    def _artifact_where(self, condition: str, params: tuple) -> dict | None:
        cursor = self.connection.execute(f"SELECT * FROM artifacts WHERE {condition}", params)
        row = cursor.fetchone()
        if row is None:
            return None
        found = dict(zip([d[0] for d in cursor.description], row))
        found["tags"] = json.loads(found.pop("tags_json"))
        return found

    def artifacts(self, workspace: str, artifact_type: str | None = None) -> list[dict]:
        """The workspace's artifacts (optionally of one type), by name."""
        query = "SELECT artifact_id FROM artifacts WHERE workspace=?"
        params: tuple = (workspace,)
        if artifact_type is not None:
            query += " AND artifact_type=?"
            params += (artifact_type,)
        ids = [r[0] for r in self.connection.execute(query + " ORDER BY name", params)]
        return [a for a in (self.artifact_by_id(i) for i in ids) if a is not None]

    def create_artifact(self, workspace: str, name: str, artifact_type: str) -> str:
        """A new artifact's id (call inside a write; the name must be free in the workspace)."""
        artifact_id = uuid.uuid4().hex
        self.connection.execute(
            "INSERT INTO artifacts(artifact_id, workspace, name, artifact_type, tags_json, created_ms) "
            "VALUES(?, ?, ?, ?, '[]', ?)",
            (artifact_id, workspace, name, artifact_type, now_ms()),
        )
        return artifact_id

    def update_artifact(self, artifact_id: str, artifact_type: str | None, tags: list[str] | None) -> None:
        if artifact_type is not None:
            self.connection.execute(
                "UPDATE artifacts SET artifact_type=? WHERE artifact_id=?", (artifact_type, artifact_id)
            )
        if tags is not None:
            self.connection.execute(
                "UPDATE artifacts SET tags_json=? WHERE artifact_id=?", (json.dumps(tags), artifact_id)
            )

    def add_artifact_version(self, version: dict) -> None:
        """Insert an artifact version (keys: the columns of ``artifact_versions``; call inside a write)."""
        self.connection.execute(
            "INSERT INTO artifact_versions(version_id, artifact_id, version, experiment_key, metadata_json, "
            "aliases_json, tags_json, state, created_ms) VALUES(:version_id, :artifact_id, :version, "
            ":experiment_key, :metadata_json, :aliases_json, :tags_json, :state, :created_ms)",
            version,
        )

    def artifact_versions(self, artifact_id: str) -> list[dict]:
        """Every version of an artifact, oldest first (aliases and tags decoded, size in bytes)."""
        cursor = self.connection.execute(
            "SELECT v.*, (SELECT COALESCE(SUM(size_bytes), 0) FROM artifact_assets a "
            "WHERE a.version_id = v.version_id) AS size_bytes FROM artifact_versions v "
            "WHERE artifact_id=? ORDER BY created_ms, rowid",
            (artifact_id,),
        )
        names = [d[0] for d in cursor.description]
        versions = []
        for row in cursor.fetchall():
            version = dict(zip(names, row))
            version["aliases"] = json.loads(version.pop("aliases_json"))
            version["tags"] = json.loads(version.pop("tags_json"))
            versions.append(version)
        return versions

    def artifact_version(self, version_id: str) -> dict | None:
        """One version by id (as ``artifact_versions`` gives it), or None."""
        row = self.connection.execute(
            "SELECT artifact_id FROM artifact_versions WHERE version_id=?", (version_id,)
        ).fetchone()
        if row is None:
            return None
        return next((v for v in self.artifact_versions(row[0]) if v["version_id"] == version_id), None)

    def update_artifact_version(self, version_id: str, **columns: Any) -> None:
        """Set columns of a version (names are internal, never from the request; lists as JSON)."""
        for name, value in columns.items():
            column = f"{name}_json" if name in ("aliases", "tags") else name
            stored = json.dumps(value) if name in ("aliases", "tags") else value
            self.connection.execute(f"UPDATE artifact_versions SET {column}=? WHERE version_id=?", (stored, version_id))

    def add_artifact_asset(self, asset: dict) -> None:
        """Index a file (or remote URI) of an artifact version (call inside a write)."""
        self.connection.execute(
            "INSERT OR REPLACE INTO artifact_assets(asset_id, version_id, file_name, size_bytes, asset_type, "
            "metadata_json, remote_uri, path, created_ms) VALUES(:asset_id, :version_id, :file_name, "
            ":size_bytes, :asset_type, :metadata_json, :remote_uri, :path, :created_ms)",
            asset,
        )

    def artifact_assets(self, version_id: str) -> list[dict]:
        cursor = self.connection.execute(
            "SELECT * FROM artifact_assets WHERE version_id=? ORDER BY file_name", (version_id,)
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def artifact_asset(self, version_id: str, asset_id: str) -> dict | None:
        return next((a for a in self.artifact_assets(version_id) if a["asset_id"] == asset_id), None)

    # ------------------------------------------- projects, notes, model registry
    # (comet_ml's create_project / delete_project / project notes and register_model; the
    # handlers are rest/projects.py and rest/registry.py)

    def project_extras(self, project_id: str) -> dict[str, Any]:
        """A project's description, visibility and notes (``None``/``False`` when never set)."""
        row = self.connection.execute(
            "SELECT description, is_public, notes FROM project_details WHERE project_id=?", (project_id,)
        ).fetchone()
        if row is None:
            return {"description": None, "is_public": False, "notes": None}
        return {"description": row[0], "is_public": bool(row[1]), "notes": row[2]}

    def set_project_extras(self, project_id: str, **values: Any) -> None:
        """Set ``description``, ``is_public`` and/or ``notes`` of a project (call inside a write)."""
        self.connection.execute("INSERT OR IGNORE INTO project_details(project_id) VALUES(?)", (project_id,))
        for name in ("description", "is_public", "notes"):
            if name in values:
                self.connection.execute(
                    f"UPDATE project_details SET {name}=? WHERE project_id=?", (values[name], project_id)
                )

    def rename_project(self, project_id: str, new_name: str) -> None:
        self.connection.execute("UPDATE projects SET name=? WHERE project_id=?", (new_name, project_id))

    def delete_project(self, project_id: str) -> list[str]:
        """Delete a project, its experiments and everything they hold (call inside a write).

        Returns the deleted experiments' keys (their files directories are removed by the caller
        once the write is committed).
        """
        keys = [
            r[0]
            for r in self.connection.execute("SELECT experiment_key FROM experiments WHERE project_id=?", (project_id,))
        ]
        self.delete_experiments(keys)
        self.connection.execute("DELETE FROM symlinks WHERE project_id=?", (project_id,))
        self.connection.execute("DELETE FROM project_details WHERE project_id=?", (project_id,))
        self.connection.execute("DELETE FROM projects WHERE project_id=?", (project_id,))
        return keys

    def delete_experiments(self, experiment_keys: list[str]) -> None:
        """Delete experiments and every row they own (call inside a write; the caller removes
        their files directories once it is committed)."""
        rows = [(k,) for k in experiment_keys]
        self.connection.executemany(
            "DELETE FROM asset_links WHERE asset_id IN (SELECT asset_id FROM assets WHERE experiment_key=?)", rows
        )
        for table in ("metrics", "parameters", "others", "output_lines", "assets", "tags", "symlinks", "experiments"):
            self.connection.executemany(f"DELETE FROM {table} WHERE experiment_key=?", rows)

    def registry_model(self, workspace: str, name: str) -> dict[str, Any] | None:
        cursor = self.connection.execute(
            "SELECT * FROM registry_models WHERE workspace=? AND name=?", (workspace, name)
        )
        row = cursor.fetchone()
        return dict(zip([d[0] for d in cursor.description], row)) if row else None

    def registry_models(self, workspace: str) -> list[dict[str, Any]]:
        cursor = self.connection.execute(
            "SELECT * FROM registry_models WHERE workspace=? ORDER BY created_ms, rowid", (workspace,)
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def create_registry_model(self, workspace: str, name: str, description: str | None, is_public: bool) -> str:
        """A new registered model (call inside a write); returns its id."""
        registry_model_id = uuid.uuid4().hex
        self.connection.execute(
            "INSERT INTO registry_models(registry_model_id, workspace, name, description, is_public, created_ms) "
            "VALUES(?,?,?,?,?,?)",
            (registry_model_id, workspace, name, description, int(is_public), now_ms()),
        )
        return registry_model_id

    def set_registry_model_notes(self, registry_model_id: str, notes: str) -> None:
        self.connection.execute(
            "UPDATE registry_models SET notes=? WHERE registry_model_id=?", (notes, registry_model_id)
        )

    def add_registry_model_item(self, registry_model_id: str, item: dict[str, Any]) -> str:
        """A new version of a registered model (call inside a write); returns its item id.

        ``item``: ``version``, ``experiment_key``, ``experiment_model_name``, ``comment``,
        ``tags`` (list) and ``status``.
        """
        item_id = uuid.uuid4().hex
        self.connection.execute(
            "INSERT INTO registry_model_items(item_id, registry_model_id, version, experiment_key, "
            "experiment_model_name, comment, tags_json, status, created_ms) VALUES(?,?,?,?,?,?,?,?,?)",
            (
                item_id,
                registry_model_id,
                item["version"],
                item["experiment_key"],
                item["experiment_model_name"],
                item.get("comment"),
                _dumps(item.get("tags") or []),
                item.get("status"),
                now_ms(),
            ),
        )
        return item_id

    def registry_model_items(self, registry_model_id: str) -> list[dict[str, Any]]:
        """The versions of a registered model, oldest first (``tags`` decoded)."""
        cursor = self.connection.execute(
            "SELECT * FROM registry_model_items WHERE registry_model_id=? ORDER BY created_ms, rowid",
            (registry_model_id,),
        )
        names = [d[0] for d in cursor.description]
        items = [dict(zip(names, row)) for row in cursor.fetchall()]
        for item in items:
            item["tags"] = json.loads(item.pop("tags_json"))
        return items


def _integral(number: float) -> int | float:
    return int(number) if float(number).is_integer() else number


def _with_numbers(rows) -> Iterator[tuple]:
    for name, value_json, _unused, timestamp_ms, step in rows:
        yield name, value_json, numeric_value(json.loads(value_json)), timestamp_ms, step


def _summaries(rows, editable: bool) -> list[dict]:
    """Summaries from ``(name, value_json, value_number, timestamp_ms, step)`` rows in write order.

    "current" is the last point written (Comet's behaviour for the live SDK, which writes in
    step order); min and max consider numeric values only and keep the first point reaching them.
    Values are rendered once per summary at the end, not per row: a long run at 1 s sampling
    holds millions of rows.
    """
    # name -> [current row, min row, max row], rows as read (value_json, value_number, timestamp, step)
    by_name: dict[str, list] = {}
    for name, value_json, number, timestamp_ms, step in rows:
        row = (value_json, number, timestamp_ms, step)
        found = by_name.get(name)
        if found is None:
            by_name[name] = [row, row if number is not None else None, row if number is not None else None]
            continue
        found[0] = row
        if number is not None:
            low, high = found[1], found[2]
            if low is None or number < low[1]:
                found[1] = row
            if high is None or number > high[1]:
                found[2] = row
    result = []
    for name, (current, low, high) in by_name.items():
        summary: dict[str, Any] = {"name": name}
        for label, row in (("Max", high), ("Min", low), ("Current", current)):
            summary[f"value{label}"] = render_value(row[0]) if row else None
            summary[f"timestamp{label}"] = row[2] if row else None
            summary[f"step{label}"] = row[3] if row else None
        summary["editable"] = editable
        result.append(summary)
    return result


# ------------------------------------------------------------ page reads (downsampled)

#: Default cap on the points returned per series by ``metric_series_downsampled``.
DEFAULT_MAX_POINTS_PER_SERIES = 1000


def downsample_min_max(points: list[tuple[float, float]], max_points: int) -> list[tuple[float, float]]:
    """Reduce ``(x, y)`` points sorted by x to at most ``max_points``, keeping every bucket's extremes.

    The x range is cut into ``max_points // 2`` equal-width buckets; from each non-empty bucket
    the point with the smallest and the one with the largest y are kept (once if they are the
    same point), in x order. The first and last points always survive, and so do the series'
    global minimum and maximum, so spikes never disappear from a chart.

    Args:
        points: ``(x, y)`` pairs sorted by x (e.g. epoch milliseconds, value).
        max_points: the cap (at least 4).

    Returns:
        A new list; ``points`` itself (copied) when it already fits.

    Raises:
        ValueError: ``max_points`` below 4.

    Example:
        >>> downsample_min_max([(0, 1), (1, 5), (2, 0), (3, 2), (4, 3), (5, 1)], 4)
        [(0, 1), (1, 5), (2, 0), (5, 1)]
    """
    if max_points < 4:
        raise ValueError(f"max_points must be at least 4, got {max_points}")
    if len(points) <= max_points:
        return list(points)
    first, last = points[0], points[-1]
    inner = points[1:-1]
    bucket_count = max((max_points - 2) // 2, 1)
    x_low, x_high = inner[0][0], inner[-1][0]
    width = (x_high - x_low) / bucket_count or 1.0
    lows: list[tuple[float, float] | None] = [None] * bucket_count
    highs: list[tuple[float, float] | None] = [None] * bucket_count
    low_index = [0] * bucket_count
    high_index = [0] * bucket_count
    for index, point in enumerate(inner):
        bucket = min(int((point[0] - x_low) / width), bucket_count - 1)
        low, high = lows[bucket], highs[bucket]
        if low is None or point[1] < low[1]:
            lows[bucket], low_index[bucket] = point, index
        if high is None or point[1] > high[1]:
            highs[bucket], high_index[bucket] = point, index
    kept: list[tuple[float, float]] = [first]
    for bucket in range(bucket_count):
        if lows[bucket] is None:
            continue
        low, high = lows[bucket], highs[bucket]
        assert low is not None and high is not None  # a bucket with a low has a high
        if low_index[bucket] == high_index[bucket]:
            kept.append(low)
        elif low_index[bucket] < high_index[bucket]:
            kept.extend((low, high))
        else:
            kept.extend((high, low))
    kept.append(last)
    return kept


def metric_series_downsampled(
    store: Store, experiment_key: str, max_points: int = DEFAULT_MAX_POINTS_PER_SERIES
) -> dict[str, dict]:
    """Every numeric metric series of an experiment, each cut to at most ``max_points`` points.

    A page read: x is the step for a metric whose points all carry one (typical of user metrics),
    else the timestamp in epoch milliseconds; points are sorted by x. Non-numeric values are left
    out (they cannot be charted). Downsampling is ``downsample_min_max``.

    Args:
        store: the server's store (use it from its own thread).
        experiment_key: the experiment.
        max_points: cap per series (at least 4).

    Returns:
        ``{name: {"x": "step" | "timestamp", "points": [[x, y], ...], "count": stored numeric
        points, "mean": their average, "isSystem": bool}}``, names in sorted order.
    """
    rows = store.connection.execute(
        "SELECT name, timestamp_ms, step, value_number, is_system FROM metrics "
        "WHERE experiment_key=? AND value_number IS NOT NULL ORDER BY name, id",
        (experiment_key,),
    )
    by_name: dict[str, list[tuple]] = {}
    system: dict[str, bool] = {}
    for name, timestamp_ms, step, number, is_system in rows:
        series = by_name.get(name)
        if series is None:
            series = by_name[name] = []
            system[name] = bool(is_system)
        series.append((timestamp_ms, step, number))
    result: dict[str, dict] = {}
    for name in sorted(by_name):
        series = by_name[name]
        use_step = not system[name] and all(step is not None for _, step, _ in series)
        if use_step:
            points = sorted(((step, number) for _, step, number in series), key=lambda p: p[0])
        else:
            points = sorted(((ts, number) for ts, _, number in series), key=lambda p: p[0])
        result[name] = {
            "x": "step" if use_step else "timestamp",
            "count": len(series),
            # Over every stored point: downsampling keeps extremes and ends, not the average.
            "mean": sum(number for _, _, number in series) / len(series),
            "isSystem": system[name],
            "points": [list(p) for p in downsample_min_max(points, max_points)],
        }
    return result


def experiments_for_index(store: Store, workspace: str, project_name: str | None = None) -> list[dict]:
    """The experiments of a workspace (or one of its projects) for an index page, newest first.

    Returns:
        ``[{"experimentKey", "name", "projectName", "createdMs", "startMs", "endMs",
        "lastHeartbeatMs", "lastUpdateMs", "hasCrashed", "archived", "hostname"}]``.
    """
    query = (
        "SELECT e.experiment_key, e.name, p.name, e.created_ms, e.start_ms, e.end_ms, "
        "e.last_heartbeat_ms, e.last_update_ms, e.has_crashed, e.archived, "
        # json_valid first: a record an older server stored with NaN is not JSON to SQLite.
        "CASE WHEN json_valid(e.system_details) THEN json_extract(e.system_details, '$.hostname') END "
        "FROM experiments e JOIN projects p "
        "ON p.project_id = e.project_id WHERE e.workspace=?"
    )
    params: tuple = (workspace,)
    if project_name is not None:
        query += " AND p.name=?"
        params += (project_name,)
    rows = store.connection.execute(query + " ORDER BY e.created_ms DESC, e.rowid DESC", params)
    names = (
        "experimentKey",
        "name",
        "projectName",
        "createdMs",
        "startMs",
        "endMs",
        "lastHeartbeatMs",
        "lastUpdateMs",
        "hasCrashed",
        "archived",
        "hostname",
    )
    return [dict(zip(names, row)) for row in rows]
