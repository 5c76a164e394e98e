"""Keeping secrets out of everything that leaves the process: logs, exceptions, reprs, payloads.

One module, so that every place that records a command line, a URL or a log line masks it the
same way:

- ``mask_command_line(argv)``: values of secret-looking arguments (``--api-key X``,
  ``--password=X``, ``--passphrase X``, ``--key X``, ``TOKEN=...``, ``PGPASSWORD=...``, a MySQL
  client's ``-pSECRET``, JSON ``"api_key": "..."`` inside an argument, URL user-info) become
  ``********``; ordinary arguments such as ``--use_cls_token``, ``--num-memory-tokens 4`` or
  ``--sort-key loss`` are left alone.
- ``strip_url_credentials(url)``: ``https://user:token@host/x`` -> ``https://host/x``.
- ``redact_text(text, secrets)`` and ``SecretRedactingFilter``: replace known secrets (the API
  key, and its URL-encoded form) wherever they appear in free text.
- ``secrets_from_environment(environ)``: the values of the environment variables whose names say
  they hold a secret (``*_KEY``, ``*TOKEN``, ``*SECRET*``, ``*PASSWORD``, ``*CREDENTIAL*``): a
  wrapped job inherits them and may print them, so its recorded output is cleaned of them too.
- ``mask_key(key)``: what may be shown of a key (its last four characters).
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from typing import Iterable, Mapping, Sequence

MASK = "********"

# A name is secret-looking when its *last* word-part is a secret word: "api_key", "apiKey",
# "db-password", "GITHUB_TOKEN". Looking at the last part only, on word boundaries, avoids false
# positives such as "--num-memory-tokens" or "--token-budget"; a few ordinary hyperparameter
# names that do end in a secret word are exempt (_NOT_SECRET_NAMES).
_SECRET_LAST_PARTS = {
    "key",
    "apikey",
    "secret",
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "pass",
    "token",
    "auth",
    "credential",
    "credentials",
    "cookie",
    "session",
}
# A last part of "key" alone is secret only when preceded by one of these (api_key, access-key,
# private_key, secret_key, app_key); "sort_key" or "--key-frames" are not secrets.
_KEY_QUALIFIERS = {
    "api",
    "access",
    "private",
    "secret",
    "app",
    "auth",
    "encryption",
    "signing",
    "client",
    "comet",
    "ssh",
}
# A last part that merely ends in one of these is a secret too: "PGPASSWORD", "MYSQL_PWD" is
# caught above, "authtoken" (ngrok). Only long words: "pwd" or "token" as a suffix would catch
# ordinary names ("OLDPWD" is a directory, "maxtoken" a hyperparameter).
_SECRET_SUFFIXES = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "credential",
    "credentials",
    "apikey",
    "authtoken",
    "accesstoken",
)
# Names that end in a secret word but are ordinary hyperparameters.
_NOT_SECRET_NAMES = {
    "use_cls_token",
    "cls_token",
    "pad_token",
    "eos_token",
    "bos_token",
    "unk_token",
    "sep_token",
    "mask_token",
    "max_token",
    "num_token",
    "session",
}


def _name_parts(name: str) -> list[str]:
    # Split on separators and on camelCase boundaries: "apiKey" -> ["api", "key"].
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return [p for p in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if p]


def is_secret_name(name: str) -> bool:
    """True when an option or variable name looks like it holds a secret (``--api-key``, ``DB_PASSWORD``)."""
    stripped = name.lstrip("-")
    if stripped.lower().replace("-", "_") in _NOT_SECRET_NAMES:
        return False
    parts = _name_parts(stripped)
    if not parts:
        return False
    last = parts[-1]
    if last not in _SECRET_LAST_PARTS:
        return last.endswith(_SECRET_SUFFIXES)
    if last == "key":
        # "--key X" alone is a key; "--sort-key", "--key-frames" are not.
        return len(parts) == 1 or parts[-2] in _KEY_QUALIFIERS
    return True


# The user-info runs to the *last* "@" before the path: a password may itself hold an "@".
_URL_WITH_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/?#\s]*)@")
# "api_key": "value" (JSON) or 'api_key': 'value' (a Python dict) inside an argument or a line.
_QUOTED_FIELD = re.compile(
    r"""(?P<q>["'])(?P<name>[A-Za-z0-9_.-]{1,64})(?P=q)(?P<sep>\s*:\s*)(?P<vq>["'])(?P<value>(?:\\.|(?!(?P=vq)).)*)(?P=vq)"""
)
# Programs that take a password glued to -p (mysql -pSECRET, sshpass -pSECRET).
_GLUED_PASSWORD_PROGRAMS = {
    "mysql",
    "mysqldump",
    "mysqladmin",
    "mysqlimport",
    "mysqlshow",
    "mysqlcheck",
    "mysqlpump",
    "mariadb",
    "mariadb-dump",
    "mariadb-admin",
    "mariadb-import",
    "mariadb-show",
    "mariadb-check",
    "sshpass",
}
_AUTH_HEADER = re.compile(r"(?i)\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{8,}")
_KNOWN_TOKENS = re.compile(
    r"\b(AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}|xox[abprs]-[A-Za-z0-9-]{10,}|hf_[A-Za-z0-9]{30,}|sk-[A-Za-z0-9_-]{20,})\b"
)


def strip_url_credentials(url: str | None) -> str | None:
    """Remove credentials from a URL.

    For http(s) the whole ``user[:password]@`` goes (hosting services accept a token as the user
    name); for other schemes (``ssh://git@host``) only a password is removed, since the user name
    is part of the address. scp-style ``git@host:path`` carries no secret and is kept.

    >>> strip_url_credentials("https://bob:ghp_x@github.com/o/r.git")
    'https://github.com/o/r.git'
    """
    if url is None:
        return None

    return _URL_WITH_USERINFO.sub(lambda m: _replace_userinfo(m, ""), url)


def _replace_userinfo(match: re.Match, mask: str) -> str:
    scheme, userinfo = match.group(1), match.group(2)
    if scheme.lower().startswith(("http", "ftp")):
        return scheme + (mask + "@" if mask else "")
    user, sep, _password = userinfo.partition(":")
    return scheme + user + (":" + mask if sep and mask else "") + "@"


def mask_value(text: str) -> str:
    """Mask secrets that are recognisable by their shape alone: URL userinfo, auth headers, token
    formats, and quoted ``"name": "value"`` fields whose name is secret-looking (``is_secret_name``).

    >>> mask_value('{"api_key": "abc123", "lr": 0.1}')
    '{"api_key": "********", "lr": 0.1}'
    """
    text = _URL_WITH_USERINFO.sub(lambda m: _replace_userinfo(m, MASK), text)
    text = _AUTH_HEADER.sub(lambda m: m.group(1) + " " + MASK, text)
    text = _QUOTED_FIELD.sub(_mask_quoted_field, text)
    return _KNOWN_TOKENS.sub(MASK, text)


def _mask_quoted_field(match: re.Match) -> str:
    if not match.group("value") or not is_secret_name(match.group("name")):
        return match.group(0)
    q, vq = match.group("q"), match.group("vq")
    return f"{q}{match.group('name')}{q}{match.group('sep')}{vq}{MASK}{vq}"


def mask_command_line(argv: Sequence[str], secrets: Iterable[str] = ()) -> list[str]:
    """Return a copy of ``argv`` with secret values masked.

    Handles ``--name value``, ``--name=value``, ``NAME=value`` (environment-style prefixes such as
    ``env TOKEN=x cmd``), URL userinfo and known token shapes in any argument, and any exact
    ``secrets`` given (the configured API key).
    """
    out: list[str] = []
    mask_next = False
    glued_password = False  # after a mysql-like program: -pSECRET is its password
    for arg in argv:
        arg = str(arg)
        if mask_next:
            out.append(MASK)
            mask_next = False
            continue
        if not arg.startswith("-") and arg.rsplit("/", 1)[-1] in _GLUED_PASSWORD_PROGRAMS:
            glued_password = True
        if glued_password and len(arg) > 2 and arg.startswith("-p") and not arg.startswith("--"):
            out.append("-p" + MASK)
            continue
        if arg.startswith("-") and "=" not in arg:
            mask_next = is_secret_name(arg)
            out.append(arg)
            continue
        if "=" in arg:
            name, _, value = arg.partition("=")
            if value and re.fullmatch(r"-{0,2}[A-Za-z_][A-Za-z0-9_.-]*", name) and is_secret_name(name):
                out.append(f"{name}={MASK}")
                continue
        out.append(mask_value(arg))
    return [redact_text(a, secrets) for a in out]


#: Environment variable names that hold no secret despite their words (locations, identifiers).
_NOT_SECRET_ENV_NAMES = {"COMET_EXPERIMENT_KEY", "PYTHONHASHSEED"}
_LOCATION_SUFFIXES = ("FILE", "PATH", "DIR", "DIRECTORY", "SOCK", "SOCKET")
#: Words that make a variable a secret when one of its parts ends with them.
_SECRET_ENV_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL", "CREDENTIALS", "APIKEY")
#: Values too common to be a secret (masking them would garble ordinary output).
_NOT_SECRET_VALUES = {"true", "false", "yes", "no", "on", "off", "none", "null"}


def is_secret_env_name(name: str) -> bool:
    """True when an environment variable's name says it holds a secret.

    A part of the name (split on ``_``, ``-``, ``.``) is ``KEY``, or ends with ``TOKEN``,
    ``SECRET``, ``PASSWORD``, ``PASSWD``, ``PASSPHRASE``, ``CREDENTIAL(S)`` or ``APIKEY``:
    ``COMET_API_KEY``, ``HF_TOKEN``, ``AWS_SECRET_ACCESS_KEY``, ``PGPASSWORD``,
    ``GOOGLE_CREDENTIALS``, ``MYSQL_PWD``. Not: a name ending in ``_FILE``, ``_PATH``, ``_DIR``, ``_SOCK`` (where
    a secret is, not the secret), ``COMET_EXPERIMENT_KEY``, ``KEYBOARD``, ``TOKENIZERS_PARALLELISM``.
    """
    upper = name.upper()
    if upper in _NOT_SECRET_ENV_NAMES:
        return False
    parts = [p for p in re.split(r"[^A-Z0-9]+", upper) if p]
    if not parts or parts[-1] in _LOCATION_SUFFIXES:
        return False
    if len(parts) >= 2 and parts[-1] == "PWD":  # MYSQL_PWD; PWD and OLDPWD alone are directories
        return True
    return any(part == "KEY" or part.endswith(_SECRET_ENV_WORDS) for part in parts)


def secrets_from_environment(environ: Mapping[str, str]) -> list[str]:
    """The values of ``environ``'s secret-named variables (``is_secret_env_name``), longest first.

    Values shorter than 4 characters, and ``true``/``false``-like words, are left out: masking
    them everywhere would garble ordinary output for no protection.
    """
    values = {
        value
        for name, value in environ.items()
        if is_secret_env_name(name) and len(value) >= 4 and value.strip().lower() not in _NOT_SECRET_VALUES
    }
    return sorted(values, key=len, reverse=True)


def mask_key(key: str | None) -> str:
    """What may be shown of an API key: ``'…' + last 4``, or ``'<none>'``."""
    if not key:
        return "<none>"
    return "…" + key[-4:] if len(key) > 8 else MASK


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """Replace each non-empty secret (and its URL-encoded form) in ``text`` by a mask."""
    for secret in secrets:
        if not secret or len(secret) < 4:
            continue
        text = text.replace(secret, MASK)
        quoted = urllib.parse.quote(secret, safe="")
        if quoted != secret:
            text = text.replace(quoted, MASK)
    return text


class SecretRedactingFilter(logging.Filter):
    """A logging filter that redacts known secrets from the *formatted* message and traceback.

    comet_ml's own formatter skips redaction when the key is a log-record argument; this one
    formats first and redacts the result, then drops the arguments so no handler re-formats them.
    Usable on any handler; ``register_secret`` applies the same cleaning to every record made.
    """

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self.secrets: set[str] = {s for s in secrets if s}

    def filter(self, record: logging.LogRecord) -> bool:
        _clean_record(record, self.secrets)
        return True


def _clean_record(record: logging.LogRecord, secrets: set[str]) -> None:
    if not secrets:
        return
    try:
        message = record.getMessage()
    except Exception:  # a malformed log call; leave it to logging's own error path
        return
    cleaned = redact_text(message, secrets)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact_text(record.exc_text, secrets)


_REGISTERED: set[str] = set()
_base_factory = None


def register_secret(secret: str | None) -> None:
    """Redact ``secret`` from every log record created in this process from now on.

    Works through the log-record factory, so it covers records of any logger (ours, urllib3's,
    requests') whatever handlers are configured, before any handler sees them. Idempotent.
    """
    global _base_factory
    if not secret:
        return
    _REGISTERED.add(secret)
    if _base_factory is None:
        _base_factory = logging.getLogRecordFactory()

        def factory(*args, **kwargs):
            record = _base_factory(*args, **kwargs)
            _clean_record(record, _REGISTERED)
            return record

        logging.setLogRecordFactory(factory)


def redact_registered(text: str) -> str:
    """``text`` with every secret given to ``register_secret`` (and its URL-encoded form) masked.

    For what is written outside a log record's own message and traceback (a log formatter's
    extra fields, for one); records themselves are cleaned when they are made.
    """
    return redact_text(text, _REGISTERED) if _REGISTERED else text
