"""HTTP handlers of the local server: the Comet REST v2 endpoints the official SDK uses.

Every REST route is served under both ``/api/rest/v2/`` and ``/clientlib/rest/v2/`` (aliases,
as on the hosted backend). Response rules (comet-rest-api.md section 3.3): ``Content-Type`` is
exactly ``application/json`` (no charset), GETs answer exactly 200, every write answers a JSON
body, and errors are Comet-style ``{"msg", "code", "sdk_error_code"}`` with 400 / 401 / 404 /
413, never a 500 for input we can recognise as bad.

Writes run through ``apply_write``: each request's write is atomic (a savepoint of the
current group transaction, see ``GroupCommitter``) and is answered only once committed. The
optional ``X-Comet-Agent-Request-Id`` header is recorded in the same write, so a repeated request
is applied at most once and answered with the first response (200).

Besides the REST v2 surface of ``APIExperiment``, the clientlib endpoints of the live
``comet_ml.Experiment`` are served (handshake ``logger/add/run`` and ``logger/get/run``, metric
and parameter batches, ``status-report/update`` heartbeats answering snake_case intervals,
tags, uploads, git patch); its RPC, 3d-limits and notification calls are acknowledged and ignored.

Ownership: a workspace belongs to the key that first used it. Another key's workspace, project
or experiment reads as 404 (not 403), so existence does not leak.

Naming decisions where Comet is silent for a local install: the user name of the first
configured key is ``local``, of any other key ``local-<8 hex of its SHA-256>``; its default
workspace is the first workspace it owns, else its user name. The default project is
``general``.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import os
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

from comet_agent.paths import write_private_file
from comet_agent.server.store import (
    GIT_METADATA_KEYS,
    WRITABLE_SYSTEM_DETAILS_KEYS,
    Store,
    key_id_of,
    now_ms,
)

logger = logging.getLogger(__name__)

BACKEND_VERSION = "3.99.0"
DEFAULT_PROJECT_NAME = "general"
REQUEST_ID_HEADER = "X-Comet-Agent-Request-Id"
REST_PREFIXES = ("/api/rest/v2/", "/clientlib/rest/v2/")
MAX_REQUEST_ID_LENGTH = 200
MAX_EXPERIMENT_KEY_LENGTH = 50


class ApiError(Exception):
    """A request we refuse, answered as Comet's JSON error body with ``status``."""

    def __init__(self, status: int, msg: str, sdk_error_code: int = 0):
        super().__init__(msg)
        self.status = status
        self.msg = msg
        self.sdk_error_code = sdk_error_code


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON response with ``Content-Type: application/json`` and no charset (the SDK insists)."""
    body = json.dumps(data, separators=(",", ":"), allow_nan=False, default=str).encode("utf-8")
    return web.Response(body=body, status=status, content_type="application/json")


def error_response(status: int, msg: str, sdk_error_code: int = 0) -> web.Response:
    return json_response({"msg": msg, "code": status, "sdk_error_code": sdk_error_code}, status)


# --------------------------------------------------------------------------- state


class ServerState:
    """What the handlers share: the store, the accepted keys, the recommended intervals."""

    def __init__(self, store: Store, api_keys: list[str], intervals: dict[str, Any],
                 max_upload_bytes: int):
        self.store = store
        self.api_keys = list(api_keys)
        self.key_ids = {key_id_of(k): k for k in api_keys}
        self._first_key_id = key_id_of(api_keys[0]) if api_keys else None
        self.intervals = dict(intervals)  # camelCase response keys -> values (any JSON)
        self.max_upload_bytes = max_upload_bytes
        self.experiment_owners: dict[str, str] = {}  # experiment key -> owner key id (cache)
        self.committer = GroupCommitter(store)

    def user_name(self, key_id: str) -> str:
        return "local" if key_id == self._first_key_id else f"local-{key_id[:8]}"

    def default_workspace(self, key_id: str) -> str:
        owned = self.store.workspaces_of(key_id)
        return owned[0] if owned else self.user_name(key_id)


STATE_KEY = web.AppKey("state", ServerState)


def _state(request: web.Request) -> ServerState:
    return request.app[STATE_KEY]


# ----------------------------------------------------------------- input helpers


async def read_json_object(request: web.Request) -> dict:
    """The request body as a JSON object (gzip accepted); 400 when it is not one."""
    raw = await request.read()
    if raw[:2] == b"\x1f\x8b":
        # aiohttp already inflates Content-Encoding: gzip; a body still gzip-framed was sent
        # without that header (or double-encoded): inflate it here, bounded by the upload limit.
        raw = _gunzip_bounded(raw, _state(request).max_upload_bytes)
    if not raw.strip():
        raise ApiError(400, "the request body is empty; send a JSON object")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"malformed JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the JSON body must be an object, not {type(body).__name__}")
    return body


def _gunzip_bounded(raw: bytes, limit_bytes: int) -> bytes:
    import zlib

    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(raw, limit_bytes + 1)
    except zlib.error as exc:
        raise ApiError(400, f"invalid gzip body: {exc}") from None
    if len(data) > limit_bytes or inflater.unconsumed_tail:
        raise ApiError(413, f"the decompressed body exceeds the {limit_bytes} byte limit")
    return data


def _type_error(name: str, expected: str, value: Any) -> ApiError:
    return ApiError(400, f"'{name}' must be {expected}, got {type(value).__name__}")


def get_str(body: dict, name: str, required: bool = False, allow_empty: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(400, f"'{name}' is required")
        return None
    if not isinstance(value, str):
        raise _type_error(name, "a string", value)
    if not allow_empty and not value:
        raise ApiError(400, f"'{name}' must not be empty")
    return value


def get_int(body: dict, name: str, required: bool = False) -> int | None:
    """An integer field; integral floats and integer strings (query strings) are accepted."""
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(400, f"'{name}' is required")
        return None
    if isinstance(value, bool):
        raise _type_error(name, "an integer", value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if math.isfinite(number) and number.is_integer():
                return int(number)
    raise _type_error(name, "an integer", value)


def get_number(body: dict, name: str, required: bool = True) -> float | int | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(400, f"'{name}' is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _type_error(name, "a number", value)
    return value


def get_bool(body: dict, name: str, default: bool = False) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _type_error(name, "a boolean", value)


def get_list(body: dict, name: str, item_check: Callable[[Any], bool] | None = None,
             expected: str = "a list") -> list | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or (item_check and not all(item_check(v) for v in value)):
        raise ApiError(400, f"'{name}' must be {expected}")
    return value


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _timestamp(body: dict) -> int:
    timestamp = get_int(body, "timestamp")
    return timestamp if timestamp is not None else now_ms()


# ---------------------------------------------------------------- auth, lookups


def authenticate(request: web.Request, body: dict | None = None) -> str:
    """The key id of the request's API key (``Authorization``, or ``apiKey`` in a clientlib body).

    Raises:
        ApiError: 401 when the key is missing or not accepted.
    """
    state = _state(request)
    candidates = [request.headers.get("Authorization", "").strip()]
    if body is not None:
        for field in ("apiKey", "api_key"):
            if isinstance(body.get(field), str):
                candidates.append(body[field].strip())
    for candidate in candidates:
        if candidate:
            key_id = key_id_of(candidate)
            if key_id in state.key_ids:
                return key_id
    if not any(candidates):
        raise ApiError(401, "missing API key: send it in the Authorization header", 90212)
    raise ApiError(401, "invalid API key", 90212)


def require_experiment(request: web.Request, key_id: str, experiment_key: Any) -> str:
    """Check that the experiment exists and belongs to the key; returns its key.

    Raises:
        ApiError: 400 when the key is missing or malformed, 404 when unknown or not owned.
    """
    if experiment_key is None or experiment_key == "":
        raise ApiError(400, "'experimentKey' is required")
    if not isinstance(experiment_key, str):
        raise _type_error("experimentKey", "a string", experiment_key)
    if len(experiment_key) > MAX_EXPERIMENT_KEY_LENGTH or not experiment_key.isalnum():
        raise ApiError(400, "'experimentKey' must be up to 50 alphanumeric characters")
    state = _state(request)
    owner = state.experiment_owners.get(experiment_key)
    if owner is None:
        workspace = state.store.experiment_workspace(experiment_key)
        owner = state.store.workspace_owner(workspace) if workspace is not None else None
        if owner is not None:
            # Experiments never move between workspaces and workspaces never change owner, so
            # the answer can be cached; it saves two queries on every write of the hot path.
            state.experiment_owners[experiment_key] = owner
    if owner != key_id:
        raise ApiError(404, f"experiment {experiment_key} not found")
    return experiment_key


def require_owned_workspace(request: web.Request, key_id: str, workspace: Any) -> str:
    if not isinstance(workspace, str) or not workspace:
        raise ApiError(400, "'workspaceName' is required")
    if _state(request).store.workspace_owner(workspace) != key_id:
        raise ApiError(404, f"workspace {workspace} not found", 90219)
    return workspace


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
            loop.call_soon(self._commit)
        return self._pending

    def _commit(self) -> None:
        pending, self._pending = self._pending, None
        try:
            self.store.commit_group()
        except Exception as exc:  # every writer of the group answers 500 (logged by the middleware)
            pending.set_exception(exc)
            pending.exception()  # marks it retrieved when no writer awaits any more
        else:
            pending.set_result(None)


async def apply_write(request: web.Request, key_id: str, apply: Callable[[], dict]) -> web.Response:
    """Apply ``apply`` as one atomic write, answer its JSON once committed; at most once per request id.

    Nothing awaits between the request-id check and the write, and the store is used only from
    the event loop thread, so two copies of one request cannot both be applied.
    """
    state = _state(request)
    store = state.store
    request_id = request.headers.get(REQUEST_ID_HEADER)
    if request_id is not None:
        if not request_id or len(request_id) > MAX_REQUEST_ID_LENGTH:
            raise ApiError(400, f"{REQUEST_ID_HEADER} must be 1 to {MAX_REQUEST_ID_LENGTH} characters")
        recorded = store.recorded_response(key_id, request_id)
        if recorded is not None:
            await state.committer.committed()  # the first copy may still be in the open group
            return json_response(recorded)
    store.begin_group()
    try:
        with store.transaction():
            result = apply()
            if request_id is not None:
                store.record_response(key_id, request_id, result)
    finally:
        # Scheduled even when this write failed (its savepoint is rolled back), so that the
        # group never stays open waiting for a writer that will not come.
        group_committed = state.committer.committed()
    await group_committed
    return json_response(result)


SAVED = {"msg": "Saved"}


def saving(action: Callable[[], Any]) -> Callable[[], dict]:
    """An ``apply`` for ``apply_write`` that runs ``action`` and answers ``{"msg": "Saved"}``."""

    def apply() -> dict:
        action()
        return dict(SAVED)

    return apply


def _root_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


# ------------------------------------------------------------------ public, admin


async def is_alive_version(request: web.Request) -> web.Response:
    return json_response({"version": BACKEND_VERSION})


async def health_ping(request: web.Request) -> web.Response:
    return json_response({"msg": "pong"})


async def admin_get_intervals(request: web.Request) -> web.Response:
    authenticate(request)
    return json_response(_state(request).intervals)


async def admin_set_intervals(request: web.Request) -> web.Response:
    """Change what update_status() answers; values are stored verbatim (garbage allowed)."""
    authenticate(request)
    body = await read_json_object(request)
    state = _state(request)
    changes = {name: body[name] for name in ("heartbeatMs", "cpuIntervalMs", "gpuIntervalMs") if name in body}
    if not changes:
        raise ApiError(400, "send at least one of heartbeatMs, cpuIntervalMs, gpuIntervalMs")
    set_intervals(state, heartbeat_ms=changes.get("heartbeatMs", _UNSET),
                  cpu_interval_ms=changes.get("cpuIntervalMs", _UNSET),
                  gpu_interval_ms=changes.get("gpuIntervalMs", _UNSET))
    return json_response(state.intervals)


_UNSET: Any = object()
INTERVALS_SETTING = "intervals"
_INTERVAL_KEYS = {"heartbeat_ms": "isAliveBeatDurationMillis",
                  "cpu_interval_ms": "cpuMonitorIntervalMillis",
                  "gpu_interval_ms": "gpuMonitorIntervalMillis"}


def set_intervals(state: ServerState, heartbeat_ms: Any = _UNSET, cpu_interval_ms: Any = _UNSET,
                  gpu_interval_ms: Any = _UNSET) -> None:
    """Set the recommended intervals (any JSON value, verbatim) and persist them in the store."""
    given = {"heartbeat_ms": heartbeat_ms, "cpu_interval_ms": cpu_interval_ms,
             "gpu_interval_ms": gpu_interval_ms}
    for name, value in given.items():
        if value is not _UNSET:
            state.intervals[_INTERVAL_KEYS[name]] = value
    state.store.set_setting(INTERVALS_SETTING, state.intervals)


# --------------------------------------------------------- account, workspaces


async def account_details(request: web.Request) -> web.Response:
    key_id = authenticate(request)
    state = _state(request)
    return json_response({"userName": state.user_name(key_id),
                          "defaultWorkspaceName": state.default_workspace(key_id)})


async def workspaces(request: web.Request) -> web.Response:
    key_id = authenticate(request)
    return json_response({"workspaceNames": _state(request).store.workspaces_of(key_id)})


async def projects(request: web.Request) -> web.Response:
    key_id = authenticate(request)
    workspace = require_owned_workspace(request, key_id, request.query.get("workspaceName"))
    return json_response({"projects": _state(request).store.projects(workspace)})


async def project(request: web.Request) -> web.Response:
    key_id = authenticate(request)
    store = _state(request).store
    query = request.query
    if query.get("projectId"):
        found = store.project(project_id=query["projectId"])
    else:
        workspace = query.get("workspaceName")
        if not workspace or not query.get("projectName"):
            raise ApiError(400, "send projectId, or workspaceName and projectName")
        found = store.project(workspace, query["projectName"])
    if found is None or store.workspace_owner(found["workspaceName"]) != key_id:
        raise ApiError(404, "project not found")
    return json_response(found)


async def experiments(request: web.Request) -> web.Response:
    key_id = authenticate(request)
    state = _state(request)
    workspace = require_owned_workspace(request, key_id, request.query.get("workspaceName"))
    project_name = request.query.get("projectName")
    if not project_name:
        raise ApiError(400, "'projectName' is required")
    archived = get_bool(dict(request.query), "archived")
    if state.store.project(workspace, project_name) is None:
        raise ApiError(404, f"project {workspace}/{project_name} not found")
    heartbeat = state.intervals.get("isAliveBeatDurationMillis")
    keys = state.store.experiment_keys_in_project(workspace, project_name, archived)
    found = [state.store.experiment_metadata(k, heartbeat) for k in keys]
    sort_by = request.query.get("sortBy")
    if sort_by in ("startTime", "endTime"):
        field = "startTimeMillis" if sort_by == "startTime" else "endTimeMillis"
        found.sort(key=lambda m: m[field] or 0, reverse=request.query.get("sortOrder") == "desc")
    page, size = get_int(dict(request.query), "page"), get_int(dict(request.query), "size")
    if page is not None and size is not None and page >= 1 and size >= 1:
        found = found[(page - 1) * size: page * size]
    return json_response({"experiments": found})


# ----------------------------------------------------------------- experiments


async def create_experiment(request: web.Request) -> web.Response:
    key_id = authenticate(request)
    body = await read_json_object(request)
    state = _state(request)
    workspace = get_str(body, "workspaceName") or state.default_workspace(key_id)
    project_name = get_str(body, "projectName") or DEFAULT_PROJECT_NAME
    name = get_str(body, "experimentName")
    owner = state.store.workspace_owner(workspace)
    if owner is not None and owner != key_id:
        raise ApiError(404, f"workspace {workspace} not found", 90219)

    def apply() -> dict:
        state.store.ensure_workspace(workspace, key_id)
        experiment_key = state.store.create_experiment(workspace, project_name, name)
        return {"experimentKey": experiment_key, "workspaceName": workspace,
                "projectName": project_name,
                "link": f"{_root_url(request)}/{workspace}/{project_name}/{experiment_key}"}

    return await apply_write(request, key_id, apply)


def _query_experiment(request: web.Request) -> tuple[str, str]:
    key_id = authenticate(request)
    return key_id, require_experiment(request, key_id, request.query.get("experimentKey"))


async def experiment_metadata(request: web.Request) -> web.Response:
    _, experiment_key = _query_experiment(request)
    state = _state(request)
    return json_response(state.store.experiment_metadata(
        experiment_key, state.intervals.get("isAliveBeatDurationMillis")))


async def _body_experiment(request: web.Request, body_key_field: bool = False) -> tuple[dict, str, str]:
    if body_key_field:  # clientlib endpoints may carry the key in the body: parse first
        body = await read_json_object(request)
        key_id = authenticate(request, body)
    else:  # a wrong key is told so before anything about its body
        key_id = authenticate(request)
        body = await read_json_object(request)
    experiment_key = require_experiment(request, key_id, body.get("experimentKey"))
    return body, key_id, experiment_key


async def set_status(request: web.Request) -> web.Response:
    """GET write/experiment/set-status: record a heartbeat, answer the recommended intervals."""
    key_id, experiment_key = _query_experiment(request)
    state = _state(request)

    def apply() -> dict:
        state.store.update_experiment(experiment_key, last_heartbeat_ms=now_ms())
        return dict(state.intervals)

    return await apply_write(request, key_id, apply)


async def update_status(request: web.Request) -> web.Response:
    body, key_id, experiment_key = await _body_experiment(request)
    is_alive = get_bool(body, "isAlive", default=True)
    has_crashed = get_bool(body, "hasCrashed")
    error = body.get("error")
    store = _state(request).store

    def apply() -> dict:
        columns: dict[str, Any] = {}
        if is_alive:
            columns["last_heartbeat_ms"] = now_ms()
        if has_crashed:
            columns["has_crashed"] = 1
        store.update_experiment(experiment_key, **columns)
        if error:
            store.add_other(experiment_key, "error", error if _is_scalar(error) else json.dumps(error), now_ms())
        return dict(_state(request).intervals)

    return await apply_write(request, key_id, apply)


async def stop_experiment(request: web.Request) -> web.Response:
    key_id, experiment_key = _query_experiment(request)
    store = _state(request).store

    def apply() -> dict:
        store.update_experiment(experiment_key, stop_requested=1)
        return {"msg": "Stop Requested"}

    return await apply_write(request, key_id, apply)


def _archive_handler(archived: int):
    async def handler(request: web.Request) -> web.Response:
        key_id, experiment_key = _query_experiment(request)
        store = _state(request).store

        def apply() -> dict:
            store.update_experiment(experiment_key, archived=archived)
            return dict(SAVED)

        return await apply_write(request, key_id, apply)

    return handler


async def set_start_end_time(request: web.Request) -> web.Response:
    body, key_id, experiment_key = await _body_experiment(request)
    start, end = get_int(body, "startTimeMillis"), get_int(body, "endTimeMillis")
    if start is None and end is None:
        raise ApiError(400, "send startTimeMillis and/or endTimeMillis")
    columns = {name: value for name, value in (("start_ms", start), ("end_ms", end)) if value is not None}
    store = _state(request).store
    return await apply_write(request, key_id, saving(lambda: store.update_experiment(experiment_key, **columns)))


async def file_path(request: web.Request) -> web.Response:
    body, key_id, experiment_key = await _body_experiment(request)
    path = get_str(body, "filePath", required=True)
    store = _state(request).store
    return await apply_write(request, key_id, saving(lambda: store.update_experiment(
        experiment_key, file_path=path, file_name=os.path.basename(path))))


async def create_symlink(request: web.Request) -> web.Response:
    key_id, experiment_key = _query_experiment(request)
    project_name = request.query.get("projectName")
    if not project_name:
        raise ApiError(400, "'projectName' is required")
    store = _state(request).store
    workspace = store.experiment_workspace(experiment_key)

    def apply() -> dict:
        store.add_symlink(experiment_key, store.ensure_project(workspace, project_name))
        return {"link": f"{_root_url(request)}/{workspace}/{project_name}/{experiment_key}"}

    return await apply_write(request, key_id, apply)


# -------------------------------------------------------------- system details


def _valid_system_field(name: str, value: Any) -> bool:
    if value is None:
        return True
    if name == "command":
        return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    if name == "pid":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "env":
        return isinstance(value, dict)
    if name in ("installedPackages", "osPackages", "networkInterfaceIps"):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if name == "gpuStaticInfoList":
        return isinstance(value, list) and all(isinstance(v, dict) for v in value)
    if name == "logAdditionalSystemInfoList":
        return isinstance(value, list) and all(
            isinstance(v, dict) and isinstance(v.get("key"), str) and "value" in v for v in value)
    return isinstance(value, str)


_GPU_STATIC_KEYS = {"gpu_index": "gpuIndex", "total_memory": "totalMemory", "power_limit": "powerLimit"}


def normalise_gpu_static_info(items: list[dict]) -> list[dict]:
    """GPU static items in camelCase (``gpuIndex, name, uuid, totalMemory, powerLimit``).

    The live SDK sends snake_case keys, APIExperiment camelCase; both are accepted.
    """
    normalised = []
    for item in items:
        converted = {_GPU_STATIC_KEYS.get(k, k): v for k, v in item.items()}
        normalised.append({k: converted.get(k) for k in ("gpuIndex", "name", "uuid", "totalMemory", "powerLimit")}
                          | {k: v for k, v in converted.items()
                             if k not in ("gpuIndex", "name", "uuid", "totalMemory", "powerLimit")})
    return normalised


async def write_system_details(request: web.Request) -> web.Response:
    body, key_id, experiment_key = await _body_experiment(request)
    fields = {}
    for name, value in body.items():
        if name in ("experimentKey", "apiKey"):
            continue
        if name not in WRITABLE_SYSTEM_DETAILS_KEYS:
            continue  # unknown keys from newer SDKs are ignored, like Comet does
        if not _valid_system_field(name, value):
            raise ApiError(400, f"system-details field '{name}' has the wrong type ({type(value).__name__})")
        fields[name] = value
    if "gpuStaticInfoList" in fields and fields["gpuStaticInfoList"] is not None:
        fields["gpuStaticInfoList"] = normalise_gpu_static_info(fields["gpuStaticInfoList"])
    if fields.get("logAdditionalSystemInfoList") is None:
        fields.pop("logAdditionalSystemInfoList", None)
    store = _state(request).store
    return await apply_write(request, key_id, saving(lambda: store.merge_system_details(experiment_key, fields)))


async def read_system_details(request: web.Request) -> web.Response:
    _, experiment_key = _query_experiment(request)
    return json_response(_state(request).store.system_details(experiment_key))


# --------------------------------------------------------------------- metrics


def _metric_point(item: dict, name_field: str = "metricName", value_field: str = "metricValue") -> tuple:
    name = get_str(item, name_field, required=True, allow_empty=False)
    if value_field not in item:
        raise ApiError(400, f"'{value_field}' is required")
    value = item[value_field]
    if not _is_scalar(value):
        raise _type_error(value_field, "a number, string or boolean", value)
    context = get_str(item, "context")
    return (name, value, get_int(item, "step"), get_int(item, "epoch"), context, _timestamp(item))


async def write_metric(request: web.Request) -> web.Response:
    body, key_id, experiment_key = await _body_experiment(request)
    point = _metric_point(body)
    store = _state(request).store
    return await apply_write(request, key_id, saving(lambda: store.add_metrics(experiment_key, [point])))


async def batch_metric(request: web.Request) -> web.Response:
    """POST /clientlib/batch/logger/experiment/metric: many points, one transaction."""
    body, key_id, experiment_key = await _body_experiment(request, body_key_field=True)
    values = get_list(body, "values", lambda v: isinstance(v, dict), "a list of objects")
    if values is None:
        raise ApiError(400, "'values' is required")
    points = [_metric_point(item) for item in values]
    store = _state(request).store
    return await apply_write(request, key_id, saving(lambda: store.add_metrics(experiment_key, points)))


def _system_point_common(body: dict) -> tuple:
    return get_int(body, "step"), get_int(body, "epoch"), get_str(body, "context"), _timestamp(body)


async def write_cpu_metrics(request: web.Request) -> web.Response:
    body, key_id, experiment_key = await _body_experiment(request)
    percents = get_list(body, "cpuPercentUtilization",
                        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a list of numbers")
    if not percents:
        raise ApiError(400, "'cpuPercentUtilization' must be a non-empty list of numbers")
    step, epoch, context, timestamp = _system_point_common(body)
    points = [(f"sys.cpu.percent.{i:02d}", v, step, epoch, context, timestamp) for i, v in enumerate(percents, 1)]
    points.append(("sys.cpu.percent.avg", sum(percents) / len(percents), step, epoch, context, timestamp))
    store = _state(request).store
    return await apply_write(request, key_id, saving(lambda: store.add_metrics(experiment_key, points)))


async def write_ram_metrics(request: web.Request) -> web.Response:
    body, key_id, experiment_key = await _body_experiment(request)
    total, used = get_number(body, "totalRam"), get_number(body, "usedRam")
    step, epoch, context, timestamp = _system_point_common(body)
    points = [("sys.ram.total", total, step, epoch, context, timestamp),
              ("sys.ram.used", used, step, epoch, context, timestamp)]
    store = _state(request).store
    return await apply_write(request, key_id, saving(lambda: store.add_metrics(experiment_key, points)))


async def write_load_metrics(request: web.Request) -> web.Response:
    body, key_id, experiment_key = await _body_experiment(request)
    load = get_number(body, "loadAverage")
    step, epoch, context, timestamp = _system_point_common(body)
    points = [("sys.load.avg", load, step, epoch, context, timestamp)]
    store = _state(request).store
    return await apply_write(request, key_id, saving(lambda: store.add_metrics(experiment_key, points)))


_GPU_METRIC_FIELDS = (("freeMemory", "free_memory"), ("usedMemory", "used_memory"),
                      ("gpuUtilization", "gpu_utilization"), ("totalMemory", "total_memory"))


async def write_gpu_metrics(request: web.Request) -> web.Response:
    body, key_id, experiment_key = await _body_experiment(request)
    gpus = get_list(body, "gpus", lambda v: isinstance(v, dict), "a list of objects")
    if not gpus:
        raise ApiError(400, "'gpus' must be a non-empty list of objects")
    step, epoch, context, timestamp = _system_point_common(body)
    points = []
    for gpu in gpus:
        gpu_id = get_int(gpu, "gpuId", required=True)
        # comet-agent extension: an item may carry its own sample time (epoch ms), so a spooled
        # sample replayed after an outage keeps its original timestamp.
        gpu_timestamp = get_int(gpu, "timestamp")
        for field, suffix in _GPU_METRIC_FIELDS:
            value = get_number(gpu, field, required=False)
            if value is not None:
                points.append((f"sys.gpu.{gpu_id}.{suffix}", value, step, epoch, context,
                               gpu_timestamp if gpu_timestamp is not None else timestamp))
    store = _state(request).store
    return await apply_write(request, key_id, saving(lambda: store.add_metrics(experiment_key, points)))


async def metrics_get_all(request: web.Request) -> web.Response:
    _, experiment_key = _query_experiment(request)
    return json_response({"metrics": _state(request).store.metrics(experiment_key)})


async def metrics_get_metric(request: web.Request) -> web.Response:
    _, experiment_key = _query_experiment(request)
    name = request.query.get("metricName")
    if not name:
        raise ApiError(400, "'metricName' is required")
    return json_response({"metrics": _state(request).store.metrics(experiment_key, name)})


async def metrics_summary(request: web.Request) -> web.Response:
    _, experiment_key = _query_experiment(request)
    return json_response({"values": _state(request).store.metrics_summary(experiment_key)})


# ---------------------------------------------------- parameters, others, tags


def _parameter_point(item: dict, source: str | None) -> tuple:
    name = get_str(item, "parameterName", required=True, allow_empty=False)
    if "parameterValue" not in item:
        raise ApiError(400, "'parameterValue' is required")
    value = item["parameterValue"]
    if not (_is_scalar(value) or isinstance(value, list)):
        raise _type_error("parameterValue", "a number, string, boolean or list", value)
    return (name, value, get_int(item, "step"), get_str(item, "context"),
            get_str(item, "source") or source, _timestamp(item))


async def write_parameter(request: web.Request) -> web.Response:
    body, key_id, experiment_key = await _body_experiment(request)
    point = _parameter_point(body, "manual")
    store = _state(request).store
    return await apply_write(request, key_id, saving(lambda: store.add_parameters(experiment_key, [point])))


async def batch_parameter(request: web.Request) -> web.Response:
    body, key_id, experiment_key = await _body_experiment(request, body_key_field=True)
    values = get_list(body, "values", lambda v: isinstance(v, dict), "a list of objects")
    if values is None:
        raise ApiError(400, "'values' is required")
    points = [_parameter_point(item, "manual") for item in values]
    store = _state(request).store
    return await apply_write(request, key_id, saving(lambda: store.add_parameters(experiment_key, points)))


async def parameters_summary(request: web.Request) -> web.Response:
    _, experiment_key = _query_experiment(request)
    return json_response({"values": _state(request).store.parameters_summary(experiment_key)})


async def write_log_other(request: web.Request) -> web.Response:
    body, key_id, experiment_key = await _body_experiment(request)
    name = get_str(body, "key", required=True, allow_empty=False)
    if "value" not in body:
        raise ApiError(400, "'value' is required")
    value = body["value"]
    if not _is_scalar(value):
        raise _type_error("value", "a number, string or boolean", value)
    timestamp = _timestamp(body)
    store = _state(request).store

    def apply() -> dict:
        store.add_other(experiment_key, name, value, timestamp)
        if name == "Name":  # Comet's experiment name is the "Name" other
            store.update_experiment(experiment_key, name=None if value is None else str(value))
        return dict(SAVED)

    return await apply_write(request, key_id, apply)


async def others_summary(request: web.Request) -> web.Response:
    _, experiment_key = _query_experiment(request)
    return json_response({"values": _state(request).store.others_summary(experiment_key)})


async def write_tags(request: web.Request) -> web.Response:
    body, key_id, experiment_key = await _body_experiment(request, body_key_field=True)
    tags = get_list(body, "addedTags", lambda v: isinstance(v, str), "a list of strings")
    if tags is None:
        raise ApiError(400, "'addedTags' is required")
    store = _state(request).store
    return await apply_write(request, key_id, saving(lambda: store.add_tags(experiment_key, tags)))


async def delete_tags(request: web.Request) -> web.Response:
    body, key_id, experiment_key = await _body_experiment(request)
    tags = get_list(body, "tags", lambda v: isinstance(v, str), "a list of strings")
    if tags is None:
        raise ApiError(400, "'tags' is required")
    store = _state(request).store
    return await apply_write(request, key_id, saving(lambda: store.delete_tags(experiment_key, tags)))


async def read_tags(request: web.Request) -> web.Response:
    _, experiment_key = _query_experiment(request)
    return json_response({"tags": _state(request).store.tags(experiment_key)})


# ------------------------------------------------ html, code, graph, output, git


def _text_writer(field: str, column: str, append_unless_override: bool = False):
    async def handler(request: web.Request) -> web.Response:
        body, key_id, experiment_key = await _body_experiment(request)
        text = get_str(body, field, required=True)
        override = get_bool(body, "override", default=not append_unless_override)
        store = _state(request).store

        def apply() -> dict:
            new_text = text
            if not override:
                previous = store.experiment_row(experiment_key)[column]
                new_text = (previous or "") + text
            store.update_experiment(experiment_key, **{column: new_text})
            return dict(SAVED)

        return await apply_write(request, key_id, apply)

    return handler


def _text_reader(field: str, column: str):
    async def handler(request: web.Request) -> web.Response:
        _, experiment_key = _query_experiment(request)
        return json_response({field: _state(request).store.experiment_row(experiment_key)[column]})

    return handler


async def write_output(request: web.Request) -> web.Response:
    body, key_id, experiment_key = await _body_experiment(request, body_key_field=True)
    lines = get_list(body, "outputLines", lambda v: isinstance(v, dict), "a list of objects")
    if lines is None:
        raise ApiError(400, "'outputLines' is required")
    context = get_str(body, "runContext")
    rows = [(get_str(line, "output", required=True), int(get_bool(line, "stderr")),
             get_int(line, "localTimestamp"), get_int(line, "offset"), context) for line in lines]
    store = _state(request).store
    return await apply_write(request, key_id, saving(lambda: store.add_output_lines(experiment_key, rows)))


async def read_output(request: web.Request) -> web.Response:
    _, experiment_key = _query_experiment(request)
    return json_response({"output": _state(request).store.output(experiment_key)})


async def write_git_metadata(request: web.Request) -> web.Response:
    body, key_id, experiment_key = await _body_experiment(request)
    metadata = {name: get_str(body, name) for name in GIT_METADATA_KEYS}
    store = _state(request).store
    return await apply_write(request, key_id, saving(lambda: store.update_experiment(
        experiment_key, git_metadata=json.dumps(metadata))))


async def read_git_metadata(request: web.Request) -> web.Response:
    _, experiment_key = _query_experiment(request)
    stored = _state(request).store.experiment_row(experiment_key)["git_metadata"]
    return json_response(json.loads(stored) if stored else {name: None for name in GIT_METADATA_KEYS})


async def read_git_patch(request: web.Request) -> web.Response:
    _, experiment_key = _query_experiment(request)
    path = _state(request).store.experiment_row(experiment_key)["git_patch_path"]
    if not path or not Path(path).exists():
        return json_response({"msg": "No git patch"})
    return web.Response(body=Path(path).read_bytes(), content_type="application/octet-stream")


# ------------------------------------------------------------------ uploads


async def _read_upload(request: web.Request) -> tuple[bytes, str | None, dict | None]:
    """The ``file`` part of a multipart upload, its part filename and the ``metadata`` part."""
    content_type = request.headers.get("Content-Type", "")
    if not content_type.startswith("multipart/form-data"):
        raise ApiError(400, "uploads must be multipart/form-data with a 'file' part")
    try:
        form = await request.post()  # bounded by client_max_size: over it raises 413
    except ValueError as exc:
        raise ApiError(400, f"malformed multipart body: {exc}") from None
    part = form.get("file")
    if part is None:
        raise ApiError(400, "the multipart body has no 'file' part")
    if isinstance(part, web.FileField):
        data, part_filename = part.file.read(), part.filename
    else:
        data, part_filename = (part.encode("utf-8") if isinstance(part, str) else bytes(part)), None
    metadata = None
    raw_metadata = form.get("metadata")
    if isinstance(raw_metadata, web.FileField):
        raw_metadata = raw_metadata.file.read().decode("utf-8", "replace")
    if raw_metadata:
        try:
            metadata = json.loads(raw_metadata)
        except ValueError:
            raise ApiError(400, "the 'metadata' part must be a JSON object") from None
        if not isinstance(metadata, dict):
            raise ApiError(400, "the 'metadata' part must be a JSON object")
    return data, part_filename, metadata


def _write_upload_file(store: Store, experiment_key: str, asset_id: str, data: bytes) -> str:
    path = store.experiment_files_dir(experiment_key) / asset_id
    write_private_file(path, data)
    return str(path)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


async def upload_asset(request: web.Request) -> web.Response:
    """Assets and images (REST ``write/experiment/upload-asset``, clientlib ``asset/upload``)."""
    key_id = authenticate(request)
    query = dict(request.query)
    experiment_key = require_experiment(request, key_id, query.get("experimentKey") or query.get("experimentId"))
    data, part_filename, metadata = await _read_upload(request)
    asset_type = query.get("type") or "asset"
    file_name = query.get("fileName") or (os.path.basename(part_filename) if part_filename else None) or "file"
    step = get_int(query, "step")
    overwrite = get_bool(query, "overwrite")
    extension = (query.get("extension") or os.path.splitext(file_name)[1]).lstrip(".") or None
    store = _state(request).store
    asset_id = uuid.uuid4().hex
    written: list[str] = []
    replaced: list[str] = []

    def apply() -> dict:
        path = _write_upload_file(store, experiment_key, asset_id, data)
        written.append(path)
        if overwrite:
            replaced.extend(store.remove_assets_named(experiment_key, file_name, asset_type))
        store.add_asset({
            "asset_id": asset_id, "experiment_key": experiment_key, "file_name": file_name,
            "size_bytes": len(data), "asset_type": asset_type, "step": step,
            "context": query.get("context") or None,
            "metadata_json": json.dumps(metadata) if metadata is not None else None,
            "grouping_name": query.get("groupingName") or None, "extension": extension,
            "created_ms": now_ms(), "path": path})
        store.update_experiment(experiment_key)
        return {"assetId": asset_id, "fileName": file_name, "fileSize": len(data),
                "web": _asset_link(request, experiment_key, asset_id),
                "api": _asset_link(request, experiment_key, asset_id)}

    try:
        response = await apply_write(request, key_id, apply)
    except BaseException:
        for path in written:  # the transaction rolled back: leave no orphan file
            _unlink_quietly(path)
        raise
    for path in replaced:
        _unlink_quietly(path)
    return response


async def upload_git_patch(request: web.Request) -> web.Response:
    key_id = authenticate(request)
    query = dict(request.query)
    experiment_key = require_experiment(request, key_id, query.get("experimentKey") or query.get("experimentId"))
    data, _, _ = await _read_upload(request)
    store = _state(request).store
    written: list[str] = []
    previous = store.experiment_row(experiment_key)["git_patch_path"]

    def apply() -> dict:
        path = _write_upload_file(store, experiment_key, "git-patch-" + uuid.uuid4().hex, data)
        written.append(path)
        store.update_experiment(experiment_key, git_patch_path=path)
        return dict(SAVED)

    try:
        response = await apply_write(request, key_id, apply)
    except BaseException:
        for path in written:
            _unlink_quietly(path)
        raise
    if previous and written:
        _unlink_quietly(previous)
    return response


def _asset_link(request: web.Request, experiment_key: str, asset_id: str) -> str:
    return (f"{_root_url(request)}/api/rest/v2/experiment/asset/get-asset?assetId={asset_id}"
            f"&experimentKey={experiment_key}")


def _asset_json(request: web.Request, row: dict) -> dict:
    asset_type = row["asset_type"]
    return {
        "fileName": row["file_name"], "fileSize": row["size_bytes"], "runContext": row["context"],
        "step": row["step"], "remote": False, "link": _asset_link(request, row["experiment_key"], row["asset_id"]),
        "compressedAssetLink": "", "s3Link": "", "createdAt": row["created_ms"], "dir": asset_type,
        "canView": False, "audio": asset_type == "audio", "video": asset_type == "video",
        "histogram": asset_type == "histogram_combined_3d", "image": asset_type == "image",
        "type": asset_type, "metadata": row["metadata_json"], "assetId": row["asset_id"],
        "tags": [], "curlDownload": "", "experimentKey": row["experiment_key"],
        "groupingName": row["grouping_name"],
    }


async def asset_list(request: web.Request) -> web.Response:
    _, experiment_key = _query_experiment(request)
    asset_type = request.query.get("type")
    rows = _state(request).store.assets(experiment_key, None if asset_type in (None, "", "all") else asset_type)
    return json_response({"assets": [_asset_json(request, r) for r in rows]})


async def get_asset(request: web.Request) -> web.Response:
    _, experiment_key = _query_experiment(request)
    asset_id = request.query.get("assetId")
    if not asset_id:
        raise ApiError(400, "'assetId' is required")
    row = _state(request).store.asset(experiment_key, asset_id)
    if row is None or not Path(row["path"]).exists():
        raise ApiError(404, f"asset {asset_id} not found")
    return web.Response(body=Path(row["path"]).read_bytes(), content_type="application/octet-stream")


# --------------------------------------------------------------------- models


async def model_list(request: web.Request) -> web.Response:
    _, experiment_key = _query_experiment(request)
    store = _state(request).store
    models = []
    for name in store.model_names(experiment_key):
        rows = store.assets(experiment_key, "model-element", name)
        models.append({"modelName": name, "experimentModelId": f"{experiment_key}-{name}",
                       "experimentKey": experiment_key,
                       "assets": [_asset_json(request, r) for r in rows]})
    return json_response({"models": models})


def _model_rows(request: web.Request, experiment_key: str) -> list[dict]:
    name = request.query.get("modelName")
    if not name:
        raise ApiError(400, "'modelName' is required")
    return _state(request).store.assets(experiment_key, "model-element", name)


async def model_asset_list(request: web.Request) -> web.Response:
    _, experiment_key = _query_experiment(request)
    return json_response({"assets": [_asset_json(request, r) for r in _model_rows(request, experiment_key)]})


async def model_download(request: web.Request) -> web.Response:
    _, experiment_key = _query_experiment(request)
    rows = _model_rows(request, experiment_key)
    if not rows:
        raise ApiError(404, f"model {request.query.get('modelName')} not found")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for row in rows:
            archive.write(row["path"], row["file_name"])
    return web.Response(body=buffer.getvalue(), content_type="application/zip")


# ------------------------------------------- the live comet_ml.Experiment (clientlib)


def _handshake(request: web.Request, experiment_key: str) -> dict:
    state = _state(request)
    row = state.store.experiment_row(experiment_key)
    max_mb = max(state.max_upload_bytes // 2**20, 1)
    return {
        "runId": experiment_key, "project_id": row["project_id"], "experimentKey": experiment_key,
        "focusUrl": f"{_root_url(request)}/{row['workspace']}/{row['project_name']}/",
        "lastOffset": state.store.output_line_count(experiment_key), "name": row["name"],
        "githubEnabled": False, "s3DirectAccessEnabled": False, "featureToggles": [],
        "upload_file_size_limit_in_mb": max_mb, "asset_upload_file_size_limit_in_mb": max_mb,
        "uploadVideoMaxSizeMB": max_mb,
    }


async def logger_add_run(request: web.Request) -> web.Response:
    """POST /clientlib/logger/add/run: the live Experiment's handshake, creating its experiment."""
    body = await read_json_object(request)
    key_id = authenticate(request, body)
    state = _state(request)
    experiment_key = get_str(body, "experimentKey") or None
    if experiment_key is not None and (len(experiment_key) < 32 or len(experiment_key) > MAX_EXPERIMENT_KEY_LENGTH
                                       or not experiment_key.isalnum()):
        raise ApiError(400, "'experimentKey' must be 32 to 50 alphanumeric characters")
    if experiment_key is not None and state.store.experiment_workspace(experiment_key) is not None:
        raise ApiError(400, f"experiment {experiment_key} already exists", 90999)
    workspace = get_str(body, "teamName") or get_str(body, "workspaceName") or state.default_workspace(key_id)
    project_name = get_str(body, "projectName") or DEFAULT_PROJECT_NAME
    owner = state.store.workspace_owner(workspace)
    if owner is not None and owner != key_id:
        raise ApiError(400, f"workspace {workspace} not found", 90219)

    def apply() -> dict:
        state.store.ensure_workspace(workspace, key_id)
        created = state.store.create_experiment(workspace, project_name, None, experiment_key)
        return _handshake(request, created)

    return await apply_write(request, key_id, apply)


async def logger_get_run(request: web.Request) -> web.Response:
    """POST /clientlib/logger/get/run: the handshake of a resumed (ExistingExperiment) run."""
    body = await read_json_object(request)
    key_id = authenticate(request, body)
    experiment_key = require_experiment(request, key_id, body.get("previousExperiment"))
    return json_response(_handshake(request, experiment_key))


async def status_report_update(request: web.Request) -> web.Response:
    """POST /clientlib/status-report/update: the live heartbeat; answers snake_case intervals."""
    body, key_id, experiment_key = await _body_experiment(request, body_key_field=True)
    is_alive = get_bool(body, "is_alive", default=True)
    state = _state(request)

    def apply() -> dict:
        columns: dict[str, Any] = {"last_heartbeat_ms": now_ms()}
        if not is_alive and state.store.experiment_row(experiment_key)["end_ms"] is None:
            columns["end_ms"] = now_ms()
        state.store.update_experiment(experiment_key, **columns)
        intervals = state.intervals
        return {"is_alive_beat_duration_millis": intervals.get("isAliveBeatDurationMillis"),
                "gpu_monitor_interval_millis": intervals.get("gpuMonitorIntervalMillis"),
                "cpu_monitor_interval_millis": intervals.get("cpuMonitorIntervalMillis"),
                "parameter_update_interval_millis": 60000, "pending_rpcs": False}

    return await apply_write(request, key_id, apply)


async def pending_rpcs(request: web.Request) -> web.Response:
    _query_experiment(request)
    return json_response({"remoteProcedureCalls": []})


async def clientlib_acknowledge(request: web.Request) -> web.Response:
    """Clientlib calls the local server accepts and ignores (3d limits, notifications, RPC registry)."""
    if request.body_exists:
        body = await read_json_object(request)
        authenticate(request, body)
    else:
        authenticate(request)
    return json_response({"msg": "ok"})


async def clientlib_symlink(request: web.Request) -> web.Response:
    return await create_symlink(request)


# ----------------------------------------------------------------- route table


#: (method, path relative to a REST prefix, handler); each is mounted under both prefixes.
REST_ROUTES: list[tuple[str, str, Callable]] = [
    ("GET", "account-details", account_details),
    ("GET", "workspaces", workspaces),
    ("GET", "projects", projects),
    ("GET", "project", project),
    ("GET", "experiments", experiments),
    ("GET", "experiment/metadata", experiment_metadata),
    ("GET", "experiment/system-details", read_system_details),
    ("GET", "experiment/metrics/get-all", metrics_get_all),
    ("GET", "experiment/metrics/get-metric", metrics_get_metric),
    ("GET", "experiment/metrics/summary", metrics_summary),
    ("GET", "experiment/parameters", parameters_summary),
    ("GET", "experiment/log-other", others_summary),
    ("GET", "experiment/tags", read_tags),
    ("GET", "experiment/output", read_output),
    ("GET", "experiment/html", _text_reader("html", "html")),
    ("GET", "experiment/code", _text_reader("code", "code")),
    ("GET", "experiment/graph", _text_reader("graph", "graph")),
    ("GET", "experiment/git/metadata", read_git_metadata),
    ("GET", "experiment/git/patch", read_git_patch),
    ("GET", "experiment/asset/list", asset_list),
    ("GET", "experiment/asset/get-asset", get_asset),
    ("GET", "experiment/model", model_list),
    ("GET", "experiment/model/asset/list", model_asset_list),
    ("GET", "experiment/model/download", model_download),
    ("POST", "write/experiment/create", create_experiment),
    ("POST", "write/experiment/system-details", write_system_details),
    ("POST", "write/experiment/tags", write_tags),
    ("POST", "write/experiment/tags/delete", delete_tags),
    ("GET", "write/project/symlink", create_symlink),
    ("POST", "write/experiment/upload-asset", upload_asset),
    ("POST", "write/experiment/cpu-metrics", write_cpu_metrics),
    ("POST", "write/experiment/ram-metrics", write_ram_metrics),
    ("POST", "write/experiment/load-metrics", write_load_metrics),
    ("POST", "write/experiment/gpu-metrics", write_gpu_metrics),
    ("POST", "write/experiment/metric", write_metric),
    ("POST", "write/experiment/parameter", write_parameter),
    ("POST", "write/experiment/log-other", write_log_other),
    ("POST", "write/experiment/html", _text_writer("html", "html", append_unless_override=True)),
    ("POST", "write/experiment/code", _text_writer("code", "code")),
    ("POST", "write/experiment/graph", _text_writer("graph", "graph")),
    ("POST", "write/experiment/output", write_output),
    ("POST", "write/experiment/file-path", file_path),
    ("POST", "write/experiment/set-start-end-time", set_start_end_time),
    ("POST", "write/experiment/git/metadata", write_git_metadata),
    ("POST", "write/experiment/git/patch", upload_git_patch),
    ("GET", "write/experiment/set-status", set_status),
    ("POST", "write/experiment/update-status", update_status),
    ("GET", "write/experiment/stop", stop_experiment),
    ("GET", "write/experiment/archive", _archive_handler(1)),
    ("GET", "write/experiment/restore", _archive_handler(0)),
]

#: Routes at fixed absolute paths.
OTHER_ROUTES: list[tuple[str, str, Callable]] = [
    ("GET", "/clientlib/isAlive/ver", is_alive_version),
    ("GET", "/clientlib/health/ping", health_ping),
    ("POST", "/clientlib/batch/logger/experiment/metric", batch_metric),
    ("POST", "/clientlib/batch/logger/experiment/parameter", batch_parameter),
    ("POST", "/clientlib/tags/add-tags-to-experiment", write_tags),
    ("POST", "/clientlib/asset/upload", upload_asset),
    ("POST", "/clientlib/git-patch/upload", upload_git_patch),
    ("POST", "/clientlib/logger/add/run", logger_add_run),
    ("POST", "/clientlib/logger/get/run", logger_get_run),
    ("POST", "/clientlib/status-report/update", status_report_update),
    ("GET", "/clientlib/rpc/get-pending-rpcs", pending_rpcs),
    ("GET", "/clientlib/symlink/new", clientlib_symlink),
    ("POST", "/clientlib/asset/3d-limits", clientlib_acknowledge),
    ("POST", "/clientlib/notification/experiment", clientlib_acknowledge),
    ("POST", "/clientlib/status-report/offline-metadata", clientlib_acknowledge),
    ("POST", "/clientlib/rpc/register-rpc", clientlib_acknowledge),
    ("GET", "/local/admin/intervals", admin_get_intervals),
    ("POST", "/local/admin/intervals", admin_set_intervals),
]


def add_routes(app: web.Application) -> None:
    """Mount every route (REST routes under both REST prefixes)."""
    for method, path, handler in REST_ROUTES:
        for prefix in REST_PREFIXES:
            app.router.add_route(method, prefix + path, handler)
    for method, path, handler in OTHER_ROUTES:
        app.router.add_route(method, path, handler)
