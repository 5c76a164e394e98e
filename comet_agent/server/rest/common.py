"""What every REST handler of the local server uses: errors, responses, input, auth, writes.

Response rules (comet-rest-api.md section 3.3): ``Content-Type`` is exactly ``application/json``
(no charset), GETs answer exactly 200, every write answers a JSON body, and errors are
Comet-style ``{"msg", "code", "sdk_error_code"}`` with 400 / 401 / 404 / 413, never a 500 for
input we can recognise as bad (``ApiError``, turned into ``error_response`` by the middleware in
``app.py``).

Writes run through ``apply_write``: each request's write is atomic (a savepoint of the
current group transaction, see ``state.GroupCommitter``) and is answered only once committed.
The optional ``X-Comet-Agent-Request-Id`` header is recorded in the same write, so a repeated
request is applied at most once and answered with the first response (200).

Ownership: a workspace belongs to the key that first used it. Another key's workspace, project
or experiment reads as 404 (not 403), so existence does not leak (``require_experiment``,
``require_owned_workspace``).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Callable

from aiohttp import web

from comet_agent.paths import write_private_file
from comet_agent.server.state import state_of
from comet_agent.server.store import Store, key_id_of, now_ms

#: Where an experiment goes when the client names no project (Comet's own default).
DEFAULT_PROJECT_NAME = "general"
REQUEST_ID_HEADER = "X-Comet-Agent-Request-Id"
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
    """Comet's JSON error body ``{"msg", "code", "sdk_error_code"}`` with HTTP ``status``."""
    return json_response({"msg": msg, "code": status, "sdk_error_code": sdk_error_code}, status)


# ----------------------------------------------------------------- input helpers


async def read_json_object(request: web.Request) -> dict:
    """The request body as a JSON object (gzip accepted); 400 when it is not one."""
    raw = await request.read()
    if raw[:2] == b"\x1f\x8b":
        # aiohttp already inflates Content-Encoding: gzip; a body still gzip-framed was sent
        # without that header (or double-encoded): inflate it here, bounded by the upload limit.
        raw = _gunzip_bounded(raw, state_of(request).max_upload_bytes)
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


def type_error(name: str, expected: str, value: Any) -> ApiError:
    """A 400 saying that field ``name`` must be ``expected`` (and what type it was)."""
    return ApiError(400, f"'{name}' must be {expected}, got {type(value).__name__}")


def get_str(body: dict, name: str, required: bool = False, allow_empty: bool = True) -> str | None:
    """A string field (None when absent and not ``required``); 400 for another type."""
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(400, f"'{name}' is required")
        return None
    if not isinstance(value, str):
        raise type_error(name, "a string", value)
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
        raise type_error(name, "an integer", value)
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
    raise type_error(name, "an integer", value)


def get_number(body: dict, name: str, required: bool = True) -> float | int | None:
    """A number field (booleans refused); 400 when missing and ``required`` or of another type."""
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(400, f"'{name}' is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise type_error(name, "a number", value)
    return value


def get_bool(body: dict, name: str, default: bool = False) -> bool:
    """A boolean field; ``"true"``/``"false"`` strings (query strings) are accepted."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise type_error(name, "a boolean", value)


def get_list(body: dict, name: str, item_check: Callable[[Any], bool] | None = None,
             expected: str = "a list") -> list | None:
    """A list field whose items all pass ``item_check``; 400 (saying ``expected``) otherwise."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or (item_check and not all(item_check(v) for v in value)):
        raise ApiError(400, f"'{name}' must be {expected}")
    return value


def is_scalar(value: Any) -> bool:
    """True for what a metric, parameter or other value may be: None, str, int, float, bool."""
    return value is None or isinstance(value, (str, int, float, bool))


def timestamp_or_now(body: dict) -> int:
    """The body's ``timestamp`` (epoch ms), or now when it has none."""
    timestamp = get_int(body, "timestamp")
    return timestamp if timestamp is not None else now_ms()


# ---------------------------------------------------------------- auth, lookups


def authenticate(request: web.Request, body: dict | None = None) -> str:
    """The key id of the request's API key (``Authorization``, or ``apiKey`` in a clientlib body).

    Raises:
        ApiError: 401 when the key is missing or not accepted.
    """
    state = state_of(request)
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
        raise type_error("experimentKey", "a string", experiment_key)
    if len(experiment_key) > MAX_EXPERIMENT_KEY_LENGTH or not experiment_key.isalnum():
        raise ApiError(400, "'experimentKey' must be up to 50 alphanumeric characters")
    state = state_of(request)
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
    """``workspace`` when the key owns it; 400 when missing, 404 when unknown or another key's."""
    if not isinstance(workspace, str) or not workspace:
        raise ApiError(400, "'workspaceName' is required")
    if state_of(request).store.workspace_owner(workspace) != key_id:
        raise ApiError(404, f"workspace {workspace} not found", 90219)
    return workspace


async def apply_write(request: web.Request, key_id: str, apply: Callable[[], dict]) -> web.Response:
    """Apply ``apply`` as one atomic write, answer its JSON once committed; at most once per request id.

    Nothing awaits between the request-id check and the write, and the store is used only from
    the event loop thread, so two copies of one request cannot both be applied.
    """
    state = state_of(request)
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


def root_url(request: web.Request) -> str:
    """``scheme://host:port`` as the client reached us (for links in answers)."""
    return f"{request.scheme}://{request.host}"


def query_experiment(request: web.Request) -> tuple[str, str]:
    """(key id, experiment key) of a GET naming its experiment in ``?experimentKey=``."""
    key_id = authenticate(request)
    return key_id, require_experiment(request, key_id, request.query.get("experimentKey"))


async def body_experiment(request: web.Request, body_key_field: bool = False) -> tuple[dict, str, str]:
    """(JSON body, key id, experiment key) of a write naming its experiment in the body.

    ``body_key_field``: the clientlib endpoints may carry the API key in the body.
    """
    if body_key_field:  # clientlib endpoints may carry the key in the body: parse first
        body = await read_json_object(request)
        key_id = authenticate(request, body)
    else:  # a wrong key is told so before anything about its body
        key_id = authenticate(request)
        body = await read_json_object(request)
    experiment_key = require_experiment(request, key_id, body.get("experimentKey"))
    return body, key_id, experiment_key


# ------------------------------------------------------------------ uploads


async def read_upload(request: web.Request) -> tuple[bytes, str | None, dict | None]:
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


def write_upload_file(store: Store, experiment_key: str, asset_id: str, data: bytes) -> str:
    """Write an upload 0600 under the experiment's files directory; returns its path."""
    path = store.experiment_files_dir(experiment_key) / asset_id
    write_private_file(path, data)
    return str(path)


def unlink_quietly(path: str) -> None:
    """Remove a file if it is there (cleanup after a rolled-back or replaced upload)."""
    try:
        os.unlink(path)
    except OSError:
        pass
