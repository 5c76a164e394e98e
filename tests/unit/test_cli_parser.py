"""The command line's global options (before or after the subcommand) and its JSON log lines."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from comet_agent.cli import _apply_global_options, build_parser
from comet_agent.cli.logs import JsonLogFormatter
from comet_agent.redaction import register_secret


def _parse(*argv: str):
    args = build_parser().parse_args(list(argv))
    _apply_global_options(args)
    return args


@pytest.mark.parametrize(
    "argv, verbosity",
    [
        (["status"], 0),
        (["-v", "status"], 1),
        (["status", "-v"], 1),
        (["-v", "status", "-v"], 2),
        (["-vv", "show", "KEY", "-v"], 3),
    ],
)
def test_verbose_before_and_after_the_subcommand_add_up(argv, verbosity):
    assert _parse(*argv).verbose == verbosity


@pytest.mark.parametrize(
    "argv, log_format",
    [
        (["status"], "text"),
        (["--log-format", "json", "status"], "json"),
        (["status", "--log-format", "json"], "json"),
        (["--log-format", "json", "status", "--log-format", "text"], "text"),
    ],
)
def test_log_format_before_or_after_the_subcommand(argv, log_format):
    assert _parse(*argv).log_format == log_format


@pytest.mark.parametrize(
    "argv, data_dir",
    [
        (["status"], None),
        (["--data-dir", "/d", "status"], "/d"),
        (["status", "--data-dir", "/e"], "/e"),
        (["--data-dir", "/d", "flush", "--data-dir", "/e"], "/e"),  # the subcommand's own wins
        (["--data-dir", "/d", "run", "--", "true"], "/d"),
        (["--data-dir", "/d", "server"], "/d/server"),  # as COMET_AGENT_DATA_DIR=/d would put it
        (["--data-dir", "/d", "server", "--data-dir", "/s"], "/s"),
        (["--data-dir", "/d", "attach", "--experiment", "k"], "/d"),  # where it looks for the daemon's socket
    ],
)
def test_data_dir_before_or_after_the_subcommand(argv, data_dir):
    assert _parse(*argv).data_dir == data_dir


def test_a_bad_log_format_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["status", "--log-format", "yaml"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'yaml'" in capsys.readouterr().err


def _record(message: str, *args, exc_info=None) -> logging.LogRecord:
    # Made through the record factory, as logger calls make them (register_secret works there).
    return logging.getLogRecordFactory()("comet_agent.test", logging.ERROR, __file__, 1, message, args, exc_info)


def test_json_log_lines_are_one_object_each_with_the_traceback():
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        exc_info = sys.exc_info()
    line = JsonLogFormatter().format(_record("two\nlines %s", "here", exc_info=exc_info))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "two\nlines here"
    assert (entry["level"], entry["logger"]) == ("ERROR", "comet_agent.test")
    assert entry["exception"].startswith("Traceback") and "ValueError: bad" in entry["exception"]


def test_json_log_lines_never_carry_a_registered_key():
    secret = "unit-test-secret-key-7f3a9c"
    register_secret(secret)
    try:
        raise RuntimeError(f"rejected {secret}")
    except RuntimeError:
        exc_info = sys.exc_info()
    line = JsonLogFormatter().format(_record("key %s from the config", secret, exc_info=exc_info))
    assert secret not in line
    assert "********" in json.loads(line)["message"]
