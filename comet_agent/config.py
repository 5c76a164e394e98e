"""Configuration resolution, as Comet users expect it, plus the agent's key-file sources.

Each setting is resolved key by key; the first source that defines it wins (values merge across
sources, as comet_ml 3.58.8 does):

1. explicit arguments (``resolve_config(api_key=..., url_override=...)``)
2. for the API key only, key files (systemd's ``LoadCredential=`` first): ``$CREDENTIALS_DIRECTORY/api-key``
   (systemd ``LoadCredential=``), then ``api_key_file=`` / ``$COMET_API_KEY_FILE``
3. the environment: ``COMET_API_KEY`` (then ``COMET_REST_API_KEY``, the alias older Comet docs
   name; comet_ml 3.58.8 ignores it), ``COMET_URL_OVERRIDE``, ``COMET_WORKSPACE``,
   ``COMET_PROJECT_NAME``, and any other ``COMET_*`` variable
4. the file named by ``$COMET_INI`` (deprecated alias, wins) or ``$COMET_CONFIG``; a directory means
   ``<dir>/.comet.config``
5. ``./.comet.config``
6. ``~/.comet.config``
7. built-in defaults: the hosted server ``https://www.comet.com/clientlib/``

Config files are INI: ``[comet]`` with ``api_key = ...``, or ``[comet_x]`` with ``y = ...`` for the
setting ``comet.x.y`` (what ``comet init`` writes). comet_ml's ``.env`` file source is not read.

Every resolved value remembers where it came from (``ResolvedConfig.source_of("api_key")``), so an
error can say "the API key from COMET_API_KEY was rejected" without ever printing the key. The
key itself never appears in ``repr()`` or ``str()`` of the config.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

from comet_agent.errors import ConfigError
from comet_agent.redaction import is_secret_name, mask_value

logger = logging.getLogger(__name__)

DEFAULT_URL_OVERRIDE = "https://www.comet.com/clientlib/"
DEFAULT_SOURCE = "built-in default"

# setting name -> environment variables, in order of preference
_ENV_NAMES: dict[str, tuple[str, ...]] = {
    "api_key": ("COMET_API_KEY", "COMET_REST_API_KEY"),
    "url_override": ("COMET_URL_OVERRIDE",),
    "workspace": ("COMET_WORKSPACE",),
    "project_name": ("COMET_PROJECT_NAME",),
}


@dataclass(frozen=True)
class ResolvedConfig:
    """The merged settings. ``values`` maps setting names (``api_key``, ``url_override``,
    ``workspace``, ``project_name``, and any other ``x_y`` from files or ``COMET_X_Y``) to strings;
    ``sources`` maps the same names to a human description of where each came from.

    ``server_configured`` is False when the URL is the built-in default (nothing named a server):
    the agent then falls back to its local server.
    """

    values: Mapping[str, str] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    searched: tuple[str, ...] = ()

    def get(self, name: str, default: str | None = None) -> str | None:
        """A setting's value, or ``default``."""
        return self.values.get(name, default)

    def source_of(self, name: str) -> str | None:
        """Where a setting came from (``"environment variable COMET_API_KEY"``), or None if unset."""
        return self.sources.get(name)

    @property
    def api_key(self) -> str | None:
        return self.values.get("api_key")

    @property
    def api_key_source(self) -> str | None:
        return self.sources.get("api_key")

    @property
    def url_override(self) -> str:
        return self.values.get("url_override") or DEFAULT_URL_OVERRIDE

    @property
    def workspace(self) -> str | None:
        return self.values.get("workspace")

    @property
    def project_name(self) -> str | None:
        return self.values.get("project_name")

    @property
    def server_configured(self) -> bool:
        """True when some source named a server (argument, env, file, or the key's baseUrl)."""
        return "url_override" in self.values and self.sources.get("url_override") != DEFAULT_SOURCE

    @property
    def check_tls_certificate(self) -> bool:
        raw = self.values.get("internal_check_tls_certificate", "true")
        return str(raw).strip().lower() not in ("0", "false", "no", "off")

    def require_api_key(self) -> str:
        """The API key, or ``ConfigError`` naming every place that was searched."""
        if not self.api_key:
            places = "; ".join(self.searched) or "nowhere"
            raise ConfigError(
                "No Comet API key found. Set COMET_API_KEY, pass api_key=..., or put 'api_key = ...' "
                f"under [comet] in ~/.comet.config. Looked in: {places}"
            )
        return self.api_key

    def __repr__(self) -> str:
        # Any secret-named setting is hidden, and credentials inside values (a URL's user:password@)
        # are masked: a repr ends up in logs and tracebacks.
        shown = {
            k: ("<redacted>" if k == "api_key" or is_secret_name(k) else mask_value(v) if isinstance(v, str) else v)
            for k, v in self.values.items()
        }
        return f"ResolvedConfig(values={shown!r}, sources={dict(self.sources)!r})"

    __str__ = __repr__


def _unreadable(path: Path, exc: Exception) -> ConfigError:
    return ConfigError(f"Cannot read Comet config file {path}: {exc.__class__.__name__}: {exc}")


def _read_ini(path: Path) -> dict[str, str]:
    """Settings from one INI file, as ``{"api_key": ..., "x_y": ...}``. Missing file -> ``{}``."""
    try:
        handle = open(path, encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise _unreadable(path, exc) from None
    # Imported only when a file exists: most runs have none, and configparser is ~0.3 MB resident.
    import configparser

    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        with handle:
            parser.read_file(handle)
    except (OSError, configparser.Error, UnicodeDecodeError) as exc:
        raise _unreadable(path, exc) from None
    settings: dict[str, str] = {}
    for section in parser.sections():
        name = section.lower()
        if name == "comet":
            prefix = ""
        elif name.startswith("comet_"):
            prefix = name[len("comet_") :] + "_"
        else:
            continue
        for key, value in parser.items(section, raw=True):
            settings.setdefault(prefix + key.lower(), value.strip())
    return settings


def _config_file_candidates(environ: Mapping[str, str], cwd: Path, home: Path) -> list[Path]:
    candidates: list[Path] = []
    named = environ.get("COMET_INI") or environ.get("COMET_CONFIG")
    if named:
        path = Path(os.path.expanduser(named))
        candidates.append(path / ".comet.config" if path.is_dir() else path)
    candidates.append(cwd / ".comet.config")
    candidates.append(home / ".comet.config")
    return candidates


def read_key_file(path: Path, *, check_permissions: bool = True) -> str:
    """Read an API key from a file: surrounding whitespace stripped, inner whitespace refused.

    Raises ``ConfigError`` (naming the file, never its content) when the file is unreadable,
    empty, holds whitespace inside the key, or is readable by group or others.
    """
    path = Path(path)
    try:
        st = path.stat()
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read the API key file {path}: {exc.strerror or exc}") from None
    if check_permissions and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"The API key file {path} is readable by other users (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run: chmod 600 {path}"
        )
    key = raw.strip()
    if not key:
        raise ConfigError(f"The API key file {path} is empty")
    if any(ch.isspace() for ch in key):
        raise ConfigError(f"The API key in {path} contains whitespace; a Comet API key is a single word")
    return key


#: The local server's accepted keys from the environment (``comet-agent server``): keys separated
#: by commas or whitespace. An environment is readable only by its own user and root
#: (``/proc/PID/environ`` is 0400), a command line by every local user (``ps``).
SERVER_API_KEYS_ENV = "COMET_AGENT_SERVER_API_KEYS"


def parse_key_list(text: str) -> list[str]:
    """Keys separated by commas, whitespace or newlines; ``#`` starts a comment to the line's end.

    >>> parse_key_list("k1, k2\\n# old: k0\\nk3")
    ['k1', 'k2', 'k3']
    """
    keys: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        keys.extend(word for word in line.replace(",", " ").split() if word)
    return keys


def read_key_list_file(path: str | os.PathLike) -> list[str]:
    """The keys in a key file of the local server (``--api-key-file``), one or more per line.

    Raises ``ConfigError`` (naming the file, never its content) when the file is unreadable,
    readable by group or others, or holds no key.
    """
    path = Path(path)
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(f"Cannot read the API key file {path}: {reason}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"The API key file {path} is readable by other users (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run: chmod 600 {path}"
        )
    keys = parse_key_list(text)
    if not keys:
        raise ConfigError(f"The API key file {path} holds no key")
    return keys


def _base_url_from_key(api_key: str) -> str | None:
    # comet_ml keys may be "<key>*<base64 JSON>" carrying the server's baseUrl (comet_ml's ``get_api_key`` parses it the same way).
    if "*" not in api_key:
        return None
    _, _, suffix = api_key.partition("*")
    try:
        padded = suffix + "=" * (-len(suffix) % 4)
        data = json.loads(base64.b64decode(padded, altchars=b"-_").decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    base = data.get("baseUrl") if isinstance(data, dict) else None
    return base.rstrip("/") + "/clientlib/" if isinstance(base, str) and base else None


def resolve_config(
    *,
    api_key: str | None = None,
    api_key_file: str | os.PathLike | None = None,
    url_override: str | None = None,
    workspace: str | None = None,
    project_name: str | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    home: str | os.PathLike | None = None,
) -> ResolvedConfig:
    """Resolve Comet settings from arguments, key files, environment and config files.

    Args:
        api_key: explicit key (wins over everything).
        api_key_file: a file holding the key (must be 0600 or stricter).
        url_override: explicit server, e.g. ``http://127.0.0.1:5055/clientlib/``.
        workspace, project_name: explicit defaults for new experiments.
        environ, cwd, home: substitutes for ``os.environ``, the working directory and ``$HOME``.

    Returns: a ``ResolvedConfig``; the key may still be missing (see ``require_api_key``).
    Raises: ``ConfigError`` for an unreadable or insecure key file, or a malformed config file.
    """
    environ = os.environ if environ is None else environ
    cwd_path = Path(cwd) if cwd is not None else Path.cwd()
    home_path = Path(home) if home is not None else Path(environ.get("HOME") or Path.home())
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    searched: list[str] = []

    def offer(name: str, value: str | None, source: str) -> None:
        if value is not None and value != "" and name not in values:
            values[name] = value
            sources[name] = source

    # 1. explicit arguments
    searched.append("the api_key argument")
    offer("api_key", api_key, "the api_key argument")
    offer("url_override", url_override, "the url_override argument")
    offer("workspace", workspace, "the workspace argument")
    offer("project_name", project_name, "the project_name argument")

    # 2. key files (systemd credential first: a service's key never sits in its environment)
    credentials_dir = environ.get("CREDENTIALS_DIRECTORY")
    if credentials_dir:
        credential = Path(credentials_dir) / "api-key"
        searched.append(f"systemd credential {credential}")
        if "api_key" not in values and credential.exists():
            offer("api_key", read_key_file(credential), f"systemd credential {credential}")
    for file_value, label in (
        (api_key_file, "api_key_file"),
        (environ.get("COMET_API_KEY_FILE"), "COMET_API_KEY_FILE"),
    ):
        if file_value:
            searched.append(f"{label} ({file_value})")
            if "api_key" not in values:
                offer("api_key", read_key_file(Path(file_value)), f"key file {file_value} (from {label})")

    # 3. environment
    for name, env_names in _ENV_NAMES.items():
        for env_name in env_names:
            if name == "api_key":
                searched.append(f"environment variable {env_name}")
            offer(name, environ.get(env_name), f"environment variable {env_name}")
    for env_name, value in environ.items():
        if env_name.startswith("COMET_") and env_name not in ("COMET_CONFIG", "COMET_INI", "COMET_API_KEY_FILE"):
            offer(env_name[len("COMET_") :].lower(), value, f"environment variable {env_name}")

    # 4-6. config files, merged key by key
    for path in _config_file_candidates(environ, cwd_path, home_path):
        searched.append(f"config file {path}")
        settings = _read_ini(path)
        if "api_key" in settings and "api_key" not in values:
            _warn_if_shared(path)
        for name, value in settings.items():
            offer(name, value, f"config file {path}")

    # 7. defaults: the key may carry the server it belongs to
    if "url_override" not in values and values.get("api_key"):
        offer(
            "url_override",
            _base_url_from_key(values["api_key"]),
            f"the baseUrl inside the API key from {sources.get('api_key')}",
        )
    offer("url_override", DEFAULT_URL_OVERRIDE, DEFAULT_SOURCE)
    if values.get("api_key"):
        values["api_key"] = values["api_key"].strip()
    return ResolvedConfig(values=values, sources=sources, searched=tuple(searched))


def _warn_if_shared(path: Path) -> None:
    # comet_ml never checks this, and many users' ~/.comet.config is 0644; refusing would break
    # them, so config files only warn (key files, which are ours, are refused).
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "Comet config file %s holds an API key and is readable by other users; run: chmod 600 %s", path, path
        )


def systemd_credential_problem(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """Why ``$CREDENTIALS_DIRECTORY/api-key`` is unusable, or None (fine, or not under systemd).

    Under systemd (``CREDENTIALS_DIRECTORY`` set) the key file must exist, be readable by its owner
    only, and hold one word; ``comet-agent run`` and ``daemon`` exit 78 with this message otherwise,
    which ``RestartPreventExitStatus=78`` turns into one clear failure instead of a restart loop.
    """
    environ = os.environ if environ is None else environ
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    path = Path(directory) / "api-key"
    if not path.exists():
        return (
            f"the credential file {path} is missing: install the key as /etc/comet-agent/api-key "
            f"(mode 0600) for LoadCredential=api-key:/etc/comet-agent/api-key"
        )
    try:
        read_key_file(path)
    except ConfigError as exc:
        return str(exc)
    return None


# ------------------------------------------------------------------------------------------------
# --prometheus-listen
# ------------------------------------------------------------------------------------------------

#: The host a bare ``:PORT`` binds: loopback. Serving the host's metrics to the network is a
#: decision the operator writes out (``0.0.0.0:9400``), never a default.
DEFAULT_LISTEN_HOST = "127.0.0.1"


def parse_listen_address(text: str) -> tuple[str, int]:
    """Parse a ``--prometheus-listen`` value: ``HOST:PORT``, ``:PORT`` (loopback) or ``[IPv6]:PORT``.

    Args:
        text: the value as the user wrote it.

    Returns:
        ``(host, port)``; port 0 asks the system for a free port.

    Raises:
        ValueError: with a message saying what a valid value looks like.

    Example:
        >>> parse_listen_address(":9400")
        ('127.0.0.1', 9400)
        >>> parse_listen_address("[::1]:9400")
        ('::1', 9400)
    """
    value = text.strip()
    host, separator, port_text = value.rpartition(":")
    if not separator or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(
            f"{text!r} is not HOST:PORT (e.g. :9400 for 127.0.0.1:9400, or 0.0.0.0:9400 to serve every interface)"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:9400")
    if any(character.isspace() for character in host):
        raise ValueError(f"{text!r}: the host contains a space")
    return host or DEFAULT_LISTEN_HOST, int(port_text)


# ------------------------------------------------------------------------------------------------
# Node identity: which node of a distributed job this process runs on
# ------------------------------------------------------------------------------------------------

#: The setting comet_ml reads for its node prefix (``COMET_DISTRIBUTED_NODE_IDENTIFIER``, or
#: ``distributed_node_identifier`` under ``[comet]`` in ``.comet.config``).
NODE_ID_SETTING = "distributed_node_identifier"
#: Longest node id accepted (it prefixes every system series name).
MAX_NODE_ID_LENGTH = 64
#: The "other" under which each node's hardware is recorded, ``<prefix><node id>`` (written by
#: ``engine.job``, shown by the experiment page).
NODE_OTHER_PREFIX = "comet_agent.node."


@dataclass(frozen=True)
class NodeIdentity:
    """Where this process sits in a job: the node prefix of its system series and its local rank.

    ``node_id``: the prefix of every system series (``<node_id>.sys.cpu.percent.avg``, as comet_ml
    writes with ``distributed_node_identifier``); None for a single-node job, whose names stay
    comet_ml's unprefixed ones. ``node_index``: the node's 0-based rank when the environment says
    it. ``local_rank`` / ``local_size``: this process among the job's processes on this node.
    ``source``: where the id came from, for logs and ``comet-agent status``.
    """

    node_id: Optional[str] = None
    node_index: Optional[int] = None
    local_rank: Optional[int] = None
    local_size: Optional[int] = None
    source: str = "single node"

    @property
    def primary(self) -> bool:
        """Whether this process writes the experiment's system details: node 0 (or the only node,
        or a node whose index nobody says), local rank 0 (or unknown), as comet_ml has them."""
        return self.node_index in (None, 0) and self.local_rank in (None, 0)

    @property
    def rank_label(self) -> Optional[str]:
        """``rank<R>`` when several processes of the job share this node: it prefixes the
        process's own series (``[<node>.]rank<R>.sys.proc.*``); None for one process per node."""
        if self.local_rank is None or not self.local_size or self.local_size <= 1:
            return None
        return f"rank{self.local_rank}"

    @property
    def host_prefix(self) -> str:
        """The prefix of the node's host series (``""`` for a single-node job, else ``<node_id>.``)."""
        return f"{self.node_id}." if self.node_id else ""

    @property
    def rank_prefix(self) -> str:
        """The prefix of this process's own series (the host prefix plus ``rank<R>.`` when ranks share the node)."""
        label = self.rank_label
        return self.host_prefix + (f"{label}." if label else "")


def check_node_id(value: str) -> str:
    """A node id as given (``--node-id``, ``node_id=``, the setting), checked: it becomes the first
    part of metric names, so it must be 1-64 characters with no whitespace, ``/`` or control
    characters. Raises ``ConfigError`` with what to give instead."""
    text = value.strip()
    bad = [c for c in text if c.isspace() or c == "/" or not c.isprintable()]
    if not text or bad or len(text) > MAX_NODE_ID_LENGTH:
        raise ConfigError(
            f"node id {value!r} is unusable: give 1 to {MAX_NODE_ID_LENGTH} characters without spaces or '/' "
            f"(for example node0 or the short hostname)"
        )
    return text


def _int_env(environ: Mapping[str, str], *names: str) -> Optional[int]:
    """The first of ``names`` that holds a whole number >= 0 (garbage counts as unset)."""
    for name in names:
        text = (environ.get(name) or "").strip()
        if text.isdigit():
            return int(text)
    return None


def _slurm_tasks_on_node(environ: Mapping[str, str], node_index: Optional[int]) -> Optional[int]:
    """Tasks on this node: ``SLURM_NTASKS_PER_NODE``, else this node's entry of
    ``SLURM_TASKS_PER_NODE`` (Slurm's compressed list, ``2(x3),1``: nodes in order)."""
    per_node = _int_env(environ, "SLURM_NTASKS_PER_NODE")
    if per_node is not None or node_index is None:
        return per_node
    position = 0
    for part in (environ.get("SLURM_TASKS_PER_NODE") or "").split(","):
        count_text, _, repeat_text = part.partition("(x")
        if not count_text.strip().isdigit():
            return None
        repeat = int(repeat_text.rstrip(")")) if repeat_text.rstrip(")").isdigit() else 1
        if node_index < position + repeat:
            return int(count_text)
        position += repeat
    return None


def _short_hostname() -> str:
    import socket

    return socket.gethostname().split(".")[0] or "localhost"


def node_identity(
    explicit: Optional[str] = None,
    *,
    config: Optional[ResolvedConfig] = None,
    environ: Optional[Mapping[str, str]] = None,
    hostname: Optional[str] = None,
) -> NodeIdentity:
    """Which node this process runs on, from the explicit id, the Comet setting or the job's environment.

    First found wins for the id: ``explicit`` (``--node-id``, ``monitor(node_id=...)``), then
    comet_ml's own ``COMET_DISTRIBUTED_NODE_IDENTIFIER`` (or ``distributed_node_identifier`` in
    ``.comet.config``), then the launcher's variables below, read only when they show a job over
    more than one node; a single-node job gets no id (comet_ml's unprefixed names). A derived id is
    ``node<index>``, or the short hostname when the job is multi-node but no variable gives this
    node's index. Rank and size variables are read whatever the id's source (the election and the
    per-rank names need them on a single node too).

    Variables read (first launcher in this order that shows several nodes decides the index):

    | launcher       | node index                  | several nodes when         | local rank, ranks on node   |
    |----------------|-----------------------------|----------------------------|-----------------------------|
    | Slurm          | SLURM_NODEID                | SLURM_JOB_NUM_NODES (else  | SLURM_LOCALID,              |
    |                |                             | SLURM_NNODES) > 1          | SLURM_NTASKS_PER_NODE, else |
    |                |                             |                            | SLURM_TASKS_PER_NODE        |
    | torchrun       | GROUP_RANK (else NODE_RANK) | WORLD_SIZE >               | LOCAL_RANK,                 |
    |                |                             | LOCAL_WORLD_SIZE           | LOCAL_WORLD_SIZE            |
    | Open MPI       | OMPI_COMM_WORLD_RANK //     | OMPI_COMM_WORLD_SIZE >     | OMPI_COMM_WORLD_LOCAL_RANK, |
    |                | OMPI_COMM_WORLD_LOCAL_SIZE  | OMPI_COMM_WORLD_LOCAL_SIZE | OMPI_COMM_WORLD_LOCAL_SIZE  |
    | Kubernetes     | JOB_COMPLETION_INDEX        | the variable is set        | (none)                      |
    | (Indexed Job)  |                             |                            |                             |

    Why these: Slurm's ``SLURM_NODEID`` is the node's index within the allocation, the same for
    every task on it; torchrun numbers nodes with ``GROUP_RANK`` (``NODE_RANK`` is what Lightning
    and many launch scripts export); Open MPI gives no node index, but with the same number of
    ranks per node the global rank divided by the local size is one; a Kubernetes Indexed Job
    gives each pod its completion index (an Indexed Job runs one pod per worker, so it counts as
    several nodes; give ``--node-id`` or the setting to name a one-pod Job otherwise). Local rank
    and size are read from the first variable set, in the order ``LOCAL_RANK``, ``SLURM_LOCALID``,
    ``OMPI_COMM_WORLD_LOCAL_RANK`` (and ``LOCAL_WORLD_SIZE``, ``OMPI_COMM_WORLD_LOCAL_SIZE``,
    then Slurm's).

    Raises ``ConfigError`` for an unusable explicit id or setting (see ``check_node_id``).
    """
    environ = os.environ if environ is None else environ
    slurm_nodes = _int_env(environ, "SLURM_JOB_NUM_NODES", "SLURM_NNODES")
    slurm_index = _int_env(environ, "SLURM_NODEID")
    torch_world, torch_local = _int_env(environ, "WORLD_SIZE"), _int_env(environ, "LOCAL_WORLD_SIZE")
    mpi_world, mpi_local = _int_env(environ, "OMPI_COMM_WORLD_SIZE"), _int_env(environ, "OMPI_COMM_WORLD_LOCAL_SIZE")
    mpi_rank = _int_env(environ, "OMPI_COMM_WORLD_RANK")

    multi_node = False
    node_index: Optional[int] = None
    launcher = ""
    if slurm_nodes is not None and slurm_nodes > 1:
        multi_node, node_index, launcher = True, slurm_index, "Slurm"
    elif torch_world is not None and torch_local and torch_world > torch_local:
        multi_node, node_index, launcher = True, _int_env(environ, "GROUP_RANK", "NODE_RANK"), "torchrun"
    elif mpi_world is not None and mpi_local and mpi_world > mpi_local:
        index = mpi_rank // mpi_local if mpi_rank is not None else None
        multi_node, node_index, launcher = True, index, "Open MPI"
    elif _int_env(environ, "JOB_COMPLETION_INDEX") is not None:
        multi_node, node_index, launcher = True, _int_env(environ, "JOB_COMPLETION_INDEX"), "Kubernetes"

    local_rank = _int_env(environ, "LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK")
    local_size = _int_env(environ, "LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE")
    if local_size is None and "SLURM_LOCALID" in environ:
        local_size = _slurm_tasks_on_node(environ, slurm_index)

    setting = config.get(NODE_ID_SETTING) if config is not None else environ.get("COMET_DISTRIBUTED_NODE_IDENTIFIER")
    if explicit is not None:
        node_id, source = check_node_id(explicit), "given"
    elif setting:
        where = config.source_of(NODE_ID_SETTING) if config is not None else None
        node_id, source = check_node_id(setting), where or "environment variable COMET_DISTRIBUTED_NODE_IDENTIFIER"
    elif multi_node and node_index is not None:
        node_id, source = f"node{node_index}", f"{launcher} node index"
    elif multi_node:
        node_id, source = check_node_id(hostname or _short_hostname()), f"hostname ({launcher} job on several nodes)"
    else:
        return NodeIdentity(local_rank=local_rank, local_size=local_size)
    return NodeIdentity(node_id, node_index, local_rank, local_size, source)


#: How a push carries the samples of its window (``resolution_setting``): ``full`` sends every
#: sample with its own timestamp (the chart shows the sampling resolution whatever the push
#: cadence), ``window`` one aggregate per series (the catalogue's window rule).
RESOLUTIONS = ("full", "window")
DEFAULT_RESOLUTION = "full"


def resolution_setting(config: Optional[ResolvedConfig]) -> str:
    """The ``agent_resolution`` setting: ``COMET_AGENT_RESOLUTION``, or ``resolution = ...`` under
    ``[comet_agent]`` in ``.comet.config``; ``DEFAULT_RESOLUTION`` when unset or without a configuration.

    Raises ``ConfigError`` naming where the value came from when it is neither ``full`` nor ``window``.

    >>> resolution_setting(ResolvedConfig(values={"agent_resolution": " Window"}))
    'window'
    """
    value = config.get("agent_resolution") if config is not None else None
    if value is None:
        return DEFAULT_RESOLUTION
    resolution = str(value).strip().lower()
    if resolution not in RESOLUTIONS:
        source = config.source_of("agent_resolution") if config is not None else None
        raise ConfigError(
            f"the resolution {str(value)!r} from {source or 'the configuration'} is not one of "
            f"{', '.join(RESOLUTIONS)}: set COMET_AGENT_RESOLUTION=full (every sample) or window (one aggregate per push)"
        )
    return resolution
