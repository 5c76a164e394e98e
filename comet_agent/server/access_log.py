"""The local server's access log: one line per request, on stderr or in a file.

``comet-agent server --access-log PATH`` (or ``-`` for stderr) turns it on; it is off by default
(the server's own log already says what goes wrong, and a training host's disk is not a place for
an unbounded file nobody asked for). Each line::

    2026-12-03T10:20:00.123Z 127.0.0.1 "POST /clientlib/asset/upload?experimentId=3f2a...&type=image" 200 57 4.1ms

that is: UTC time, client address, method and path with its query string, status, response body
bytes, and how long the request took. The API key never appears: the SDK sends it in the
``Authorization`` header, which is not logged, and a query parameter whose name says it holds a
secret (``apiKey``, ``token``, ...) is written ``********``; every server key is also masked
wherever it appears (``redaction.redact_registered``).

Rotation is left to the service manager or logrotate: the file is reopened when it was moved or
removed (``WatchedFileHandler``), and created 0600.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time
import urllib.parse
from typing import Any

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from comet_agent.redaction import MASK, is_secret_name, redact_registered

#: The logger every access line goes to (not propagated: it has its own handler and format).
ACCESS_LOGGER_NAME = "comet_agent.server.access"
#: ``--access-log`` value meaning "standard error".
STDERR = "-"


def redact_query(query_string: str) -> str:
    """``query_string`` with the values of secret-looking parameters replaced by ``********``.

    Example:
        >>> redact_query("experimentKey=abc&apiKey=s3cret")
        'experimentKey=abc&apiKey=********'
    """
    if not query_string:
        return ""
    pairs = urllib.parse.parse_qsl(query_string, keep_blank_values=True)
    cleaned = [(name, MASK if is_secret_name(name) else value) for name, value in pairs]
    return urllib.parse.urlencode(cleaned, safe="*/")


def access_line(request: BaseRequest, response: StreamResponse, duration_s: float) -> str:
    """The access-log line of one answered request (without the time stamp)."""
    target = request.path
    query = redact_query(request.query_string)
    if query:
        target += "?" + query
    size = response.body_length
    return redact_registered(
        f'{request.remote or "-"} "{request.method} {target}" {response.status} {size} {duration_s * 1000:.1f}ms'
    )


class AccessLogger(AbstractAccessLogger):
    """aiohttp's access-log hook: called once per request after its response was written."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:  # noqa: A002 (aiohttp's name)
        self.logger.info(access_line(request, response, time))


class _PrivateWatchedFileHandler(logging.handlers.WatchedFileHandler):
    """A ``WatchedFileHandler`` whose file, created or re-created after rotation, is 0600."""

    def _open(self) -> Any:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return os.fdopen(fd, "a", encoding=self.encoding or "utf-8")


class _UtcFormatter(logging.Formatter):
    """``%(asctime)s`` as ``2026-12-03T10:20:00.123Z`` (UTC, milliseconds)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging's name)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def open_access_log(destination: str) -> logging.Logger:
    """The logger writing access lines to ``destination`` (a path, or ``-`` for stderr).

    Raises:
        OSError: the file cannot be opened for appending.
    """
    handler: logging.Handler
    if destination == STDERR:
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = _PrivateWatchedFileHandler(destination, encoding="utf-8")
    handler.setFormatter(_UtcFormatter("%(asctime)s %(message)s"))
    logger = logging.getLogger(f"{ACCESS_LOGGER_NAME}.{id(handler):x}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    return logger


def close_access_log(logger: logging.Logger) -> None:
    """Flush and close the handlers ``open_access_log`` gave ``logger``."""
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
