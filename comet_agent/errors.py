"""Every error type of comet-agent, and the exit statuses the command line maps them to.

The REST client's errors form one hierarchy, each saying what to do next.

Every error has ``.status`` (the HTTP status, or None when no reply came) and ``.retryable``
(whether sending the same request again later may succeed). Messages name where the API key came
from (``key_source``), never the key itself.

    CometApiError
    ├── Unauthorized        401/403: the key was rejected
    ├── NotFound            404
    ├── BadRequest          400
    ├── PayloadTooLarge     413
    ├── ClientError         any other 4xx (402, 409, 422, ...)
    ├── Throttled           429 (retryable, ``retry_after_s``)
    ├── ServerError         5xx (retryable)
    ├── ConnectionFailed    refused, reset, DNS, TLS (retryable)
    │   └── RequestTimedOut connect or read timeout (retryable)
    ├── InvalidReply        malformed JSON, wrong content type, an HTML page where JSON was expected
    └── TooManyRedirects
"""

from __future__ import annotations


class ExitStatus:
    """Exit statuses: distinct per failure class so job scripts and systemd can tell them apart."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    UNAUTHORIZED = 3  # wrong or missing API key
    NOT_FOUND = 4  # unknown experiment / workspace / project
    UNREACHABLE = 5  # server down or not answering
    CONFIG = 78  # EX_CONFIG: configuration error; systemd units must not restart-loop on it
    COMMAND_NOT_FOUND = 127  # `run -- CMD` could not start CMD (as a shell reports it)
    # `run -- CMD` otherwise exits with CMD's own status (128 + N when signal N ended it).


class ConfigError(ValueError):
    """Configuration is missing or unusable. The message says which places were looked at."""


class SpoolError(Exception):
    """The spool could not store an entry (disk full, read-only directory); the entry was not kept."""


class AgentError(Exception):
    """The agent could not start. ``exit_status`` is the CLI's exit status for this failure."""

    def __init__(self, message: str, exit_status: int):
        super().__init__(message)
        self.exit_status = exit_status


class CometApiError(Exception):
    """Base class of every error the client raises.

    Attributes:
        status: HTTP status code, or None when no reply came.
        retryable: True when the same request may succeed later.
        endpoint: the method and path that failed (no query string: it may carry ids only, but
            a URL is never where secrets go anyway).
        sdk_error_code: Comet's ``sdk_error_code`` from the error body, when present.
        server_message: Comet's ``msg`` from the error body (truncated), when present.
    """

    default_retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool | None = None,
        endpoint: str | None = None,
        sdk_error_code: int | None = None,
        server_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = self.default_retryable if retryable is None else retryable
        self.endpoint = endpoint
        self.sdk_error_code = sdk_error_code
        self.server_message = server_message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, endpoint={self.endpoint!r}, message={self.message!r})"


class Unauthorized(CometApiError):
    """401/403: the server rejected the API key (or it lacks access to this workspace)."""


class NotFound(CometApiError):
    """404: no such experiment, project, workspace or endpoint."""


class BadRequest(CometApiError):
    """400: the server refused the request's content."""


class PayloadTooLarge(CometApiError):
    """413: the body is larger than the server accepts."""


class ClientError(CometApiError):
    """Any other 4xx: permanent, not retried."""


class Throttled(CometApiError):
    """429: too many requests. ``retry_after_s`` is the server's requested wait, when it gave one."""

    default_retryable = True

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s


class ServerError(CometApiError):
    """5xx: the server failed; retried with backoff."""

    default_retryable = True


class ConnectionFailed(CometApiError):
    """No reply: connection refused or reset, name resolution or TLS failure."""

    default_retryable = True


class RequestTimedOut(ConnectionFailed):
    """The connect or read timeout expired."""


class InvalidReply(CometApiError):
    """The server answered, but not with what a Comet server sends (bad JSON, wrong content type, HTML)."""


class TooManyRedirects(CometApiError):
    """The server redirected more times than allowed (a loop or a misconfigured proxy)."""


class Failure:
    """What a failed request means for sending it again: the one place that decides it.

    ``classify(error)`` returns one of these. The REST client resends within one request only
    what ``RESENT_AT_ONCE`` holds; the sender keeps a spooled entry for a later pass for every
    class but ``PERMANENT`` (which it quarantines). How long each waits is the retry policy's
    business (``comet_agent.delivery.retry.RetryPolicy``), not this one's.

    | class | errors | at once | later |
    |---|---|---|---|
    | ``TRANSIENT`` | refused, reset, timeouts, 5xx, 408 | yes | yes, with backoff |
    | ``THROTTLED`` | 429 | yes | yes, after the server's Retry-After |
    | ``INVALID_REPLY`` | an HTML page, bad JSON, a wrong shape | no: a wrong URL answers the same again | yes: proxies and restarting servers answer that way |
    | ``UNAUTHORIZED`` | 401, 403 | no | yes, slowly: the operator must fix the key |
    | ``PERMANENT`` | other 4xx, redirect loops | no | no |
    """

    TRANSIENT = "transient"
    THROTTLED = "throttled"
    INVALID_REPLY = "invalid_reply"
    UNAUTHORIZED = "unauthorized"
    PERMANENT = "permanent"
    RESENT_AT_ONCE = frozenset({TRANSIENT, THROTTLED})


#: 4xx statuses that mean "later", not "never": 408 Request Timeout is the server giving up on a
#: slow request (an upload on a slow link); treating it as permanent would lose data.
RETRYABLE_CLIENT_STATUSES = frozenset({408})


def classify(error: CometApiError) -> str:
    """The ``Failure`` class of ``error`` (see the table there).

    Example::

        classify(ServerError("...", status=503))  # -> Failure.TRANSIENT
    """
    if isinstance(error, Unauthorized):
        return Failure.UNAUTHORIZED
    if isinstance(error, Throttled):
        return Failure.THROTTLED
    if isinstance(error, InvalidReply):
        return Failure.INVALID_REPLY
    if error.retryable or error.status in RETRYABLE_CLIENT_STATUSES:
        return Failure.TRANSIENT
    return Failure.PERMANENT
