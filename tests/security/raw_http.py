"""Raw HTTP over a loopback socket, for attacks ``requests`` cannot make: a request whose body is
never finished, sent one piece at a time, or left hanging (the slow client)."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass


@dataclass
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def connect(url: str, timeout_s: float = 10.0) -> socket.socket:
    """A TCP connection to the server at ``url`` (``http://127.0.0.1:PORT``)."""
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    assert host in ("127.0.0.1", "localhost"), "loopback only"
    sock = socket.create_connection((host, int(port)), timeout=timeout_s)
    return sock


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_reply(sock: socket.socket, timeout_s: float = 10.0) -> RawReply:
    """Read one HTTP response (Content-Length framed) within ``timeout_s``; raises ``TimeoutError``."""
    deadline = time.monotonic() + timeout_s
    data = b""
    while b"\r\n\r\n" not in data:
        data += _recv(sock, deadline)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        body += _recv(sock, deadline)
    return RawReply(status, headers, body[:length])


def _recv(sock: socket.socket, deadline: float) -> bytes:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("no complete reply in time")
    sock.settimeout(remaining)
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("the server closed the connection before a complete reply")
    return chunk


def closed_by_peer(sock: socket.socket, timeout_s: float) -> bool:
    """True when the server closes ``sock`` (EOF or reset) within ``timeout_s``; what it sends
    before closing (an error reply) is read and ignored."""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        sock.settimeout(remaining)
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            return False
        except OSError:  # reset
            return True
