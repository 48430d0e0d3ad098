"""`paybot run` starts, serves /healthz, and stops cleanly on SIGTERM (as a service manager
stops it), with nothing but a database configured."""

import asyncio
import os
import signal
import socket
import sys

import aiohttp

from tests.waiting import wait_until


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_run_serves_and_stops_cleanly(scratch_database) -> None:
    url = await scratch_database()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "TON_"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "run",
        env=env | {"DATABASE_URL": url, "WEB_HOST": "127.0.0.1", "WEB_PORT": str(port)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with aiohttp.ClientSession() as http:

            async def healthy() -> bool:
                if proc.returncode is not None:
                    out, _ = await proc.communicate()
                    raise AssertionError(f"paybot run exited ({proc.returncode}):\n"
                                         f"{out.decode()}")
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                        return resp.status == 200 and (await resp.json())["ok"] is True
                except aiohttp.ClientConnectionError:
                    return False  # not listening yet

            await wait_until(healthy, "paybot run answering /healthz with ok")
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = out.decode()
    assert proc.returncode == 0, log
    assert "paybot stopped" in log
    assert "Traceback" not in log
