"""What a registered presence-router callback answers, for the tests that
call one without a Synapse: the module's callbacks return an awaitable
(already done when the reactor answered the call, a coroutine when a thread
finished it), which Synapse awaits; `asyncio.run` takes coroutines only.
"""

import asyncio
from typing import Any, Awaitable


def answer_of(awaitable: Awaitable[Any]) -> Any:
    """Awaits `awaitable` as Synapse would, outside any reactor."""

    async def awaited() -> Any:
        return await awaitable

    return asyncio.run(awaited())
