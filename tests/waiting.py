"""Waiting for what a test means, never for a fixed time.

`wait_until(condition, what)` returns as soon as `condition()` holds (a plain or async
callable: a row in PostgreSQL, a message at the Bot API stand-in, a log record) and fails
loudly, naming `what`, if it has not held within `within` seconds. That bound is a generous
ceiling for a busy machine, not a timing assertion: a passing test never waits for it.
A `task` (the server under test) that ends meanwhile fails the wait at once, with its error.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

WITHIN = 60.0
_EVERY = 0.02  # how often the condition is looked at; it is asked, not slept on


async def wait_until(condition: Callable[[], Any | Awaitable[Any]], what: str, *,
                     within: float = WITHIN, task: asyncio.Future[Any] | None = None) -> Any:
    """Until `condition()` is truthy; returns its value. AssertionError naming `what` after
    `within` seconds, or as soon as `task` (if given) is done."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if task is not None and task.done():
            error = None if task.cancelled() else task.exception()
            raise AssertionError(f"gave up waiting for {what}: the task under test ended"
                                 f" ({error!r})") from error
        if loop.time() > deadline:
            raise AssertionError(f"{what}: still not so after {within:g} s")
        await asyncio.sleep(_EVERY)


def log_records(caplog: Any, logger: str, contains: str) -> list[logging.LogRecord]:
    """The records pytest's `caplog` has captured from `logger` (or its children) whose
    message contains `contains`: a log line as the event to wait for."""
    return [r for r in caplog.records
            if (r.name == logger or r.name.startswith(logger + "."))
            and contains in r.getMessage()]
