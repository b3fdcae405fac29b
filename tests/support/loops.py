"""An event loop of the test's own, for code that runs on the thread's current loop (Mangum, the admin
function's adapter, does: ``asyncio.get_event_loop().run_until_complete(...)`` per invocation)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def thread_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A new event loop, this thread's current one for the block, then closed.

    Without it Mangum's constructor (run when ``pisces_admin.app`` is imported) has asyncio make one
    itself and leave it as the main thread's current loop, which the next test that sets its own
    (pytest-asyncio, ``asyncio.run``) drops unclosed: a ResourceWarning for the loop and its self-pipe
    sockets, in whichever test the garbage collector then runs."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        asyncio.set_event_loop(None)
        loop.close()
