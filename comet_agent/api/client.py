"""The low-level REST client: one HTTP session, auth, retries, redirects and error mapping.

``RestClient`` knows Comet's URL layout (``{root}/api/rest/v2/``, ``{root}/clientlib/rest/v2/``, ``{root}/clientlib/``) and sends requests the way comet_ml
3.58.8 does: the raw API key in ``Authorization``, ``X-COMET-DEBUG-*`` headers, JSON bodies as
``json.dumps(payload)`` with ``Content-Type: application/json;charset=utf-8``. It differs on
purpose where the SDK is weak:

- Retries: what is resent is decided by ``comet_agent.errors.classify`` (connection errors,
  timeouts, 408, 429 and 5xx; never another 4xx nor a malformed reply), how long to wait by
  ``RetryPolicy`` (``comet_agent.delivery.retry``, shared with the sender): full-jitter
  backoff, ``Retry-After`` (seconds or HTTP date) and ``Retry-After-Custom`` honoured, capped.
  Sleep, clock and randomness are injectable so tests never sleep.
- Redirects are followed by hand: the key travels only to the same scheme/host/port.
- Errors are typed (``comet_agent.errors``) and say what to do next, naming the key's source.
- The key is registered with ``comet_agent.redaction`` so no log record can carry it.
- ``X-COMET-DEBUG-SDK-VERSION`` says ``comet-agent/<version>``, so Comet can tell us apart.
- Uploads stream from disk (``MultipartBody``) with a known Content-Length.
- Any write can carry an idempotency id in ``X-Comet-Agent-Request-Id`` (``request_id=``).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import platform
import random
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence, TypedDict

from comet_agent import __version__, errors

# Re-exported: the client's callers (and tests) name the retry policy through this module.
from comet_agent.delivery.retry import RetryPolicy as RetryPolicy
from comet_agent.delivery.retry import parse_retry_after_s as parse_retry_after_s
from comet_agent.redaction import redact_text, register_secret, strip_url_credentials

if TYPE_CHECKING:
    import requests

logger = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json;charset=utf-8"
REQUEST_ID_HEADER = "X-Comet-Agent-Request-Id"
SDK_VERSION_HEADER_VALUE = f"comet-agent/{__version__}"
_ERROR_BODY_LIMIT_BYTES = 1024
#: Bodies smaller than this go uncompressed even where gzip is asked for: gzip costs ~70-100 us
#: whatever the size (zlib's set-up), and saves ~180 bytes of a 340-byte batch; a 5.6 kB batch
#: shrinks 15x for about the same CPU.
GZIP_MIN_BYTES = 1024
#: zlib's default level, not gzip's 9: a full-resolution push of 1,000 points (137 kB of JSON)
#: compresses in ~1 ms instead of ~3 ms for 19% more bytes (6.5 kB instead of 5.5 kB).
GZIP_LEVEL = 6
_REDIRECT_STATUSES = {301, 302, 303, 307, 308}


@dataclass(frozen=True)
class Timeouts:
    """Connect and read timeouts, in seconds. The read defaults follow comet_ml's config
    (``comet.timeout.api`` 10 s, ``file_upload`` 900 s, ``file_download`` 600 s)."""

    connect_s: float = 10.0
    read_s: float = 10.0
    upload_read_s: float = 900.0
    download_read_s: float = 600.0


class MultipartBody:
    """A multipart/form-data body streamed from memory and disk, with a known length.

    Parts are ``(name, filename, content)`` where content is ``bytes`` or a ``Path`` (read in
    64 KiB blocks while sending, never loaded whole). Part headers match what ``requests``/
    ``requests_toolbelt`` produce for comet_ml: ``Content-Disposition`` only, no part Content-Type.
    A body is single-use; build a new one per attempt (``RestClient`` does, through a factory).
    """

    block_size_bytes = 64 * 1024

    def __init__(self, parts: Sequence[tuple[str, str | None, bytes | Path]], boundary: str | None = None) -> None:
        self.boundary = boundary or uuid.uuid4().hex
        self._segments: list[bytes | Path] = []
        for name, filename, content in parts:
            disposition = f'Content-Disposition: form-data; name="{_quote(name)}"'
            if filename is not None:
                disposition += f'; filename="{_quote(filename)}"'
            self._segments.append(f"--{self.boundary}\r\n{disposition}\r\n\r\n".encode("utf-8"))
            self._segments.append(content)
            self._segments.append(b"\r\n")
        self._segments.append(f"--{self.boundary}--\r\n".encode("utf-8"))
        self._length = sum(len(s) if isinstance(s, bytes) else os.path.getsize(s) for s in self._segments)
        self._chunks: Iterator[bytes] | None = None
        self._pending = b""

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        for segment in self._segments:
            if isinstance(segment, bytes):
                yield segment
            else:
                with open(segment, "rb") as handle:
                    while True:
                        block = handle.read(self.block_size_bytes)
                        if not block:
                            break
                        yield block

    def read(self, size: int = -1) -> bytes:
        """File-like read, so http.client streams it block by block."""
        if self._chunks is None:
            self._chunks = iter(self)
        out = [self._pending]
        have = len(self._pending)
        while size < 0 or have < size:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                break
            out.append(chunk)
            have += len(chunk)
        data = b"".join(out)
        if size >= 0:
            data, self._pending = data[:size], data[size:]
        else:
            self._pending = b""
        return data


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")


def _requests() -> Any:
    # Imported on first use (the first request), not with this module: ``requests`` and urllib3
    # take ~90 ms to import, which the agent then spends on its heartbeat thread during its first
    # sampling window instead of before it (bench/bench_first_sample.py).
    import requests

    return requests


#: The environment variables that decide an http(s) URL's proxy (urllib's ``getproxies_environment``
#: reads ``<scheme>_proxy`` in both cases, ``no_proxy``, and ignores ``HTTP_PROXY`` under CGI).
_PROXY_VARIABLES = (
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "REQUEST_METHOD",
)


def server_root(clientlib_url: str) -> str:
    """``{root}``: scheme + host + port of the configured server URL, path stripped."""
    parts = urllib.parse.urlsplit(clientlib_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"Invalid Comet server URL {strip_url_credentials(clientlib_url)!r}: expected "
            "http(s)://HOST[:PORT]/clientlib/ (check COMET_URL_OVERRIDE or url_override)"
        )
    return f"{parts.scheme}://{parts.netloc}"


def _same_origin(url_a: str, url_b: str) -> bool:
    a, b = urllib.parse.urlsplit(url_a), urllib.parse.urlsplit(url_b)
    default_port = {"http": 80, "https": 443}
    return (a.scheme, a.hostname, a.port or default_port.get(a.scheme)) == (
        b.scheme,
        b.hostname,
        b.port or default_port.get(b.scheme),
    )


def _path_of(url: str) -> str:
    return urllib.parse.urlsplit(url).path


BodyFactory = Callable[[], "bytes | MultipartBody | None"]


class _ErrorFields(TypedDict):
    """The keyword arguments every ``CometApiError`` made from an HTTP reply carries."""

    status: int
    endpoint: str
    sdk_error_code: int | None
    server_message: str | None


class RestClient:
    """One HTTP session to one Comet server, shared by ``API`` and ``APIExperiment``.

    Args:
        api_key: the raw key, sent as ``Authorization`` exactly like comet_ml.
        clientlib_url: the configured server, e.g. ``http://127.0.0.1:5055/clientlib/`` (``{cl}``).
        key_source: where the key came from, for error messages (``"environment variable COMET_API_KEY"``).
        sdk_source: ``X-COMET-SDK-SOURCE`` value (comet_ml's ``API`` sends ``API``).
        timeouts: connect/read timeouts (``Timeouts``).
        retry: the retry policy (``RetryPolicy``).
        sleep: called with seconds to wait between attempts (tests pass a recorder).
        rng: randomness for jitter (tests pass ``random.Random(seed)``).
        now: wall clock in epoch seconds, for ``Retry-After`` HTTP dates.
        verify_tls: TLS verification (True, or a CA bundle path). Disabling it logs a warning.
        max_redirects: redirects followed per request.
        extra_headers: added to every request (e.g. comet's allow-header).
        gzip_min_bytes: the smallest body ``post(compress=True)`` gzips (``GZIP_MIN_BYTES``).

    Raises:
        ValueError: the URL is not http(s) or the key is empty or contains whitespace.
    """

    def __init__(
        self,
        api_key: str,
        clientlib_url: str,
        *,
        key_source: str = "the api_key argument",
        sdk_source: str | None = "API",
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        now: Callable[[], float] = time.time,
        verify_tls: bool | str = True,
        max_redirects: int = 5,
        extra_headers: Mapping[str, str] | None = None,
        gzip_min_bytes: int = GZIP_MIN_BYTES,
    ) -> None:
        if not api_key or any(ch.isspace() for ch in api_key):
            raise ValueError(f"The API key from {key_source} is empty or contains whitespace; check {key_source}")
        register_secret(api_key)
        self._api_key = api_key
        self.key_source = key_source
        without_credentials = strip_url_credentials(clientlib_url) or ""
        if without_credentials != clientlib_url:
            # A user:password@ in the URL would replace our Authorization header (requests turns it
            # into Basic auth) and be printed in every message naming the server: drop it.
            logger.warning(
                "the Comet server URL carried credentials (user:password@); they are ignored: "
                "Comet authenticates with the API key"
            )
            clientlib_url = without_credentials
        self.clientlib_url = clientlib_url if clientlib_url.endswith("/") else clientlib_url + "/"
        self.root = server_root(self.clientlib_url)
        self.rest_url = self.root + "/api/rest/v2/"
        self.crest_url = self.root + "/clientlib/rest/v2/"
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._now = now
        if verify_tls is True:
            # trust_env is off on our session (no netrc), so honour the usual CA-bundle variables here.
            verify_tls = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or True
        self.verify_tls = verify_tls
        if verify_tls is False:
            logger.warning("TLS certificate verification is disabled for %s; the API key can be intercepted", self.root)
        if self.root.startswith("http://") and urllib.parse.urlsplit(self.root).hostname not in (
            "127.0.0.1",
            "localhost",
            "::1",
        ):
            logger.warning(
                "The Comet server %s is plain http: the API key travels unencrypted; prefer https", self.root
            )
        self.max_redirects = max_redirects
        self.gzip_min_bytes = gzip_min_bytes
        self.headers: dict[str, str] = {
            "X-COMET-DEBUG-SDK-VERSION": SDK_VERSION_HEADER_VALUE,
            "X-COMET-DEBUG-PY-VERSION": platform.python_version(),
        }
        if sdk_source:
            self.headers["X-COMET-SDK-SOURCE"] = sdk_source
        self.headers.update(extra_headers or {})
        self._session: requests.Session | None = None
        self._session_pid: int | None = None
        self._proxies: dict[tuple[Any, ...], dict[str, str]] = {}
        self._prepared_urls: dict[str, str] = {}
        self._own_prefix = self.root + "/"  # every URL of the configured server: rest, crest, clientlib
        self._scope = threading.local()

    def __repr__(self) -> str:
        return f"RestClient(server={self.root!r}, key_source={self.key_source!r})"

    # -- idempotency scope ---------------------------------------------------------------------
    @contextlib.contextmanager
    def idempotency_scope(self, request_id: str) -> Iterator[None]:
        """Give every write made on this thread inside the block a derived idempotency id.

        The n-th write in the block is sent with ``X-Comet-Agent-Request-Id: <request_id>/<n>``,
        so the same block replayed after a crash sends the same ids in the same order, and a
        server that honours them applies each write once (comet-agent extension; the agent's
        sender wraps each spooled entry in one). An explicit ``request_id=`` wins.
        """
        previous = getattr(self._scope, "state", None)
        self._scope.state = [request_id, 0]
        try:
            yield
        finally:
            self._scope.state = previous

    def _scoped_request_id(self, request_id: str | None) -> str | None:
        state = getattr(self._scope, "state", None)
        if request_id or state is None:
            return request_id
        state[1] += 1
        return f"{state[0]}/{state[1]}"

    # -- session -------------------------------------------------------------------------------
    @property
    def session(self) -> requests.Session:
        """The keep-alive session, recreated after ``fork()`` (a pooled socket must not be shared)."""
        if self._session is None or self._session_pid != os.getpid():
            session = _requests().Session()
            # No netrc credentials, no env-derived auth: proxies are looked up per request instead.
            session.trust_env = False
            self._session = session
            self._session_pid = os.getpid()
        return self._session

    def _proxies_for(self, url: str) -> dict[str, str]:
        """The proxies the environment sets for ``url`` (``requests.utils.get_environ_proxies``),
        looked up again only when the URL's scheme and host or a proxy variable change: the lookup
        costs ~130 us, a tenth of a request's client CPU."""
        key = (urllib.parse.urlsplit(url)[:2], tuple(os.environ.get(name) for name in _PROXY_VARIABLES))
        proxies = self._proxies.get(key)
        if proxies is None:
            if len(self._proxies) >= 16:  # redirects to many hosts, a changing environment: stay small
                self._proxies.clear()
            proxies = self._proxies[key] = _requests().utils.get_environ_proxies(url)
        return dict(proxies)

    def close(self) -> None:
        """Close pooled connections."""
        if self._session is not None:
            self._session.close()
            self._session = None

    # -- URLs ----------------------------------------------------------------------------------
    def url_for(self, endpoint: str, base: str = "rest") -> str:
        """Join ``endpoint`` onto a base: ``rest`` (``{rest}``), ``crest`` (``{crest}``),
        ``clientlib`` (``{cl}``) or ``root``."""
        prefix = {
            "rest": self.rest_url,
            "crest": self.crest_url,
            "clientlib": self.clientlib_url,
            "root": self.root + "/",
        }[base]
        return prefix + endpoint.lstrip("/")

    # -- high-level calls ----------------------------------------------------------------------
    def get(
        self,
        endpoint: str,
        params: Mapping[str, Any] | None = None,
        *,
        base: str = "rest",
        return_type: str = "json",
        timeout_s: float | None = None,
        stream: bool = False,
    ) -> Any:
        """GET ``endpoint`` and return the parsed reply.

        Args:
            return_type: ``json`` (parsed; content type must be JSON or octet-stream),
                ``binary`` (bytes), ``text`` (str) or ``response`` (the ``requests.Response``).
            timeout_s: read timeout (default ``timeouts.read_s``).
        Raises: a ``CometApiError`` subclass.
        """
        response = self.request(
            "GET", self.url_for(endpoint, base), params=params, read_timeout_s=timeout_s, stream=stream
        )
        return self._decode(response, return_type)

    def get_object(
        self,
        endpoint: str,
        params: Mapping[str, Any] | None = None,
        *,
        base: str = "rest",
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """GET ``endpoint`` and return its reply, which must be a JSON object.

        Raises: ``InvalidReply`` for any other JSON value (a list, a string, null...), and the
        errors of ``get()``.
        """
        reply = self.get(endpoint, params, base=base, timeout_s=timeout_s)
        if not isinstance(reply, dict):
            raise self.invalid_reply("GET", endpoint, f"{describe_json(reply)} where a JSON object belongs", base=base)
        return reply

    def field_of(
        self,
        reply: Mapping[str, Any],
        field: str,
        kinds: type | tuple[type, ...],
        endpoint: str,
        *,
        items: type | tuple[type, ...] | None = None,
        method: str = "GET",
        base: str = "rest",
    ) -> Any:
        """``reply[field]``, checked: present, an instance of ``kinds`` and, for a list, every item
        an instance of ``items``. ``endpoint``/``method``/``base`` name the request in the error.

        Raises: ``InvalidReply`` (naming the server and the endpoint) when the check fails.

        Example::

            tags = client.field_of(client.get_object("experiment/tags", params), "tags", list, "experiment/tags", items=str)
        """
        if field not in reply:
            raise self.invalid_reply(method, endpoint, f"an object without {field!r}", base=base)
        value = reply[field]
        if not _is_kind(value, kinds):
            raise self.invalid_reply(method, endpoint, f"{field!r} as {describe_json(value)}", base=base)
        if items is not None and isinstance(value, list):
            for item in value:
                if not _is_kind(item, items):
                    raise self.invalid_reply(method, endpoint, f"{describe_json(item)} inside {field!r}", base=base)
        return value

    def invalid_reply(
        self,
        method: str,
        endpoint: str,
        problem: str,
        *,
        base: str = "rest",
        hint: str = "check that COMET_URL_OVERRIDE names a Comet server",
    ) -> errors.InvalidReply:
        """The ``InvalidReply`` for a reply of the wrong shape: one line naming the request and this
        server, never the key, e.g. ``GET /api/rest/v2/experiment/tags: http://h:1 answered a JSON list
        where a JSON object belongs, which no Comet server sends; check that ...``. ``hint`` says
        what the user can do."""
        where = f"{method} {_path_of(self.url_for(endpoint, base))}"
        return errors.InvalidReply(
            f"{where}: {self.root} answered {problem}, which no Comet server sends; {hint}", endpoint=where
        )

    def post(
        self,
        endpoint: str,
        payload: Any = None,
        *,
        base: str = "rest",
        params: Mapping[str, Any] | None = None,
        compress: bool = False,
        request_id: str | None = None,
        timeout_s: float | None = None,
        method: str = "POST",
        retry: RetryPolicy | None = None,
    ) -> Any:
        """POST a JSON ``payload`` (serialised like comet_ml: ``json.dumps``, UTF-8) and return the
        reply's JSON (None for an empty body).

        Args:
            compress: gzip the body (``Content-Encoding: gzip``), as comet_ml does for batches,
                when it is at least ``gzip_min_bytes`` long (smaller bodies go as they are).
            request_id: idempotency id sent as ``X-Comet-Agent-Request-Id`` (comet-agent extension);
                the same id goes out on every retry of this call.
            retry: this call's policy instead of the client's (e.g. ``RetryPolicy(max_retries=0)``
                for a best-effort call a person waits on).
        """
        data = json.dumps(payload).encode("utf-8")
        headers = {"Content-Type": JSON_CONTENT_TYPE}
        if compress and len(data) >= self.gzip_min_bytes:
            data = gzip.compress(data, compresslevel=GZIP_LEVEL)
            headers["Content-Encoding"] = "gzip"
        request_id = self._scoped_request_id(request_id)
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        response = self.request(
            method,
            self.url_for(endpoint, base),
            params=params,
            body=lambda: data,
            headers=headers,
            read_timeout_s=timeout_s,
            retry=retry,
        )
        return self._decode_write(response)

    def post_multipart(
        self,
        endpoint: str,
        parts: Sequence[tuple[str, str | None, bytes | Path]],
        *,
        base: str = "rest",
        params: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """POST a streamed multipart body (see ``MultipartBody``); returns the reply's JSON."""
        boundary = uuid.uuid4().hex
        first = MultipartBody(parts, boundary)
        headers = {"Content-Type": first.content_type}
        request_id = self._scoped_request_id(request_id)
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        response = self.request(
            "POST",
            self.url_for(endpoint, base),
            params=params,
            body=lambda: MultipartBody(parts, boundary),
            headers=headers,
            read_timeout_s=timeout_s if timeout_s is not None else self.timeouts.upload_read_s,
        )
        return self._decode_write(response)

    # -- the core loop -------------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: BodyFactory | None = None,
        headers: Mapping[str, str] | None = None,
        read_timeout_s: float | None = None,
        stream: bool = False,
        retry: RetryPolicy | None = None,
    ) -> requests.Response:
        """Send one logical request, with retries and manual redirects; return a 2xx response.

        ``body`` is a factory so that each attempt gets a fresh (possibly streamed) body;
        ``retry`` replaces the client's policy for this request.
        Raises a ``CometApiError`` subclass for any failure that is final.
        """
        retry = retry or self.retry
        attempt = 0
        while True:
            attempt += 1
            response = None
            try:
                response = self._send_following_redirects(method, url, params, body, headers, read_timeout_s, stream)
            except errors.CometApiError as exc:
                error = exc
            else:
                if 200 <= response.status_code < 300:
                    return response
                error = self._error_for(method, url, response)
            if not retry.resends_now(error, attempt):
                raise error
            retry_after_s = parse_retry_after_s(response.headers, self._now()) if response is not None else None
            wait_s = retry.wait_s(attempt, self._rng, retry_after_s)
            logger.info(
                "%s %s failed (%s); retry %d/%d in %.2f s",
                method,
                _path_of(url),
                error,
                attempt,
                retry.max_retries,
                wait_s,
            )
            if response is not None:
                response.close()
            self._sleep(wait_s)

    def _send_following_redirects(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        body: BodyFactory | None,
        headers: Mapping[str, str] | None,
        read_timeout_s: float | None,
        stream: bool,
    ) -> requests.Response:
        carry_key = True
        current_method, current_url, current_params, current_body = method, url, params, body
        for _ in range(self.max_redirects + 1):
            response = self._send_once(
                current_method, current_url, current_params, current_body, headers, read_timeout_s, stream, carry_key
            )
            if response.status_code not in _REDIRECT_STATUSES or "Location" not in response.headers:
                return response
            location = urllib.parse.urljoin(response.url, response.headers["Location"])
            response.close()
            if not _same_origin(url, location):
                # The key belongs to the configured server only; never send it elsewhere.
                carry_key = False
            if response.status_code in (301, 302, 303) and current_method != "GET":
                current_method, current_body = "GET", None
            logger.debug(
                "%s %s redirected to %s",
                method,
                _path_of(current_url),
                urllib.parse.urlsplit(location).netloc + _path_of(location),
            )
            current_url, current_params = location, None
        raise errors.TooManyRedirects(
            f"{method} {_path_of(url)}: more than {self.max_redirects} redirects; check the server URL ({self.root})",
            endpoint=f"{method} {_path_of(url)}",
        )

    def _send_once(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        body: BodyFactory | None,
        headers: Mapping[str, str] | None,
        read_timeout_s: float | None,
        stream: bool,
        carry_key: bool,
    ) -> requests.Response:
        final_headers = dict(self.headers)
        if carry_key:
            final_headers["Authorization"] = self._api_key
        final_headers.update(headers or {})
        requests = _requests()
        proxies = self._proxies_for(url)
        timeout = (self.timeouts.connect_s, read_timeout_s if read_timeout_s is not None else self.timeouts.read_s)
        endpoint = f"{method} {_path_of(url)}"
        logger.debug("HTTP %s", endpoint)
        data = body() if body is not None else None
        try:
            if carry_key and url.startswith(self._own_prefix):
                return self.session.send(
                    self._prepared(method, url, params, data, final_headers),
                    timeout=timeout,
                    allow_redirects=False,
                    stream=stream,
                    verify=self.verify_tls,
                    proxies=proxies,
                )
            return self.session.request(
                method,
                url,
                params=_encode_params(params),
                data=data,
                headers=final_headers,
                timeout=timeout,
                allow_redirects=False,
                stream=stream,
                verify=self.verify_tls,
                proxies=proxies,
            )
        except requests.exceptions.Timeout as exc:
            kind = "connect" if isinstance(exc, requests.exceptions.ConnectTimeout) else "read"
            raise errors.RequestTimedOut(
                f"{endpoint}: no {kind} reply from {self.root} within the {kind} timeout "
                f"({timeout[0] if kind == 'connect' else timeout[1]} s); check that the server is up and reachable",
                endpoint=endpoint,
            ) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise errors.ConnectionFailed(
                f"{endpoint}: cannot reach the Comet server at {self.root} ({_short_reason(exc)}); "
                "check the URL (COMET_URL_OVERRIDE) and the network",
                endpoint=endpoint,
            ) from None

    def _prepared(
        self, method: str, url: str, params: Mapping[str, Any] | None, data: Any, headers: Mapping[str, str]
    ) -> requests.PreparedRequest:
        """The request ``Session.request`` would send to our own server, built without its per-call work.

        ``Session.request`` merges the session's settings, cookies and hooks into a new ``Request``
        and re-parses, re-quotes and IDNA-checks the URL on every call: ~0.5 ms of a cold
        heartbeat's ~3 ms (bench/README.md). Here the session's headers are merged into the
        request's, a URL without params is prepared once, and the session's cookie jar still
        applies (a load balancer's sticky cookie keeps working). Only for the configured server,
        with our key: anything else (a redirect elsewhere) goes through ``Session.request``.
        """
        lib = _requests()
        session = self.session
        prepared: requests.PreparedRequest = lib.PreparedRequest()
        prepared.prepare_method(method)
        if params:
            prepared.prepare_url(url, _encode_params(params))
        else:
            cached = self._prepared_urls.get(url)
            if cached is None:
                if len(self._prepared_urls) >= 256:  # experiment-keyed GET URLs vary; stay small
                    self._prepared_urls.clear()
                prepared.prepare_url(url, None)
                cached = self._prepared_urls[url] = str(prepared.url)
            prepared.url = cached
        merged = lib.structures.CaseInsensitiveDict(session.headers)
        merged.update(headers)
        prepared.prepare_headers(merged)
        prepared.prepare_cookies(session.cookies)
        prepared.prepare_body(data, None)
        return prepared

    # -- replies -------------------------------------------------------------------------------
    def _error_for(self, method: str, url: str, response: requests.Response) -> errors.CometApiError:
        status = response.status_code
        endpoint = f"{method} {_path_of(url)}"
        excerpt = response.content[:_ERROR_BODY_LIMIT_BYTES]
        server_message, sdk_error_code = None, None
        try:
            parsed = json.loads(excerpt)
            if isinstance(parsed, dict):
                if parsed.get("msg") is not None:
                    # One line, and never the key: a hostile or echoing server may put either in msg.
                    server_message = redact_text(" ".join(str(parsed["msg"]).split())[:300], [self._api_key])
                code = parsed.get("sdk_error_code")
                sdk_error_code = code if isinstance(code, int) and not isinstance(code, bool) else None
        except ValueError:
            pass
        said = f": {server_message}" if server_message else ""
        common: _ErrorFields = dict(
            status=status, endpoint=endpoint, sdk_error_code=sdk_error_code, server_message=server_message
        )
        if status in (401, 403):
            return errors.Unauthorized(
                f"{endpoint}: the API key from {self.key_source} was rejected by {self.root} (HTTP {status}){said}. "
                f"Check {self.key_source}: is it the key for this server and workspace?",
                **common,
            )
        if status == 404:
            return errors.NotFound(
                f"{endpoint}: not found on {self.root} (HTTP 404){said}; check the experiment key, workspace and project",
                **common,
            )
        if status == 400:
            return errors.BadRequest(f"{endpoint}: the server refused the request (HTTP 400){said}", **common)
        if status == 413:
            return errors.PayloadTooLarge(
                f"{endpoint}: the body is larger than {self.root} accepts (HTTP 413){said}; send less at once", **common
            )
        if status == 429:
            retry_after_s = parse_retry_after_s(response.headers, self._now())
            hint = f"; the server asked to wait {retry_after_s:.0f} s" if retry_after_s is not None else ""
            return errors.Throttled(
                f"{endpoint}: throttled by {self.root} (HTTP 429){hint}{said}", retry_after_s=retry_after_s, **common
            )
        if 500 <= status < 600:
            return errors.ServerError(
                f"{endpoint}: the server at {self.root} failed (HTTP {status}){said}; it is retried later", **common
            )
        if 300 <= status < 400:
            return errors.InvalidReply(
                f"{endpoint}: unexpected redirect (HTTP {status}) without a usable Location", **common
            )
        return errors.ClientError(f"{endpoint}: refused by {self.root} (HTTP {status}){said}", **common)

    def _decode(self, response: requests.Response, return_type: str) -> Any:
        if return_type == "response":
            return response
        if return_type == "binary":
            return response.content
        if return_type == "text":
            return response.text
        if return_type != "json":
            raise ValueError(f"invalid return_type {return_type!r}: expected 'json', 'binary', 'text' or 'response'")
        return self._parse_json(response, require_json_type=True)

    def _decode_write(self, response: requests.Response) -> Any:
        # comet_ml returns response.json() for writes; an empty body (e.g. 204) gives None here
        # instead of the SDK's JSONDecodeError.
        if not response.content.strip():
            return None
        return self._parse_json(response, require_json_type=False)

    def _parse_json(self, response: requests.Response, *, require_json_type: bool) -> Any:
        endpoint = f"{response.request.method} {_path_of(response.url)}"
        content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        looks_html = content_type == "text/html" or response.content.lstrip()[:15].lower().startswith(
            (b"<!doctype", b"<html")
        )
        if looks_html:
            raise errors.InvalidReply(
                f"{endpoint}: {self.root} answered with an HTML page, not JSON; is the URL a Comet server "
                "(COMET_URL_OVERRIDE should end in /clientlib/), or is a proxy in the way?",
                status=response.status_code,
                endpoint=endpoint,
            )
        if (
            require_json_type
            and content_type not in ("application/json", "application/octet-stream")
            and not content_type.endswith("+json")
        ):
            raise errors.InvalidReply(
                f"{endpoint}: expected a JSON reply, got content type {content_type or 'none'!r} from {self.root}",
                status=response.status_code,
                endpoint=endpoint,
            )
        try:
            return response.json()
        except ValueError:
            raise errors.InvalidReply(
                f"{endpoint}: {self.root} sent malformed JSON ({len(response.content)} bytes)",
                status=response.status_code,
                endpoint=endpoint,
            ) from None


def describe_json(value: Any) -> str:
    """A few words for a parsed JSON value's shape, for error messages (never its content: a
    hostile server could echo the key back)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an empty JSON list" if not value else "a JSON list"
    if isinstance(value, dict):
        return "an empty JSON object" if not value else "a JSON object"
    return type(value).__name__


def _is_kind(value: Any, kinds: type | tuple[type, ...]) -> bool:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    # JSON true is no number, though Python's bool is an int.
    if isinstance(value, bool) and bool not in kinds and object not in kinds:
        return False
    return isinstance(value, kinds)


def _encode_params(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    # comet_ml hands its params to requests, which writes booleans as "True"/"False"; keep that.
    if params is None:
        return None
    return {k: v for k, v in params.items() if v is not None}


def _short_reason(exc: BaseException) -> str:
    # urllib3's messages embed the pool and URL; keep the last, most specific reason.
    text = str(exc)
    for marker in (
        "Connection refused",
        "Connection reset",
        "Name or service not known",
        "Remote end closed",
        "certificate verify failed",
        "No route to host",
        "Connection aborted",
    ):
        if marker in text:
            return marker
    return type(exc).__name__
