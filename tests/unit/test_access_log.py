"""The access log's line format and query-string redaction (comet_agent/server/access_log.py)."""

from __future__ import annotations

import os
import stat

from comet_agent.server.access_log import close_access_log, open_access_log, redact_query


def test_secret_looking_query_values_are_masked_and_the_rest_kept():
    assert redact_query("experimentKey=abc&apiKey=s3cret&step=1") == "experimentKey=abc&apiKey=********&step=1"
    assert redact_query("api_key=a&token=b&password=c") == "api_key=********&token=********&password=********"
    assert redact_query("sort_key=loss&fileName=a%20b.txt") == "sort_key=loss&fileName=a+b.txt"
    assert redact_query("") == ""


def test_the_file_is_created_0600_and_reopened_after_it_was_rotated_away(tmp_path):
    path = tmp_path / "access.log"
    previous_umask = os.umask(0)  # the most permissive: the file must still be 0600
    logger = open_access_log(str(path))
    try:
        logger.info("first")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        path.rename(tmp_path / "access.log.1")  # what logrotate does
        logger.info("second")
    finally:
        close_access_log(logger)
        os.umask(previous_umask)
    assert (tmp_path / "access.log.1").read_text().endswith("first\n")
    assert path.read_text().endswith("Z second\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
