"""Where the command line's log records go and how they read: text, or one JSON object per line.

``--log-format json`` is for log collectors (journald's forwarders, Loki, a job scheduler's log
parser): each record is one line ``{"time", "level", "logger", "message"}``, plus
``"exception"`` when the record carries a traceback. Times are UTC, ISO 8601 with milliseconds
(``2026-05-09T07:35:25.123+00:00``, which ``datetime.fromisoformat`` reads on every Python we
support). Only log records change: the commands' own messages (``comet-agent: experiment ...``)
and a wrapped command's output stay as they are.

Secrets: every record is already cleaned when it is made (``redaction.register_secret`` works
through the log-record factory); the JSON formatter cleans the message and the traceback once
more with the same registered secrets, so a record made before the key was known cannot carry it.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys

from comet_agent.redaction import redact_registered

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLogFormatter(logging.Formatter):
    """Formats a log record as one line of JSON: ``time``, ``level``, ``logger``, ``message``
    (and ``exception`` with the formatted traceback, when there is one).

    Example:
        >>> record = logging.LogRecord("comet_agent.sender", logging.WARNING, __file__, 1, "%d left", (3,), None)
        >>> sorted(json.loads(JsonLogFormatter().format(record)))
        ['level', 'logger', 'message', 'time']
    """

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_registered(record.getMessage()),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = redact_registered(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact_registered(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(verbosity: int, *, log_format: str = "text", at_least_info: bool = False) -> None:
    """Send log records to stderr: WARNING and up, INFO with ``-v``, DEBUG with ``-vv``.

    Args:
        verbosity: how many ``-v`` were given (before and after the subcommand together).
        log_format: ``"text"`` (``time LEVEL logger: message``) or ``"json"`` (``JsonLogFormatter``).
        at_least_info: log INFO even without ``-v`` (the long-running ``server`` and ``daemon``).

    Like ``logging.basicConfig``, it leaves a root logger that already has handlers alone.
    """
    level = logging.WARNING - 10 * min(max(verbosity, 0), 2)
    if at_least_info:
        level = min(level, logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
