"""schemathesis against the served OpenAPI document: generated requests (valid, invalid and
stateful sequences) get no server error, and every answer matches the document."""

from __future__ import annotations

import asyncio
import os
import sys

from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.api import mount_api
from ledger.core import Ledger
from tests.conftest import run_sql

# Small enough that the whole tests/api directory stays well under two minutes.
MAX_EXAMPLES = 25
SEED = 20261121


async def test_schemathesis_finds_no_server_error(engine, api_config, make_seller,
                                                  tmp_path) -> None:
    seller = await make_seller(balance=100_000)
    app = web.Application()
    mount_api(app, Ledger(engine), api_config)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "schemathesis.cli", "run",
            str(server.make_url("/api/v1/openapi.json")),
            "--checks", "all",
            # Rules JSON Schema cannot state (an amount above zero with the currency's
            # decimals, a non-blank title, from before to) are answered 422 by design.
            "--exclude-checks", "positive_data_acceptance",
            "--header", f"Authorization: Bearer {seller.token}",
            "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
            "--request-timeout", "20",
            cwd=tmp_path, env=os.environ | {"NO_COLOR": "1"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        async with asyncio.timeout(100):
            output, _ = await proc.communicate()
    finally:
        await server.close()
        # Callbacks it made the API queue (random URLs) are never to be sent anywhere.
        await run_sql(engine, "UPDATE outbox SET failed_at = now(), last_error = 'fuzz test' "
                              "WHERE topic = 'callback' AND payload ->> 'seller_id' = :s "
                              "AND delivered_at IS NULL", s=str(seller.user.id))
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "Server error" not in text
    assert " passed" in text
