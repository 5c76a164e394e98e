"""A small Chrome DevTools Protocol driver for the page tests: real mouse input, real console.

Headless Chromium is started with ``--remote-debugging-port=0``; the port it chose is read from
``DevToolsActivePort`` in its profile, and one page target is driven over a websocket with
aiohttp's client (aiohttp is already a dependency). Nothing is added to the page: the tests move
the mouse, click and read the DOM as a person's browser would, and the page keeps its
Content-Security-Policy. Every console message, log entry (CSP violations included) and uncaught
exception is kept in ``messages``.

    with Browser(tmp_path / "profile") as browser:
        browser.open(url)
        browser.move_mouse(100, 200)
        browser.evaluate("document.title")
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Optional

import aiohttp

from tests.browser.pages_support import CHROMIUM_FLAGS, require_chromium

_START_TIMEOUT_S = 20
_CALL_TIMEOUT_S = 20


class BrowserError(AssertionError):
    """The browser did not start, or a DevTools call failed."""


class Browser:
    """Headless Chromium driven through the DevTools protocol (a context manager).

    Args:
        profile_dir: a fresh folder for the browser profile.
        width, height: the viewport in CSS pixels (tall enough to show every chart).
    """

    def __init__(self, profile_dir: Path, width: int = 1400, height: int = 2400):
        self.profile_dir = profile_dir
        self.width, self.height = width, height
        self.messages: list[dict] = []
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._process: Optional[subprocess.Popen] = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="devtools", daemon=True)
        self._session: Optional[aiohttp.ClientSession] = None
        self._socket: Optional[aiohttp.ClientWebSocketResponse] = None
        self._reader: Optional[asyncio.Task] = None

    # ------------------------------------------------------------------ life

    def __enter__(self) -> "Browser":
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [
                require_chromium(),
                *CHROMIUM_FLAGS,
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
                f"--window-size={self.width},{self.height}",
                f"--user-data-dir={self.profile_dir}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._thread.start()
        try:
            port = self._wait_for_port()
            self._run(self._connect(port))
            for domain in ("Page", "Runtime", "Log"):
                self.call(f"{domain}.enable")
            self.call(
                "Emulation.setDeviceMetricsOverride",
                {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
            )
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        if self._thread.is_alive():
            try:
                self._run(self._close(), timeout_s=5)
            except Exception:  # noqa: BLE001 - closing a browser that already failed
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)

    def _wait_for_port(self) -> int:
        marker = self.profile_dir / "DevToolsActivePort"
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise BrowserError(f"chromium exited at start with status {self._process.returncode}")
            if marker.exists():
                first_line = marker.read_text().splitlines()[:1]
                if first_line and first_line[0].isdigit():
                    return int(first_line[0])
            time.sleep(0.05)
        raise BrowserError(f"chromium wrote no DevToolsActivePort within {_START_TIMEOUT_S} s")

    # ------------------------------------------------------------------ protocol

    def _run(self, coroutine, timeout_s: float = _CALL_TIMEOUT_S):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=timeout_s)

    async def _connect(self, port: int) -> None:
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        page = next(t for t in targets if t.get("type") == "page")
        self._socket = await self._session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self._socket is not None
        async for message in self._socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            future = self._pending.pop(data.get("id"), None) if "id" in data else None
            if future is not None and not future.done():
                future.set_result(data)
            elif data.get("method") in ("Runtime.consoleAPICalled", "Log.entryAdded", "Runtime.exceptionThrown"):
                self.messages.append(data)

    async def _call(self, method: str, params: dict) -> dict:
        assert self._socket is not None
        call_id = next(self._ids)
        future = self._loop.create_future()
        self._pending[call_id] = future
        await self._socket.send_str(json.dumps({"id": call_id, "method": method, "params": params}))
        return await future

    async def _close(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._reader is not None:
            self._reader.cancel()
        if self._session is not None:
            await self._session.close()

    def call(self, method: str, params: Optional[dict] = None) -> dict:
        """One DevTools command; its ``result`` (raises ``BrowserError`` on a protocol error)."""
        reply = self._run(self._call(method, params or {}))
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    # ------------------------------------------------------------------ page

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (by value; raises on an exception)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} raised: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 15) -> Any:
        """Poll ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"{expression!r} still false after {timeout_s} s")
            time.sleep(0.05)

    def open(self, url: str, ready: str = "document.body && document.body.dataset.pagesJs === 'ready'") -> None:
        """Navigate to ``url`` and wait until ``ready`` holds."""
        self.call("Page.navigate", {"url": url})
        self.wait_for(f"document.readyState === 'complete' && location.href !== 'about:blank' && ({ready})")

    def disable_scripts(self, disabled: bool = True) -> None:
        """Turn the page's JavaScript off (the next load runs without it)."""
        self.call("Emulation.setScriptExecutionDisabled", {"value": disabled})

    def center_of(self, selector: str) -> tuple[float, float]:
        """Scroll the first element matching ``selector`` into view; its centre in viewport pixels."""
        rect = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()"
        )
        if rect is None:
            raise BrowserError(f"nothing matches {selector!r}")
        left, top, width, height = rect
        return left + width / 2, top + height / 2

    def rect_of(self, selector: str) -> tuple[float, float, float, float]:
        """``(left, top, width, height)`` of the first element matching ``selector``, in view."""
        self.center_of(selector)
        return tuple(
            self.evaluate(
                f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                ".getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()"
            )
        )

    def move_mouse(self, x: float, y: float, buttons: int = 0) -> None:
        """Move the mouse to viewport pixel ``(x, y)`` (``buttons=1``: with the left button held)."""
        self.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y, "buttons": buttons})

    def press(self, x: float, y: float, click_count: int = 1) -> None:
        """Press the left button at ``(x, y)``."""
        self.call(
            "Input.dispatchMouseEvent",
            {"type": "mousePressed", "x": x, "y": y, "button": "left", "buttons": 1, "clickCount": click_count},
        )

    def release(self, x: float, y: float, click_count: int = 1) -> None:
        """Release the left button at ``(x, y)``."""
        self.call(
            "Input.dispatchMouseEvent",
            {"type": "mouseReleased", "x": x, "y": y, "button": "left", "buttons": 0, "clickCount": click_count},
        )

    def click(self, x: float, y: float, click_count: int = 1) -> None:
        """A left click (``click_count=2``: the second click of a double click)."""
        self.move_mouse(x, y)
        self.press(x, y, click_count)
        self.release(x, y, click_count)

    def drag(self, start: tuple[float, float], end: tuple[float, float], steps: int = 8) -> None:
        """Press at ``start``, move to ``end`` in ``steps`` moves, release there."""
        self.move_mouse(*start)
        self.press(*start)
        for index in range(1, steps + 1):
            fraction = index / steps
            self.move_mouse(
                start[0] + (end[0] - start[0]) * fraction, start[1] + (end[1] - start[1]) * fraction, buttons=1
            )
        self.release(*end)

    def problems(self) -> list[str]:
        """Console errors and warnings, log entries at warning or worse (CSP violations, failed
        loads), and uncaught exceptions, as text."""
        found = []
        for message in self.messages:
            params = message["params"]
            if message["method"] == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails'].get('text')} {params['exceptionDetails']}")
            elif message["method"] == "Log.entryAdded":
                entry = params["entry"]
                # Browsers ask for /favicon.ico by themselves; the server has none (a 404).
                if entry.get("level") in ("error", "warning") and not entry.get("url", "").endswith("/favicon.ico"):
                    found.append(
                        f"log {entry.get('source')}/{entry.get('level')}: {entry.get('text')} {entry.get('url')}"
                    )
            elif params.get("type") in ("error", "warning", "assert"):
                texts = [str(arg.get("value", arg.get("description"))) for arg in params.get("args", [])]
                found.append(f"console {params['type']}: {' '.join(texts)}")
        return found
