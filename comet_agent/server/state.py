"""What every handler of the local server shares: ``ServerState`` and its group commits.

One ``ServerState`` per application, stored under ``STATE_KEY``: the store, the accepted keys
(by id), the recommended intervals and the ``GroupCommitter`` that turns the writes of one
event-loop iteration into one SQLite commit. The REST handlers (``rest/``), the pages
(``pages/``) and ``LocalServer`` (``app.py``) all reach it through ``state_of(request)``; the
event loop thread owns it, so nothing here locks.

Naming decisions where Comet is silent for a local install: the user name of the first
configured key is ``local``, of any other key ``local-<8 hex of its SHA-256>``; its default
workspace is the first workspace it owns, else its user name.

Several keys on one server: the first key is also the **admin key**, the only one that may
change server-wide settings (``POST /local/admin/intervals``). Each key's user name is reserved
as a workspace name for that key (``workspace_owner``), so another key cannot create it first
and lock its owner out of its own default workspace.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from comet_agent.server.store import Store, key_id_of


class GroupCommitter:
    """Commits the store's open group once per event-loop iteration and wakes its writers.

    A writer applies its change as a savepoint in the open group, then awaits ``committed()``;
    the first writer of a group schedules the commit with ``call_soon``, so every request that
    was ready in the same iteration shares one commit. A request is answered only after its
    write is committed.
    """

    def __init__(self, store: Store):
        self.store = store
        self._pending: asyncio.Future | None = None

    def committed(self) -> asyncio.Future:
        """A future done when the currently open group is committed (at once if none is open)."""
        loop = asyncio.get_running_loop()
        if not self.store.group_open:
            done = loop.create_future()
            done.set_result(None)
            return done
        if self._pending is None:
            self._pending = loop.create_future()
            loop.call_soon(self._commit, self._pending)
        return self._pending

    def _commit(self, pending: asyncio.Future) -> None:
        self._pending = None
        try:
            self.store.commit_group()
        except Exception as exc:  # every writer of the group answers 500 (logged by the middleware)
            pending.set_exception(exc)
            pending.exception()  # marks it retrieved when no writer awaits any more
        else:
            pending.set_result(None)


class ServerState:
    """What the handlers share: the store, the accepted keys, the recommended intervals."""

    def __init__(self, store: Store, api_keys: list[str], intervals: dict[str, Any], max_upload_bytes: int):
        self.store = store
        self.api_keys = list(api_keys)
        self.key_ids = {key_id_of(k): k for k in api_keys}
        self._first_key_id = key_id_of(api_keys[0]) if api_keys else None
        #: The key id allowed to change server-wide settings: the first configured key's.
        self.admin_key_id = self._first_key_id
        self.intervals = dict(intervals)  # camelCase response keys -> values (any JSON)
        self.max_upload_bytes = max_upload_bytes
        self.experiment_owners: dict[str, str] = {}  # experiment key -> owner key id (cache)
        self.committer = GroupCommitter(store)

    def user_name(self, key_id: str) -> str:
        """The user name of a key: ``local`` for the first configured key, else ``local-<8 hex>``."""
        return "local" if key_id == self._first_key_id else f"local-{key_id[:8]}"

    def default_workspace(self, key_id: str) -> str:
        """The first workspace the key owns, else its user name.

        In a store where another key took that name before names were reserved, the user name
        followed by 8 hex of the key's SHA-256, so its owner is never locked out.
        """
        owned = self.store.workspaces_of(key_id)
        if owned:
            return owned[0]
        name = self.user_name(key_id)
        if self.store.workspace_owner(name) not in (None, key_id):
            return f"{name}-{key_id[:8]}"
        return name

    def workspace_owner(self, workspace: str) -> str | None:
        """The key id that owns ``workspace``, or will own it: its creator, else the key whose
        user name it is (reserved for that key), else None (free for the first key that uses it)."""
        owner = self.store.workspace_owner(workspace)
        if owner is not None:
            return owner
        for key_id in self.key_ids:
            if self.user_name(key_id) == workspace:
                return key_id
        return None


STATE_KEY = web.AppKey("state", ServerState)


def state_of(request: web.Request) -> ServerState:
    """The ``ServerState`` of the application serving ``request``."""
    return request.app[STATE_KEY]


_UNSET: Any = object()
INTERVALS_SETTING = "intervals"
_INTERVAL_KEYS = {
    "heartbeat_ms": "isAliveBeatDurationMillis",
    "cpu_interval_ms": "cpuMonitorIntervalMillis",
    "gpu_interval_ms": "gpuMonitorIntervalMillis",
    # A comet-agent extension (hosted Comet answers no such key): how often agents should sample;
    # each push then carries every sample of its window (engine/job.py).
    "sample_interval_ms": "sampleIntervalMillis",
}


def set_intervals(
    state: ServerState,
    heartbeat_ms: Any = _UNSET,
    cpu_interval_ms: Any = _UNSET,
    gpu_interval_ms: Any = _UNSET,
    sample_interval_ms: Any = _UNSET,
) -> None:
    """Set the recommended intervals (any JSON value, verbatim) and persist them in the store.

    An argument left out keeps its current value; ``None`` is a value like any other (it is
    what a test may want ``update_status()`` to answer).
    """
    given = {
        "heartbeat_ms": heartbeat_ms,
        "cpu_interval_ms": cpu_interval_ms,
        "gpu_interval_ms": gpu_interval_ms,
        "sample_interval_ms": sample_interval_ms,
    }
    for name, value in given.items():
        if value is not _UNSET:
            state.intervals[_INTERVAL_KEYS[name]] = value
    state.store.set_setting(INTERVALS_SETTING, state.intervals)
