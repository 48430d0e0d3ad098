"""Headless Debian chromium driven over the DevTools protocol (aiohttp's websocket client).

Just enough for the browser test: open a page at phone size, evaluate JavaScript, take a
screenshot. No Selenium/Playwright: chromium comes from apt (scripts/install-chromium.sh)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

PHONE = (390, 844)  # CSS pixels of a common phone


def find_chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            future = self._pending.pop(data.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(data)
            elif "method" in data:
                self._events.put_nowait(data)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        await self._ws.send_json({"id": call_id, "method": method, "params": params})
        reply = await asyncio.wait_for(future, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def wait_event(self, method: str, limit: float = 30) -> dict[str, Any]:
        async def _wait() -> dict[str, Any]:
            while True:
                event = await self._events.get()
                if event["method"] == method:
                    return event

        return await asyncio.wait_for(_wait(), limit)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression,
                                 returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JS error: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, limit: float = 30) -> Any:
        """Evaluate until truthy (page scripts and polling run on their own time)."""
        deadline = asyncio.get_running_loop().time() + limit
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"still false after {limit}s: {expression}")
            await asyncio.sleep(0.2)

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_event("Page.loadEventFired")

    async def screenshot(self, path: Path, full_page: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = await self.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1})
        result = await self.send("Page.captureScreenshot", **params)
        await asyncio.to_thread(path.write_bytes, base64.b64decode(result["data"]))
        return path

    async def close(self) -> None:
        self._reader.cancel()
        await self._ws.close()


@contextlib.asynccontextmanager
async def chromium_page(binary: str, *, block: tuple[str, ...] = ()) -> AsyncIterator[Page]:
    """A fresh headless chromium (own profile) with one phone-sized page."""
    profile = tempfile.mkdtemp(prefix="paybot-chromium-")
    proc = await asyncio.create_subprocess_exec(
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--no-default-browser-check", "--mute-audio",
        f"--user-data-dir={profile}", f"--window-size={PHONE[0]},{PHONE[1]}",
        "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    session = aiohttp.ClientSession()
    page: Page | None = None
    try:
        port = await _devtools_port(Path(profile) / "DevToolsActivePort", proc)
        async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json()
        target = next(t for t in targets if t["type"] == "page")
        ws = await session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        await page.send("Page.enable")
        await page.send("Network.enable")
        if block:
            await page.send("Network.setBlockedURLs", urls=list(block))
        await page.send("Emulation.setDeviceMetricsOverride", width=PHONE[0], height=PHONE[1],
                        deviceScaleFactor=2, mobile=True)
        yield page
    finally:
        if page is not None:
            await page.close()
        await session.close()
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def _devtools_port(port_file: Path, proc: asyncio.subprocess.Process) -> int:
    """Chromium writes its DevTools port into the profile once it listens."""

    def read() -> str:
        return port_file.read_text() if port_file.exists() else ""

    for _ in range(300):
        text = await asyncio.to_thread(read)
        if text.strip():
            return int(text.split()[0])
        if proc.returncode is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode}")
        await asyncio.sleep(0.1)
    raise TimeoutError("chromium did not open its DevTools port")
