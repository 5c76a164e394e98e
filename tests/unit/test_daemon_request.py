"""daemon.request(): a client waits out a full listen backlog instead of failing at once."""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
from pathlib import Path

from comet_agent.daemon import request


def test_a_full_backlog_is_waited_out_within_the_timeout():
    """A Unix socket answers a connect to a full backlog with EAGAIN at once (no wait, whatever the
    timeout); request() retries until the daemon accepts, as a TCP client would have waited."""
    with tempfile.TemporaryDirectory(dir="/tmp") as directory:
        path = str(Path(directory) / "d.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(1)
        fillers = []
        while True:  # fill the backlog: the daemon is busy accepting a flood
            filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            filler.setblocking(False)
            try:
                filler.connect(path)
            except BlockingIOError:
                filler.close()
                break
            fillers.append(filler)

        def serve() -> None:
            time.sleep(0.3)
            for _ in range(len(fillers)):
                server.accept()[0].close()
            connection, _ = server.accept()
            with connection, connection.makefile("rb") as reader:
                message = json.loads(reader.readline())
                connection.sendall((json.dumps({"ok": True, "echo": message["op"]}) + "\n").encode())

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            assert request(path, {"op": "ping"}, timeout_s=10) == {"ok": True, "echo": "ping"}
        finally:
            thread.join(10)
            for filler in fillers:
                filler.close()
            server.close()
