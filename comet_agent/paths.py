"""Where comet-agent keeps its files, and how it creates private ones.

Every directory we create is 0700 and every file 0600, whatever the umask: spool records,
generated API keys and the server's store may hold data that other users must not read.
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "comet-agent"


def default_data_dir() -> Path:
    """The per-user data directory: ``$XDG_DATA_HOME/comet-agent`` or ``~/.local/share/comet-agent``.

    ``COMET_AGENT_DATA_DIR`` overrides it (used by tests and by the systemd units, which point it
    at ``$STATE_DIRECTORY``).
    """
    override = os.environ.get("COMET_AGENT_DATA_DIR")
    if override:
        return Path(override)
    state = os.environ.get("STATE_DIRECTORY")  # systemd's StateDirectory=
    if state:
        return Path(state.split(":")[0])
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / APP_NAME


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and make the leaf 0700. Returns the path.

    Raises ``OSError`` (with the path in its message) when the directory cannot be created.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    # mkdir's mode is filtered by the umask; chmod is not.
    if (path.stat().st_mode & 0o777) != 0o700:
        path.chmod(0o700)
    return path


def write_private_file(path: Path, data: bytes) -> Path:
    """Atomically write ``data`` to ``path`` as a 0600 file (temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path
