"""``comet-agent flush``: send what earlier runs left in the spool, with the current configuration.

On a terminal a line on stderr tells how far each spool is (``flushing KEY (1/3): 1200 of 3400
records``), rewritten in place twice a second and cleared when that spool is done; when stderr
is a file or a pipe nothing but the summary is written.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import IO, Optional

from comet_agent.cli.common import ServerConnection, err, exit_status_for
from comet_agent.errors import ExitStatus
from comet_agent.paths import default_data_dir


def flush_from_args(args) -> int:
    """``comet-agent flush``: send what earlier runs left in the spool, with the current configuration."""
    from comet_agent.delivery.sender import Sender
    from comet_agent.delivery.spool import Spool
    from comet_agent.engine.link import forget_link, load_link
    from comet_agent.errors import SpoolError

    spool_dir = Path(args.data_dir or default_data_dir()) / "spool"
    paths = sorted(spool_dir.glob("*.db")) if spool_dir.is_dir() else []
    if not paths:
        print("nothing to flush")
        return 0
    try:
        server = ServerConnection(args.data_dir)
    except (ValueError, OSError) as exc:
        err(str(exc))
        return ExitStatus.CONFIG
    worst = 0
    progress = Progress(sys.stderr)
    try:
        for number, path in enumerate(paths, 1):
            try:
                spool = Spool(path)
            except SpoolError as exc:
                err(str(exc))
                worst = max(worst, 78)
                continue
            with spool:
                before = spool.depth()
                if not before:
                    continue
                # Created with its key if the run that spooled it never reached the server.
                sender = Sender(spool, load_link(server.api, path).get)
                label = f"flushing {path.stem}" + (f" ({number}/{len(paths)})" if len(paths) > 1 else "")
                try:
                    with progress.track(label, before, lambda stats=sender.stats: stats.sent + stats.rejected):
                        wait_s = sender.send_pending()
                except Exception as exc:  # an unknown experiment key, for one
                    err(f"{path.name}: {exc}")
                    worst = max(worst, exit_status_for(exc))
                    continue
                left = spool.depth()
                if not left:
                    forget_link(path)
                print(f"{path.stem}: sent {sender.stats.sent}, rejected {sender.stats.rejected}, left {left}")
                if left and wait_s is not None:
                    err(f"{path.stem}: {left} records wait: {sender.stats.last_error}")
                    worst = max(worst, 5)
        return worst
    finally:
        server.close()


class Progress:
    """A line on a terminal saying how far a long task is, rewritten in place; silent elsewhere.

    Args:
        stream: where to write (stderr); nothing is written unless it is a terminal.
        interval_s: seconds between rewrites.

    Example:
        >>> with Progress(sys.stderr).track("flushing KEY", 3400, lambda: sender.stats.sent):  # doctest: +SKIP
        ...     sender.send_pending()
    """

    def __init__(self, stream: IO[str], interval_s: float = 0.5):
        self.stream = stream
        self.interval_s = interval_s
        try:
            self.enabled = stream.isatty()
        except (AttributeError, ValueError):
            self.enabled = False

    def track(self, label: str, total: int, done) -> "_Tracking":
        """A context manager: ``label: DONE of TOTAL records`` while its block runs (``done()``
        is read from another thread: it must be cheap and safe to call), cleared at the end."""
        return _Tracking(self, label, total, done)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.enabled = False  # the terminal went away; the flush goes on


class _Tracking:
    def __init__(self, progress: Progress, label: str, total: int, done):
        self._progress, self._label, self._total, self._done = progress, label, total, done
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _line(self) -> str:
        return f"\r\033[K{self._label}: {min(self._done(), self._total)} of {self._total} records"

    def _run(self) -> None:
        while not self._stop.wait(self._progress.interval_s) and self._progress.enabled:
            self._progress._write(self._line())

    def __enter__(self) -> "_Tracking":
        if self._progress.enabled:
            self._progress._write(self._line())
            self._thread = threading.Thread(target=self._run, name="comet-agent-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._progress._write("\r\033[K")
