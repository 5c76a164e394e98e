"""Secrets are masked in command lines, URLs and log records; ordinary arguments are left alone."""

from __future__ import annotations

import logging

import pytest

from comet_agent.redaction import (
    MASK,
    SecretRedactingFilter,
    is_secret_name,
    mask_command_line,
    mask_key,
    redact_text,
    register_secret,
    strip_url_credentials,
)

# (argv, expected) golden cases: secrets masked, look-alikes untouched.
GOLDEN_COMMAND_LINES = [
    (["train.py", "--api-key", "abc123", "--lr", "3e-4"], ["train.py", "--api-key", MASK, "--lr", "3e-4"]),
    (["train.py", "--password=hunter2"], ["train.py", f"--password={MASK}"]),
    (["env", "HF_TOKEN=hf_abc", "python", "x.py"], ["env", f"HF_TOKEN={MASK}", "python", "x.py"]),
    (["x.py", "--apiKey", "K", "--db-pass", "p"], ["x.py", "--apiKey", MASK, "--db-pass", MASK]),
    (["x.py", "--secret_key=s3"], ["x.py", f"--secret_key={MASK}"]),
    (["x.py", "--use_cls_token", "--num-memory-tokens", "4"], ["x.py", "--use_cls_token", "--num-memory-tokens", "4"]),
    (["x.py", "--sort-key", "loss", "--max_tokens=512"], ["x.py", "--sort-key", "loss", "--max_tokens=512"]),
    (["x.py", "--token-budget", "100"], ["x.py", "--token-budget", "100"]),
    (["git", "clone", "https://bob:s3cr3t@example.com/r.git"], ["git", "clone", f"https://{MASK}@example.com/r.git"]),
    (["curl", "-H", "Authorization: Bearer abcdefghijkl"], ["curl", "-H", f"Authorization: Bearer {MASK}"]),
    (["x.py", "ghp_" + "a" * 36], ["x.py", MASK]),
    (["git", "clone", "ssh://git@host/r.git"], ["git", "clone", "ssh://git@host/r.git"]),
    (["psql", "postgres://app:pw@db/x"], ["psql", f"postgres://app:{MASK}@db/x"]),
    (["x.py", "--epochs", "10", "data=train.csv"], ["x.py", "--epochs", "10", "data=train.csv"]),
]


@pytest.mark.parametrize("argv,expected", GOLDEN_COMMAND_LINES)
def test_mask_command_line_golden(argv, expected):
    assert mask_command_line(argv) == expected


def test_mask_command_line_masks_the_configured_key_anywhere():
    key = "CANARYKEY0123456789"
    assert key not in " ".join(mask_command_line(["x.py", f"--note=uses-{key}", key], secrets=[key]))


@pytest.mark.parametrize(
    "name", ["--api-key", "COMET_API_KEY", "apiKey", "DB_PASSWORD", "GITHUB_TOKEN", "--auth", "--key"]
)
def test_secret_names(name):
    assert is_secret_name(name)


# "--key" alone is a key (gpg, openssl; issue #17 item 7); "--sort-key" and "--key-frames" are not.
@pytest.mark.parametrize(
    "name", ["--lr", "--sort-key", "--key-frames", "--tokens", "use_cls_token", "--token-budget", "--session"]
)
def test_not_secret_names(name):
    assert not is_secret_name(name)


def test_strip_url_credentials():
    assert strip_url_credentials("https://user:tok@github.com/o/r.git") == "https://github.com/o/r.git"
    assert strip_url_credentials("https://ghp_tokenonly@github.com/o/r") == "https://github.com/o/r"
    assert strip_url_credentials("ssh://git@host/r.git") == "ssh://git@host/r.git"
    assert strip_url_credentials("ssh://git:pw@host/r.git") == "ssh://git@host/r.git"
    assert strip_url_credentials("git@github.com:o/r.git") == "git@github.com:o/r.git"
    assert strip_url_credentials(None) is None


def test_redact_text_covers_url_encoded_form():
    key = "abc/def+ghi=="
    assert redact_text(f"x {key} y abc%2Fdef%2Bghi%3D%3D", [key]) == f"x {MASK} y {MASK}"


def test_mask_key_shows_at_most_four_characters():
    assert mask_key("0123456789abcdef") == "…cdef"
    assert mask_key("short") == MASK
    assert mask_key(None) == "<none>"


def test_registered_secret_is_redacted_from_any_logger_and_traceback(caplog):
    key = "CANARY-registered-9f8e7d"
    register_secret(key)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3.connectionpool").debug("GET /x?k=%s", key)
    try:
        raise ValueError(f"bad key {key}")
    except ValueError:
        logging.getLogger("comet_agent.test").exception("failed")
    assert key not in caplog.text
    assert MASK in caplog.text


def test_filter_on_a_handler_redacts_record_arguments():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "key is %s", ("SECRET-1234",), None)
    SecretRedactingFilter(["SECRET-1234"]).filter(record)
    assert record.getMessage() == f"key is {MASK}"
