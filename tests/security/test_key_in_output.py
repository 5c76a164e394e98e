"""Item 7: secrets stay out of what a run records.

A wrapped job inherits ``COMET_API_KEY`` (and the user's ``HF_TOKEN``, ``PGPASSWORD``...); what it
prints is recorded as the experiment's output, where every secret the agent knows is masked
before it enters the spool. The recorded command line masks the widened set of secret shapes,
and a server URL's credentials are never printed.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests

from comet_agent.redaction import MASK, mask_command_line, secrets_from_environment
from tests.security.cli_support import REPO, cli_argv, cli_env
from tests.support.local_server_http import auth, rest

HF_TOKEN = "hf_" + "Q" * 34
DB_PASSWORD = "correct-horse-battery"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SHORT_FLAG = "true"  # a secret-named variable with a non-secret value: left alone

JOB = """
import os, sys
print("key:", os.environ["COMET_API_KEY"])
print("hf:", os.environ["HF_TOKEN"], "db:", os.environ["PGPASSWORD"])
print("env dump:", {k: v for k, v in os.environ.items() if k.endswith(("KEY", "TOKEN", "PASSWORD"))})
sys.stderr.write("aws=" + os.environ["AWS_SECRET_ACCESS_KEY"] + " flag=" + os.environ["USE_AUTH_TOKEN"] + "\\n")
print("experiment:", os.environ["COMET_EXPERIMENT_KEY"])
"""


def test_a_wrapped_job_printing_its_secrets_records_them_masked(local_server, tmp_path):
    """Pass: the job prints COMET_API_KEY, HF_TOKEN, PGPASSWORD and AWS_SECRET_ACCESS_KEY (stdout and
    stderr); its own terminal output is unchanged, but the experiment's recorded output holds none
    of them (masked), keeps the experiment key and the non-secret value, and no file left in the
    data directory (spool, WAL) holds them either."""
    data_dir = tmp_path / "data"
    env = cli_env(
        COMET_API_KEY=local_server.api_key,
        COMET_URL_OVERRIDE=local_server.clientlib_url,
        HF_TOKEN=HF_TOKEN,
        PGPASSWORD=DB_PASSWORD,
        AWS_SECRET_ACCESS_KEY=AWS_SECRET,
        USE_AUTH_TOKEN=SHORT_FLAG,
    )
    run = subprocess.run(
        cli_argv(
            "run",
            "--data-dir",
            str(data_dir),
            "--no-os-packages",
            "--no-git",
            "--no-gpu",
            "--",
            sys.executable,
            "-c",
            JOB,
        ),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert local_server.api_key in run.stdout and HF_TOKEN in run.stdout  # passed through unchanged
    experiment_key = run.stdout.rsplit("experiment: ", 1)[1].split()[0]
    output = requests.get(
        rest(local_server, "experiment/output"),
        params={"experimentKey": experiment_key},
        headers=auth(local_server),
        timeout=30,
    ).json()["output"]
    for secret in (local_server.api_key, HF_TOKEN, DB_PASSWORD, AWS_SECRET):
        assert secret not in output, secret
    assert output.count(MASK) >= 7 and f"experiment: {experiment_key}" in output and f"flag={SHORT_FLAG}" in output
    stored = [
        p
        for p in data_dir.rglob("*")
        if p.is_file()
        and any(s.encode() in p.read_bytes() for s in (local_server.api_key, HF_TOKEN, DB_PASSWORD, AWS_SECRET))
    ]
    assert not stored, stored


@pytest.mark.parametrize(
    "argv, hidden",
    [
        (["env", "PGPASSWORD=pgsecret", "psql", "-h", "db"], "pgsecret"),
        (["mysql", "-u", "root", "-pmysqlsecret", "app"], "mysqlsecret"),
        (["/usr/bin/mysqldump", "-pdumpsecret"], "dumpsecret"),
        (["gpg", "--batch", "--passphrase", "gpgsecret", "-d", "f.gpg"], "gpgsecret"),
        (["gpg", "--passphrase=gpgsecret2"], "gpgsecret2"),
        (["openssl", "enc", "--key", "keysecret"], "keysecret"),
        (["train.py", "--config", '{"api_key": "jsonsecret", "lr": 0.1}'], "jsonsecret"),
        (["train.py", '--config={"db_password":"jsonsecret2"}'], "jsonsecret2"),
        (["train.py", "{'auth_token': 'dictsecret'}"], "dictsecret"),
        (["curl", "https://alice:url@secret@example.com/x"], "url@secret"),
        (["psql", "postgresql://app:pgurlsecret@db:5432/x"], "pgurlsecret"),
        (["env", "MYSQL_PWD=mysqlpwd1", "mysql"], "mysqlpwd1"),
    ],
)
def test_the_widened_command_line_masks(argv, hidden):
    """Pass: each shape named in the issue has its secret masked in the recorded command line."""
    masked = mask_command_line(argv)
    assert hidden not in " ".join(masked), masked
    assert MASK in " ".join(masked)


@pytest.mark.parametrize(
    "argv",
    [
        ["gcc", "-pthread", "-pipe", "x.c"],
        ["python", "train.py", "--sort-key", "loss", "--key-frames", "4"],
        ["train.py", "--max_tokens", "512", "--num-memory-tokens", "8"],
        ["ssh", "-p", "2222", "git@host"],
        ["train.py", '{"lr": 0.1, "token_budget": 5}'],
        ["mysql", "-p"],
    ],
)
def test_ordinary_arguments_are_left_alone(argv):
    """Pass: look-alikes (gcc -pthread, --sort-key, token budgets, ssh -p 2222, mysql's bare -p prompt) are unchanged."""
    assert mask_command_line(argv) == argv


def test_the_recorded_command_of_a_real_run_is_masked(local_server, tmp_path):
    """Pass: through the real CLI, the command recorded in system details and in the
    ``comet_agent.command`` other hides -pSECRET, --passphrase, --key, PGPASSWORD= and a JSON api_key."""
    secrets = ["mysqlsecret", "gpgsecret", "keysecret", "pgsecret", "jsonsecret"]
    job_args = [
        "mysql",
        "-pmysqlsecret",
        "--passphrase",
        "gpgsecret",
        "--key",
        "keysecret",
        "PGPASSWORD=pgsecret",
        '{"api_key": "jsonsecret"}',
    ]
    env = cli_env(COMET_API_KEY=local_server.api_key, COMET_URL_OVERRIDE=local_server.clientlib_url)
    run = subprocess.run(
        cli_argv(
            "run",
            "--data-dir",
            str(tmp_path / "data"),
            "--no-os-packages",
            "--no-git",
            "--no-gpu",
            "--",
            sys.executable,
            "-c",
            "pass",
            *job_args,
        ),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    experiment_key = run.stderr.split("experiment ", 1)[1].split(":", 1)[0]
    details = requests.get(
        rest(local_server, "experiment/system-details"),
        params={"experimentKey": experiment_key},
        headers=auth(local_server),
        timeout=30,
    ).json()
    others = requests.get(
        rest(local_server, "experiment/log-other"),
        params={"experimentKey": experiment_key},
        headers=auth(local_server),
        timeout=30,
    ).json()["values"]
    recorded = json.dumps(details["command"]) + json.dumps(others)
    assert "comet_agent.command" in recorded
    for secret in secrets:
        assert secret not in recorded, secret


def test_url_credentials_are_never_printed(tmp_path):
    """Pass: a COMET_URL_OVERRIDE carrying user:password@ (to a port where nothing listens, and a
    malformed one) is used without them: neither run prints the password, on stdout or stderr."""
    for url in ("http://alice:urlpassword@127.0.0.1:9/clientlib/", "ftp://alice:urlpassword@example.com/clientlib/"):
        env = cli_env(COMET_API_KEY="k" * 40, COMET_URL_OVERRIDE=url)
        run = subprocess.run(
            cli_argv(
                "run",
                "--data-dir",
                str(tmp_path / "data"),
                "--no-os-packages",
                "--no-git",
                "--no-gpu",
                "--stop-timeout",
                "1",
                "--",
                sys.executable,
                "-c",
                "pass",
            ),
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "urlpassword" not in run.stdout + run.stderr, run.stderr


def test_the_environment_secrets_are_the_secret_named_values():
    """Pass: values of KEY/TOKEN/SECRET/PASSWORD/CREDENTIAL variables are collected (longest first),
    locations (``*_FILE``), the experiment key and ``true``-like values are not."""
    found = secrets_from_environment(
        {
            "COMET_API_KEY": "api-key-value",
            "HF_TOKEN": HF_TOKEN,
            "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
            "PGPASSWORD": DB_PASSWORD,
            "GOOGLE_CREDENTIALS": "{json creds}",
            "COMET_API_KEY_FILE": "/etc/key",
            "COMET_EXPERIMENT_KEY": "a" * 32,
            "USE_AUTH_TOKEN": "true",
            "KEYBOARD": "us-intl",
            "HOME": "/root",
            "TOKENIZERS_PARALLELISM": "false-ish",
        }
    )
    assert found == sorted(["api-key-value", HF_TOKEN, AWS_SECRET, DB_PASSWORD, "{json creds}"], key=len, reverse=True)
