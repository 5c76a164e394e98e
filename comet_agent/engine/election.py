"""One host sampler per node: the processes of one job on one node elect which of them samples the host.

Several local ranks that each call ``monitor()`` (or several ``comet-agent run`` on the same
experiment) on one node would each write every host series (CPU, memory, load, disk, network,
GPUs): three ranks wrote 24 CPU points in 6 s where one sampler writes 7, and the series' values
were averaged over copies. ``HostElection`` makes one of them the node's sampler: it holds an
exclusive ``fcntl.flock`` on ``<data dir>/election/<experiment key>[.<node id>].lock``; the
others ask again at each tick, without blocking, and the first to ask after the holder is gone
takes over. The kernel drops a flock when the last descriptor of its open file closes, so a
holder that dies (SIGKILL included) hands over within one sampling interval, and no stale lock
file can wedge the election. Every process still samples its own process tree and job directory.

Costs: the holder makes no system call per tick (it knows it holds the lock); a waiting process
one non-blocking ``flock`` (``bench/bench_election.py``). A data directory on a filesystem
without ``flock`` (some network filesystems answer ENOLCK) makes every process its own sampler,
as before the election existed; that is logged once.

A forked child inherits the descriptor, and with it the lock: ``release_in_child()`` (called
after ``fork()``) closes the child's copy without unlocking the parent's.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import threading
from pathlib import Path
from typing import Optional

from comet_agent.paths import ensure_private_dir

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def election_path(data_dir: Path, experiment_key: str, node_id: Optional[str] = None) -> Path:
    """The lock file of one experiment on one node (the node id made safe for a file name)."""
    name = _UNSAFE.sub("_", experiment_key)
    if node_id:
        name += "." + _UNSAFE.sub("_", node_id)
    return data_dir / "election" / f"{name}.lock"


class HostElection:
    """This process's part in the election of its node's host sampler (see the module docstring).

    Args:
        path: the lock file (``election_path``); its folder is created 0700.

    ``is_sampler()`` answers at each tick whether this process samples the host now, trying to
    take over when it does not; ``became_sampler`` counts the times it took the role.
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd: Optional[int] = None
        self._held = False
        self._lock = threading.Lock()
        self._unsupported = False
        self.became_sampler = 0

    def is_sampler(self) -> bool:
        """Whether this process is the node's host sampler now; takes the role when it is free.
        Never raises: a lock that cannot be used makes this process a sampler."""
        if self._held or self._unsupported:
            return True
        with self._lock:
            if self._held:
                return True
            try:
                if self._fd is None:
                    ensure_private_dir(self.path.parent)
                    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                        return False  # another process of this job on this node samples the host
                    raise
            except OSError as exc:  # no lock file, or no flock on this filesystem
                self._unsupported = True
                log.warning(
                    "cannot elect one host sampler per node through %s (%s): this process samples the host itself",
                    self.path,
                    exc,
                )
                return True
            self._held = True
            self.became_sampler += 1
            self._write_holder()
            return True

    @property
    def held(self) -> bool:
        """Whether this process holds the role (without trying to take it)."""
        return self._held

    def _write_holder(self) -> None:
        # For a person looking at the data directory: which pid samples the host.
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError:
            pass

    def release(self) -> None:
        """Give the role up (at stop): the next process to ask takes it."""
        with self._lock:
            fd, self._fd, self._held = self._fd, None, False
            if fd is not None:
                try:
                    os.close(fd)  # closing the last descriptor of the open file drops the flock
                except OSError:
                    pass

    def release_in_child(self) -> None:
        """After ``fork()``, in the child: close the inherited descriptor. Closing a duplicate does
        not unlock (the parent still holds its own), and the child's leaving no copy behind means
        the lock goes when the parent dies, even if the child lives on."""
        fd, self._fd, self._held = self._fd, None, False
        self._lock = threading.Lock()
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
