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

Bodies are parsed within limits (``parse_json``): JSON nested deeper than ``MAX_JSON_DEPTH``,
integers outside signed 64 bits, lone UTF-16 surrogates, and (except in metric, parameter and
"other" values, which Comet renders as the strings ``"NaN"``, ``"Infinity"``) ``NaN``,
``Infinity`` and overflowing floats such as ``1e400`` are a 400 at write, so nothing stored can
make a later read fail; ``json_response`` still renders anything non-finite that an older store
holds as those strings rather than answering 500.

Ownership: a workspace belongs to the key that first used it. Another key's workspace, project
or experiment reads as 404 (not 403), so existence does not leak (``require_experiment``,
``require_owned_workspace``).
"""

from __future__ import annotations

import codecs
import json
import math
import os
import re
from typing import Any, Callable, Iterable, Literal, TypeVar, overload

from aiohttp import web

from comet_agent.paths import write_private_file
from comet_agent.server.state import state_of
from comet_agent.server.store import Store, key_id_of, now_ms

#: Where an experiment goes when the client names no project (Comet's own default).
DEFAULT_PROJECT_NAME = "general"
REQUEST_ID_HEADER = "X-Comet-Agent-Request-Id"
MAX_REQUEST_ID_LENGTH = 200
MAX_EXPERIMENT_KEY_LENGTH = 50
#: Largest JSON body a write endpoint reads (after gzip), when the upload limit is larger: JSON
#: writes are metric batches, output and system details, far smaller than the files uploads carry.
MAX_JSON_BODY_BYTES = 32 * 2**20
#: Largest body read before the caller is known (no valid ``Authorization`` header: the key may be
#: in a clientlib body). The SDK always sends the header; only a stranger needs more.
UNAUTHENTICATED_BODY_BYTES = 64 * 2**10
#: How deep objects and lists may nest in a request body. No Comet payload comes near it; much
#: deeper ones exhaust the parser's (and later the encoder's) recursion.
MAX_JSON_DEPTH = 64
#: Integers are signed 64-bit, as on Comet's backend and in SQLite's INTEGER columns.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: Shapes that may need the slow, checking parse: a number of 19+ digits or a 3-digit exponent
#: (beyond 64 bits, or a float that overflows to infinity), and an escaped UTF-16 surrogate.
_LONG_NUMBER = re.compile(r"\d{19}|[eE][+-]?\d{3}")
# The same number shapes found in raw bytes with plain substring searches: every ASCII digit
# mapped to "0", "E" to "e", "-" to "+". ``re`` scans a 1,000-point batch (~90 kB) in ~4.5 ms,
# five times what json.loads takes to parse it; the translation and searches take ~0.1 ms.
_NUMBER_SHAPES = bytes.maketrans(b"123456789E-", b"000000000e+")
_LONG_NUMBER_SHAPES = (b"0" * 19, b"e000", b"e+000")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_NON_FINITE_TEXT = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


class ApiError(Exception):
    """A request we refuse, answered as Comet's JSON error body with ``status``."""

    def __init__(self, status: int, msg: str, sdk_error_code: int = 0):
        super().__init__(msg)
        self.status = status
        self.msg = msg
        self.sdk_error_code = sdk_error_code


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON response with ``Content-Type: application/json`` and no charset (the SDK insists).

    Always valid JSON: a non-finite float (which a store written before values were checked at
    write may hold) is answered as ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``, the strings
    Comet's REST API renders them as, instead of failing that read forever with a 500.
    """
    try:
        text = json.dumps(data, separators=(",", ":"), allow_nan=False, default=str)
    except (ValueError, RecursionError):
        text = json.dumps(json_safe(data), separators=(",", ":"), allow_nan=False, default=str)
    return web.Response(body=text.encode("utf-8"), status=status, content_type="application/json")


def json_safe(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` that strict JSON can encode: non-finite floats become Comet's strings
    (``"NaN"``, ``"Infinity"``, ``"-Infinity"``) and anything nested deeper than
    ``MAX_JSON_DEPTH`` becomes the string ``"..."``."""
    if isinstance(value, float) and not math.isfinite(value):
        return _NON_FINITE_TEXT[repr(value)]
    if isinstance(value, (dict, list, tuple)) and depth >= MAX_JSON_DEPTH:
        return "..."
    if isinstance(value, dict):
        return {key: json_safe(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item, depth + 1) for item in value]
    return value


def error_response(status: int, msg: str, sdk_error_code: int = 0) -> web.Response:
    """Comet's JSON error body ``{"msg", "code", "sdk_error_code"}`` with HTTP ``status``."""
    return json_response({"msg": msg, "code": status, "sdk_error_code": sdk_error_code}, status)


# ----------------------------------------------------------------- input helpers


def json_body_limit(request: web.Request) -> int:
    """The largest JSON body this server reads from a known caller, in bytes."""
    return min(state_of(request).max_upload_bytes, MAX_JSON_BODY_BYTES)


async def read_body(request: web.Request, limit_bytes: int) -> bytes:
    """The request body (inflated when sent ``Content-Encoding: gzip``), at most ``limit_bytes``.

    A declared ``Content-Length`` over the limit is refused before any byte is read; a chunked or
    inflating body is read only until it passes the limit.

    Raises:
        ApiError: 413 past the limit.
    """
    declared = request.content_length
    if declared is not None and declared > limit_bytes:
        raise ApiError(413, f"the request body ({declared} bytes) exceeds this endpoint's {limit_bytes} byte limit")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > limit_bytes:
            raise ApiError(413, f"the request body exceeds this endpoint's {limit_bytes} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_object(
    request: web.Request, *, allow_non_finite: bool = False, limit_bytes: int | None = None
) -> dict:
    """The request body as a JSON object (gzip accepted), parsed by ``parse_json``; 400 when it
    is not one, 413 when it is larger than ``limit_bytes`` (default ``json_body_limit``).

    ``allow_non_finite``: accept ``NaN``, ``Infinity`` and overflowing floats (metric, parameter
    and "other" values, which are stored as JSON text and read back as Comet's strings).
    """
    limit_bytes = json_body_limit(request) if limit_bytes is None else limit_bytes
    raw = await read_body(request, limit_bytes)
    if raw[:2] == b"\x1f\x8b":
        # aiohttp already inflates Content-Encoding: gzip; a body still gzip-framed was sent
        # without that header (or double-encoded): inflate it here, bounded by the same limit.
        raw = _gunzip_bounded(raw, limit_bytes)
    if not raw.strip():
        raise ApiError(400, "the request body is empty; send a JSON object")
    body = parse_json(raw, allow_non_finite=allow_non_finite)
    if not isinstance(body, dict):
        raise ApiError(400, f"the JSON body must be an object, not {type(body).__name__}")
    return body


def parse_json(raw: bytes | bytearray | str, *, allow_non_finite: bool = False) -> Any:
    """Parse JSON a client sent, within the limits that keep every later read of it working.

    Refused with a 400 (``ApiError``): bytes that are not UTF-8, malformed JSON, nesting deeper
    than ``MAX_JSON_DEPTH``, integers outside signed 64 bits, strings holding a lone UTF-16
    surrogate (SQLite and the pages cannot encode them), and unless ``allow_non_finite``,
    ``NaN``/``Infinity`` and floats that overflow to infinity (``1e400``).

    The common case costs one C-level parse and two regular-expression scans; the checking hooks
    and the walk over strings run only when the text has a shape that needs them.

    Example:
        >>> parse_json(b'{"a": [1, 2.5, "x"]}')
        {'a': [1, 2.5, 'x']}
    """
    if isinstance(raw, (bytes, bytearray)):  # a multipart part without a filename is a bytearray
        shaped = raw.translate(_NUMBER_SHAPES)
        long_numbers = any(shape in shaped for shape in _LONG_NUMBER_SHAPES)
        try:
            text = raw.decode("utf-8-sig" if raw.startswith(codecs.BOM_UTF8) else "utf-8")
        except UnicodeDecodeError as exc:
            raise ApiError(400, f"malformed JSON body: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    else:
        text = raw
        long_numbers = _LONG_NUMBER.search(text) is not None
    # A hook left None is json's default (with every hook None, json.loads takes its fast path).
    parse_constant: Callable[[str], Any] | None = None if allow_non_finite else _refuse_non_finite
    parse_int: Callable[[str], Any] | None = None
    parse_float: Callable[[str], Any] | None = None
    if long_numbers:
        parse_int = _int64
        if not allow_non_finite:
            parse_float = _finite_float
    try:
        value = json.loads(text, parse_constant=parse_constant, parse_int=parse_int, parse_float=parse_float)
    except RecursionError:
        raise ApiError(400, f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise ApiError(400, f"malformed JSON body: {exc}") from None
    check_strings = _SURROGATE_ESCAPE.search(text) is not None
    # Fewer brackets than the depth limit cannot nest past it: most small bodies skip the walk.
    if check_strings or text.count("[") + text.count("{") > MAX_JSON_DEPTH:
        _check_structure(value, check_strings=check_strings)
    return value


def _refuse_non_finite(literal: str) -> Any:
    raise ApiError(400, f"{literal} is not a JSON number; send finite numbers only")


def _int64(literal: str) -> int:
    number = int(literal)
    if not INT64_MIN <= number <= INT64_MAX:
        raise ApiError(400, f"the integer {literal[:30]}{'...' if len(literal) > 30 else ''} is outside signed 64 bits")
    return number


def _finite_float(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise ApiError(400, f"the number {literal[:30]} overflows a 64-bit float; send finite numbers only")
    return number


def _check_structure(value: Any, *, check_strings: bool) -> None:
    """Refuse nesting deeper than ``MAX_JSON_DEPTH`` and (``check_strings``) lone surrogates.

    Iterative, so a deep document cannot exhaust the stack here; only containers are visited
    unless strings must be checked (the text holds an escaped surrogate: most often a valid pair,
    which the parser already joined into one character).
    """
    containers = (dict, list)
    stack: list[tuple[Any, int]] = [(value, 1)]
    children: Iterable[Any]
    if check_strings and isinstance(value, str):
        _check_string(value)
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ApiError(400, f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, dict):
            if check_strings:
                for key in item:
                    _check_string(key)
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        for child in children:
            if isinstance(child, containers):
                stack.append((child, depth + 1))
            elif check_strings and isinstance(child, str):
                _check_string(child)


def _check_string(text: str) -> None:
    if _LONE_SURROGATE.search(text):
        raise ApiError(400, "a string holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text")


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


@overload
def get_str(body: dict, name: str, required: Literal[True], allow_empty: bool = True) -> str: ...


@overload
def get_str(body: dict, name: str, required: bool = False, allow_empty: bool = True) -> str | None: ...


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
    """An integer field; integral floats and integer strings (query strings) are accepted.

    400 when it is of another type or outside signed 64 bits."""
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(400, f"'{name}' is required")
        return None
    if isinstance(value, bool):
        raise type_error(name, "an integer", value)
    number: int | None = None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and len(value) <= 40:  # int() of a huge digit string is slow
        try:
            number = int(value)
        except ValueError:
            try:
                parsed = float(value)
            except ValueError:
                parsed = math.nan
            if math.isfinite(parsed) and parsed.is_integer():
                number = int(parsed)
    if number is None:
        raise type_error(name, "an integer", value)
    if not INT64_MIN <= number <= INT64_MAX:  # SQLite's INTEGER columns hold 64 bits
        raise ApiError(400, f"'{name}' is outside signed 64 bits")
    return number


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


def get_list(
    body: dict, name: str, item_check: Callable[[Any], bool] | None = None, expected: str = "a list"
) -> list | None:
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

    Keys are compared by their SHA-256 (``key_id_of``) in a dict: the time a lookup takes says
    nothing about how much of a guess was right.

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


def header_key_id(request: web.Request) -> str | None:
    """The key id of the ``Authorization`` header when it holds an accepted key, else None."""
    header = request.headers.get("Authorization", "").strip()
    if header:
        key_id = key_id_of(header)
        if key_id in state_of(request).key_ids:
            return key_id
    return None


async def authenticated_json(request: web.Request, *, allow_non_finite: bool = False) -> tuple[str, dict]:
    """(key id, JSON body) of a clientlib write that may carry its key in the body (``apiKey``).

    The caller is known before its body is read whenever it sends an accepted key in
    ``Authorization`` (the SDK always does); only then is a body read up to the JSON limit.
    Otherwise at most ``UNAUTHENTICATED_BODY_BYTES`` are read to find the key in it, so a stranger
    cannot make the server read and parse megabytes.

    Raises:
        ApiError: 401 (no accepted key, or a larger body without one), 400/413 for the body.
    """
    key_id = header_key_id(request)
    if key_id is not None:
        return key_id, await read_json_object(request, allow_non_finite=allow_non_finite)
    try:
        body = await read_json_object(
            request, allow_non_finite=allow_non_finite, limit_bytes=UNAUTHENTICATED_BODY_BYTES
        )
    except ApiError as exc:
        if exc.status != 413:
            raise
        raise ApiError(
            401,
            "send the API key in the Authorization header: a body carrying the key itself "
            f"is read only up to {UNAUTHENTICATED_BODY_BYTES} bytes",
            90212,
        ) from None
    return authenticate(request, body), body


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


_Found = TypeVar("_Found")


def experiment_found(value: _Found | None, experiment_key: str) -> _Found:
    """``value``, read from the store about an experiment ``require_experiment`` accepted.

    Raises:
        ApiError: 404, as for an unknown experiment, when the store has nothing (None) for it.
    """
    if value is None:
        raise ApiError(404, f"experiment {experiment_key} not found")
    return value


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


async def body_experiment(
    request: web.Request, body_key_field: bool = False, allow_non_finite: bool = False
) -> tuple[dict, str, str]:
    """(JSON body, key id, experiment key) of a write naming its experiment in the body.

    ``body_key_field``: the clientlib endpoints may carry the API key in the body.
    ``allow_non_finite``: see ``read_json_object``.
    """
    if body_key_field:  # clientlib endpoints may carry the key in the body (read small until known)
        key_id, body = await authenticated_json(request, allow_non_finite=allow_non_finite)
    else:  # a wrong key is told so before anything about its body
        key_id = authenticate(request)
        body = await read_json_object(request, allow_non_finite=allow_non_finite)
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
    return data, part_filename, upload_metadata(form)


def upload_metadata(form: Any) -> dict | None:
    """The JSON object in the ``metadata`` part of a parsed multipart form (None when absent); 400 otherwise."""
    metadata = None
    raw_metadata = form.get("metadata")
    if isinstance(raw_metadata, web.FileField):
        raw_metadata = raw_metadata.file.read().decode("utf-8", "replace")
    if raw_metadata:
        metadata = parse_json(raw_metadata)
        if not isinstance(metadata, dict):
            raise ApiError(400, "the 'metadata' part must be a JSON object")
    return metadata


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


def file_response(
    path: str | os.PathLike, content_type: str = "application/octet-stream", headers: dict | None = None
) -> web.FileResponse:
    """A stored upload's bytes, streamed from disk (an asset may be hundreds of MiB), as ``content_type``."""
    return web.FileResponse(path, headers={**(headers or {}), "Content-Type": content_type})
