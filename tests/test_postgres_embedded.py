"""The embedded PostgreSQL of `paybot run` (DATABASE_URL unset): a server left running in the
data dir by a killed paybot is adopted and then stopped by the next clean stop; servers in
different data dirs start side by side without disturbing each other."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postmasters(data_dir: Path) -> list[psutil.Process]:
    """PostgreSQL server processes started on `data_dir`."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and "-D" in cmd \
                and cmd[cmd.index("-D") + 1:cmd.index("-D") + 2] == [str(data_dir)]:
            found.append(proc)
    return found


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TELEGRAM_", "TON_", "DATABASE_URL"))}
    return env | {"PYTHONPATH": str(ROOT)} | extra


async def _start_run(data_dir: Path) -> tuple[asyncio.subprocess.Process, int]:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "run", cwd=ROOT,
        env=_env(PAYBOT_DATA_DIR=str(data_dir), WEB_HOST="127.0.0.1", WEB_PORT=str(port)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    async with aiohttp.ClientSession() as http, asyncio.timeout(120):
        while True:
            assert proc.returncode is None, (await proc.communicate())[0].decode()
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return proc, port
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)


async def test_a_server_left_by_a_killed_run_is_adopted_and_stopped(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first, _ = await _start_run(data)
    first.send_signal(signal.SIGKILL)
    await first.communicate()
    left = postmasters(data)
    try:
        assert left, "kill -9 of paybot leaves its server running (the case at hand)"
        second, _ = await _start_run(data)  # adopts it and serves
        second.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(second.communicate(), 60)
        assert second.returncode == 0, out.decode()
        assert "Traceback" not in out.decode()
        assert postmasters(data) == [], "a clean stop leaves no server behind"
        third, _ = await _start_run(data)  # and the data dir is usable again
        third.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(third.communicate(), 60)
        assert third.returncode == 0, out.decode()
        assert postmasters(data) == []
    finally:
        for proc in postmasters(data):
            proc.kill()


START_ONE = """
import asyncio, sys
import asyncpg
from ledger.postgres import embedded_postgres

async def main(url):
    conn = await asyncpg.connect(url)
    print(await conn.fetchval("SHOW data_directory"), flush=True)
    await conn.close()

with embedded_postgres(sys.argv[1]) as url:
    asyncio.run(main(url))
"""


async def test_servers_in_different_dirs_start_side_by_side(tmp_path: Path) -> None:
    dirs = [tmp_path / f"pg{i}" for i in range(3)]
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", START_ONE, str(d), cwd=ROOT, env=_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE) for d in dirs]
    try:
        results = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 180)
        for d, p, (out, err) in zip(dirs, procs, results, strict=True):
            assert p.returncode == 0, err.decode()
            assert out.decode().strip() == str(d)  # each reached its own server
            assert postmasters(d) == []
    finally:
        for d in dirs:
            for proc in postmasters(d):
                proc.kill()
